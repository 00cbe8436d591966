"""The Tune trainable: a shard of studies, one independent seeded Optuna study per (prompt, arm), run in rounds.

Shards are cut from the full, config-ordered list of studies. Each round, every unfinished study of the shard
asks `in_flight` trials; all of them go to one live replica (`dispatch.py`) as one batch; the answers are
told back, and the round's rows are appended to the shard's state file, a JSON line per round. So:
- batch composition is a function of the config (the shard and the round), never of timing or of a resume:
  a finished study is masked inside its shard, so a rerun's batches are the uninterrupted run's, and results
  are the same even with kernels that are not batch-invariant (bitsandbytes);
- a kill at any point loses at most the round in flight, which a rerun asks again with the same parameters;
- the state is data (rows), never pickled: TPE's start-up trials (the first `N_STARTUP` of a study) are random
  draws of the study's seeded generator, computed in bulk exactly as Optuna draws them; a study that goes past
  them is rebuilt by replaying its rows into a fresh seeded Optuna study (asked and told in the same rounds), which
  checks every replayed parameter against the row.
Pure Python, numpy, Optuna and Ray: trial workers never import torch.
"""

from __future__ import annotations

import json
import math
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from ray import tune

from .arms import Arm, arm_by_name, vector_key
from .dispatch import call_replicas
from .messages import SteeredOutput, SteerRequest, SteerSettings
from .scoring import objective
from .weights import group_names, layer_weights, stored_params

optuna.logging.set_verbosity(optuna.logging.WARNING)
N_STARTUP = 10  # TPESampler's n_startup_trials: trials asked while fewer have completed are random


@dataclass(frozen=True)
class StudySettings:
    """Everything a shard needs besides its studies; shared by all shards through Tune."""

    trials: int
    seed: int
    alpha: tuple[float, float]
    gamma: tuple[float, float]
    space: str  # search.space: product | paper
    strength: tuple[float, float]  # the product space's range
    temperature: float  # the sampled arm's
    num_layers: int
    segments: list[tuple[int, int]]
    steer: SteerSettings  # what the replicas need to run a trial
    in_flight: int
    objective: str  # scoring.objective
    state_dir: str  # DIR/tune/state: one file per shard
    mismatch: dict[int, int] = field(default_factory=dict)  # prompt -> whose vector the mismatched arm uses


@dataclass
class StudyState:
    prompt_id: int
    arm: Arm
    seed: int
    space: dict[str, FloatDistribution]
    rows: list[dict] = field(default_factory=list)  # one per finished trial, as trials.parquet holds them
    study: optuna.Study | None = None  # built from the rows once TPE leaves its start-up trials
    startup: list[dict] | None = None  # every start-up trial's parameters, drawn once


def trial_params(row: Mapping[str, Any]) -> dict[str, float]:
    """The weights a trial row sets (alpha_*/gamma_*); the other method's columns are null and left out."""
    return {k: v for k, v in row.items() if k.startswith(("alpha_", "gamma_")) and v is not None}


def study_key(prompt_id: int, arm: str) -> str:
    return f"{prompt_id}/{arm}"


def parse_key(key: str) -> tuple[int, str]:
    prompt_id, arm = key.split("/")
    return int(prompt_id), arm


def budget(arm: Arm, trials: int) -> int:
    """The tuned arms and `sampled` (best of k samples) run `trials`; prompt_only and in_context, greedy with
    nothing to tune, one."""
    return trials if arm.method or arm.sampled else 1


def search_space(arm: Arm, settings: StudySettings) -> dict[str, FloatDistribution]:
    """For all layers (full) or per segment: the product space's strength alpha*gamma, log-uniform; or the
    paper's alpha and gamma, each uniform in [0.01, 1]. None for the unsteered arms, whose weights are 0."""
    space = {}
    for group in group_names(arm.method):
        if settings.space == "product":
            space[f"alpha_{group}"] = FloatDistribution(*settings.strength, log=True)
        else:
            space[f"alpha_{group}"] = FloatDistribution(*settings.alpha)
            space[f"gamma_{group}"] = FloatDistribution(*settings.gamma)
    return space


def sample_seed(seed: int, prompt_id: int, trial: int) -> int:
    """The `sampled` arm's per-trial seed: its texts depend on (run seed, prompt, trial) alone, whatever batch
    the trial runs in."""
    return zlib.crc32(f"{seed}/sampled/{prompt_id}/{trial}".encode())


def study_seed(seed: int, prompt_id: int, arm: Arm) -> int:
    """Seeded by the method, not the arm: a method and its controls sample the same weights (with fewer
    trials than TPE's start-up count), so their difference is the steering vector's alone. Independent of
    Python's hash randomisation and of the order trials run in."""
    return zlib.crc32(f"{seed}/{prompt_id}/{arm.method or arm.name}".encode())


