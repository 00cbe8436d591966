"""report.md and a self-contained report.html for a run directory, from its Parquet files alone."""

from __future__ import annotations

import base64
import re

import markdown
import pandas as pd

from sweep.config import SweepConfig, to_yaml
from sweep.evaluate import simpleqa_metrics
from sweep.rundir import RunDir, write_text_atomic

from . import plots
from .stats import Interval, mcnemar, method_intervals, paired_bootstrap
from .tables import markdown_table, summarise

METHOD_ORDER = ("baseline", "full", "segmented")
INTERVAL_ROWS = {  # key of method_intervals -> (label, shown as a percentage)
    "accuracy": ("composite >= 0.6", True), "simpleqa_correct": ("SimpleQA CORRECT", True),
    "overlap_ge_05": ("overlap >= 0.5", True), "judge_ge_4": ("judge score >= 4", True),
    "composite_mean": ("composite mean", False), "overlap_mean": ("overlap mean", False),
}
SAMPLES = 5


def _by_method(run: RunDir) -> dict[str, pd.DataFrame]:
    grades = pd.read_parquet(run.table("grades")).sort_values("prompt_id")
    return {m: grades[grades["method"] == m] for m in METHOD_ORDER if m in set(grades["method"])}


def _intervals(by_method: dict[str, pd.DataFrame], seed: int) -> dict[str, dict[str, Interval]]:
    return {m: method_intervals(g["overlap"].tolist(), g["judge_score"].tolist(), g["grade"].tolist(), seed)
            for m, g in by_method.items()}


def write_report(run: RunDir, cfg: SweepConfig) -> None:
    """Write report.md, report.html and the plots."""
    by_method = _by_method(run)
    intervals = _intervals(by_method, cfg.seed)
    trials = pd.read_parquet(run.table("trials"))
    best = pd.read_parquet(run.table("best"))
    run.plots.mkdir(exist_ok=True)
    figures = {
        "accuracy": plots.accuracy_bars({INTERVAL_ROWS[k][0]: {m: intervals[m][k] for m in by_method}
                                         for k in ("accuracy", "simpleqa_correct", "overlap_ge_05")},
                                        run.plots / "accuracy.png"),
        "composite": plots.composite_boxes({m: g["composite"].tolist() for m, g in by_method.items()},
                                           run.plots / "composite.png"),
        "judge scores": plots.judge_scores({m: g["judge_score"].tolist() for m, g in by_method.items()},
                                           run.plots / "judge_scores.png"),
        "best weights": plots.best_weights(best, run.plots / "best_weights.png"),
        "objective by trial": plots.objective_by_trial(trials, run.plots / "objective_by_trial.png"),
    }
    text = _markdown(cfg, run, by_method, intervals, figures)
    write_text_atomic(run.report, text)
    write_text_atomic(run.report_html, _html(text, run))


def _markdown(cfg: SweepConfig, run: RunDir, by_method: dict[str, pd.DataFrame],
              intervals: dict[str, dict[str, Interval]], figures: dict) -> str:
    summaries = {m: summarise(g["overlap"].tolist(), g["judge_score"].tolist()) for m, g in by_method.items()}
    n = len(by_method["baseline"])
    lines = [
        f"# Fusion Steering run: {run.root.name}", "",
        f"Model `{cfg.model.name}` ({cfg.model.quantization}), {n} prompts whose baseline was graded "
        f"{' or '.join(cfg.data.keep_grades)}, {cfg.search.trials} Optuna trials per prompt and method, seed "
        f"{cfg.seed}, judge `{cfg.judge.kind}`, steering mean `{cfg.steering.mean}`, "
        f"{'cached' if cfg.steering.cache else 'faithful'} mode, chat template "
        f"{'on' if cfg.prompt.chat_template else 'off'}, overlap on "
        f"{'prompt + continuation (paper)' if cfg.scoring.include_prompt else 'the continuation'}.", "",
        "**Oracle set-up, as in the paper:** the reference vectors are built from the gold answer and each "
        "prompt's best trial is picked against it, so the steered columns are an upper bound for the method, "
        "not a result that transfers to prompts without their answer.", "",
        "## Paper-style table", "", markdown_table(summaries),
        "## With 95% bootstrap intervals", "",
        f"Percentile bootstrap over prompts, 2,000 resamples, seed {cfg.seed}.", "",
        "| metric | " + " | ".join(by_method) + " |", "|---" * (len(by_method) + 1) + "|",
    ]
    for key, (label, percent) in INTERVAL_ROWS.items():
        lines.append(f"| {label} | " + " | ".join(intervals[m][key].fmt(percent) for m in by_method) + " |")
    lines += ["", "## Paired comparisons (same prompts)", "",
              "McNemar's exact test on accuracy and SimpleQA CORRECT; paired bootstrap on the composite.", "",
              "| comparison | accuracy: gained / lost, p | CORRECT: gained / lost, p | composite change [95% CI], p |",
              "|---|---|---|---|"]
    for a, b in (("baseline", "full"), ("baseline", "segmented"), ("full", "segmented")):
        if a in by_method and b in by_method:
            lines.append(_paired_row(by_method[a], by_method[b], a, b, cfg.seed))
    lines += ["", "Overlap both ways (the composite uses "
              f"{'prompt + continuation' if cfg.scoring.include_prompt else 'the continuation'}):", "",
              "| overlap | " + " | ".join(by_method) + " |", "|---" * (len(by_method) + 1) + "|"]
    for column, label in (("overlap_continuation", "continuation"), ("overlap_with_prompt", "prompt + continuation (paper)")):
        lines.append(f"| mean, {label} | " + " | ".join(f"{g[column].mean():.2f}" for g in by_method.values()) + " |")
        lines.append(f"| >= 0.5, {label} | " + " | ".join(f"{(g[column] >= 0.5).mean():.1%}" for g in by_method.values()) + " |")
    lines += ["", _grader_agreement(cfg, by_method)]
    lines += ["", "## SimpleQA grades", "",
              "| method | n | correct | incorrect | not attempted | accuracy given attempted | F1 |",
              "|---|---|---|---|---|---|---|"]
    for method, g in by_method.items():
        m = simpleqa_metrics(g["grade"].tolist())
        lines.append(f"| {method} | {m.n} | {m.correct:.1%} | {m.incorrect:.1%} | {m.not_attempted:.1%} | "
                     f"{m.accuracy_given_attempted:.1%} | {m.f1:.3f} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{name}](plots/{path.name})\n" for name, path in figures.items()]
    lines += ["## Oracle vs transfer (held-out prompts)", "", _transfer_section(run, by_method), "",
              "## Sample outputs", "", _samples(run, by_method), "",
              "## Configuration", "", "```yaml", to_yaml(cfg).strip(), "```", ""]
    return "\n".join(lines)


