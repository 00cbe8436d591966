"""Each stage as a function of the run directory: read inputs there, write outputs there atomically, and
skip work already done. `run` chains them. Model work goes to Ray replica actors created here, by the driver."""

from __future__ import annotations

import logging
import os
import random
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from safetensors.torch import save_file

from . import prompts
from .config import SweepConfig, fingerprint, flatten
from .data import load_questions, locate_csv
from .evaluate import Answer, answers, grade_answers
from .http_judge import http_judge
from .judges import RUBRIC_PROMPT, Item, Judge, exact_judge, load_template, model_judge
from .models import locate, model_config
from .messages import SteerSettings
from .replica import Replica
from .rundir import SCHEMAS, RunDir, read_rows, write_table
from .tracking import LiveTrialLogger, Tracker, default_uri
from .tuning import StudySettings, checkpoint_rows, run_study, study_key, trial_params
from .weights import layer_weights, segment_bounds

log = logging.getLogger(__name__)
STAGES = ("select", "enrich", "vectors", "tune", "evaluate", "transfer", "report")
BATCH = 8  # prompts per unsteered generation call
NAMESPACE = "fusion-steering"  # one sweep per Ray cluster at a time (Tune supports one Tuner per cluster)


class SweepError(RuntimeError):
    """A stage cannot go on; the message says why. Files already written are left intact."""


class Session:
    """The driver's resources for one command: Ray, the model replicas, the judge and the MLflow tracker."""

    def __init__(self, cfg: SweepConfig, run: RunDir) -> None:
        self.cfg, self.run = cfg, run
        self._replicas: list | None = None
        self.replicas_on_gpu = False
        self._judge_replicas: list | None = None
        self._tracker: Tracker | None = None

    @property
    def conf_dir(self) -> Path:
        return Path(self.cfg.conf_dir)

    @property
    def tracking_uri(self) -> str:
        return self.cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(self.run.mlflow_db)

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(*self.tracker_args())
            self._tracker.log_config(flatten(self.cfg))
        return self._tracker

    def tracker_args(self) -> tuple[str, str, str, str, Path]:
        return (self.tracking_uri, self.cfg.tracking.experiment, fingerprint(self.cfg), self.run.root.name,
                self.run.root / "mlartifacts")

    def _start_replicas(self, role: str, model_cfg, scorer=None) -> list:  # noqa: ANN001 - ModelConfig, (ModelConfig, Location)
        """Named actors `{role}-{i}` in the `fusion-steering` namespace, so operators (and fault tests) can
        find them; a restarted actor reloads its weights from the local cache."""
        if not ray.is_initialized():
            # Without an address, always a fresh local cluster on loopback: Ray would otherwise join whatever
            # cluster /tmp/ray last recorded, and hang if that one has died. A given address joins that cluster.
            address = self.cfg.cluster.address
            local = {} if address else {"_node_ip_address": "127.0.0.1"}
            ray.init(address=address or "local", namespace=NAMESPACE, include_dashboard=False,
                     log_to_driver=False, configure_logging=False, **local)
        cluster = self.cfg.cluster
        gpus = cluster.replica_gpus or replica_gpus(model_cfg.device, ray.cluster_resources().get("GPU", 0.0))
        if role == "replica":
            self.replicas_on_gpu = gpus > 0
        bundle = replica_bundle(cluster.replica_cpus, gpus)
        # The replicas' resources are reserved for the whole command: a replica that restarts gets its bundle
        # back instead of competing with Tune trials for the CPUs it freed (a deadlock: the trials wait for it).
        group = placement_group([bundle] * cluster.num_replicas, strategy="SPREAD")
        try:
            ray.get(group.ready(), timeout=cluster.call_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise SweepError(f"the cluster has no room for the {role} replicas ({cluster.num_replicas} x {bundle}) "
                             f"after {cluster.call_timeout_s:.0f} s (free now: {ray.available_resources()})") from None
        actor = ray.remote(num_cpus=bundle.get("CPU", 0), num_gpus=gpus, max_restarts=3, max_task_retries=3)(Replica)
        location = locate(model_cfg, self.conf_dir)
        replicas = []
        for i in range(cluster.num_replicas):
            bundle_i = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)
            replicas.append(actor.options(name=f"{role}-{i}", scheduling_strategy=bundle_i)
                            .remote(model_cfg, location, cluster.torch_threads, scorer))
        ray.get([r.num_layers.remote() for r in replicas])  # surface load errors here, not mid-sweep
        return replicas

    @property
    def replicas(self) -> list:
        if self._replicas is None:
            scorer = None
            if self.cfg.scoring.perplexity_model != "self":
                scorer_cfg = model_config(self.conf_dir, self.cfg.scoring.perplexity_model)
                scorer = (scorer_cfg, locate(scorer_cfg, self.conf_dir))
            self._replicas = self._start_replicas("replica", self.cfg.model, scorer)
        return self._replicas

    def judge(self) -> Judge:
        judge_cfg = self.cfg.judge
        if judge_cfg.kind == "exact":
            return exact_judge()
        template = load_template(Path(judge_cfg.template_path)) if judge_cfg.template_path else RUBRIC_PROMPT
        if judge_cfg.kind == "http":
            return http_judge(judge_cfg.base_url, judge_cfg.model, judge_cfg.api_key_env,
                              self.run.root / "judge_cache.sqlite", template, judge_cfg.max_new_tokens,
                              judge_cfg.concurrency, judge_cfg.timeout_s, judge_cfg.retries)
        model_cfg = model_config(self.conf_dir, judge_cfg.model, self.cfg.model.quantization)
        if self._judge_replicas is None:
            same = model_cfg.name == self.cfg.model.name
            self._judge_replicas = self.replicas if same else self._start_replicas("judge", model_cfg)
        replicas = self._judge_replicas
        return model_judge(f"local:{judge_cfg.model}",
                           lambda texts, n: fan_out(replicas, "generate", texts, n, None),
                           template, judge_cfg.max_new_tokens)

    def close(self, ok: bool) -> None:
        try:
            if self._tracker is not None:
                self._tracker.close(ok)
        except Exception as err:  # noqa: BLE001 - an unreachable tracker must not fail a finished command
            log.warning("could not mark the MLflow run %s: %s", "finished" if ok else "failed", err)
        finally:
            if ray.is_initialized():
                ray.shutdown()


