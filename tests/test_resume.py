"""Resume after the driver is SIGKILLed mid-sweep: no trial twice, every study ends with its budget, no
MLflow run left RUNNING or duplicated, and best.parquet equal to an uninterrupted run with the same seed.
The model is the tiny random one: resume is about orchestration, and it keeps the test fast."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import (QUESTIONS, REPO, finish_sweep, kill_process_tree, start_sweep, sweep_command, wait_for_trials,
                      write_simpleqa_csv)

pytestmark = [pytest.mark.slow, pytest.mark.faults]
BUDGET, PROMPTS = 4, 4
STUDIES = PROMPTS * 2


def command(out: Path, csv: Path) -> list[str]:
    return sweep_command(out, csv, f"data.rows={PROMPTS}", f"search.trials={BUDGET}")


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return write_simpleqa_csv(tmp_path_factory.mktemp("data") / "simpleqa.csv", QUESTIONS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, csv) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    finish_sweep(start_sweep(command(out, csv)))
    return out


@pytest.mark.parametrize("kill_at", [3, STUDIES * BUDGET - 6])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, csv, uninterrupted, kill_at):
    out = tmp_path / "run"
    driver = start_sweep(command(out, csv))
    wait_for_trials(driver, out, kill_at)
    kill_process_tree(driver)
    assert not (out / "best.parquet").exists()
    finish_sweep(start_sweep(command(out, csv)))

    trials = pd.read_parquet(out / "trials.parquet")
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    assert trials.groupby(["prompt_id", "method"]).size().tolist() == [BUDGET] * STUDIES
    columns = ["prompt_id", "method", "trial", "alpha_all", "gamma_all", "alpha_early", "gamma_late", "text",
               "objective"]
    expected = pd.read_parquet(uninterrupted / "best.parquet")[columns]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "best.parquet")[columns], expected)

    assert not (REPO / "mlruns").exists()  # a SQLite store keeps its artifacts in the run directory
    assert (next((out / "mlartifacts").rglob("report.md"))).read_text() == (out / "report.md").read_text()
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 1 + STUDIES
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    for run in runs:
        if run.data.tags.get("fusion_steering.role") == "study":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "objective")]
            assert sorted(steps) == list(range(BUDGET))
