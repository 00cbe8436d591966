"""The Tune trainable: a shard of studies, one independent seeded Optuna study per (prompt, arm), run in rounds.

Each round, every unfinished study of the shard asks `in_flight` trials; all of them go to one replica as one
batch; the answers are told back; the shard's state (every study with its rows) is written atomically to one
file in the run directory. So:
- batch composition is a function of the config (the shard and the round), never of timing: a run's results
  are the same run to run, even with kernels that are not batch-invariant (bitsandbytes);
- a kill at any point loses at most the round in flight, which a rerun asks again with the same parameters
  (the sampler's state is in the file) and the same batch;
- Tune schedules shards over the cluster and restarts a failed one, which resumes from its file; a replica
  that is gone for good is skipped for the next one.
Pure Python, Optuna and Ray: trial workers never import torch.
"""

from __future__ import annotations

import os
import pickle
import time
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.distributions import FloatDistribution
from ray import tune

from .arms import Arm, arm_by_name, vector_key
from .messages import SteeredOutput, SteerRequest, SteerSettings
from .rundir import write_bytes_atomic
from .scoring import objective
from .weights import SEGMENT_NAMES, layer_weights

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class StudySettings:
    """Everything a shard needs besides its studies; shared by all shards through Tune."""

    trials: int
    seed: int
    alpha: tuple[float, float]
    gamma: tuple[float, float]
    num_layers: int
    segments: list[tuple[int, int]]
    steer: SteerSettings  # what the replicas need to run a trial
    call_timeout_s: float
    in_flight: int
    objective: str  # scoring.objective
    state_dir: str  # DIR/tune/state: one file per shard
    mismatch: dict[int, int] = field(default_factory=dict)  # prompt -> whose vector the mismatched arm uses


@dataclass
class StudyState:
    study: optuna.Study
    rows: list[dict] = field(default_factory=list)  # one per finished trial, as trials.parquet holds them


def trial_params(row: Mapping[str, Any]) -> dict[str, float]:
    """The weights a trial row sets (alpha_*/gamma_*); the other method's columns are null and left out."""
    return {k: v for k, v in row.items() if k.startswith(("alpha_", "gamma_")) and v is not None}


def study_key(prompt_id: int, arm: str) -> str:
    return f"{prompt_id}/{arm}"


def parse_key(key: str) -> tuple[int, str]:
    prompt_id, arm = key.split("/")
    return int(prompt_id), arm


def budget(arm: Arm, trials: int) -> int:
    """prompt_only has nothing to tune: one trial."""
    return trials if arm.method else 1


def search_space(arm: Arm, settings: StudySettings) -> dict[str, FloatDistribution]:
    """The paper's space: alpha, gamma uniform in [0.01, 1] for all layers (full) or per segment; none for
    prompt_only, whose weights are all zero."""
    groups = {"full": ["all"], "segmented": list(SEGMENT_NAMES), None: []}[arm.method]
    space = {}
    for group in groups:
        space[f"alpha_{group}"] = FloatDistribution(*settings.alpha)
        space[f"gamma_{group}"] = FloatDistribution(*settings.gamma)
    return space


def study_seed(seed: int, prompt_id: int, arm: Arm) -> int:
    """Seeded by the method, not the arm: a method and its controls sample the same weights (with fewer
    trials than TPE's start-up count), so their difference is the steering vector's alone. Independent of
    Python's hash randomisation and of the order trials run in."""
    return zlib.crc32(f"{seed}/{prompt_id}/{arm.method or arm.name}".encode())


def new_state(seed: int, prompt_id: int, arm: Arm) -> StudyState:
    # TPE's first 10 trials are random start-up trials: with the paper's 5 trials this is random search.
    sampler = optuna.samplers.TPESampler(seed=study_seed(seed, prompt_id, arm))
    return StudyState(optuna.create_study(direction="maximize", sampler=sampler))


def completed(state: StudyState) -> int:
    return len(state.rows)


def finished(key: str, rows: list[dict] | None, trials: int) -> bool:
    return rows is not None and len(rows) >= budget(arm_by_name(parse_key(key)[1]), trials)


def shard_file(state_dir: str | Path, keys: list[str]) -> Path:
    """A shard's state file, named after its first study and the set of its studies: studies regrouped on a
    resume go to new files, and the old ones stay whole (the latest payload of a study wins on reading)."""
    prompt_id, arm = parse_key(keys[0])
    return Path(state_dir) / f"{prompt_id:07d}-{arm}-{zlib.crc32(' '.join(keys).encode()):08x}.pkl"


# A state file maps each study of its shard to a Payload: the study pickled on its own, and its rows. The rows
# can be read without unpickling the Optuna studies (~1 ms and tens of KB of memory each), which only a shard
# resuming its own studies needs.
Payload = tuple[bytes, list[dict]]


def write_payloads(path: Path, payloads: dict[str, Payload]) -> None:
    write_bytes_atomic(path, pickle.dumps(payloads))


