"""The tune stage's dispatch and resume on a real local Ray cluster, Tune and Optuna, with stand-in models
(a frozen replica cannot be made of a real one on demand; the batches are what is tested, not the texts):
- a frozen replica costs the sweep its per-attempt deadline, not cluster.call_timeout_s;
- a replica whose resources appear mid-tune (cluster.min_replicas) takes batches in that same stage;
- a sweep stopped mid-tune and resumed sends exactly the uninterrupted run's batches;
- failed.json is written before the Parquet files.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from conftest import CONF
from sweep.config import compose, resolve_paths
from sweep.errors import SweepError
from sweep.orchestration import ZeroCostModel, write_synthetic_run
from sweep.rundir import RunDir
from sweep.session import NAMESPACE, Session
from sweep.stages import tune as tune_module
from sweep.stages.tune import tune_stage
from sweep.stages.vectors import save_tensors
from sweep.tuning import append_round, shard_file

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stand-in models travel to the replicas
FREEZE_S = 600


class FrozenFirstReplica(ZeroCostModel):
    """replica-0 never answers in time (a replica restarting, or stuck on its node); the others at once."""

    def steer(self, settings, requests):  # noqa: ANN001, ANN201
        if ray.get_runtime_context().get_actor_name() == "replica-0":
            time.sleep(FREEZE_S)
        return super().steer(settings, requests)


class RecordingModel(ZeroCostModel):
    """Appends every batch it answers (prompt, vector, first alpha of each trial) to a file; from its
    `fail_from`-th batch on it raises instead, as a replica of a sweep that is being stopped."""

    def __init__(self, log: str, fail_from: int | None = None) -> None:
        super().__init__()
        self.log, self.fail_from = log, fail_from

    def steer(self, settings, requests):  # noqa: ANN001, ANN201
        if self.fail_from is not None and len(self.batch_sizes) >= self.fail_from:
            raise RuntimeError("stopped")
        with open(self.log, "a") as out:
            out.write(json.dumps([[r.prompt_id, r.vector, r.alpha[0]] for r in requests]) + "\n")
        return super().steer(settings, requests)


class SlowNamedModel(ZeroCostModel):
    """Takes `seconds` a batch and appends the name of the replica that answered it to a file."""

    def __init__(self, log: str, seconds: float) -> None:
        super().__init__()
        self.log, self.seconds = log, seconds

    def steer(self, settings, requests):  # noqa: ANN001, ANN201
        time.sleep(self.seconds)
        with open(self.log, "a") as out:
            out.write(ray.get_runtime_context().get_actor_name() + "\n")
        return super().steer(settings, requests)


def make_run(root: Path, prompts: int, *overrides: str) -> tuple:
    cfg = compose(CONF / "bench.yaml", ["search.trials=3", "search.in_flight=1", "cluster.max_batch=8",
                                        "controls=[prompt_only,random,mismatched]", "cluster.replica_cpus=0.25",
                                        "cluster.trial_cpus=0.1", *overrides])
    resolve_paths(cfg, CONF.parent)
    run = RunDir(root)
    run.prepare(cfg)
    if not run.vectors.exists():
        write_synthetic_run(run, [(f"Question {i}?", f"answer {i}") for i in range(prompts)])
        save_tensors(run.vectors, {f"{kind}/{i}": torch.zeros(ZeroCostModel.num_layers, 8)
                                   for i in range(prompts) for kind in ("gold", "random")})
    return cfg, run


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module's sweeps (each start costs seconds, and minutes on a busy machine)."""
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def run_tune(cfg, run: RunDir, build) -> float:  # noqa: ANN001 - a SweepConfig and a model factory
    """The tune stage on the module's Ray; the replicas and MLflow runs are closed after it, Ray stays."""
    session = Session(cfg, run)
    ok = False
    try:
        session.pool(build=build)
        started = time.perf_counter()
        tune_stage(session)
        ok = True
        return time.perf_counter() - started
    finally:
        session.release()
        session.tracker.close(ok)