def new_state(key: str, settings: StudySettings, rows: list[dict] | None = None) -> StudyState:
    prompt_id, name = parse_key(key)
    arm = arm_by_name(name)
    return StudyState(prompt_id, arm, study_seed(settings.seed, prompt_id, arm),
                      search_space(arm, settings), list(rows or []))


def new_study(seed: int) -> optuna.Study:
    # TPE's first 10 trials are random start-up trials: with the paper's 5 trials this is random search.
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.create_study(direction="maximize", sampler=sampler)


def startup_params(seed: int, space: Mapping[str, FloatDistribution], first: int, count: int) -> list[dict]:
    """Trials first..first+count-1 of a study, all start-up trials: Optuna's TPE draws each parameter of each
    trial, in the space's order, with `RandomState(seed).uniform(low, high)` (its RandomSampler; in log space
    for a log distribution, then exp), clipped below `high`; nothing else touches that generator before TPE
    proper starts. Drawn here in one call: the same numbers, bit for bit (tests/test_tuning.py compares them
    with Optuna's)."""
    if not space:
        return [{} for _ in range(count)]
    bounds = np.array([(math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high) for d in space.values()])
    n = first + count
    draws = np.random.RandomState(seed).uniform(np.tile(bounds[:, 0], n), np.tile(bounds[:, 1], n))
    return [{name: _untransform(float(x), d) for (name, d), x in zip(space.items(), row)}
            for row in draws.reshape(n, len(space))[first:]]


def _untransform(x: float, d: FloatDistribution) -> float:
    """Optuna's own mapping of a uniform draw back to the distribution (optuna/_transform.py)."""
    top = float(np.nextafter(d.high, d.high - 1))
    return float(np.clip(math.exp(x), d.low, top)) if d.log else min(x, top)


def replay(state: StudyState, in_flight: int, trials: int) -> optuna.Study:
    """A seeded Optuna study holding the state's rows, asked and told in the rounds they ran in, so its sampler
    is where the uninterrupted study's was. Raises if a replayed trial's parameters differ from its row."""
    study = new_study(state.seed)
    total = budget(state.arm, trials)
    for start in range(0, len(state.rows), in_flight):
        batch = state.rows[start:start + min(in_flight, total - start)]
        asked = [study.ask(state.space) for _ in batch]
        for trial, row in zip(asked, batch):
            sampled = {name: row[name] for name in state.space}
            if trial.params != sampled:
                raise RuntimeError(f"study {study_key(state.prompt_id, state.arm.name)} trial {row['trial']} "
                                   f"does not replay: its row has {sampled}, Optuna asks {trial.params}")
            study.tell(trial, row["objective"])
    return study


def finished(key: str, told: int, trials: int) -> bool:
    """A study with `told` trials told has run its arm's whole budget."""
    return told >= budget(arm_by_name(parse_key(key)[1]), trials)


def shard_file(state_dir: str | Path, keys: list[str]) -> Path:
    """A shard's state file, named after its first study and the set of its studies: studies regrouped under
    another cluster.max_batch go to new files, and the old ones stay whole (the longest history of a study
    wins on reading)."""
    prompt_id, arm = parse_key(keys[0])
    return Path(state_dir) / f"{prompt_id:07d}-{arm}-{zlib.crc32(' '.join(keys).encode()):08x}.jsonl"


def read_shard(path: Path) -> dict[str, list[dict]]:
    """A shard file's rows per study, in trial order. Each line is one round's rows; a last line cut short by a
    kill is not a round and is left out."""
    rows: dict[str, list[dict]] = defaultdict(list)
    if not path.exists():
        return rows
    for line in path.read_bytes().split(b"\n"):
        try:
            for row in json.loads(line)["rows"]:
                rows[study_key(row["prompt_id"], row["method"])].append(row)
        except ValueError:
            continue  # the cut-short last line, or the empty string after the last newline
    return rows


def append_round(path: Path, rows: list[dict]) -> None:
    """One round's rows as one line. A line cut short by an earlier kill is cut off first, so the new one
    starts on a line of its own."""
    with path.open("ab") as out:
        end = out.tell()
        if end:
            with path.open("rb") as inp:
                inp.seek(end - 1)
                if inp.read(1) != b"\n":
                    inp.seek(0)
                    out.truncate(inp.read().rfind(b"\n") + 1)
        out.write(json.dumps({"rows": rows}).encode() + b"\n")
        out.flush()


