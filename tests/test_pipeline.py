"""The whole sweep end to end on real parts: SmolLM2, a local Ray cluster, Tune + Optuna, and a real
`mlflow server` (SQLite backend) on 127.0.0.1. The CLI runs in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from sweep.rundir import SCHEMAS

from conftest import CONF, REPO

pytestmark = pytest.mark.slow
ARMS = ["full", "full-mismatched", "full-random", "in_context", "prompt_only", "sampled", "segmented",
        "segmented-mismatched", "segmented-random"]
ONE_TRIAL = ["in_context", "prompt_only"]  # the others run search.trials
STUDIES = 4 * len(ARMS)


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
    ids = sorted(str(p["prompt_id"]) for p in prompts)
    assert sorted(vectors) == sorted([f"gold/{i}" for i in ids] + [f"random/{i}" for i in ids])
    assert {tuple(v.shape) for v in vectors.values()} == {(30, 576)}
    norms = pq.read_table(out / "shift_norms.parquet").to_pandas().set_index(["prompt_id", "method", "segment"])
    assert len(norms) == 4 * 6 * 3  # prompts x arms with a vector x segments
    for method in ("full", "segmented"):  # the random control injects the gold vector's shift norm
        random = norms.xs(f"{method}-random", level="method")["norm"]
        pd.testing.assert_series_equal(random, norms.xs(method, level="method")["norm"], rtol=1e-5)
    assert (out / "config.yaml").read_text().count("quantization: none") == 1
    report = (out / "report.md").read_text()
    assert "## Headline: each arm" in report and "Holm adjusts these p-values together" in report
    assert "| full (oracle) vs prompt_only |" in report and "| segmented (oracle) vs segmented-random (oracle) |" in report
    assert "`simpleqa.csv`" in report and str(out.parent) not in report and "conf_dir" not in report
    grades = pq.read_table(out / "grades.parquet").to_pandas()
    assert sorted(grades["method"].unique()) == sorted(["baseline", *ARMS])
    for arm in ("baseline", "full", "segmented"):  # the report's numbers come from grades.parquet
        assert f"{grades[grades['method'] == arm]['composite'].mean():.2f} [" in report
    for plot in ("family", "steerability", "shares", "composite", "judge_scores", "best_weights", "objective_by_trial"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000
    for title in ("The declared family at a glance", "Per-prompt steerability", "Shares of prompts per arm", "Composite score per prompt", "Judge scores (1-5)",
                  "Injection strength of the best trials", "Objective by trial"):
        assert f"**{title}.** " in report  # every figure with its title and a caption
    assert "4 of 4 prompts, in prompt order" in report
    transfer = pq.read_table(out / "transfer.parquet").to_pandas()
    assert set(transfer["setting"]) == {"transfer", "question-only", "self"}
    assert set(transfer["method"]) == {"full", "segmented"} and transfer["prompt_id"].nunique() == 2
    assert "## Oracle vs transfer (held-out prompts)" in report and "the model's own answer as vector (no gold)" in report
    assert "overlap: change vs prompt_only [95% CI]" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "<table>" in html


def test_each_study_ran_exactly_its_budget_and_best_is_its_maximum(smoke_run):
    out, _, _ = smoke_run
    trials = pq.read_table(out / "trials.parquet").to_pandas()
    counts = trials.groupby(["prompt_id", "method"]).size()
    assert len(counts) == STUDIES and set(counts.drop(ONE_TRIAL, level="method")) == {2}
    assert set(counts[counts.index.get_level_values("method").isin(ONE_TRIAL)]) == {1}
    sampled = trials[trials["method"] == "sampled"]
    assert sampled["alpha_all"].isna().all() and (sampled.groupby("prompt_id")["text"].nunique() > 1).any()
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    full = trials[trials["method"] == "full"]
    assert full[["alpha_all", "gamma_all"]].notna().all().all()
    assert full["alpha_early"].isna().all()
    seg = trials[trials["method"] == "segmented"]
    assert seg[["alpha_early", "alpha_middle", "alpha_late", "gamma_late"]].notna().all().all()
    assert trials["alpha_all"].dropna().between(0.01, 1.0).all()
    best = pq.read_table(out / "best.parquet").to_pandas()
    fluent = trials.assign(fluent=trials["repetition"] < 0.5)  # a degenerate trial wins only if all are
    top = fluent.sort_values(["fluent", "objective"]).groupby(["prompt_id", "method"]).tail(1)
    assert best.sort_values(["prompt_id", "method"])["objective"].tolist() == \
        top.sort_values(["prompt_id", "method"])["objective"].tolist()
    mismatched = trials[trials["method"] == "full-mismatched"]
    assert (mismatched["vector"] != "gold/" + mismatched["prompt_id"].astype(str)).all()
    same_weights = trials[trials["method"] == "full"].merge(trials[trials["method"] == "full-random"],
                                                             on=["prompt_id", "trial"])
    assert (same_weights["alpha_all_x"] == same_weights["alpha_all_y"]).all()  # controls share the method's seed
    grades = pq.read_table(out / "grades.parquet").to_pandas()
    assert (grades["composite"] == 0.5 * grades["overlap"] + 0.5 * grades["judge_score"] / 5).all()
    assert (grades["accurate"] == grades["accurate_paper"] & ~grades["degenerate"]).all()


def test_mlflow_has_one_parent_and_one_child_per_study_with_a_step_per_trial(smoke_run):
    _, _, uri = smoke_run
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("fusion-steering")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fusion_steering.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("fusion_steering.role") == "study"]
    assert len(parents) == 1 and len(children) == STUDIES
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "objective")]
        assert sorted(steps) == ([0] if child.data.tags["fusion_steering.method"] in ONE_TRIAL else [0, 1])
        assert {"final.composite", "final.judge_score", "overlap", "perplexity"} <= set(child.data.metrics)
    summary = client.get_run(parents[0].info.run_id).data.metrics
    assert {"baseline.simpleqa_correct", "prompt_only.accuracy", "oracle.full.accuracy",
            "oracle.segmented-random.degenerate"} <= set(summary)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.md", "report.html", "config.yaml", "dataset.json", "plots"} <= artifacts


def test_rerunning_a_finished_sweep_is_a_no_op(smoke_run):
    out, args, uri = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    again = fusion_steering(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before
    assert "already done" in again.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 1 + STUDIES


def test_a_different_config_on_the_same_directory_is_refused(smoke_run):
    out, args, _ = smoke_run
    refused = fusion_steering(*args, "search.trials=3")
    assert refused.returncode == 2
    assert "different config" in refused.stderr and "search.trials" in refused.stderr
