"""Run stages in order on a run directory: skip those whose artifacts exist, save the config first, bring
MLflow up to date after every command, and say at the end where the results are."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient

from ..config import SweepConfig, flatten
from ..errors import SweepError
from ..health import check_shared_storage
from ..lease import Lease
from ..rundir import RunDir, iter_rows, read_rows, write_text_atomic
from ..session import Session
from ..tracking import saved_parents, sync_workers
from ..tuning import study_key, trial_params
from . import STAGES
from .enrich import enrich
from .evaluate import evaluate
from .report import report
from .select import select
from .transfer import transfer
from .tune import tune_stage
from .vectors import vectors

log = logging.getLogger(__name__)

STAGE_FUNCTIONS: dict[str, Callable[[Session], None]] = {
    "select": select, "enrich": enrich, "vectors": vectors, "tune": tune_stage,
    "evaluate": evaluate, "transfer": transfer, "report": report,
}


def artifacts(run: RunDir, stage: str) -> list[Path]:
    return {"select": [run.table("prompts"), run.dataset], "enrich": [run.table("references")],
            "vectors": [run.vectors, run.table("shift_norms")], "tune": [run.table("trials"), run.table("best"), run.table("timings")],
            "evaluate": [run.table("grades")], "transfer": [run.table("transfer")],
            "report": [run.report, run.report_html]}[stage]


def stage_done(run: RunDir, stage: str) -> bool:
    complete = stage != "tune" or not run.tune_failed.exists()
    return complete and all(p.exists() for p in artifacts(run, stage))


def run_stages(cfg: SweepConfig, out: Path, stages: Sequence[str], verbose: bool = False) -> None:
    """Run the given stages in order, skipping those whose outputs exist; the config is saved first."""
    run = RunDir(out.resolve())
    run.prepare(cfg)
    with Lease(run.lease):
        session = Session(cfg, run, verbose)
        ok = False
        try:
            for stage in stages:
                if stage_done(run, stage):
                    log.info("%s: already done, skipped", stage)
                    continue
                missing = [s for s in STAGES[:STAGES.index(stage)] if not stage_done(run, s)]
                if missing:
                    raise SweepError(f"stage '{stage}' needs {', '.join(missing)} first (or use 'run')")
                log.info("%s: running", stage)
                if stage == "tune":  # trials on every node write study state into the run directory
                    check_shared_storage(run, session.replicas)
                STAGE_FUNCTIONS[stage](session)
            ok = True
        finally:
            sync_tracking(session, ok)
            session.close(ok)
    if run.report.exists() and "report" in stages:
        log.info("%s", next_steps(run, session.tracking_uri))


def sync_tracking(session: Session, ok: bool = True) -> None:
    """Bring MLflow up to date with the run directory: every trial as a step, each study's final scores, the
    summary and the report. Idempotent, so it runs after every command; Parquet is the source of truth, and an
    unreachable tracking server only costs a warning (the next command catches up). A successful command on a
    directory that has not changed since its last complete sync, whose parent run is FINISHED, reads nothing
    back: reading every child run of a 40,000-study sweep takes half a minute."""
    from ..arms import arm_by_name
    from ..tuning import budget

    run, cfg = session.run, session.cfg
    if not any(p.exists() for p in (run.table("trials"), run.table("grades"), run.report)):
        return
    synced = json.loads(run.mlflow_synced.read_text()) if run.mlflow_synced.exists() else {}
    seen = sync_receipt(run, flatten(cfg))
    if ok and synced.get(session.tracking_uri) == seen and parent_finished(session):
        log.info("MLflow: up to date (nothing in %s changed since its last sync)", run.root)
        return
    try:
        tracker = session.connect_tracker()  # afresh: the live logger may have lost it mid-run
        if run.table("trials").exists():
            studies = pq.read_table(run.table("trials"), columns=["prompt_id", "method"]).group_by(
                ["prompt_id", "method"]).aggregate([]).to_pylist()
            tracker.sync_trials(iter_rows(run.table("trials")), {
                study_key(s["prompt_id"], s["method"]): budget(arm_by_name(s["method"]), cfg.search.trials)
                for s in studies}, sync_workers(session.tracking_uri, cfg.tracking.sync_workers))
        if run.table("grades").exists():
            best = {(b["prompt_id"], b["method"]): b for b in read_rows(run.table("best"))}
            for row in read_rows(run.table("grades")):
                if row["method"] != "baseline":
                    tracker.log_final(study_key(row["prompt_id"], row["method"]), final_metrics(row),
                                      trial_params(best[(row["prompt_id"], row["method"])]))
        if run.report.exists():
            from analysis.report import summary_metrics

            tracker.log_summary(summary_metrics(run), [run.report, run.report_html, run.plots, run.config,
                                                       run.dataset])
        write_text_atomic(run.mlflow_synced, json.dumps({**synced, session.tracking_uri: seen}, indent=1))
    except Exception as err:  # noqa: BLE001 - tracking must never cost the computed results
        log.warning("MLflow at %s was not brought up to date (%s: %s). The Parquet files in %s are complete; "
                    "rerun the same command when the tracking server is back to sync it.",
                    session.tracking_uri, type(err).__name__, str(err).splitlines()[0][:300], run.root)


def sync_receipt(run: RunDir, params: dict[str, object]) -> dict[str, object]:
    """What a sync reads from the run directory: each synced file's size and modification time (a stage that
    runs again rewrites its files), and the config keys MLflow holds as the parent's parameters."""
    paths = [run.table("trials"), run.table("best"), run.table("grades"), run.report, run.report_html,
             run.dataset, *sorted(run.plots.rglob("*"))]
    files = {str(p.relative_to(run.root)): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths if p.is_file()}
    return {"files": files, "params": sorted(params)}


def parent_finished(session: Session) -> bool:
    """Whether the parent run saved for this store is there and FINISHED (one call; False when it cannot say, so
    a store that was wiped or is away gets the full sync and its warning)."""
    parent = saved_parents(session.run.mlflow_ids).get(session.tracking_uri)
    try:
        info = MlflowClient(session.tracking_uri).get_run(parent).info if parent else None
        return info is not None and info.status == "FINISHED" and info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - any failure means: do the full sync
        return False


def final_metrics(grade: dict) -> dict[str, float]:
    return {"final.composite": grade["composite"], "final.judge_score": grade["judge_score"],
            "final.overlap": grade["overlap"], "final.correct": float(grade["grade"] == "CORRECT"),
            "final.accurate": float(grade["accurate"]), "final.degenerate": float(grade["degenerate"])}


def next_steps(run: RunDir, tracking_uri: str) -> str:
    """What a person does after a run: the headline, the report, and the MLflow UI for this store."""
    from analysis.report import headline

    ui = (f"mlflow ui --backend-store-uri {tracking_uri}" if tracking_uri.startswith("sqlite:")
          else f"open {tracking_uri}")
    return "\n".join(["", *headline(run), f"Report: {run.report_html}", f"MLflow: {ui}  (then http://127.0.0.1:5000)"])