@pytest.mark.slow
@pytest.mark.faults
def test_a_frozen_replica_costs_its_deadline_not_the_call_timeout(tmp_path, local_ray):
    cfg, run = make_run(tmp_path / "run", 4, "cluster.num_replicas=2", "cluster.attempt_floor_s=2",
                        "cluster.call_timeout_s=900")
    seconds = run_tune(cfg, run, FrozenFirstReplica)
    # Pinned by index (the code before), every shard of replica-0 waited for the freeze (600 s) at least.
    assert seconds < FREEZE_S / 2, f"the tune stage took {seconds:.0f} s"
    assert (run.root / "trials.parquet").exists() and not run.tune_failed.exists()


@pytest.mark.slow
@pytest.mark.faults
def test_a_replica_placed_mid_tune_takes_batches_in_that_stage(tmp_path, local_ray):
    """Room for one replica of two at start (min_replicas=1); once replica-0 has answered 3 batches, room for the
    second appears. Before, it served only from the next stage's calls."""
    answers = tmp_path / "answers.log"
    blocker = ray.util.placement_group([{"CPU": ray.available_resources()["CPU"] - 0.25}])
    ray.get(blocker.ready(), timeout=120)
    removed = threading.Event()

    def make_room() -> None:
        while not (answers.exists() and len(answers.read_text().split()) >= 3):
            time.sleep(0.1)
        ray.util.remove_placement_group(blocker)
        removed.set()

    threading.Thread(target=make_room, daemon=True).start()
    cfg, run = make_run(tmp_path / "run", 16, "cluster.num_replicas=2", "cluster.min_replicas=1",
                        "cluster.trial_cpus=0")
    try:
        run_tune(cfg, run, functools.partial(SlowNamedModel, str(answers), 0.5))
    finally:
        if not removed.is_set():
            ray.util.remove_placement_group(blocker)
    answered = answers.read_text().split()
    assert removed.is_set() and set(answered[:3]) == {"replica-0"}
    assert answered.count("replica-1") >= 3, f"replica-1 answered {answered.count('replica-1')} of {len(answered)}"
    assert (run.root / "trials.parquet").exists() and not run.tune_failed.exists()


def batches(log: Path) -> list[str]:
    return sorted(log.read_text().splitlines())


@pytest.mark.slow
@pytest.mark.faults
def test_a_resumed_sweep_sends_the_uninterrupted_runs_batches(tmp_path, local_ray):
    straight, resumed = tmp_path / "straight.jsonl", tmp_path / "resumed.jsonl"
    cfg, run = make_run(tmp_path / "a", 4, "cluster.num_replicas=1")
    run_tune(cfg, run, functools.partial(RecordingModel, str(straight)))

    cfg, run = make_run(tmp_path / "b", 4, "cluster.num_replicas=1")
    with pytest.raises(SweepError, match="did not finish"):  # stopped after 3 batches: some studies done
        run_tune(cfg, run, functools.partial(RecordingModel, str(resumed), fail_from=3))
    assert run.tune_failed.exists()
    run_tune(cfg, run, functools.partial(RecordingModel, str(resumed)))
    assert not run.tune_failed.exists()
    assert batches(resumed) == batches(straight)


def test_failed_json_is_written_before_the_parquet_files(tmp_path, monkeypatch):
    cfg, run = make_run(tmp_path / "run", 2)
    run.tune_state.mkdir(parents=True)
    append_round(shard_file(run.tune_state, ["0/full"]), [{"prompt_id": 0, "method": "full", "trial": 0,
                                                           "objective": 0.5, "seconds": 0.1}])

    def killed(*args, **kwargs):  # noqa: ANN002, ANN003
        raise KeyboardInterrupt  # the kill, as the Parquet files are opened

    monkeypatch.setattr(tune_module, "replacing", killed)
    with pytest.raises(KeyboardInterrupt):
        tune_module._write_results(run, ["0/full", "1/full"], 3)
    assert json.loads(run.tune_failed.read_text()) == ["0/full", "1/full"]


