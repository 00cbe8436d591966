"""The replica actor on a real local Ray: each call is one batch exactly as sent, each row's output is what
that trial gives alone, and the run's vectors are loaded once however many calls arrive together."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file, save_file

from sweep.messages import SteerRequest, SteerSettings
from sweep.models import locate, model_config
from sweep.prompts import steered
from sweep.replica import Replica
from sweep.rundir import SCHEMAS, RunDir, write_table
from sweep.scoring import repetition, token_overlap
from sweep.session import build_replica_model
from sweep.steering import steer_rows

from conftest import CONF, QUESTIONS


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def tiny_run(root: Path, layers: int, hidden: int) -> RunDir:
    run = RunDir(root)
    root.mkdir(parents=True, exist_ok=True)
    refs = [{"prompt_id": i, "question": q, "answer": a, "explanation": "", "explanation_source": "empty",
             "reference_text": a} for i, (q, a, _, _) in enumerate(QUESTIONS)]
    write_table(run.table("references"), refs, SCHEMAS["references"])
    generator = torch.Generator().manual_seed(0)
    save_file({f"gold/{i}": 4 * torch.randn(layers, hidden, generator=generator) for i in range(len(QUESTIONS))},
              str(run.vectors))
    return run


def start_replica(root: Path, engine, cached: bool, new_tokens: int):  # noqa: ANN001, ANN201
    """A tiny-model replica actor and the settings of a run directory made under `root`."""
    cfg = model_config(CONF, "tiny-random")
    run = tiny_run(root, engine.num_layers, engine.model.config.hidden_size)
    settings = SteerSettings(run_root=str(run.root), vectors_file=run.vectors.name, max_new_tokens=new_tokens,
                             chat_template=False, exclude_sink=False, cached=cached, include_prompt=False,
                             perplexity_window=512)
    build = functools.partial(build_replica_model, cfg, locate(cfg, CONF), 0)
    return ray.remote(Replica).remote(build), settings, run


@pytest.mark.parametrize("cached", [False, True])
def test_a_batch_of_trials_matches_each_trial_alone(tmp_path, ray_local, tiny_engine, cached):
    replica, settings, run = start_replica(tmp_path / "run", tiny_engine, cached, new_tokens=12)
    layers = tiny_engine.num_layers
    # Trial 5 steers prompt 5 with prompt 0's vector, as the mismatched control does.
    requests = [SteerRequest(i % len(QUESTIONS), f"gold/{i % len(QUESTIONS) if i != 5 else 0}",
                             [0.1 + 0.1 * i] * layers, [0.9 - 0.1 * i] * layers) for i in range(6)]
    outputs = ray.get(replica.steer.remote(settings, requests))
    stats = ray.get(replica.stats.remote())
    assert (stats["trials"], stats["batches"]) == (6, 1)
    vectors = load_file(run.vectors)
    for request, out in zip(requests, outputs):
        steer = steer_rows(vectors[request.vector][None], [(request.alpha, request.gamma)], exclude_sink=False,
                           cached=cached)
        (alone,) = tiny_engine.generate([steered(QUESTIONS[request.prompt_id][0])], 12, steer=steer)
        assert out.text == alone
        assert out.perplexity == pytest.approx(tiny_engine.perplexity([alone], 512)[0], rel=1e-4)
        assert out.overlap == token_overlap(QUESTIONS[request.prompt_id][1], alone)
        assert out.repetition == repetition(alone)
    ray.kill(replica)


def test_concurrent_first_calls_load_the_vectors_once(tmp_path, ray_local, tiny_engine):
    replica, settings, _ = start_replica(tmp_path / "run", tiny_engine, cached=True, new_tokens=2)
    layers = tiny_engine.num_layers
    calls = [replica.steer.remote(settings, [SteerRequest(i, f"gold/{i}", [0.5] * layers, [0.5] * layers)])
             for i in range(4)]
    assert len(ray.get(calls)) == 4
    assert ray.get(replica.stats.remote())["vector_loads"] == 1
    ray.kill(replica)


def test_a_batch_naming_an_unknown_vector_fails_with_its_name(tmp_path, ray_local, tiny_engine):
    replica, settings, _ = start_replica(tmp_path / "run", tiny_engine, cached=True, new_tokens=4)
    layers = tiny_engine.num_layers
    with pytest.raises(ray.exceptions.RayTaskError, match="no steering vector gold/99"):
        ray.get(replica.steer.remote(settings, [SteerRequest(0, "gold/99", [0.5] * layers, [0.5] * layers)]))
    (out,) = ray.get(replica.steer.remote(settings, [SteerRequest(0, "gold/0", [0.5] * layers, [0.5] * layers)]))
    assert out.text is not None
    ray.kill(replica)


def test_a_trial_worker_holding_a_replica_handle_never_loads_the_model_stack(tmp_path, ray_local, tiny_engine):
    # Ray imports an actor's module wherever its handle is unpickled; each Tune trial gets the replicas'
    # handles, so importing torch there would cost every trial worker seconds of CPU and hundreds of MB.
    replica, _, _ = start_replica(tmp_path / "run", tiny_engine, cached=True, new_tokens=4)

    # Its own runtime env makes Ray start a fresh worker, one no earlier task has loaded torch into.
    @ray.remote(runtime_env={"env_vars": {"FUSION_STEERING_PROBE": "1"}})
    def modules_after_unpickling(handles: list) -> tuple[bool, int]:
        import sys

        import sweep.tuning  # noqa: F401 - what a trial imports
        heavy = {"torch", "transformers", "nltk"} & set(sys.modules)
        return sorted(heavy), ray.get(handles[0].num_layers.remote())

    heavy, layers = ray.get(modules_after_unpickling.remote([replica]))
    assert layers == tiny_engine.num_layers
    assert heavy == []
    ray.kill(replica)


def test_a_replica_given_a_gpu_without_cuda_refuses_to_run_on_its_cpu():
    from sweep.errors import ModelError
    from sweep.replica_model import ReplicaModel

    cfg = model_config(CONF, "tiny-random")
    cfg.device = "cuda"
    with pytest.raises(ModelError, match="reserved a GPU but torch finds no CUDA device.*model.device=cpu"):
        ReplicaModel(cfg, locate(cfg, CONF), 1)


def kill_for_good(actor) -> None:  # noqa: ANN001 - a Ray actor handle
    """ray.kill returns before the actor is dead: a call sent at once can still be answered (a flaky test)."""
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            ray.get(actor.num_layers.remote(), timeout=30)
        except ray.exceptions.RayActorError:
            return
        assert time.monotonic() < deadline, "the killed actor still answers"
        time.sleep(0.1)


def test_a_call_whose_replica_is_gone_goes_to_the_next_and_with_none_left_the_stage_fails(ray_local):
    from sweep.orchestration import ZeroCostModel
    from sweep.session import on_replicas

    replicas = [ray.remote(Replica).options(max_restarts=0).remote(ZeroCostModel) for _ in range(2)]
    assert on_replicas(replicas, [("num_layers", ())] * 4) == [ZeroCostModel.num_layers] * 4
    kill_for_good(replicas[0])
    # Calls 0 and 2 are sent to the dead replica first: they are answered by the survivor.
    assert on_replicas(replicas, [("num_layers", ())] * 4) == [ZeroCostModel.num_layers] * 4
    kill_for_good(replicas[1])
    with pytest.raises(RuntimeError, match="every replica is gone"):
        on_replicas(replicas, [("num_layers", ())])


def test_a_frozen_replica_costs_a_stage_call_its_deadline_not_the_call_timeout(ray_local):
    import time

    from sweep.dispatch import Patience
    from sweep.session import on_replicas

    class Answerer:
        """Echoes each batch; a frozen one never answers (a replica stopped, or restarting on a lost node)."""

        def __init__(self, frozen: bool) -> None:
            self.frozen = frozen

        def echo(self, batch: list[int]) -> list[int]:
            if self.frozen:
                time.sleep(600)
            return batch

    replicas = [ray.remote(Answerer).options(num_cpus=0).remote(frozen) for frozen in (True, False)]
    try:
        started = time.monotonic()
        calls = [("echo", ([i],)) for i in range(6)]
        # Calls 0, 2 and 4 go to the frozen replica first; after its 2 s deadline they go to the other one.
        assert on_replicas(replicas, calls, patience=Patience(floor_s=2, factor=4, last_s=600)) == [[i] for i in range(6)]
        assert time.monotonic() - started < 60
    finally:
        for replica in replicas:
            ray.kill(replica)
