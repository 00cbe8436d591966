"""Faults during a sweep: the tracking server going away. Parquet is the source of truth; MLflow catches up."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import (QUESTIONS, MlflowServer, finish_sweep, start_sweep, sweep_command, wait_for_trials,
                      write_simpleqa_csv)

pytestmark = pytest.mark.slow
BUDGET = 4


def test_tracking_outage_mid_sweep_loses_nothing_and_mlflow_catches_up(tmp_path):
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    out = tmp_path / "run"
    command = sweep_command(out, csv, f"search.trials={BUDGET}", f"tracking.uri={server.uri}")
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
        assert "segmented.accuracy" in parent.data.metrics
        assert "report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    finally:
        server.stop()