@pytest.mark.parametrize("slice_prompts", [1, 500])
def test_the_results_are_each_finished_studys_longest_history_best_first_by_the_selection_rule(
        tmp_path, monkeypatch, slice_prompts):
    """_write_results writes a slice of prompts at a time (one prompt, or all of them here); it writes what the
    plain rule gives from every study's rows as Python objects: the longest history over the files (a study
    regrouped after a resume under another cluster.max_batch sits in two), finished studies only, sorted; best by
    best_trials."""
    import random

    import pyarrow.parquet as pq

    from sweep.stages.tune import best_trials

    monkeypatch.setattr(tune_module, "SLICE_PROMPTS", slice_prompts)
    _, run = make_run(tmp_path / "run", 3)
    run.tune_state.mkdir(parents=True)
    draw = random.Random(0)

    def trial_rows(prompt_id: int, arm: str, count: int) -> list[dict]:
        return [{"prompt_id": prompt_id, "method": arm, "trial": t, "text": f"{arm} {t}", "overlap": draw.random(),
                 "perplexity": 10.0, "repetition": draw.choice([0.0, 0.9]), "objective": draw.random(),
                 "seconds": draw.random(), "alpha_all": draw.random(), "gamma_all": 1.0} for t in range(count)]

    histories = {"0/full": trial_rows(0, "full", 3), "0/segmented": trial_rows(0, "segmented", 3),
                 "1/full": trial_rows(1, "full", 3), "2/full": trial_rows(2, "full", 2)}  # 2/full unfinished
    old = ["0/full", "0/segmented", "1/full", "2/full"]
    append_round(shard_file(run.tune_state, old), [r for k in old for r in histories[k][:1]])
    new = ["1/full", "2/full"]  # regrouped: 1/full's longer history is in the new file only
    append_round(shard_file(run.tune_state, new), [r for k in new for r in histories[k]])
    append_round(shard_file(run.tune_state, old), [r for k in old[:2] for r in histories[k][1:]])
    keys = list(histories)
    with pytest.raises(SweepError, match="1 of 4 studies did not finish"):
        tune_module._write_results(run, keys, 3)
    expected = sorted((r for k in keys[:3] for r in histories[k]), key=lambda r: (r["prompt_id"], r["method"], r["trial"]))
    trials = pq.read_table(run.table("trials")).to_pylist()
    assert trials == [{k: r.get(k) for k in trials[0]} for r in expected]
    best = pq.read_table(run.table("best")).to_pylist()
    assert best == [{k: r.get(k) for k in best[0]} for r in best_trials(expected)]
    assert pq.read_table(run.table("timings")).to_pylist() == [
        {k: r[k] for k in ("prompt_id", "method", "trial", "seconds")} for r in expected]
    assert json.loads(run.tune_failed.read_text()) == ["2/full"]
    append_round(shard_file(run.tune_state, new), trial_rows(2, "full", 3)[2:])  # the rerun finishes 2/full
    tune_module._write_results(run, keys, 3)
    assert not run.tune_failed.exists() and len(pq.read_table(run.table("best"))) == 4


def test_the_progress_line_counts_a_resumed_study_once(tmp_path):
    """A shard's report holds the best objectives of its resumed studies too: it replaces the shard's resumed
    figures, so the mean is over studies, each once."""
    import io
    from types import SimpleNamespace

    from sweep.progress import Progress

    progress = Progress("tune", 10, "trials", stream=io.StringIO())
    shards = tune_module.ShardProgress(progress, [[0.2, 2], [0.5, 1]])  # shard 0: 2 resumed studies, shard 1: 1
    report = {"cpu": {}, "pid": 1, "process_cpu_s": 0.0, "trials_done": 1}
    shards.on_trial_result(0, [], SimpleNamespace(trial_id="a", config={"shard": 0}),
                           {**report, "best_objectives": [1.5, 3]})  # the 2 resumed studies and a new one
    assert progress.note == f"best mean objective {(1.5 + 0.5) / 4:.3f}"