def _transfer_section(run: RunDir, by_method: dict[str, pd.DataFrame]) -> str:
    """Per method on the held-out prompts: the oracle (per-prompt tuned against the gold answer) beside
    weights transferred from the other prompts, with gold-answer vectors and with question-only vectors."""
    transfer = pd.read_parquet(run.table("transfer"))
    if transfer.empty:
        return "Too few prompts to hold any out."
    held = sorted(transfer["prompt_id"].unique())
    settings = {"baseline (unsteered)": by_method["baseline"]}
    for method in (m for m in METHOD_ORDER[1:] if m in by_method):
        settings[f"{method}: oracle (tuned per prompt on its gold answer)"] = by_method[method]
        for setting, label in (("transfer", "transferred weights, gold-answer vectors"),
                               ("question-only", "transferred weights, question-only vectors (no gold)")):
            settings[f"{method}: {label}"] = transfer[(transfer["method"] == method) & (transfer["setting"] == setting)]
    lines = [f"{len(held)} held-out prompts; the transferred weights are the per-parameter medians of the other "
             "prompts' best trials.", "", "| setting | composite >= 0.6 | SimpleQA CORRECT | composite mean | overlap mean |",
             "|---|---|---|---|---|"]
    for label, frame in settings.items():
        g = frame[frame["prompt_id"].isin(held)]
        lines.append(f"| {label} | {g['accurate'].mean():.1%} | {(g['grade'] == 'CORRECT').mean():.1%} | "
                     f"{g['composite'].mean():.2f} | {g['overlap'].mean():.2f} |")
    return "\n".join(lines)


def _grader_agreement(cfg: SweepConfig, by_method: dict[str, pd.DataFrame]) -> str:
    """How often the deterministic grader agrees with the configured judge, and where they differ."""
    if cfg.judge.kind == "exact":
        return "The judge is the deterministic grader (strict rule-based SimpleQA grade): no second grader to compare."
    graded = pd.concat(by_method.values())
    agree = (graded["grade"] == graded["exact_grade"]).mean()
    table = pd.crosstab(graded["grade"], graded["exact_grade"])
    lines = [f"Deterministic grader vs the `{cfg.judge.kind}` judge: same grade for {agree:.1%} of "
             f"{len(graded)} answers. Rows: judge; columns: deterministic.", "",
             "| judge \\ deterministic | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {grade} | " + " | ".join(str(v) for v in row) + " |" for grade, row in table.iterrows()]
    return "\n".join(lines)


def _paired_row(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str, seed: int) -> str:
    a, b = a.set_index("prompt_id"), b.set_index("prompt_id").loc[a["prompt_id"]]
    accurate = mcnemar(a["accurate"].tolist(), b["accurate"].tolist())
    correct = mcnemar((a["grade"] == "CORRECT").tolist(), (b["grade"] == "CORRECT").tolist())
    composite = paired_bootstrap(a["composite"].tolist(), b["composite"].tolist(), seed=seed)
    return (f"| {name_a} → {name_b} | {accurate.b01} / {accurate.b10}, p={accurate.p_value:.3g} | "
            f"{correct.b01} / {correct.b10}, p={correct.p_value:.3g} | "
            f"{composite.difference:+.3f} [{composite.interval.low:+.3f}, {composite.interval.high:+.3f}], "
            f"p={composite.p_value:.3g} |")


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return (text[:limit] + "…" if len(text) > limit else text).replace("|", "\\|")


def _samples(run: RunDir, by_method: dict[str, pd.DataFrame]) -> str:
    prompts = pd.read_parquet(run.table("prompts")).set_index("prompt_id")
    ids = list(prompts.index[:SAMPLES])
    lines = ["| question | gold | " + " | ".join(by_method) + " |", "|---" * (len(by_method) + 2) + "|"]
    for pid in ids:
        texts = [_cell(g.set_index("prompt_id").loc[pid, "text"]) for g in by_method.values()]
        lines.append(f"| {_cell(prompts.loc[pid, 'question'], 100)} | {_cell(prompts.loc[pid, 'answer'])} | "
                     + " | ".join(texts) + " |")
    return "\n".join(lines)


def _html(text: str, run: RunDir) -> str:
    """The Markdown report as one HTML file, figures inlined, so it can be mailed or logged as one artifact."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        data = base64.b64encode((run.root / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(plots/[^"]+\.png)"', inline, body)
    style = ("body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:1rem;overflow:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{run.root.name}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>")


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