def replica_bundle(cpus: float, gpus: float) -> dict[str, float]:
    """A GPU replica reserves its GPU only: Tune trials need CPU only and may fill a GPU node's CPUs, and
    must never keep a replica that restarts after losing its node off a free GPU."""
    return {"GPU": gpus} if gpus else {"CPU": cpus}


def replica_gpus(device: str, cluster_gpus: float) -> float:
    """One GPU per replica when the model runs on CUDA. The driver may sit on a CPU-only head node, so
    "auto" asks the cluster, not the driver's own machine."""
    if device == "cuda" or (device == "auto" and cluster_gpus > 0):
        return 1.0
    return 0.0


def fan_out(replicas: list, method: str, items: Sequence, *args: Any) -> list:
    """Split `items` into batches over the replicas and return the results in order."""
    batches = [list(items[i:i + BATCH]) for i in range(0, len(items), BATCH)]
    futures = [getattr(replicas[i % len(replicas)], method).remote(batch, *args) for i, batch in enumerate(batches)]
    return [result for batch in ray.get(futures) for result in batch]


def _generate(session: Session, texts: list[str]) -> list[str]:
    cfg = session.cfg
    return fan_out(session.replicas, "generate", texts, cfg.generation.max_new_tokens, cfg.prompt.chat_template)


def select(session: Session) -> None:
    """First N SimpleQA rows -> baseline answers -> SimpleQA grades -> those to steer (prompts.parquet).

    The paper steers the INCORRECT ones; data.keep_grades can add NOT_ATTEMPTED.
    """
    cfg, run = session.cfg, session.run
    questions = load_questions(locate_csv(cfg.data), cfg.data.rows)
    check_context(session, [prompts.steered(q.question) for q in questions])
    texts = _generate(session, [prompts.baseline(q.question) for q in questions])
    grades = session.judge().grade([Item(q.question, q.answer, t) for q, t in zip(questions, texts)])
    rows = [{"prompt_id": q.prompt_id, "question": q.question, "answer": q.answer, "topic": q.topic,
             "answer_type": q.answer_type, "baseline_text": t, "baseline_grade": g}
            for q, t, g in zip(questions, texts, grades) if g in cfg.data.keep_grades]
    counts = {g: grades.count(g) for g in sorted(set(grades))}
    if not rows:
        raise SweepError(f"no baseline answer graded {' or '.join(cfg.data.keep_grades)} among the first "
                         f"{len(questions)} rows ({counts}): nothing to steer; raise data.rows")
    write_table(run.table("prompts"), rows, SCHEMAS["prompts"])
    log.info("select: kept %d of %d rows; baseline grades %s", len(rows), len(questions), counts)


