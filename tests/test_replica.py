"""The replica actor on a real local Ray: concurrent trials are batched, and each row's output is what
that trial gives alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file, save_file

from sweep.messages import SteerSettings
from sweep.models import locate, model_config
from sweep.prompts import steered
from sweep.replica import Replica
from sweep.rundir import SCHEMAS, RunDir, write_table
from sweep.scoring import token_overlap
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
             "reference_text": f"Question: {q}\nAnswer and explanation:\n{a}\n"} for i, (q, a, _, _) in enumerate(QUESTIONS)]
    write_table(run.table("references"), refs, SCHEMAS["references"])
    generator = torch.Generator().manual_seed(0)
    save_file({str(i): 4 * torch.randn(layers, hidden, generator=generator) for i in range(len(QUESTIONS))},
              str(run.vectors))
    return run


def start_replica(root: Path, engine, cached: bool, new_tokens: int, wait_s: float):  # noqa: ANN001, ANN201
    """A tiny-model replica actor and the settings of a run directory made under `root`."""
    cfg = model_config(CONF, "tiny-random")
    run = tiny_run(root, engine.num_layers, engine.model.config.hidden_size)
    settings = SteerSettings(
        run_root=str(run.root), vectors_file=run.vectors.name, max_new_tokens=new_tokens, chat_template=False, exclude_sink=False, cached=cached,
        include_prompt=False, perplexity_window=512, max_batch=4, batch_wait_s=wait_s)
    return ray.remote(Replica).remote(cfg, locate(cfg, CONF), 0), settings, run


@pytest.mark.parametrize("cached", [False, True])
def test_concurrent_trials_are_batched_and_match_the_engine_alone(tmp_path, ray_local, tiny_engine, cached):
    replica, settings, run = start_replica(tmp_path / "run", tiny_engine, cached, new_tokens=12, wait_s=0.2)
    layers = tiny_engine.num_layers
    requests = [(i % len(QUESTIONS), [0.1 + 0.1 * i] * layers, [0.9 - 0.1 * i] * layers) for i in range(6)]
    outputs = ray.get([replica.steer.remote(settings, *r) for r in requests])
    assert max(o.batch_size for o in outputs) > 1
    assert ray.get(replica.stats.remote())["trials"] == 6
    vectors = load_file(run.vectors)
    for (prompt_id, alpha, gamma), out in zip(requests, outputs):
        steer = steer_rows(vectors[str(prompt_id)][None], [(alpha, gamma)], exclude_sink=False, cached=cached)
        (alone,) = tiny_engine.generate([steered(QUESTIONS[prompt_id][0])], 12, steer=steer)
        assert out.text == alone
        assert out.perplexity == pytest.approx(tiny_engine.perplexity([alone], 512)[0], rel=1e-4)
        assert out.overlap == token_overlap(QUESTIONS[prompt_id][1], alone)
    ray.kill(replica)


def test_a_trial_for_an_unknown_prompt_fails_alone(tmp_path, ray_local, tiny_engine):
    replica, settings, _ = start_replica(tmp_path / "run", tiny_engine, cached=True, new_tokens=4, wait_s=0.05)
    layers = tiny_engine.num_layers
    with pytest.raises(ray.exceptions.RayTaskError, match="no reference vector for prompt 99"):
        ray.get(replica.steer.remote(settings, 99, [0.5] * layers, [0.5] * layers))
    assert ray.get(replica.steer.remote(settings, 0, [0.5] * layers, [0.5] * layers)).text is not None
    ray.kill(replica)


def test_a_trial_worker_holding_a_replica_handle_never_loads_the_model_stack(tmp_path, ray_local, tiny_engine):
    # Ray imports an actor's module wherever its handle is unpickled; each Tune trial gets the replicas'
    # handles, so importing torch there would cost every trial worker seconds of CPU and hundreds of MB.
    replica, _, _ = start_replica(tmp_path / "run", tiny_engine, cached=True, new_tokens=4, wait_s=0.05)

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
