"""The whole sweep end to end on real parts: SmolLM2, a local Ray cluster, Tune + Optuna, and a real
`mlflow server` (SQLite backend) on 127.0.0.1. The CLI runs in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from sweep.rundir import SCHEMAS

from conftest import CONF, REPO

pytestmark = pytest.mark.slow


def fusion_steering(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "sweep.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, mlflow_server, smollm2):
    tmp = tmp_path_factory.mktemp("smoke")
    from conftest import QUESTIONS, write_simpleqa_csv
    csv = write_simpleqa_csv(tmp / "simpleqa.csv", QUESTIONS)
    out = tmp / "run"
    args = ["run", "--config", str(CONF / "smoke.yaml"), "--out", str(out), "model.quantization=none",
            f"data.csv={csv}", f"tracking.uri={mlflow_server.uri}"]
    first = fusion_steering(*args)
    assert first.returncode == 0, first.stderr[-4000:]
    return out, args, mlflow_server.uri


def test_every_stage_file_is_written_with_its_schema(smoke_run):
    out, _, _ = smoke_run
    for name, schema in SCHEMAS.items():
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema.names == schema.names, name
        assert table.num_rows > 0, name
    prompts = pq.read_table(out / "prompts.parquet").to_pylist()
    assert len(prompts) == 4
    assert all(p["baseline_grade"] in ("INCORRECT", "NOT_ATTEMPTED") for p in prompts)
    vectors = load_file(out / "vectors.safetensors")
    assert sorted(vectors) == sorted(str(p["prompt_id"]) for p in prompts)
    assert {tuple(v.shape) for v in vectors.values()} == {(30, 576)}
    assert (out / "config.yaml").read_text().count("quantization: none") == 1
    report = (out / "report.md").read_text()
    assert "| composite >= 0.6 |" in report and "## Paired comparisons" in report and "Oracle set-up" in report
    grades = pq.read_table(out / "grades.parquet").to_pandas()
    for method in ("baseline", "full", "segmented"):  # the report's numbers come from grades.parquet
        assert f"{grades[grades['method'] == method]['composite'].mean():.2f} [" in report
    for plot in ("accuracy", "composite", "judge_scores", "best_weights", "objective_by_trial"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
    transfer = pq.read_table(out / "transfer.parquet").to_pandas()
    assert set(transfer["setting"]) == {"transfer", "question-only"}
    assert set(transfer["method"]) == {"full", "segmented"} and transfer["prompt_id"].nunique() == 2
    assert "## Oracle vs transfer (held-out prompts)" in report and "question-only vectors (no gold)" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table>" in html


def test_each_study_ran_exactly_its_budget_and_best_is_its_maximum(smoke_run):
    out, _, _ = smoke_run
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    counts = trials.groupby(["prompt_id", "method"]).size()
    assert len(counts) == 8 and set(counts) == {2}
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    full = trials[trials["method"] == "full"]
    assert full[["alpha_all", "gamma_all"]].notna().all().all()
    assert full["alpha_early"].isna().all()
    seg = trials[trials["method"] == "segmented"]
    assert seg[["alpha_early", "alpha_middle", "alpha_late", "gamma_late"]].notna().all().all()
    assert trials["alpha_all"].dropna().between(0.01, 1.0).all()
    best = pq.read_table(out / "best.parquet").to_pandas()
    top = trials.groupby(["prompt_id", "method"])["objective"].max().reset_index()
    assert best.sort_values(["prompt_id", "method"])["objective"].tolist() == top["objective"].tolist()
    grades = pq.read_table(out / "grades.parquet").to_pandas()
    assert sorted(grades["method"].unique()) == ["baseline", "full", "segmented"]
    assert (grades["composite"] == 0.5 * grades["overlap"] + 0.5 * grades["judge_score"] / 5).all()


def test_mlflow_has_one_parent_and_one_child_per_study_with_a_step_per_trial(smoke_run):
    _, _, uri = smoke_run
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fusion-steering")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fusion_steering.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("fusion_steering.role") == "study"]
    assert len(parents) == 1 and len(children) == 8
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "objective")]
        assert sorted(steps) == [0, 1]
        assert {"final.composite", "final.judge_score", "overlap", "perplexity"} <= set(child.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.md", "report.html", "config.yaml", "plots"} <= artifacts


def test_rerunning_a_finished_sweep_is_a_no_op(smoke_run):
    out, args, uri = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    again = fusion_steering(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before
    assert "already done" in again.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 9


def test_a_different_config_on_the_same_directory_is_refused(smoke_run):
    out, args, _ = smoke_run
    refused = fusion_steering(*args, "search.trials=3")
    assert refused.returncode == 2
    assert "different config" in refused.stderr and "search.trials" in refused.stderr