def check_context(session: Session, texts: list[str]) -> None:
    """Refuse, before any generation, a prompt that with its new tokens would not fit the model's context."""
    from transformers import AutoConfig, AutoTokenizer

    cfg = session.cfg
    location = locate(cfg.model, session.conf_dir)
    tokenizer = AutoTokenizer.from_pretrained(location.tokenizer)
    if cfg.model.source == "random":
        context = cfg.model.architecture.get("max_position_embeddings", 2048)
    else:
        context = getattr(AutoConfig.from_pretrained(location.weights), "max_position_embeddings", None)
    if not context:
        return
    for text in texts:
        length = len(tokenizer(text).input_ids) + cfg.generation.max_new_tokens + 32  # + chat template
        if length > context:
            raise SweepError(f"question too long for {cfg.model.name}: {length} tokens with the prompt template "
                             f"and {cfg.generation.max_new_tokens} new tokens, context {context}: {text[:80]!r}")


def enrich(session: Session) -> None:
    """Reference completions: the model continues 'Question/Answer: gold'; its addition is the explanation."""
    run = session.run
    selected = read_rows(run.table("prompts"))
    continuations = _generate(session, [prompts.enrichment(r["question"], r["answer"]) for r in selected])
    rows = []
    for r, continuation in zip(selected, continuations):
        explanation, source = prompts.split_explanation(continuation)
        text, _ = prompts.reference(r["question"], r["answer"], explanation)
        rows.append({"prompt_id": r["prompt_id"], "question": r["question"], "answer": r["answer"],
                     "explanation": explanation, "explanation_source": source, "reference_text": text})
    write_table(run.table("references"), rows, SCHEMAS["references"])


def vectors(session: Session) -> None:
    """One float32 [layers, hidden] tensor per prompt, named by its prompt id, from one forward pass each."""
    run = session.run
    refs = read_rows(run.table("references"))
    items = [prompts.reference(r["question"], r["answer"], r["explanation"]) for r in refs]
    means = fan_out(session.replicas, "reference_vectors", items)
    tmp = run.vectors.with_name(f".{run.vectors.name}.tmp")
    save_file({str(r["prompt_id"]): m.contiguous() for r, m in zip(refs, means)}, str(tmp))
    os.replace(tmp, run.vectors)


def tune_stage(session: Session) -> None:
    """Ray Tune fans out one trial per (prompt, method); each runs its own Optuna study against the replicas."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    cfg, run = session.cfg, session.run
    selected = read_rows(run.table("prompts"))
    check_vectors(run, [r["prompt_id"] for r in selected])
    replicas = session.replicas
    num_layers, segments = layer_layout(session)
    settings = StudySettings(
        trials=cfg.search.trials, seed=cfg.seed, alpha=(cfg.search.alpha_low, cfg.search.alpha_high),
        gamma=(cfg.search.gamma_low, cfg.search.gamma_high), num_layers=num_layers, segments=segments,
        steer=steer_settings(cfg, run, run.vectors.name),
        call_timeout_s=cfg.cluster.call_timeout_s, in_flight=cfg.search.in_flight)
    trainable = tune.with_resources(tune.with_parameters(run_study, settings=settings, replicas=replicas),
                                    {"cpu": cfg.cluster.trial_cpus})
    experiment = run.tune_storage / "studies"
    if tune.Tuner.can_restore(str(experiment)):
        log.info("tune: resuming %s", experiment)
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    else:
        keys = [study_key(r["prompt_id"], m) for r in selected for m in cfg.search.methods]
        studies_at_once = concurrent_studies(cfg, session.replicas_on_gpu)
        tuner = tune.Tuner(
            trainable, param_space={"study": tune.grid_search(keys)},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=studies_at_once),
            run_config=tune.RunConfig(
                name=experiment.name, storage_path=str(experiment.parent.resolve()), verbose=0,
                # Every checkpoint is kept (~24 KB each). With num_to_keep, Tune deletes a study's older
                # checkpoint before its experiment snapshot names the newer one, and a kill in between left a
                # snapshot pointing at a deleted checkpoint, which no rerun could restore (seen in CI).
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
                failure_config=tune.FailureConfig(max_failures=2),
                callbacks=[JsonLoggerCallback(), LiveTrialLogger(*session.tracker_args())]))
    grid = tuner.fit()
    failed = [r.config.get("study", r.path) if r.config else r.path for r in grid if r.error]
    if failed:
        raise SweepError(f"{len(failed)} studies failed (see {experiment}): {', '.join(map(str, failed[:10]))}")
    rows = sorted((row for result in grid for row in checkpoint_rows(result.checkpoint)),
                  key=lambda r: (r["prompt_id"], r["method"], r["trial"]))
    write_table(run.table("trials"), rows, SCHEMAS["trials"])
    write_table(run.table("best"), best_trials(rows), SCHEMAS["best"])


def concurrent_studies(cfg: SweepConfig, on_gpu: bool) -> int:
    """Studies running at once: enough for full batches at every replica, and no more, since each is a
    trial worker process to start. A GPU replica gets two batches' worth, so the next batch is queued while
    one runs; a CPU replica gets one, as its batches take seconds and the workers would share its cores."""
    batches = 2 if on_gpu else 1
    return cfg.cluster.num_replicas * batches * -(-cfg.cluster.max_batch // cfg.search.in_flight)


def steer_settings(cfg: SweepConfig, run: RunDir, vectors_file: str) -> SteerSettings:
    return SteerSettings(
        run_root=str(run.root.resolve()), vectors_file=vectors_file, max_new_tokens=cfg.generation.max_new_tokens,
        chat_template=cfg.prompt.chat_template, exclude_sink=cfg.steering.mean == "exclude_sink",
        cached=cfg.steering.cache, include_prompt=cfg.scoring.include_prompt,
        perplexity_window=cfg.scoring.perplexity_window, max_batch=cfg.cluster.max_batch,
        batch_wait_s=cfg.cluster.batch_wait_s)


def layer_layout(session: Session) -> tuple[int, list[tuple[int, int]]]:
    """The steered model's depth and its segments."""
    num_layers = ray.get(session.replicas[0].num_layers.remote())
    return num_layers, segment_bounds(num_layers, list(session.cfg.steering.segment_starts))


