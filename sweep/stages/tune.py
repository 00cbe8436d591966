"""tune -> trials.parquet, best.parquet, timings.parquet: Ray Tune runs shards of studies (sweep/tuning.py), one
seeded Optuna study per (prompt, arm), against the replicas (each batch to a live one, sweep/dispatch.py); each
shard's state lives in DIR/tune/state/.

Resuming needs no Tune checkpoint: a rerun reads the state files and starts a fresh Tune experiment over the
shards with a study not finished. Shards are always cut from the full, config-ordered list of studies, so a
resumed shard holds the studies it held before, its finished ones masked: its batches are the uninterrupted
run's. Changed cluster.* and tracking.* keys take effect on a resume, which Tuner.restore (it unpickles the
first run's configs) would not do; a changed cluster.max_batch cuts other shards (and so other batches).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray import tune

from ..arms import arm_by_name, derangement, sweep_arms, vector_key
from ..config import SweepConfig
from ..dispatch import start_dispatcher
from ..errors import SweepError
from ..health import StallWatch
from ..progress import Progress
from ..rundir import SCHEMAS, RunDir, read_rows, replacing, write_text_atomic
from ..scoring import DEGENERATE_REPETITION
from ..session import Session, num_layers, steer_settings, trial_resources
from ..tracking import LiveLogger
from ..tuning import (StudySettings, append_round, budget, finished, parse_key, read_shard, read_state_dir,
                      run_shard, shard_file, study_key)
from ..weights import segment_bounds
from .vectors import check_vectors

log = logging.getLogger(__name__)


class ShardProgress(tune.Callback):
    """Feeds the stage's progress line from the shards' round results."""

    def __init__(self, progress: Progress, resumed: list[list[float]]) -> None:
        """`resumed`: per shard, the [sum, count] of best objectives of its studies with trials from an earlier
        attempt, until the shard reports its own (which holds them too)."""
        self.progress = progress
        self.best = dict(enumerate(resumed))  # shard index -> its studies' [sum, count] of best objectives
        self.shard_cpu: dict[str, dict[str, float]] = {}  # Tune trial -> its CPU seconds per component so far
        self.process_cpu: dict[int, float] = {}  # trial actor's pid -> its process CPU seconds so far

    def __getstate__(self) -> dict:
        return {}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001 - Tune's signature
        self.shard_cpu[trial.trial_id] = result["cpu"]
        self.process_cpu[result["pid"]] = max(self.process_cpu.get(result["pid"], 0.0), result["process_cpu_s"])
        self.best[trial.config["shard"]] = result["best_objectives"]
        total, count = map(sum, zip(*self.best.values()))
        self.progress.update(result["trials_done"], f"best mean objective {total / max(count, 1):.3f}")


def study_settings(session: Session, mismatch: dict[int, int]) -> StudySettings:
    cfg, run = session.cfg, session.run
    layers = num_layers(session.replicas)
    return StudySettings(
        trials=cfg.search.trials, seed=cfg.seed, alpha=(cfg.search.alpha_low, cfg.search.alpha_high),
        gamma=(cfg.search.gamma_low, cfg.search.gamma_high), space=cfg.search.space,
        strength=(cfg.search.strength_low, cfg.search.strength_high),
        temperature=cfg.generation.sampled_temperature, num_layers=layers,
        segments=segment_bounds(layers, list(cfg.steering.segment_starts)),
        steer=steer_settings(cfg, run, run.vectors.name), in_flight=cfg.search.in_flight,
        objective=cfg.scoring.objective, state_dir=str(run.tune_state), mismatch=mismatch)


def mismatch_map(cfg: SweepConfig, prompt_ids: list[int]) -> dict[int, int]:
    if "mismatched" not in cfg.controls:
        return {}
    if len(prompt_ids) < 2:
        raise SweepError("the mismatched control needs at least 2 prompts; raise data.rows or leave it out "
                         "(controls=[prompt_only,random])")
    return derangement(prompt_ids, cfg.seed)


def tune_stage(session: Session) -> dict[str, float]:
    """Runs the stage; returns the CPU seconds it spent per component and process (the orchestration bench's
    table): `actors.COMPONENT` in Tune trial actors, `actor_processes` their processes' total, `driver.parquet`
    in the driver, `mlflow.live` in MLflow's live writer."""
    cfg, run = session.cfg, session.run
    prompt_ids = [r["prompt_id"] for r in read_rows(run.table("prompts"))]
    arms = sweep_arms(list(cfg.search.methods), list(cfg.controls))
    mismatch = mismatch_map(cfg, prompt_ids)
    check_vectors(run, sorted({vector_key(a, p, mismatch) for p in prompt_ids for a in arms}))
    keys = [study_key(p, a.name) for p in prompt_ids for a in arms]
    budgets = {k: budget(arm_by_name(parse_key(k)[1]), cfg.search.trials) for k in keys}
    run.tune_state.mkdir(parents=True, exist_ok=True)
    latest, held = read_state_dir(run.tune_state)
    shards = plan_shards(run.tune_state, keys, max(1, cfg.cluster.max_batch // cfg.search.in_flight), latest, held,
                         cfg.search.trials)
    if not shards:
        _write_results(run, keys, cfg.search.trials)
        return {}
    live = LiveLogger(session.tracker_args(), budgets)
    try:
        costs = _run_shards(session, study_settings(session, mismatch), shards, latest, budgets, live)
        del latest, held
        started = time.thread_time()
        _write_results(run, keys, cfg.search.trials)
        costs["driver.parquet"] = time.thread_time() - started
    finally:
        live.close()  # the results are out first; then MLflow's live writer stops before anything else writes
    return {**costs, "mlflow.live": live.cpu_s}


def plan_shards(state_dir: Path, keys: Sequence[str], size: int, latest: dict[str, list[dict]],
                held: dict[Path, dict[str, int]], trials: int) -> list[list[str]]:
    """The shards with a study left to run, cut from the full, config-ordered list of studies in shards of
    `size`: the same shards, and so the same batches, as an uninterrupted run's (finished studies stay in their
    shard, masked). A shard's file is brought up to its studies' longest history first: after a resume under
    another cluster.max_batch, a study's latest rows may sit in another shard's file."""
    shards = []
    for start in range(0, len(keys), size):
        shard = list(keys[start:start + size])
        if all(finished(k, len(latest.get(k, ())), trials) for k in shard):
            continue
        path = shard_file(state_dir, shard)
        have = held.get(path, {})
        missing = [row for k in shard for row in latest.get(k, [])[have.get(k, 0):]]
        if missing:
            append_round(path, missing)
        shards.append(shard)
    return shards


def _run_shards(session: Session, settings: StudySettings, shards: list[list[str]], latest: dict[str, list[dict]],
                budgets: dict[str, int], live: LiveLogger) -> dict[str, float]:
    cfg, run = session.cfg, session.run
    pool = session.pool()
    serving = pool.live_slots()  # the others join the dispatch when they are placed
    attempt = len(list(run.tune_storage.glob("attempt-*"))) + 1
    keys = [k for shard in shards for k in shard]
    total = sum(budgets[k] for k in keys)
    done = sum(min(len(latest.get(k, [])), budgets[k]) for k in keys)
    resumed = [[sum(b), len(b)] for b in ([max(r["objective"] for r in latest[k]) for k in shard if latest.get(k)]
                                          for shard in shards)]
    dispatcher = start_dispatcher([f"{pool.role}-{i}" for i in range(len(pool.actors))], pool.groups, serving,
                                  session.patience)
    trainable = tune.with_resources(
        tune.with_parameters(run_shard, settings=settings, dispatcher=dispatcher, replicas=pool.actors,
                             shards=shards),
        trial_resources(cfg.cluster))
    left = sum(not finished(k, len(latest.get(k, ())), settings.trials) for k in keys)
    log.info("tune: %d studies left in %d shard%s of up to %d (attempt %d)", left, len(shards),
             "s" * (len(shards) > 1), len(shards[0]), attempt)
    with Progress("tune", total, "trials") as progress, _killed_after(dispatcher):
        progress.update(done)
        shard_progress = ShardProgress(progress, resumed)
        tuner = tune.Tuner(
            trainable,
            param_space={"shard": tune.grid_search(list(range(len(shards))))},
            # Two shards per replica, counting those yet to join: while one's batch runs, the other's is queued.
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=2 * len(pool.actors)),
            run_config=tune.RunConfig(
                name=f"attempt-{attempt}", storage_path=str(run.tune_storage.resolve()),
                verbose=1 if session.verbose else 0, failure_config=tune.FailureConfig(max_failures=2),
                callbacks=[shard_progress, live, StallWatch(trial_resources(cfg.cluster))]))
        tuner.fit()
    costs: dict[str, float] = defaultdict(float)
    for shard in shard_progress.shard_cpu.values():
        for component, seconds in shard.items():
            costs[f"actors.{component}"] += seconds
    costs["actor_processes"] = sum(shard_progress.process_cpu.values())
    return costs