def read_state_dir(state_dir: Path) -> tuple[dict[str, list[dict]], dict[Path, dict[str, int]]]:
    """Every study's longest history over the shard files (a study sits in several after a resume under another
    cluster.max_batch), and how many rows of each study each file holds."""
    latest: dict[str, list[dict]] = {}
    held: dict[Path, dict[str, int]] = {}
    for path in sorted(state_dir.glob("*.jsonl")):
        shard = read_shard(path)
        held[path] = {k: len(rows) for k, rows in shard.items()}
        for key, rows in shard.items():
            if len(rows) > len(latest.get(key, [])):
                latest[key] = rows
    return latest, held


class CpuClock:
    """CPU seconds of the calling thread per component (the orchestration bench's cost table)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, component: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.seconds[component] += time.thread_time() - started


def run_shard(config: dict[str, Any], settings: StudySettings, dispatcher: Any, replicas: list,
              shards: list[list[str]]) -> None:
    """Tune function trainable for one shard: `config["shard"]` = its index in `shards`, the lists of study keys
    (an index, not the keys: Tune keeps every trial's config in its experiment state). Studies that finished before
    are masked: they ask nothing, so each batch holds what the uninterrupted run's held."""
    keys = shards[config["shard"]]
    path = shard_file(settings.state_dir, keys)
    saved = read_shard(path)
    states = {k: new_state(k, settings, saved.get(k)) for k in keys}
    clock = CpuClock()
    while True:
        with clock("optuna"):
            asked = _ask_round(states, settings)
        if not asked:
            return
        with clock("replica_call"):
            outputs = call_replicas(dispatcher, replicas, settings.steer, [request for _, _, request in asked])
        with clock("optuna"):
            rows = [_tell(states[key], trial, request.vector, out, settings)
                    for (key, trial, request), out in zip(asked, outputs)]
        with clock("state_write"):
            append_round(path, rows)
        told = sorted({study_key(row["prompt_id"], row["method"]) for row in rows})
        # Small results: Tune keeps the last one of every trial in its experiment state, and running statistics of
        # every number in it. The progress line's mean needs only the shard's sum and count of best objectives.
        best = [max(r["objective"] for r in state.rows) for state in states.values() if state.rows]
        with clock("tune_report"):
            tune.report({"trials_done": len(rows), "state_file": str(path),
                         "best_objectives": [sum(best), len(best)],
                         "finished": [k for k in told if finished(k, len(states[k].rows), settings.trials)],
                         "cpu": dict(clock.seconds), "pid": os.getpid(), "process_cpu_s": time.process_time()})


Asked = tuple[str, "optuna.Trial | dict[str, float]", SteerRequest]


def _ask_round(states: dict[str, StudyState], settings: StudySettings) -> list[Asked]:
    asked = []
    for key, state in states.items():
        count = min(settings.in_flight, budget(state.arm, settings.trials) - len(state.rows))
        if count <= 0:
            continue
        if len(state.rows) < N_STARTUP:
            if state.startup is None:  # asked while fewer than N_STARTUP have completed: at most this many
                most = min(budget(state.arm, settings.trials), N_STARTUP - 1 + settings.in_flight)
                state.startup = startup_params(state.seed, state.space, 0, most)
            trials: list = state.startup[len(state.rows):len(state.rows) + count]
        else:
            if state.study is None:
                state.study = replay(state, settings.in_flight, settings.trials)
            trials = [state.study.ask(state.space) for _ in range(count)]
        for number, trial in enumerate(trials, start=len(state.rows)):
            params = trial if isinstance(trial, dict) else trial.params
            if state.arm.method:
                alpha, gamma = layer_weights(stored_params(params, settings.space), settings.num_layers,
                                             settings.segments)
            else:
                alpha = gamma = [0.0] * settings.num_layers
            vector = vector_key(state.arm, state.prompt_id, settings.mismatch)
            sampling = ((settings.temperature, sample_seed(settings.seed, state.prompt_id, number))
                        if state.arm.sampled else None)
            asked.append((key, trial, SteerRequest(state.prompt_id, vector, alpha, gamma, state.arm.in_context,
                                                   sampling)))
    return asked


def _tell(state: StudyState, trial: optuna.Trial | dict[str, float], vector: str, out: SteeredOutput,
          settings: StudySettings) -> dict:
    value = objective(out.overlap, out.perplexity, out.repetition, settings.objective)
    if isinstance(trial, dict):
        params = trial  # a start-up trial: the Optuna study, if it is ever needed, replays it from this row
    else:
        state.study.tell(trial, value)
        params = trial.params
    row = {"prompt_id": state.prompt_id, "method": state.arm.name, "trial": len(state.rows),
           **stored_params(params, settings.space), "vector": vector, "text": out.text, "overlap": out.overlap,
           "perplexity": out.perplexity, "repetition": out.repetition, "distinct_2": out.distinct_2,
           "objective": value, "seconds": out.seconds}
    state.rows.append(row)
    return row
