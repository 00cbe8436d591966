"""MLflow: one parent run per run directory, one child run per study (prompt, arm) with a step per Optuna trial.

One writer at a time: during the tune stage a `Tracker` in MLflow's live writer (a child process of the driver,
fed by a Tune callback; each study is logged once it finishes), and after it has stopped the driver's own, by
`sync_trials` from the Parquet files, which are the source of truth (into a server or a database, by worker
processes that each write whole studies). What a run already holds is read in bulk
(`search_runs`, a page per 1,000 runs) and kept in tags, so a rerun of a finished sweep writes nothing and reads
a few pages. The parent run's id is saved in the run
directory (mlflow_run.json): a run directory keeps its parent, and two directories with one config never share
one. A failed command leaves no run RUNNING.
"""

from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import queue
import resource
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite3

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray import tune
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .rundir import write_text_atomic
from .tuning import parse_key, read_shard, study_key, trial_params

log = logging.getLogger(__name__)


@event.listens_for(Engine, "connect")
def _sqlite_without_fsync_per_commit(connection, record) -> None:  # noqa: ANN001 - SQLAlchemy's signature
    """A SQLite tracking store in write-ahead-log mode, synced at checkpoints rather than at every commit: MLflow
    commits several times per call, and an fsync each made a study cost ~100 ms (8 ms per commit on this disk);
    now ~15 ms. A power cut can lose the last commits, never corrupt the file, and the next command's sync from
    Parquet restores them. (Only the driver process writes to MLflow, and it opens no other SQLite engine.)"""
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

SWEEP_TAG, RUN_DIR_TAG, ROLE_TAG = "fusion_steering.sweep", "fusion_steering.run_dir", "fusion_steering.role"
RUN_ID_TAG = "fusion_steering.run_id"  # the run directory's random id (RunDir.run_id)
PROMPT_TAG, ARM_TAG, STEPS_TAG = "fusion_steering.prompt_id", "fusion_steering.method", "fusion_steering.steps"
TRIAL_METRICS = ("overlap", "perplexity", "repetition", "objective")
BATCH_LIMIT = 1000  # MLflow takes at most 1,000 metrics (and 100 params) per log_batch
QUEUE_LIMIT = 10_000  # finished shards' reports the live logger holds while MLflow is away
RETRY_S = 30.0


def default_uri(db: Path) -> str:
    return f"sqlite:///{db.resolve()}"


@dataclass
class Child:
    run_id: str
    steps: int  # trials logged as steps 0..steps-1
    finished: bool
    final: bool  # final.* metrics logged


@dataclass(frozen=True)
class Target:
    """Where a sweep's child runs go: all another process needs to write studies into the same parent."""
    uri: str
    experiment_id: str
    parent_id: str
    sweep_id: str


def _new_child(client: MlflowClient, target: Target, key: str) -> Child:
    prompt_id, arm = parse_key(key)
    run = client.create_run(
        target.experiment_id, run_name=f"prompt-{prompt_id}-{arm}",
        tags={"mlflow.parentRunId": target.parent_id, SWEEP_TAG: target.sweep_id, ROLE_TAG: "study",
              PROMPT_TAG: str(prompt_id), ARM_TAG: arm})
    return Child(run.info.run_id, 0, False, False)