def check_vectors(run: RunDir, prompt_ids: list[int]) -> None:
    """vectors.safetensors must load and hold one [layers, hidden] tensor per prompt, before any trial runs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        vectors = load_file(str(run.vectors))
    except (SafetensorError, OSError, ValueError) as err:
        raise SweepError(f"{run.vectors} is unreadable ({err}); delete it and rerun the vectors stage") from err
    missing = [p for p in prompt_ids if str(p) not in vectors]
    shapes = {tuple(v.shape) for v in vectors.values()}
    if missing or len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise SweepError(f"{run.vectors} does not match prompts.parquet (missing prompts {missing[:10]}, shapes "
                         f"{sorted(shapes)[:3]}); delete it and rerun the vectors stage")


def best_trials(rows: Sequence[dict]) -> list[dict]:
    """The highest-objective trial per (prompt, method); the earliest wins a tie."""
    best: dict[tuple[int, str], dict] = {}
    for row in rows:
        key = (row["prompt_id"], row["method"])
        if key not in best or row["objective"] > best[key]["objective"]:
            best[key] = row
    return [best[k] for k in sorted(best)]


def evaluate(session: Session) -> None:
    """Grade the baseline and each method's best answer."""
    cfg, run = session.cfg, session.run
    rows = grade_answers(answers(read_rows(run.table("prompts")), read_rows(run.table("best"))),
                         session.judge(), cfg.scoring.include_prompt)
    write_table(run.table("grades"), rows, SCHEMAS["grades"])


