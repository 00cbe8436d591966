"""The Tune trainable: one independent, seeded Optuna study per (prompt, method), checkpointed after every trial."""

from __future__ import annotations

import json
import pickle
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import optuna
import ray
from optuna.distributions import FloatDistribution
from ray import tune

from .messages import SteerSettings
from .scoring import objective
from .weights import SEGMENT_NAMES, layer_weights

STUDY_FILE, ROWS_FILE = "study.pkl", "rows.json"


@dataclass(frozen=True)
class StudySettings:
    """Everything a trial needs besides its (prompt, method); shared by all trials through Tune."""

    trials: int
    seed: int
    alpha: tuple[float, float]
    gamma: tuple[float, float]
    num_layers: int
    segments: list[tuple[int, int]]
    steer: SteerSettings  # what the replicas need to run a trial
    call_timeout_s: float
    in_flight: int


def trial_params(row: Mapping[str, Any]) -> dict[str, float]:
    """The weights a trial row sets (alpha_*/gamma_*); the other method's columns are null and left out."""
    return {k: v for k, v in row.items() if k.startswith(("alpha_", "gamma_")) and v is not None}


def study_key(prompt_id: int, method: str) -> str:
    return f"{prompt_id}/{method}"


def parse_key(key: str) -> tuple[int, str]:
    prompt_id, method = key.split("/")
    return int(prompt_id), method


def search_space(method: str, settings: StudySettings) -> dict[str, FloatDistribution]:
    """The paper's space: alpha, gamma uniform in [0.01, 1] for all layers, or per segment."""
    groups = ["all"] if method == "full" else list(SEGMENT_NAMES)
    space = {}
    for group in groups:
        space[f"alpha_{group}"] = FloatDistribution(*settings.alpha)
        space[f"gamma_{group}"] = FloatDistribution(*settings.gamma)
    return space


def study_seed(seed: int, prompt_id: int, method: str) -> int:
    """A per-study seed that does not depend on Python's hash randomisation or trial order."""
    return zlib.crc32(f"{seed}/{prompt_id}/{method}".encode())


def new_study(seed: int, prompt_id: int, method: str) -> optuna.Study:
    # TPE's first 10 trials are random start-up trials: with the paper's 5 trials this is random search.
    sampler = optuna.samplers.TPESampler(seed=study_seed(seed, prompt_id, method))
    return optuna.create_study(direction="maximize", sampler=sampler)


def completed(study: optuna.Study) -> int:
    """The budget counts COMPLETE trials, so a trial interrupted by a restart is asked again, not lost."""
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def run_study(config: dict[str, Any], settings: StudySettings, replicas: list) -> None:
    """Tune function trainable for one (prompt, method). Keeps `in_flight` evaluations queued at its replica
    so batches fill; reports once per finished Optuna trial and checkpoints after each group that finished."""
    prompt_id, method = parse_key(config["study"])
    study, rows = _restore(settings, prompt_id, method)
    replica = replicas[prompt_id % len(replicas)]
    space = search_space(method, settings)
    pending: dict[ray.ObjectRef, optuna.Trial] = {}

    def ask_more() -> None:
        while completed(study) + len(pending) < settings.trials and len(pending) < settings.in_flight:
            trial = study.ask(space)
            # A trial's slot is its place in the study's order; a trial re-asked after a restore keeps its slot.
            trial.set_user_attr("slot", trial.user_attrs.get("slot", completed(study) + len(pending)))
            alpha, gamma = layer_weights(trial.params, settings.num_layers, settings.segments)
            pending[replica.steer.remote(settings.steer, prompt_id, alpha, gamma)] = trial

    ask_more()
    while pending:
        first, _ = ray.wait(list(pending), num_returns=1, timeout=settings.call_timeout_s)
        if not first:
            raise TimeoutError(f"no steered trial of prompt {prompt_id} came back in {settings.call_timeout_s} s")
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)  # a batch returns together
        finished = []
        for ref in done:
            trial, out = pending.pop(ref), ray.get(ref)
            value = objective(out.overlap, out.perplexity)
            study.tell(trial, value)
            finished.append({"prompt_id": prompt_id, "method": method, "trial": trial.user_attrs["slot"],
                             **trial.params, "text": out.text, "overlap": out.overlap,
                             "perplexity": out.perplexity, "objective": value, "seconds": out.seconds})
        rows.extend(finished)
        ask_more()  # before reporting, so the replica's next batch is not waiting on this study's checkpoint
        _report(study, rows, finished)


def _report(study: optuna.Study, rows: list[dict], finished: list[dict]) -> None:
    """One Tune result per finished Optuna trial; the checkpoint goes with the last of them."""
    metrics = [{k: v for k, v in row.items() if k != "text"} for row in finished]
    for row_metrics in metrics[:-1]:
        tune.report(row_metrics)
    with tempfile.TemporaryDirectory() as folder:
        # Optuna's own state (sampler RNG included) is pickled into Tune's checkpoint inside the run
        # directory, so a resumed study asks exactly what an uninterrupted one would.
        (Path(folder) / STUDY_FILE).write_bytes(pickle.dumps(study))
        (Path(folder) / ROWS_FILE).write_text(json.dumps(rows))
        tune.report(metrics[-1], checkpoint=tune.Checkpoint.from_directory(folder))


def _restore(settings: StudySettings, prompt_id: int, method: str) -> tuple[optuna.Study, list[dict]]:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return new_study(settings.seed, prompt_id, method), []
    with checkpoint.as_directory() as folder:
        study = pickle.loads((Path(folder) / STUDY_FILE).read_bytes())
        rows = json.loads((Path(folder) / ROWS_FILE).read_text())
    # Evaluations in flight when the run stopped are asked again with the same parameters and slot, so the
    # sampler's sequence (and the result) matches an uninterrupted run.
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.enqueue_trial(trial.params, user_attrs={"slot": trial.user_attrs["slot"]})
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return study, rows


def checkpoint_rows(checkpoint: tune.Checkpoint) -> list[dict]:
    with checkpoint.as_directory() as folder:
        return json.loads((Path(folder) / ROWS_FILE).read_text())

