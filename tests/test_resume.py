"""Resume after the driver is SIGKILLed mid-sweep: no trial twice, every study ends with its budget, no
MLflow run left RUNNING or duplicated, and best.parquet equal to an uninterrupted run with the same seed.
The model is the tiny random one: resume is about orchestration, and it keeps the test fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient

from conftest import CONF, QUESTIONS, REPO, write_simpleqa_csv

pytestmark = pytest.mark.slow
BUDGET, PROMPTS = 4, 4
STUDIES = PROMPTS * 2


def command(out: Path, csv: Path) -> list[str]:
    return [sys.executable, "-m", "sweep.cli", "run", "--config", str(CONF / "smoke.yaml"), "--out", str(out),
            "model.name=tiny-random", "model.quantization=none", f"data.csv={csv}", f"data.rows={PROMPTS}",
            f"search.trials={BUDGET}", "generation.max_new_tokens=24"]


def start(out: Path, csv: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    return subprocess.Popen(command(out, csv), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finished_trials(out: Path) -> int:
    """Optuna trials recorded in the studies' latest checkpoints."""
    total = 0
    for study in (out / "tune" / "studies").glob("run_study_*"):
        latest = sorted(study.glob("checkpoint_*/rows.json"))
        if latest:
            try:
                total += len(json.loads(latest[-1].read_text()))
            except (json.JSONDecodeError, FileNotFoundError):
                pass  # being written or rotated right now
    return total


def kill_driver_after(proc: subprocess.Popen, out: Path, trials: int, timeout: float = 300) -> None:
    """SIGKILL the driver once `trials` trials are checkpointed, then the Ray processes it started, by PID."""
    deadline = time.monotonic() + timeout
    while finished_trials(out) < trials:
        assert proc.poll() is None, f"the sweep ended before the kill point: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no progress to the kill point"
        time.sleep(0.2)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=30)


def run_to_end(out: Path, csv: Path) -> None:
    proc = start(out, csv)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]


@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    return write_simpleqa_csv(tmp_path_factory.mktemp("data") / "simpleqa.csv", QUESTIONS)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, csv) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_to_end(out, csv)
    return out


@pytest.mark.parametrize("kill_at", [3, STUDIES * BUDGET - 6])
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, csv, uninterrupted, kill_at):
    out = tmp_path / "run"
    kill_driver_after(start(out, csv), out, kill_at)
    assert not (out / "best.parquet").exists()
    run_to_end(out, csv)

    trials = pd.read_parquet(out / "trials.parquet")
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    assert trials.groupby(["prompt_id", "method"]).size().tolist() == [BUDGET] * STUDIES
    columns = ["prompt_id", "method", "trial", "alpha_all", "gamma_all", "alpha_early", "gamma_late", "text",
               "objective"]
    expected = pd.read_parquet(uninterrupted / "best.parquet")[columns]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "best.parquet")[columns], expected)

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id], max_results=1000)
    assert len(runs) == 1 + STUDIES
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    for run in runs:
        if run.data.tags.get("fusion_steering.role") == "study":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "objective")]
            assert sorted(steps) == list(range(BUDGET))