def split_prompts(prompt_ids: list[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(tuning split, held-out split), a seeded shuffle; each split empty only when there is one prompt."""
    shuffled = sorted(prompt_ids)
    random.Random(seed).shuffle(shuffled)
    held = min(max(1, round(holdout * len(shuffled))), len(shuffled) - 1) if len(shuffled) > 1 else 0
    return sorted(shuffled[held:]), sorted(shuffled[:held])


def median_weights(best: Sequence[dict]) -> dict[str, float]:
    """Per-parameter medians of the best trials' weights."""
    names = {k for row in best for k in trial_params(row)}
    return {k: statistics.median(row[k] for row in best) for k in sorted(names)}


def transfer(session: Session) -> None:
    """Oracle accounting. The tuned results pick each prompt's best trial against its own gold answer; here
    the weights of the tuning split (per-parameter medians) are applied unchanged to the held-out prompts,
    once with their gold-answer reference vectors and once with vectors of the question alone (no gold)."""
    cfg, run = session.cfg, session.run
    selected = {r["prompt_id"]: r for r in read_rows(run.table("prompts"))}
    best = read_rows(run.table("best"))
    tuned, held = split_prompts(list(selected), cfg.transfer.holdout, cfg.seed)
    rows: list[dict] = []
    if held:
        question_vectors = fan_out(session.replicas, "reference_vectors",
                                   [(prompts.steered(selected[p]["question"]), 0) for p in held])
        question_file = run.root / "vectors_question.safetensors"
        save_file({str(p): v.contiguous() for p, v in zip(held, question_vectors)}, str(question_file))
        num_layers, segments = layer_layout(session)
        judge = session.judge()
        for setting, vectors_file in (("transfer", run.vectors.name), ("question-only", question_file.name)):
            settings = steer_settings(cfg, run, vectors_file)
            for method in cfg.search.methods:
                weights = median_weights([b for b in best if b["method"] == method and b["prompt_id"] in tuned])
                alpha, gamma = layer_weights(weights, num_layers, segments)
                outputs = ray.get([session.replicas[p % len(session.replicas)].steer.remote(settings, p, alpha, gamma)
                                   for p in held])
                graded = grade_answers([Answer(p, method, selected[p]["question"], selected[p]["answer"], o.text)
                                        for p, o in zip(held, outputs)], judge, cfg.scoring.include_prompt)
                rows += [{**g, "setting": setting} for g in graded]
    write_table(run.table("transfer"), rows, SCHEMAS["transfer"])


def report(session: Session) -> None:
    """report.md and plots from the Parquet files."""
    from analysis.report import write_report

    write_report(session.run, session.cfg)


def sync_tracking(session: Session) -> None:
    """Bring MLflow up to date with the run directory: every trial as a step, each study's final scores,
    the summary and the report. Idempotent, so it runs after every command; Parquet is the source of truth,
    and an unreachable tracking server only costs a warning (the next command catches up)."""
    run, cfg = session.run, session.cfg
    if not any(p.exists() for p in (run.table("trials"), run.table("grades"), run.report)):
        return
    try:
        tracker = session.tracker
        if run.table("trials").exists():
            tracker.sync_trials(read_rows(run.table("trials")), cfg.search.trials)
        if run.table("grades").exists():
            best = {(b["prompt_id"], b["method"]): b for b in read_rows(run.table("best"))}
            for row in read_rows(run.table("grades")):
                if row["method"] != "baseline":
                    tracker.log_final(row["prompt_id"], row["method"], final_metrics(row),
                                      trial_params(best[(row["prompt_id"], row["method"])]))
        if run.report.exists():
            from analysis.report import summary_metrics

            tracker.log_summary(summary_metrics(run), [run.report, run.report_html, run.plots, run.config])
    except Exception as err:  # noqa: BLE001 - tracking must never cost the computed results
        log.warning("MLflow at %s was not brought up to date (%s: %s). The Parquet files in %s are complete; "
                    "rerun the same command when the tracking server is back to sync it.",
                    session.tracking_uri, type(err).__name__, str(err).splitlines()[0][:300], run.root)


def final_metrics(grade: dict) -> dict[str, float]:
    return {"final.composite": grade["composite"], "final.judge_score": grade["judge_score"],
            "final.overlap": grade["overlap"], "final.correct": float(grade["grade"] == "CORRECT"),
            "final.accurate": float(grade["accurate"])}


STAGE_FUNCTIONS: dict[str, Callable[[Session], None]] = {
    "select": select, "enrich": enrich, "vectors": vectors, "tune": tune_stage,
    "evaluate": evaluate, "transfer": transfer, "report": report,
}


def stage_done(run: RunDir, stage: str) -> bool:
    outputs = {"select": [run.table("prompts")], "enrich": [run.table("references")], "vectors": [run.vectors],
               "tune": [run.table("trials"), run.table("best")], "evaluate": [run.table("grades")],
               "transfer": [run.table("transfer")],
               "report": [run.report]}
    return all(p.exists() for p in outputs[stage])


def run_stages(cfg: SweepConfig, out: Path, stages: Sequence[str]) -> None:
    """Run the given stages in order, skipping those whose outputs exist; the config is saved first."""
    run = RunDir(out)
    run.prepare(cfg)
    session = Session(cfg, run)
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
            STAGE_FUNCTIONS[stage](session)
        ok = True
    finally:
        sync_tracking(session)
        session.close(ok)
