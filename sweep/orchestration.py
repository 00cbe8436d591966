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

from .arms import sweep_arms
from .config import SweepConfig, from_yaml, to_yaml
from .messages import SteeredOutput, SteerRequest, SteerSettings
from .tuning import budget
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


def driver_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def replicas_cpu_s(replicas: list) -> float:
    import ray

    return sum(stats["process_cpu_s"] for stats in ray.get([r.stats.remote() for r in replicas]))


def component_costs(costs: dict[str, float], driver_s: float, replicas_s: float, trials: int) -> dict[str, dict]:
    """CPU microseconds per trial of each component, with the process that pays it."""
    actor_parts = {k.removeprefix("actors."): v for k, v in costs.items() if k.startswith("actors.")}
    driver_parts = {"parquet": costs.get("driver.parquet", 0.0)}
    rows = {
        "optuna_ask_tell": ("Tune trial actors", actor_parts.get("optuna", 0.0)),
        "study_state_writes": ("Tune trial actors", actor_parts.get("state_write", 0.0)),
        "replica_call_caller": ("Tune trial actors", actor_parts.get("replica_call", 0.0)),
        "tune_report": ("Tune trial actors", actor_parts.get("tune_report", 0.0)),
        "actor_rest": ("Tune trial actors", costs.get("actor_processes", 0.0) - sum(actor_parts.values())),
        "tune_controller_and_results": ("driver", driver_s - sum(driver_parts.values())),
        "mlflow_live_writer": ("MLflow writer (nice 19)", costs.get("mlflow.live", 0.0)),
        "parquet": ("driver", driver_parts["parquet"]),
        "replica_call_callee": ("replicas", replicas_s),
    }
    return {name: {"process": process, "us_per_trial": 1e6 * seconds / trials}
            for name, (process, seconds) in rows.items()}


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
    save_tensors(run.vectors, {f"{kind}/{i}": torch.zeros(ZeroCostModel.num_layers, 8)
                               for i in range(prompts) for kind in ("gold", "random")})
    session = Session(cfg, run)
    replicas = session.pool(build=ZeroCostModel).actors
    session.tracker  # noqa: B018 - MLflow's parent run is made before the clock starts, as in a real sweep
    replicas_before, driver_before = replicas_cpu_s(replicas), driver_cpu_s()
    started = time.perf_counter()
    costs = tune_stage(session)
    wall = time.perf_counter() - started
    tune_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    driver_s, replicas_s = driver_cpu_s() - driver_before, replicas_cpu_s(replicas) - replicas_before
    started = time.perf_counter()
    sync_tracking(session)
    sync = time.perf_counter() - started
    synced_studies = session.tracker.studies_logged
    session.close(True)
    started = time.perf_counter()
    run_stages(cfg, run.root, ["tune"])
    rerun = time.perf_counter() - started
    arms = sweep_arms(list(cfg.search.methods), list(cfg.controls))
    trials = prompts * sum(budget(arm, cfg.search.trials) for arm in arms)
    return {"prompts": prompts, "studies": len(arms) * prompts, "trials": trials, "wall_s": wall,
            "trials_per_s": trials / wall,
            "driver_peak_rss_tune_mb": tune_rss,
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "run_dir_mb": sum(f.stat().st_size for f in run.root.rglob("*") if f.is_file()) / 2 ** 20,
            "mlflow_sync_s": sync, "mlflow_sync_studies": synced_studies,
            "mlflow_studies_per_s": synced_studies / sync if sync else 0.0, "rerun_noop_s": rerun,
            "components": component_costs(costs, driver_s, replicas_s, trials)}


def run_orchestration_bench(cfg: SweepConfig, prompt_counts: list[int], tracking_uri: str | None = None
                            ) -> dict[str, Any]:
    """Every size in a fresh process, with the config's arms (the defaults: both methods and every control),
    tracked in `tracking_uri` (a PostgreSQL database or an MLflow server) or else in SQLite in each run
    directory (never $MLFLOW_TRACKING_URI: a benchmark does not write into a user's store unasked)."""
    cfg.tracking.uri = tracking_uri
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
    return {"orchestration": results,
            "projection": [projection(results[-1]["components"], cores) for cores in HEAD_CORES]}


# Trials/s one GPU is expected to produce at 100 new tokens (tokens/s / 100). Not measured here (no GPU was lent
# when this was written): SmolLM2-135M, docs/gpu.md's target for the cached engine on one card (>= 20,000
# steered tokens/s: a floor); a 2B model, issue 16's estimate for one H100 (~40,000 tokens/s).
GPU_TRIALS_PER_S = {"SmolLM2-135M": 200.0, "2B model": 400.0}
HEAD_CORES = (4, 8, 16, 32, 64)


def projection(components: dict[str, dict], head_cores: int) -> dict[str, float]:
    """Trials/s the orchestration sustains on a head node of `head_cores` cores that runs the driver and the
    Tune trial actors (the replicas' own call overhead is on the GPU nodes), and the GPU count at which it
    becomes the bottleneck. The driver is one Python process: one core at most, whatever the head has."""
    per_process: dict[str, float] = {}
    for row in components.values():
        per_process[row["process"]] = per_process.get(row["process"], 0.0) + max(row["us_per_trial"], 0.0) / 1e6
    driver, actors = per_process.get("driver", 0.0), per_process.get("Tune trial actors", 0.0)
    capacity = min(1 / driver if driver else float("inf"), max(head_cores - 1, 1) / actors if actors else float("inf"))
    return {"head_cores": head_cores, "trials_per_s": capacity,
            **{f"gpus_{model}": capacity / rate for model, rate in GPU_TRIALS_PER_S.items()}}


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = ["Driver MB: the driver's peak RSS after the tune stage / after the MLflow sync and the rerun. MLflow "
             "studies/s: the studies the final sync wrote (those the live writer had not) per second of the sync.",
             "prompts  studies   trials   wall s  trials/s  driver MB  run dir MB  MLflow sync s  studies/s  "
             "no-op rerun s"]
    for r in result["orchestration"]:
        lines.append(f"{r['prompts']:7d} {r['studies']:8d} {r['trials']:8d} {r['wall_s']:8.1f} {r['trials_per_s']:9.1f} "
                     f"{r['driver_peak_rss_tune_mb']:5.0f}/{r['driver_peak_rss_mb']:<5.0f}"
                     f"{r['run_dir_mb']:11.1f} {r['mlflow_sync_s']:14.1f} {r['mlflow_studies_per_s']:10.1f} "
                     f"{r['rerun_noop_s']:14.1f}")
    largest = result["orchestration"][-1]
    lines += ["", f"CPU per trial at {largest['prompts']} prompts (microseconds), by component and the process that "
              "pays it:"]
    lines += [f"  {name:30s} {row['process']:18s} {row['us_per_trial']:9.1f}"
              for name, row in largest["components"].items()]
    lines += ["", "Projection: head node cores -> orchestration trials/s -> GPUs it feeds ("
              + ", ".join(f"{m} at {r:.0f} trials/s per GPU" for m, r in GPU_TRIALS_PER_S.items()) + ")"]
    for cores in HEAD_CORES:
        p = projection(largest["components"], cores)
        lines.append(f"  {cores:3d} cores: {p['trials_per_s']:8.0f} trials/s; "
                     + ", ".join(f"{m}: {p[f'gpus_{m}']:.1f} GPUs" for m in GPU_TRIALS_PER_S))
    return lines


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    config_path, count, run_root = sys.argv[1:4]
    print(json.dumps(measure(from_yaml(Path(config_path).read_text()), int(count), Path(run_root))))
