"""`fusion-steering bench --orchestration`: what the sweep's machinery costs at scale, with no model in the way.

The real tune stage (Ray actors, Tune, Optuna, MLflow on SQLite, Parquet, the shard state files) runs on a
synthetic run directory of N prompts, with each replica's model replaced by `ZeroCostModel`, a fixed text after
no work, used by this benchmark only. Each size runs in its own process, so the driver's peak memory is its own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import SweepConfig, from_yaml, to_yaml
from .messages import SteeredOutput, SteerRequest, SteerSettings
from .rundir import SCHEMAS, RunDir, write_table, write_text_atomic

FIXED_TEXT = "A fixed answer from the zero-cost engine."


class ZeroCostModel:
    """Stands in for `ReplicaModel` in the orchestration benchmark only: answers every trial with a fixed text
    and fixed scores, after no work."""

    num_layers = 30
    busy_s = 0.0

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def steer(self, settings: SteerSettings, requests: list[SteerRequest]) -> list[SteeredOutput]:
        self.batch_sizes.append(len(requests))
        return [SteeredOutput(FIXED_TEXT, 20.0, 0.5, 0.0, 1.0, 0.0) for _ in requests]


def write_synthetic_run(run: RunDir, questions: list[tuple[str, str]]) -> None:
    """prompts.parquet, references.parquet and dataset.json for `questions` (question, gold answer), as the
    select and enrich stages would leave them; the vectors are up to the caller."""
    write_table(run.table("prompts"), [
        {"prompt_id": i, "question": q, "answer": a, "topic": "", "answer_type": "", "baseline_text": "",
         "baseline_grade": "INCORRECT"} for i, (q, a) in enumerate(questions)], SCHEMAS["prompts"])
    write_table(run.table("references"), [
        {"prompt_id": i, "question": q, "answer": a, "explanation": "", "explanation_source": "empty",
         "reference_text": a} for i, (q, a) in enumerate(questions)], SCHEMAS["references"])
    write_text_atomic(run.dataset, json.dumps({"file": "synthetic", "sha256": "", "bundled": False,
                                               "rows_read": len(questions), "row_ids": list(range(len(questions)))}))


def measure(cfg: SweepConfig, prompts: int, root: Path) -> dict[str, Any]:
    """One size, in this process: the tune stage, the final MLflow sync, then a no-op rerun."""
    import torch

    from .stages.runner import run_stages, sync_tracking
    from .stages.tune import tune_stage
    from .stages.vectors import save_tensors
    from .session import Session

    run = RunDir(root)
    run.prepare(cfg)
    write_synthetic_run(run, [(f"Synthetic question {i}?", f"answer {i}") for i in range(prompts)])
    save_tensors(run.vectors, {f"gold/{i}": torch.zeros(ZeroCostModel.num_layers, 8) for i in range(prompts)})
    session = Session(cfg, run)
    session.pool(build=ZeroCostModel)
    started = time.perf_counter()
    tune_stage(session)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    sync_tracking(session)
    sync = time.perf_counter() - started
    session.close(True)
    started = time.perf_counter()
    run_stages(cfg, run.root, ["tune"])
    rerun = time.perf_counter() - started
    trials = 2 * prompts * cfg.search.trials
    return {"prompts": prompts, "studies": 2 * prompts, "trials": trials, "wall_s": wall, "trials_per_s": trials / wall,
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "run_dir_mb": sum(f.stat().st_size for f in run.root.rglob("*") if f.is_file()) / 2 ** 20,
            "mlflow_sync_s": sync, "rerun_noop_s": rerun}


def run_orchestration_bench(cfg: SweepConfig, prompt_counts: list[int]) -> dict[str, Any]:
    """Every size in a fresh process, on full-layer and segmented studies without controls."""
    cfg.controls = []
    cfg.search.methods = ["full", "segmented"]
    cfg.tracking.uri = None  # SQLite in each run directory
    results = []
    for prompts in prompt_counts:
        with tempfile.TemporaryDirectory(prefix="fusion-orchestration-") as folder:
            config = Path(folder) / "bench-config.yaml"
            config.write_text(to_yaml(cfg))
            out = subprocess.run([sys.executable, "-m", "sweep.orchestration", str(config), str(prompts),
                                  str(Path(folder) / "run")], capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"orchestration run at {prompts} prompts failed:\n{out.stderr[-3000:]}")
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"orchestration": results}


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = ["prompts  studies   trials   wall s  trials/s  driver MB  run dir MB  MLflow sync s  no-op rerun s"]
    for r in result["orchestration"]:
        lines.append(f"{r['prompts']:7d} {r['studies']:8d} {r['trials']:8d} {r['wall_s']:8.1f} {r['trials_per_s']:9.1f} "
                     f"{r['driver_peak_rss_mb']:10.0f} {r['run_dir_mb']:11.1f} {r['mlflow_sync_s']:14.1f} "
                     f"{r['rerun_noop_s']:14.1f}")
    return lines


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    config_path, count, run_root = sys.argv[1:4]
    print(json.dumps(measure(from_yaml(Path(config_path).read_text()), int(count), Path(run_root))))