@contextmanager
def _killed_after(actor: Any) -> Iterator[None]:
    try:
        yield
    finally:
        ray.kill(actor)


ROWS = pa.schema([*SCHEMAS["trials"], SCHEMAS["timings"].field("seconds")])  # a state file's rows
SLICE_PROMPTS = 100  # prompts whose trials the driver holds at once while it writes the results
ORDER = [("prompt_id", "ascending"), ("method", "ascending"), ("trial", "ascending")]


def _write_results(run: RunDir, keys: list[str], trials: int) -> None:
    """trials/best/timings of every finished study, from the state files; the unfinished ones are named and the
    stage fails, so a rerun runs only those. failed.json goes first: a kill between it and the Parquet files
    leaves the stage not done, never a partial stage that looks done. Two passes over the state files keep the
    driver's memory flat however large the sweep: the first finds each study's longest history (a study regrouped
    after a resume sits in two files), the second writes the finished studies a slice of prompts at a time."""
    files = sorted(run.tune_state.glob("*.jsonl"))
    longest: dict[str, tuple[int, int]] = {}  # study -> (its most rows in one file, that file's index)
    prompts_in: list[set[int]] = []
    for index, path in enumerate(files):
        shard = read_shard(path)
        for key, rows in shard.items():
            if len(rows) > longest.get(key, (0, -1))[0]:
                longest[key] = (len(rows), index)
        prompts_in.append({parse_key(k)[0] for k in shard})
    done = {k: longest[k][1] for k in keys if finished(k, longest.get(k, (0, -1))[0], trials)}
    failed = [k for k in keys if k not in done]
    if failed:
        write_text_atomic(run.tune_failed, json.dumps(failed))
    prompt_ids = sorted({parse_key(k)[0] for k in done})
    names = ("trials", "best", "timings")
    with replacing([run.table(name) for name in names]) as paths:
        writers = [pq.ParquetWriter(path, SCHEMAS[name]) for path, name in zip(paths, names)]
        try:
            for start in range(0, len(prompt_ids), SLICE_PROMPTS):
                wanted = set(prompt_ids[start:start + SLICE_PROMPTS])
                rows = [r for index, path in enumerate(files) if prompts_in[index] & wanted
                        for key, study in read_shard(path).items()
                        if done.get(key) == index and parse_key(key)[0] in wanted for r in study]
                table = pa.Table.from_pylist(rows, ROWS).sort_by(ORDER)
                best = pa.Table.from_pylist(best_trials(table.to_pylist()), ROWS)
                for writer, name, part in zip(writers, names, (table, best, table)):
                    writer.write_table(part.select(SCHEMAS[name].names))
        finally:
            for writer in writers:
                writer.close()
    if not failed:
        run.tune_failed.unlink(missing_ok=True)  # an earlier attempt's list: the stage is done now
    if failed:
        raise SweepError(f"{len(failed)} of {len(keys)} studies did not finish (Tune's errors are under "
                         f"{run.tune_storage}): {', '.join(failed[:10])}{' ...' if len(failed) > 10 else ''}. "
                         f"The {len(done)} finished ones are in trials.parquet; rerun the command to run the rest")


def best_trials(rows: Sequence[dict]) -> list[dict]:
    """The highest-objective trial per (prompt, arm) among its non-degenerate trials (repetition below
    DEGENERATE_REPETITION, evaluate's rule), or among all of them when every trial is degenerate: a loop of the
    gold's words is not an answer, whatever its objective. The earliest wins a tie."""
    def rank(row: dict) -> tuple[bool, float]:
        return row["repetition"] < DEGENERATE_REPETITION, row["objective"]

    best: dict[tuple[int, str], dict] = {}
    for row in rows:
        key = (row["prompt_id"], row["method"])
        if key not in best or rank(row) > rank(best[key]):
            best[key] = row
    return [best[k] for k in sorted(best)]