def read_payloads(path: Path) -> dict[str, Payload]:
    """One shard's payloads; none before its first round."""
    return pickle.loads(path.read_bytes()) if path.exists() else {}


def write_states(path: Path, states: dict[str, StudyState]) -> None:
    write_payloads(path, {k: (pickle.dumps(s.study), s.rows) for k, s in states.items()})


def read_states(path: Path) -> dict[str, StudyState]:
    return {k: StudyState(pickle.loads(study), rows) for k, (study, rows) in read_payloads(path).items()}


def latest_payloads(state_dir: Path, rows_only: bool = False) -> dict[str, Payload]:
    """Every study's latest payload from the shard files; where a study sits in several files (regrouped on a
    resume with another cluster.max_batch), the one with the most finished trials wins. rows_only drops the
    pickled studies as it goes, so reading a whole sweep's results costs the rows' memory only."""
    latest: dict[str, Payload] = {}
    for path in sorted(state_dir.glob("*.pkl")):
        for key, (study, rows) in read_payloads(path).items():
            if key not in latest or len(rows) > len(latest[key][1]):
                latest[key] = (b"" if rows_only else study, rows)
    return latest


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


def run_shard(config: dict[str, Any], settings: StudySettings, replicas: list) -> None:
    """Tune function trainable for one shard: `config["shard"]` = {"studies": [key, ...], "replica": index}."""
    keys, first_replica = config["shard"]["studies"], config["shard"]["replica"]
    path = shard_file(settings.state_dir, keys)
    saved = read_states(path)
    states = {k: saved.get(k) or new_state(settings.seed, parse_key(k)[0], arm_by_name(parse_key(k)[1]))
              for k in keys}
    clock = CpuClock()
    while True:
        with clock("optuna"):
            asked = _ask_round(states, settings)
        if not asked:
            return
        with clock("replica_call"):
            outputs = _call(replicas, first_replica, settings, [request for _, _, request in asked])
        with clock("optuna"):
            rows = [_tell(states[key], key, trial, request.vector, out, settings)
                    for (key, trial, request), out in zip(asked, outputs)]
        with clock("state_write"):
            write_states(path, states)
        told = {study_key(row["prompt_id"], row["method"]) for row in rows}
        # Small results: Tune keeps the last one of every trial in its experiment state.
        with clock("tune_report"):
            tune.report({"trials_done": len(rows), "state_file": str(path),
                         "objectives": {k: max(r["objective"] for r in states[k].rows) for k in keys if states[k].rows},
                         "finished": sorted(k for k in told if finished(k, states[k].rows, settings.trials)),
                         "cpu": dict(clock.seconds), "pid": os.getpid(), "process_cpu_s": time.process_time()})


def _ask_round(states: dict[str, StudyState], settings: StudySettings) -> list[tuple[str, optuna.Trial, SteerRequest]]:
    asked = []
    for key, state in states.items():
        prompt_id, name = parse_key(key)
        arm = arm_by_name(name)
        space = search_space(arm, settings)
        for _ in range(min(settings.in_flight, budget(arm, settings.trials) - completed(state))):
            trial = state.study.ask(space)
            if arm.method:
                alpha, gamma = layer_weights(trial.params, settings.num_layers, settings.segments)
            else:
                alpha = gamma = [0.0] * settings.num_layers
            asked.append((key, trial, SteerRequest(prompt_id, vector_key(arm, prompt_id, settings.mismatch),
                                                   alpha, gamma)))
    return asked


def _tell(state: StudyState, key: str, trial: optuna.Trial, vector: str, out: SteeredOutput,
          settings: StudySettings) -> dict:
    value = objective(out.overlap, out.perplexity, out.repetition, settings.objective)
    state.study.tell(trial, value)
    prompt_id, arm = parse_key(key)
    row = {"prompt_id": prompt_id, "method": arm, "trial": completed(state), **trial.params, "vector": vector, "text": out.text,
           "overlap": out.overlap, "perplexity": out.perplexity, "repetition": out.repetition,
           "distinct_2": out.distinct_2, "objective": value, "seconds": out.seconds}
    state.rows.append(row)
    return row


def _call(replicas: list, first: int, settings: StudySettings, requests: list[SteerRequest]) -> list[SteeredOutput]:
    """The batch on the shard's replica; a replica that is gone for good (its restarts used up) is skipped for
    the next one. Every replica computes the same batch alike, so which one answers changes nothing."""
    errors = []
    for offset in range(len(replicas)):
        replica = replicas[(first + offset) % len(replicas)]
        try:
            return ray.get(replica.steer.remote(settings.steer, requests), timeout=settings.call_timeout_s)
        except ray.exceptions.RayActorError as err:
            errors.append(str(err).splitlines()[0])
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(f"no answer from a replica in {settings.call_timeout_s} s") from None
    raise RuntimeError(f"every replica is gone ({'; '.join(errors)})")
