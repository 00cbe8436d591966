"""Faults during a sweep: the tracking server going away. Parquet is the source of truth; MLflow catches up."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import (QUESTIONS, MlflowServer, finish_sweep, finished_studies, start_sweep, sweep_command,
                      wait_for_trials, write_simpleqa_csv)

pytestmark = [pytest.mark.slow, pytest.mark.faults]
BUDGET = 4


def test_tracking_outage_mid_sweep_loses_nothing_and_mlflow_catches_up(tmp_path):
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    out = tmp_path / "run"
    command = sweep_command(out, csv, f"search.trials={BUDGET}", f"tracking.uri={server.uri}", "controls=[]")
    try:
        driver = start_sweep(command)
        wait_for_trials(driver, out, 4)
        server.stop()
        err = finish_sweep(driver)
        assert "was not brought up to date" in err and server.uri in err
        trials = pd.read_parquet(out / "trials.parquet")
        assert trials.groupby(["prompt_id", "method"]).size().tolist() == [BUDGET] * 8
        assert (out / "report.md").exists()

        server.start()
        finish_sweep(start_sweep(command))
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
        studies = [r for r in runs if r.data.tags.get("fusion_steering.role") == "study"]
        assert len(runs) == 9 and len(studies) == 8
        assert [r.info.status for r in runs] == ["FINISHED"] * 9
        for run in studies:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "objective")]
            assert sorted(steps) == list(range(BUDGET))
            assert "final.composite" in run.data.metrics
        parent = next(r for r in runs if r.data.tags.get("fusion_steering.role") == "sweep")
        assert "oracle.segmented.accuracy" in parent.data.metrics
        assert "report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    finally:
        server.stop()


@pytest.fixture
def ray_cluster():
    """A multi-node Ray cluster on this machine; the sweep's driver joins it from a subprocess."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _connect(cluster) -> None:  # noqa: ANN001 - ray.cluster_utils.Cluster
    import ray

    ray.init(address=cluster.address, namespace="fusion-steering", log_to_driver=False)


def _actor(name: str, timeout: float = 120):  # noqa: ANN202 - an actor handle
    import time

    import ray

    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get_actor(name)
        except ValueError:
            assert time.monotonic() < deadline, f"no actor {name}"
            time.sleep(0.5)


def _complete(out) -> None:  # noqa: ANN001 - Path
    trials = pd.read_parquet(out / "trials.parquet")
    assert trials.groupby(["prompt_id", "method"]).size().tolist() == [BUDGET] * 8
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    assert len(pd.read_parquet(out / "grades.parquet")) == 4 * 3  # baseline, full, segmented


def test_a_killed_replica_restarts_and_the_sweep_ends_without_errors(tmp_path, ray_cluster):
    import ray

    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    driver = start_sweep(sweep_command(out, csv, f"search.trials={BUDGET}", f"cluster.address={ray_cluster.address}",
                                       "controls=[]"))
    _connect(ray_cluster)
    wait_for_trials(driver, out, 6)
    ray.kill(_actor("replica-0"), no_restart=False)
    finish_sweep(driver)
    _complete(out)
    experiment = next((out / "tune" / "attempt-1").glob("experiment_state-*.json")).read_text()
    assert '"ERROR"' not in experiment


def test_losing_a_worker_node_mid_sweep_still_completes(tmp_path, ray_cluster):
    workers = [ray_cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(3)]
    ray_cluster.wait_for_nodes()
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    driver = start_sweep(sweep_command(
        out, csv, f"search.trials={BUDGET}", f"cluster.address={ray_cluster.address}", "cluster.num_replicas=2",
        "model.device=cpu", "controls=[]"))  # GPUs faked in Ray: reserved, but the replicas compute on CPUs
    _connect(ray_cluster)
    import ray

    wait_for_trials(driver, out, 6)
    replica_node = ray.get(_actor("replica-0").node_id.remote())
    doomed = next(w for w in workers if w.node_id == replica_node)
    ray_cluster.remove_node(doomed, allow_graceful=False)
    finish_sweep(driver)
    _complete(out)


def test_a_replica_gone_for_good_hands_its_studies_to_the_survivor(tmp_path, ray_cluster):
    import ray

    ray_cluster.add_node(num_cpus=2)
    ray_cluster.wait_for_nodes()
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    driver = start_sweep(sweep_command(out, csv, f"search.trials={BUDGET}", f"cluster.address={ray_cluster.address}",
                                       "cluster.num_replicas=2", "cluster.max_batch=2", "controls=[]"))
    _connect(ray_cluster)
    wait_for_trials(driver, out, 6)
    ray.kill(_actor("replica-0"), no_restart=True)
    finish_sweep(driver)
    _complete(out)


def test_with_every_replica_gone_the_finished_studies_are_kept_and_a_rerun_runs_only_the_rest(tmp_path, ray_cluster):
    import json

    import ray

    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    command = sweep_command(out, csv, f"search.trials={BUDGET}", f"cluster.address={ray_cluster.address}",
                            "cluster.max_batch=2", "controls=[]")
    driver = start_sweep(command)
    _connect(ray_cluster)
    # Shards of 2 studies advance in lock-step rounds, so trials alone do not say a study has finished.
    wait_for_trials(driver, out, 1, count=lambda run: finished_studies(run, BUDGET))
    ray.kill(_actor("replica-0"), no_restart=True)
    _, err = driver.communicate(timeout=600)
    assert driver.returncode == 2, err[-3000:]
    failed = json.loads((out / "tune" / "failed.json").read_text())
    assert failed and "studies did not finish" in err and failed[0] in err
    trials = pd.read_parquet(out / "trials.parquet")  # what finished is written, each study whole
    assert set(trials.groupby(["prompt_id", "method"]).size()) == {BUDGET}
    finished = {f"{p}/{m}" for p, m in trials[["prompt_id", "method"]].drop_duplicates().itertuples(index=False)}
    assert finished.isdisjoint(failed) and len(finished) + len(failed) == 8
    assert not (out / "grades.parquet").exists()

    rerun = finish_sweep(start_sweep(command))
    assert f"tune: {len(failed)} studies left" in rerun
    assert not (out / "tune" / "failed.json").exists()
    _complete(out)
