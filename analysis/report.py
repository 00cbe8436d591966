"""report.md for a run directory, from its Parquet files alone."""

from __future__ import annotations

import pandas as pd

from sweep.config import SweepConfig, to_yaml
from sweep.evaluate import simpleqa_metrics
from sweep.rundir import RunDir, write_text_atomic

from .plots import accuracy_bars, composite_boxes
from .tables import markdown_table, summarise

METHOD_ORDER = ("baseline", "full", "segmented")


def _by_method(run: RunDir) -> dict[str, pd.DataFrame]:
    grades = pd.read_parquet(run.table("grades"))
    return {m: grades[grades["method"] == m] for m in METHOD_ORDER if m in set(grades["method"])}


def write_report(run: RunDir, cfg: SweepConfig) -> None:
    """Write report.md and the plots from grades.parquet."""
    by_method = _by_method(run)
    summaries = {m: summarise(g["overlap"].tolist(), g["judge_score"].tolist()) for m, g in by_method.items()}
    simpleqa = {m: simpleqa_metrics(g["grade"].tolist()) for m, g in by_method.items()}
    run.plots.mkdir(exist_ok=True)
    accuracy_bars({"composite >= 0.6": {m: s.accuracy for m, s in summaries.items()},
                   "SimpleQA correct": {m: q.correct for m, q in simpleqa.items()},
                   "overlap >= 0.5": {m: s.overlap_ge_05 for m, s in summaries.items()}},
                  run.plots / "accuracy.png")
    composite_boxes({m: g["composite"].tolist() for m, g in by_method.items()}, run.plots / "composite.png")
    write_text_atomic(run.report, _markdown(cfg, run, summaries, simpleqa))


def summary_metrics(run: RunDir) -> dict[str, float]:
    """Per method: accuracy, composite and overlap means, SimpleQA correct and F1 (the sweep run's metrics)."""
    metrics = {}
    for method, g in _by_method(run).items():
        summary, simpleqa = summarise(g["overlap"].tolist(), g["judge_score"].tolist()), simpleqa_metrics(g["grade"].tolist())
        metrics[f"{method}.accuracy"] = summary.accuracy
        metrics[f"{method}.composite_mean"] = summary.composite_mean
        metrics[f"{method}.overlap_mean"] = summary.overlap_mean
        metrics[f"{method}.simpleqa_correct"] = simpleqa.correct
        metrics[f"{method}.simpleqa_f1"] = simpleqa.f1
    return metrics


def _markdown(cfg: SweepConfig, run: RunDir, summaries: dict, simpleqa: dict) -> str:
    lines = [
        f"# Fusion Steering run: {run.root.name}", "",
        f"Model `{cfg.model.name}` ({cfg.model.quantization}), {summaries['baseline'].n} prompts whose baseline "
        f"was graded {' or '.join(cfg.data.keep_grades)}, {cfg.search.trials} Optuna trials per prompt and method, seed {cfg.seed}, "
        f"judge `{cfg.judge.kind}`, steering mean `{cfg.steering.mean}`, chat template "
        f"{'on' if cfg.prompt.chat_template else 'off'}, overlap on "
        f"{'prompt + continuation (paper)' if cfg.scoring.include_prompt else 'the continuation'}.", "",
        "Oracle set-up, as in the paper: the reference vectors are built from the gold answer and each prompt's",
        "best trial is picked against it, so steered numbers are an upper bound, not a transferable result.", "",
        "## Paper-style table", "", markdown_table(summaries), "",
        "## SimpleQA grades", "",
        "| method | n | correct | incorrect | not attempted | accuracy given attempted | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, m in simpleqa.items():
        lines.append(f"| {method} | {m.n} | {m.correct:.1%} | {m.incorrect:.1%} | {m.not_attempted:.1%} | "
                     f"{m.accuracy_given_attempted:.1%} | {m.f1:.3f} |")
    lines += ["", "![accuracy](plots/accuracy.png)", "", "![composite](plots/composite.png)", "",
              "## Configuration", "", "```yaml", to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)

