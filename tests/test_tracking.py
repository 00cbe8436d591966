"""MLflow bookkeeping on a real SQLite store: runs belong to their run directory, a rerun of a finished sweep
only reads, and a failed command leaves no run RUNNING."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.rundir import RunDir
from sweep.tracking import Tracker

BUDGET = 3


def rows(prompt_id: int, arm: str, count: int = BUDGET) -> list[dict]:
    return [{"prompt_id": prompt_id, "method": arm, "trial": t, "overlap": 0.5, "perplexity": 20.0 + t,
             "repetition": 0.0, "objective": 0.3 - t / 10, "alpha_all": 0.5, "gamma_all": 0.2} for t in range(count)]


def tracker(store: Path, run_dir: Path, sweep_id: str = "abc") -> Tracker:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Tracker(f"sqlite:///{store}", "fusion-steering", sweep_id, run_dir, run_dir / "mlflow_run.json",
                   RunDir(run_dir).run_id())


def test_two_run_directories_with_one_config_get_their_own_parent_saved_in_each(tmp_path):
    store = tmp_path / "mlflow.db"
    a, b = tracker(store, tmp_path / "a"), tracker(store, tmp_path / "b")
    assert a.parent_id != b.parent_id
    saved = json.loads((tmp_path / "a" / "mlflow_run.json").read_text())
    assert saved == {f"sqlite:///{store}": a.parent_id}
    assert tracker(store, tmp_path / "a").parent_id == a.parent_id
    (tmp_path / "a" / "mlflow_run.json").unlink()  # found again by its tags
    assert tracker(store, tmp_path / "a").parent_id == a.parent_id


def test_a_rerun_of_a_finished_sweep_writes_nothing(tmp_path, monkeypatch):
    store, run_dir = tmp_path / "mlflow.db", tmp_path / "run"
    first = tracker(store, run_dir)
    trials = rows(0, "full") + rows(1, "full") + rows(1, "segmented")
    budgets = {"0/full": BUDGET, "1/full": BUDGET, "1/segmented": BUDGET}
    first.sync_trials(trials, budgets)
    first.close(True)

    writes: list[str] = []
    for name in ("create_run", "log_batch", "set_terminated", "log_metric"):
        original = getattr(MlflowClient, name)
        monkeypatch.setattr(MlflowClient, name, lambda self, *a, _n=name, _o=original, **k: (writes.append(_n), _o(self, *a, **k))[1])
    again = tracker(store, run_dir)
    again.sync_trials(trials, budgets)
    assert writes == []
    client = MlflowClient(f"sqlite:///{store}")
    child = again.children["1/segmented"]
    assert [m.step for m in client.get_metric_history(child.run_id, "objective")] == [0, 1, 2]


def test_a_study_topped_up_after_a_resume_gets_only_its_missing_steps(tmp_path):
    store, run_dir = tmp_path / "mlflow.db", tmp_path / "run"
    first = tracker(store, run_dir)
    first.log_study("0/full", rows(0, "full", count=2), BUDGET)
    assert not first.children["0/full"].finished
    again = tracker(store, run_dir)
    again.sync_trials(rows(0, "full"), {"0/full": BUDGET})
    client = MlflowClient(f"sqlite:///{store}")
    run = client.get_run(again.children["0/full"].run_id)
    assert run.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "objective")) == [0, 1, 2]


def test_a_study_whose_steps_tag_lags_its_metrics_is_not_logged_twice(tmp_path):
    """A kill between the commit of a log_batch's metrics and that of its tags (MLflow's SQL store makes them two)
    leaves a child whose steps tag says 0; the resume reads its metric history instead of logging again."""
    from mlflow.entities import Metric

    store, run_dir = tmp_path / "mlflow.db", tmp_path / "run"
    first = tracker(store, run_dir)
    child = first._child("0/full")
    first.client.log_batch(child.run_id, metrics=[Metric("objective", r["objective"], 0, r["trial"])
                                                  for r in rows(0, "full")])  # metrics in, the tag never written
    again = tracker(store, run_dir)
    assert again.children["0/full"].steps == BUDGET
    again.sync_trials(rows(0, "full"), {"0/full": BUDGET})
    client = MlflowClient(f"sqlite:///{store}")
    run = client.get_run(child.run_id)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(child.run_id, "objective")] == [0, 1, 2]


def test_metrics_are_sent_in_whole_trials(tmp_path, monkeypatch):
    import sweep.tracking

    monkeypatch.setattr(sweep.tracking, "BATCH_LIMIT", 10)  # 6 metrics per trial: one trial per call
    track = tracker(tmp_path / "mlflow.db", tmp_path / "run")
    calls: list[list[int]] = []
    original = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, run_id, metrics=(), **k: (
        calls.append(sorted({m.step for m in metrics})), original(self, run_id, metrics=metrics, **k))[1])
    track.log_study("0/full", rows(0, "full"), BUDGET)
    assert calls == [[0], [1], [2]]


@pytest.mark.parametrize("ok", [True, False])
def test_no_run_is_left_running_after_a_command(tmp_path, ok):
    store = tmp_path / "mlflow.db"
    track = tracker(store, tmp_path / "run")
    track.log_study("0/full", rows(0, "full"), BUDGET)
    track.log_study("1/full", rows(1, "full", count=1), BUDGET)  # unfinished when the command ends
    track.close(ok)
    client = MlflowClient(f"sqlite:///{store}")
    statuses = {r.data.tags.get("fusion_steering.prompt_id", "parent"): r.info.status
                for r in client.search_runs([track.experiment_id])}
    assert statuses == {"parent": "FINISHED" if ok else "FAILED", "0": "FINISHED", "1": "KILLED"}


def test_a_successful_rerun_of_an_unchanged_directory_reads_nothing_back(tmp_path, monkeypatch):
    """The final sync of a finished sweep reads every child run back (half a minute at 40,000 studies); with the
    receipt of the last complete sync it reads nothing, unless a file changed, the command failed or the store
    lost the parent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import CONF
    from sweep.config import compose
    from sweep.session import Session
    from sweep.stages.runner import sync_tracking

    cfg = compose(CONF / "smoke.yaml", [f"search.trials={BUDGET}", "search.methods=[full]", "controls=[]"])
    run = RunDir(tmp_path / "run")
    run.prepare(cfg)
    pq.write_table(pa.Table.from_pylist(rows(0, "full") + rows(1, "full")), run.table("trials"))
    searches: list[str] = []
    original = MlflowClient.search_runs
    monkeypatch.setattr(MlflowClient, "search_runs",
                        lambda self, *a, **k: (searches.append(a[1] if len(a) > 1 else ""), original(self, *a, **k))[1])

    def command(ok: bool = True) -> Session:
        session = Session(cfg, run)
        sync_tracking(session, ok)
        session.close(ok)
        return session

    command()
    assert searches and run.mlflow_synced.exists()
    searches.clear()
    assert command()._tracker is None and searches == []  # nothing read, nothing written

    command(ok=False)  # a failed command syncs in full (and leaves its parent FAILED)
    assert searches
    searches.clear()
    command()  # ... so the next successful one does too, and marks the parent FINISHED
    assert searches
    searches.clear()

    pq.write_table(pa.Table.from_pylist(rows(0, "full") + rows(1, "full") + rows(2, "full")), run.table("trials"))
    command()
    uri = Session(cfg, run).tracking_uri
    client = MlflowClient(uri)
    children = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
                                  "tags.`fusion_steering.prompt_id` = '2'")
    assert searches and len(children) == 1 and children[0].info.status == "FINISHED"
    searches.clear()

    parent = json.loads(run.mlflow_ids.read_text())[uri]
    client.delete_run(parent)  # the parent gone from the store (deleted in the UI, a store wiped): made again
    command()
    assert searches and json.loads(run.mlflow_ids.read_text())[uri] != parent


