"""Resume after the driver is SIGKILLed mid-sweep: no trial twice, every study ends with its budget, no
MLflow run left RUNNING or duplicated, and trials.parquet equal to an uninterrupted run with the same seed
(batches are composed by the config, so even the scores match). The model is the tiny random one: resume is
about orchestration, and it keeps the test fast. Controls are on: the single-trial arms (prompt_only,
in_context) resume too, and `sampled`'s seeded samples come out the same."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import (QUESTIONS, REPO, finish_sweep, kill_process_tree, start_sweep, sweep_command, wait_for_trials,
                      write_simpleqa_csv)

pytestmark = [pytest.mark.slow, pytest.mark.faults]
BUDGET, PROMPTS, TUNED_ARMS = 4, 4, 6  # full, segmented and their random and mismatched controls
STUDIES = PROMPTS * (TUNED_ARMS + 3)  # + sampled (BUDGET trials), prompt_only and in_context (one trial each)
TRIALS = PROMPTS * ((TUNED_ARMS + 1) * BUDGET + 2)


def command(out: Path, csv: Path, *extra: str) -> list[str]:
    return sweep_command(out, csv, f"data.rows={PROMPTS}", f"search.trials={BUDGET}", *extra)


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return write_simpleqa_csv(tmp_path_factory.mktemp("data") / "simpleqa.csv", QUESTIONS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, csv) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    finish_sweep(start_sweep(command(out, csv)))
    return out


# Trials finish a shard's round at a time (up to 16 here), so the late kill point leaves room for two rounds
# between the poll that sees it and the kill: near the end, yet always before the tune stage is done.
@pytest.mark.parametrize("kill_at", [3, TRIALS - 30])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, csv, uninterrupted, kill_at):
    out = tmp_path / "run"
    driver = start_sweep(command(out, csv))
    wait_for_trials(driver, out, kill_at)
    kill_process_tree(driver)
    assert not (out / "best.parquet").exists()
    finish_sweep(start_sweep(command(out, csv)))

    trials = pd.read_parquet(out / "trials.parquet")
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    counts = trials.groupby(["prompt_id", "method"]).size()
    assert len(counts) == STUDIES and counts.sum() == TRIALS
    pd.testing.assert_frame_equal(trials, pd.read_parquet(uninterrupted / "trials.parquet"))

    assert not (REPO / "mlruns").exists()  # a SQLite store keeps its artifacts in the run directory
    assert (next((out / "mlartifacts").rglob("report.md"))).read_text() == (out / "report.md").read_text()
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 1 + STUDIES
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    for run in runs:
        if run.data.tags.get("fusion_steering.role") == "study":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "objective")]
            budget = 1 if run.data.tags["fusion_steering.method"] in ("prompt_only", "in_context") else BUDGET
            assert sorted(steps) == list(range(budget))


def test_resume_honours_a_changed_batch_size_and_tracking_store(tmp_path, csv, uninterrupted):
    """cluster.* and tracking.* keys may change on a resume and take effect: the remaining studies are regrouped
    into shards of the new cluster.max_batch, and MLflow is written to the new store, complete."""
    out = tmp_path / "run"
    driver = start_sweep(command(out, csv))
    wait_for_trials(driver, out, TRIALS // 3)
    kill_process_tree(driver)
    other_store = tmp_path / "other.db"
    resumed = finish_sweep(start_sweep(command(out, csv, "cluster.max_batch=4", f"tracking.uri=sqlite:///{other_store}")))
    assert "shards of up to 4" in resumed

    trials = pd.read_parquet(out / "trials.parquet")
    expected = pd.read_parquet(uninterrupted / "trials.parquet")
    assert len(trials) == TRIALS and not trials.duplicated(["prompt_id", "method", "trial"]).any()
    # Other batches: with fp32 weights the texts and weights are the same; scores equal to float noise.
    columns = ["prompt_id", "method", "trial", "alpha_all", "gamma_late", "vector", "text"]
    pd.testing.assert_frame_equal(trials[columns], expected[columns])
    pd.testing.assert_series_equal(trials["objective"], expected["objective"], rtol=1e-5)
    client = MlflowClient(f"sqlite:///{other_store}")
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 1 + STUDIES and all(r.info.status == "FINISHED" for r in runs)


def test_an_8bit_sweep_killed_mid_tune_resumes_to_the_uninterrupted_runs_trials(tmp_path, csv):
    """The real SmolLM2 in bitsandbytes 8-bit, whose CPU kernels are not batch-invariant (`fusion-steering doctor`
    shows it): a resumed shard sends the uninterrupted run's batches, so every trial's text and objective match."""
    def command_8bit(out: Path) -> list[str]:
        return sweep_command(out, csv, "model.name=smollm2-135m", "model.quantization=8bit", "data.rows=2",
                             "search.trials=4", "controls=[]", "cluster.max_batch=4")

    straight = tmp_path / "straight"
    finish_sweep(start_sweep(command_8bit(straight)))
    out = tmp_path / "run"
    driver = start_sweep(command_8bit(out))
    wait_for_trials(driver, out, 4)
    kill_process_tree(driver)
    assert not (out / "best.parquet").exists()
    finish_sweep(start_sweep(command_8bit(out)))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "trials.parquet"), pd.read_parquet(straight / "trials.parquet"))