def write_study(client: MlflowClient, target: Target, key: str, child: Child | None,
                rows: Sequence[Mapping[str, object]], budget: int) -> tuple[Child, bool]:
    """A study's trials not logged yet as steps (in trial order), and FINISHED once its budget is in: its child
    run (created if `child` is None) and whether trials were written."""
    child = child or _new_child(client, target, key)
    new = [r for r in sorted(rows, key=lambda r: int(r["trial"])) if int(r["trial"]) >= child.steps]
    if new:
        now = int(time.time() * 1000)
        per_trial = [[Metric(k, float(v), now, int(row["trial"]))
                      for k, v in {**{m: row[m] for m in TRIAL_METRICS}, **trial_params(row)}.items()]
                     for row in new]
        # Whole trials per call: a call's metrics are committed together, so a trial is in the store whole
        # or not at all (what Tracker._logged_steps relies on).
        per_call = max(1, BATCH_LIMIT // len(per_trial[0]))
        steps = int(new[-1]["trial"]) + 1
        for start in range(0, len(per_trial), per_call):
            last = start + per_call >= len(per_trial)
            client.log_batch(child.run_id, metrics=[m for trial in per_trial[start:start + per_call] for m in trial],
                             tags=[RunTag(STEPS_TAG, str(steps))] if last else [])
        child.steps = steps
    if child.steps >= budget and not child.finished:
        client.set_terminated(child.run_id, "FINISHED")
        child.finished = True
    return child, bool(new)


SYNC_SHARE = 200  # studies per task of a parallel sync


def _write_share(target: Target, share: list[tuple[str, list[dict], int, Child | None]]
                 ) -> list[tuple[str, Child, bool]]:
    """A sync worker's task: its studies written with a client of its own."""
    client = MlflowClient(tracking_uri=target.uri)
    return [(key, *write_study(client, target, key, child, rows, budget)) for key, rows, budget, child in share]


def sync_workers(uri: str, configured: int) -> int:
    """Processes for the final sync: `configured`, or with 0 one per CPU up to 8. A SQLite or file store takes
    one writer at a time, so it always gets 1; a database or a tracking server takes many."""
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return 1
    return configured or min(8, os.cpu_count() or 1)


def saved_parents(ids_file: Path) -> dict[str, str]:
    """The parent run id saved in a run directory (mlflow_run.json) for each tracking store."""
    return json.loads(ids_file.read_text()) if ids_file.exists() else {}


class Tracker:
    """The MLflow side of one run directory."""

    def __init__(self, uri: str, experiment: str, sweep_id: str, run_dir: Path, ids_file: Path, run_id: str) -> None:
        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        # A SQLite store would put artifacts under ./mlruns of whatever folder the command runs in; keep them
        # in the run directory instead. A tracking server decides for itself.
        location = (run_dir / "mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=location)
        self.sweep_id, self.run_id = sweep_id, run_id
        self.parent_id = self._parent(run_dir, ids_file)
        self.target = Target(uri, self.experiment_id, self.parent_id, sweep_id)
        self.children = self._children()
        self.studies_logged = 0  # studies this tracker wrote trials for (the orchestration bench's MLflow rate)

    def _parent(self, run_dir: Path, ids_file: Path) -> str:
        """The parent run saved in the run directory for this store; else one tagged with this directory's random
        id (a directory whose mlflow_run.json was lost; never an older directory at the same path); else a new
        one. Saved back either way."""
        saved = saved_parents(ids_file)
        parent = saved.get(self.uri)
        if parent and not self._exists(parent):
            parent = None
        if parent is None:
            query = (f"tags.`{SWEEP_TAG}` = '{self.sweep_id}' and tags.`{RUN_ID_TAG}` = '{self.run_id}' "
                     f"and tags.`{ROLE_TAG}` = 'sweep'")
            found = next(self._search(query), None)
            parent = found.info.run_id if found else self.client.create_run(
                self.experiment_id, run_name=run_dir.name,
                tags={SWEEP_TAG: self.sweep_id, RUN_DIR_TAG: str(run_dir), RUN_ID_TAG: self.run_id,
                      ROLE_TAG: "sweep"}).info.run_id
            write_text_atomic(ids_file, json.dumps({**saved, self.uri: parent}, indent=2))
        self.client.update_run(parent, status="RUNNING")
        return parent

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def _search(self, query: str) -> Iterator[Any]:
        """The runs that match, a page of 1,000 at a time in memory (a sweep's children: 40,000 runs)."""
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def _children(self) -> dict[str, Child]:
        """The parent's child runs, one search for all. A FINISHED child has every step; for any other the steps
        tag may lag its metrics (MLflow's SQL store commits a log_batch's metrics and its tags separately, so a
        kill can fall between), and the logged steps are read from its metric history: one call per child that
        was being written when a command stopped, none on a rerun of a finished sweep."""
        children = {}
        for run in self._search(f"tags.`mlflow.parentRunId` = '{self.parent_id}'"):
            tags, finished = run.data.tags, run.info.status == "FINISHED"
            key = study_key(int(tags[PROMPT_TAG]), tags[ARM_TAG])
            steps = int(tags.get(STEPS_TAG, 0)) if finished else self._logged_steps(run.info.run_id)
            children[key] = Child(run.info.run_id, steps, finished, "final.composite" in run.data.metrics)
        return children

    def _logged_steps(self, run_id: str) -> int:
        """1 + the last trial whose metrics are in the store (a trial's metrics are written in one call)."""
        history = self.client.get_metric_history(run_id, "objective")
        return 1 + max(m.step for m in history) if history else 0

    def log_config(self, params: Mapping[str, object]) -> None:
        existing = self.client.get_run(self.parent_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for start in range(0, len(new), 100):
            self.client.log_batch(self.parent_id, params=new[start:start + 100])

    def _child(self, key: str) -> Child:
        if key not in self.children:
            self.children[key] = _new_child(self.client, self.target, key)
        return self.children[key]

    def log_study(self, key: str, rows: Sequence[Mapping[str, object]], budget: int) -> None:
        """A study's trials as steps (those not logged yet, in trial order), and FINISHED once its budget is in."""
        self._record(key, *write_study(self.client, self.target, key, self.children.get(key), rows, budget))

    def sync_trials(self, rows: Iterable[Mapping[str, object]], budgets: Mapping[str, int], workers: int = 1) -> None:
        """Bring MLflow up to date with trials.parquet's rows, each study's together (the file's order); studies
        already complete there cost no call. With `workers` > 1, processes of their own write the studies,
        SYNC_SHARE at a time, at most two shares per worker read ahead (MLflow's client costs ~20 ms of CPU per
        study, so one process writes ~50 studies/s whatever the store takes)."""
        behind = ((key, study_rows, budgets[key], self.children.get(key))
                  for key, study_rows in ((k, list(g)) for k, g in itertools.groupby(
                      rows, lambda row: study_key(int(row["prompt_id"]), str(row["method"]))))
                  if self._behind(key, len(study_rows), budgets[key]))
        if workers <= 1:
            for key, study_rows, budget, _ in behind:
                self.log_study(key, study_rows, budget)
            return
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            running: set[Future] = set()
            share = list(itertools.islice(behind, SYNC_SHARE))
            while share:
                if len(running) >= 2 * workers:
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    self._absorb(done)
                running.add(pool.submit(_write_share, self.target, share))
                share = list(itertools.islice(behind, SYNC_SHARE))
            self._absorb(wait(running).done)

    def _behind(self, key: str, rows: int, budget: int) -> bool:
        child = self.children.get(key)
        return child is None or child.steps < rows or (not child.finished and child.steps >= budget)

    def _absorb(self, done: Iterable[Future]) -> None:
        for future in done:
            for key, child, wrote in future.result():
                self._record(key, child, wrote)

    def _record(self, key: str, child: Child, wrote: bool) -> None:
        self.children[key] = child
        self.studies_logged += wrote

    def log_final(self, key: str, metrics: Mapping[str, float], params: Mapping[str, float]) -> None:
        child = self._child(key)
        if child.final:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(child.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              params=[Param(f"best.{k}", str(v)) for k, v in params.items()])
        child.final = True

    def log_summary(self, metrics: Mapping[str, float], artifacts: Iterable[Path]) -> None:
        data = self.client.get_run(self.parent_id).data
        now = int(time.time() * 1000)
        new = [Metric(k, float(v), now, 0) for k, v in metrics.items() if k not in data.metrics]
        for start in range(0, len(new), BATCH_LIMIT):
            self.client.log_batch(self.parent_id, metrics=new[start:start + BATCH_LIMIT])
        logged = {a.path for a in self.client.list_artifacts(self.parent_id)}
        for path in artifacts:
            if path.name in logged or not path.exists():
                continue
            if path.is_dir():
                self.client.log_artifacts(self.parent_id, str(path), path.name)
            else:
                self.client.log_artifact(self.parent_id, str(path))

    def close(self, ok: bool) -> None:
        """The parent FINISHED or FAILED, and studies that did not finish KILLED, so no run is left RUNNING (a
        rerun resumes them and marks them FINISHED)."""
        for child in self.children.values():
            if not child.finished:
                self.client.set_terminated(child.run_id, "KILLED")
        self.client.set_terminated(self.parent_id, "FINISHED" if ok else "FAILED")


class LiveLogger(tune.Callback):
    """Logs each study to MLflow when its shard reports it finished (reading its rows from the shard's state
    file), from a child process at the lowest CPU priority: MLflow's client costs milliseconds of CPU per study,
    more than everything else a trial costs together, and in the driver it would hold the GIL that Tune's
    controller needs. So it logs what idle CPU allows, never slowing the trials.

    Tracking never costs a run: the writer connects on its own (an unreachable store at start stops nothing),
    says once when the store cannot be reached and retries every `retry_s`, reconnecting afresh (the store's
    state is read again); the driver queues up to `limit` finished shards' reports meanwhile and drops the rest.
    What is dropped, or not logged when the tune stage ends, the command's final sync logs from the Parquet
    files. Tune pickles its callbacks with the experiment: the process and its queues stay out of the pickle."""

    def __init__(self, tracker_args: tuple, budgets: Mapping[str, int], retry_s: float = RETRY_S,
                 limit: int = QUEUE_LIMIT) -> None:
        context = multiprocessing.get_context("spawn")
        self._queue, self._result = context.Queue(maxsize=limit), context.Queue()
        self._closing = context.Event()
        self._queued = 0
        self.dropped = 0  # finished shards' reports not queued (the queue was full)
        self.cpu_s, self.logged = 0.0, 0  # the writer's CPU seconds and studies logged, once closed
        self._process = context.Process(target=_write_live, name="mlflow-live", daemon=True,
                                        args=(tracker_args, dict(budgets), retry_s, self._queue, self._closing,
                                              self._result))
        self._process.start()

    def __getstate__(self) -> dict:
        return {}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:  # noqa: ANN001 - Tune's signature
        if result.get("finished"):
            try:
                self._queue.put_nowait((result["state_file"], result["finished"]))
                self._queued += len(result["finished"])
            except queue.Full:
                self.dropped += 1

    def close(self) -> None:
        """Give the writer LIVE_CLOSE_S to write what is queued (while the store answers), then stop it: the final
        sync is the only writer after this. A writer stopped mid-study is the case of a killed driver, which the
        tracker handles (steps from the metric history)."""
        self._closing.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the writer is behind by a full queue: it is stopped below
        # What a stopped writer leaves in the queue is dropped: its feeder thread would otherwise block this
        # process's exit on a pipe nobody reads.
        self._queue.cancel_join_thread()
        try:
            self.cpu_s, self.logged = self._result.get(timeout=LIVE_CLOSE_S)
        except queue.Empty:
            reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
            self._process.kill()
            self._process.join()
            now = resource.getrusage(resource.RUSAGE_CHILDREN)  # the stopped writer's CPU, now that it is reaped
            self.cpu_s = now.ru_utime + now.ru_stime - reaped.ru_utime - reaped.ru_stime
            log.info("MLflow: %d finished studies were queued for live logging (%d reports dropped), and the "
                     "writer was behind; the final sync logs the rest from the Parquet files", self._queued,
                     self.dropped)
        self._process.join(timeout=5)


LIVE_CLOSE_S = 5  # most seconds the tune stage waits for MLflow's live writer to drain its queue


def _write_live(tracker_args: tuple, budgets: dict[str, int], retry_s: float, jobs: Any, closing: Any,
                result: Any) -> None:
    """The live writer's process: studies as their shards finish them, until None; gives back its CPU seconds
    and the studies it logged. Leaves when the driver is gone."""
    os.nice(19)
    logged, parent, tracker, down = 0, os.getppid(), None, False
    while True:
        try:
            item = jobs.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if item is None:
            break
        state_file, keys = item
        while True:
            try:
                tracker = tracker or Tracker(*tracker_args)
                rows = read_shard(Path(state_file))
                for key in keys:
                    tracker.log_study(key, rows[key], budgets[key])
                logged += len(keys)
                break
            except Exception as err:  # noqa: BLE001 - any tracking failure must not stop the sweep
                tracker = None  # reconnect afresh: what the store holds may have moved on
                if not down:
                    down = True
                    log.warning("MLflow cannot be reached (%s); the sweep goes on, live logging retries every "
                                "%.0f s, and the end of the command syncs from Parquet",
                                str(err).splitlines()[0][:300], retry_s)
                if closing.wait(retry_s):
                    result.put((time.process_time(), logged))
                    return
        if down:
            down = False
            log.warning("MLflow answers again; live logging caught up")
    result.put((time.process_time(), logged))
