"""MLflow: one parent run per sweep, one child run per (prompt, method) with a step per Optuna trial.

Only the driver writes to MLflow (trials do not), so a SQLite store has one writer. Runs are found again by
tags, never duplicated, and steps already logged are never logged twice: a resumed sweep tops runs up.
Parquet is the source of truth; `sync_trials` brings MLflow up to date from it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient
from ray import tune

from .tuning import parse_key, trial_params

log = logging.getLogger(__name__)

SWEEP_TAG, PROMPT_TAG, METHOD_TAG = "fusion_steering.sweep", "fusion_steering.prompt_id", "fusion_steering.method"
TRIAL_METRICS = ("overlap", "perplexity", "objective", "seconds")


def default_uri(db: Path) -> str:
    return f"sqlite:///{db.resolve()}"


class Tracker:
    """The MLflow side of one sweep."""

    def __init__(self, uri: str, experiment: str, sweep_id: str, run_name: str, artifacts: Path) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        # A SQLite store would put artifacts under ./mlruns of whatever folder the command runs in; keep them
        # in the run directory instead. A tracking server decides for itself.
        location = artifacts.resolve().as_uri() if uri.startswith("sqlite:") else None
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=location)
        self.sweep_id = sweep_id
        parents = self._search(f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`fusion_steering.role` = 'sweep'")
        if parents:
            self.parent_id = parents[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            self.parent_id = self.client.create_run(
                self.experiment_id, run_name=run_name,
                tags={SWEEP_TAG: sweep_id, "fusion_steering.role": "sweep"}).info.run_id
        self._children: dict[str, str] = {}
        self._steps: dict[str, set[int]] = {}
        for run in self._search(f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`fusion_steering.role` = 'study'"):
            self._children[f"{run.data.tags[PROMPT_TAG]}/{run.data.tags[METHOD_TAG]}"] = run.info.run_id

    def _search(self, query: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def log_config(self, params: Mapping[str, object]) -> None:
        existing = self.client.get_run(self.parent_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for start in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.parent_id, params=new[start:start + 100])

    def child(self, prompt_id: int, method: str) -> str:
        key = f"{prompt_id}/{method}"
        if key not in self._children:
            self._children[key] = self.client.create_run(
                self.experiment_id, run_name=f"prompt-{prompt_id}-{method}",
                tags={"mlflow.parentRunId": self.parent_id, SWEEP_TAG: self.sweep_id,
                      "fusion_steering.role": "study", PROMPT_TAG: str(prompt_id), METHOD_TAG: method}).info.run_id
        return self._children[key]

    def _logged_steps(self, run_id: str) -> set[int]:
        if run_id not in self._steps:
            self._steps[run_id] = {m.step for m in self.client.get_metric_history(run_id, "objective")}
        return self._steps[run_id]

    def log_trial(self, row: Mapping[str, object]) -> None:
        """One Optuna trial as one step of its study's child run; a step already there is skipped."""
        run_id = self.child(int(row["prompt_id"]), str(row["method"]))
        step = int(row["trial"])
        steps = self._logged_steps(run_id)
        if step in steps:
            return
        now = int(time.time() * 1000)
        values = {**{k: row[k] for k in TRIAL_METRICS}, **trial_params(row)}
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])
        steps.add(step)

    def sync_trials(self, rows: Iterable[Mapping[str, object]], budget: int) -> None:
        """Bring MLflow up to date with trials.parquet, and close each study's run once its budget is done."""
        count: dict[str, int] = {}
        for row in rows:
            self.log_trial(row)
            key = f"{row['prompt_id']}/{row['method']}"
            count[key] = count.get(key, 0) + 1
        for key, n in count.items():
            if n >= budget:
                self.client.set_terminated(self.child(*parse_key(key)), "FINISHED")

    def _log_once(self, run_id: str, metrics: Mapping[str, float], params: Mapping[str, object]) -> None:
        """Metrics and params a run does not have yet (a rerun logs nothing twice)."""
        data = self.client.get_run(run_id).data
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if k not in data.metrics],
            params=[Param(k, str(v)) for k, v in params.items() if k not in data.params])

    def log_final(self, prompt_id: int, method: str, metrics: Mapping[str, float], params: Mapping[str, float]) -> None:
        self._log_once(self.child(prompt_id, method), metrics, {f"best.{k}": v for k, v in params.items()})

    def log_summary(self, metrics: Mapping[str, float], artifacts: Iterable[Path]) -> None:
        self._log_once(self.parent_id, metrics, {})
        logged = {a.path for a in self.client.list_artifacts(self.parent_id)}
        for path in artifacts:
            if path.name in logged:
                continue
            if path.is_dir():
                self.client.log_artifacts(self.parent_id, str(path), path.name)
            else:
                self.client.log_artifact(self.parent_id, str(path))

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.parent_id, RunStatus.to_string(RunStatus.FINISHED if ok else RunStatus.FAILED))


class LiveTrialLogger(tune.Callback):
    """Logs each reported Optuna trial to MLflow as it happens, from a background thread so that Tune's
    driver loop never waits on the tracking store. A tracking outage only warns: Parquet is the record, and
    `sync_tracking` catches up at the end of the command. Tune pickles its callbacks with the experiment, so
    this holds only the tracker's arguments; the thread and its queue are made on first use."""

    def __init__(self, uri: str, experiment: str, sweep_id: str, run_name: str, artifacts: Path) -> None:
        self.args = (uri, experiment, sweep_id, run_name, artifacts)
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:
        return {"args": self.args, "_queue": None, "_thread": None}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001 - Tune's signature
        if self._thread is None:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._drain, name="mlflow-live", daemon=True)
            self._thread.start()
        self._queue.put(dict(result))

    def on_experiment_end(self, trials, **info) -> None:  # noqa: ANN001 - Tune's signature
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=120)

    def _drain(self) -> None:
        tracker: Tracker | None = None
        failed = False
        while (row := self._queue.get()) is not None:
            if failed:
                continue  # each failed call can wait through MLflow's retries; the final sync catches up
            try:
                tracker = tracker or Tracker(*self.args)
                tracker.log_trial(row)
            except Exception as err:  # noqa: BLE001 - any tracking failure must not stop the sweep
                failed = True
                log.warning("MLflow live logging stopped at prompt %s trial %s (%s); the end of the command "
                            "syncs from Parquet", row.get("prompt_id"), row.get("trial"), str(err).splitlines()[0][:300])