def test_a_parallel_sync_into_a_tracking_server_writes_each_study_once(tmp_path, monkeypatch, mlflow_server):
    """The final sync with worker processes, into a real `mlflow server`: every study FINISHED with its steps once,
    a study topped up after a resume included, and a rerun finds nothing behind."""
    import sweep.tracking

    monkeypatch.setattr(sweep.tracking, "SYNC_SHARE", 3)  # several shares per worker
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def server_tracker() -> Tracker:
        return Tracker(mlflow_server.uri, "fusion-steering", "par", run_dir, run_dir / "mlflow_run.json",
                       RunDir(run_dir).run_id())

    studies = [(p, arm) for p in range(8) for arm in ("full", "segmented")]
    trials = [row for p, arm in studies for row in rows(p, arm)]
    budgets = {f"{p}/{arm}": BUDGET for p, arm in studies}
    first = server_tracker()
    first.log_study("0/full", rows(0, "full", count=2), BUDGET)  # a study the command stopped in
    first.sync_trials(trials, budgets, workers=2)
    assert first.studies_logged == 1 + len(studies)
    again = server_tracker()
    assert {key: (c.steps, c.finished) for key, c in again.children.items()} == {k: (BUDGET, True) for k in budgets}
    assert [key for key in budgets if again._behind(key, BUDGET, BUDGET)] == []
    client = MlflowClient(mlflow_server.uri)
    for key in ("0/full", "7/segmented"):
        history = client.get_metric_history(again.children[key].run_id, "objective")
        assert sorted(m.step for m in history) == [0, 1, 2]


def test_a_sqlite_store_is_synced_by_one_writer():
    from sweep.tracking import sync_workers

    assert sync_workers("sqlite:////tmp/mlflow.db", 4) == 1
    assert sync_workers("http://127.0.0.1:5000", 4) == 4
    assert 1 <= sync_workers("postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow", 0) <= 8
