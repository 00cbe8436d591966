"""report.md and a self-contained report.html for a run directory, from its Parquet files alone.

The headline compares each steered method with its controls on the same prompts (paired), the baseline beside
them; every share has a Wilson interval, every mean a bootstrap interval, and the p-values of all paired tests
in the report are Holm-adjusted together. Arms picked best-of-k against the gold answer say "oracle".
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import markdown
import pandas as pd
from omegaconf import OmegaConf

from sweep.arms import BASELINE, PROMPT_ONLY, arm_by_name, label, metric_prefix
from sweep.config import SweepConfig
from sweep.evaluate import simpleqa_metrics
from sweep.rundir import RunDir, write_text_atomic
from sweep.scoring import DEGENERATE_REPETITION, REPETITION_WEIGHT

from . import plots
from .stats import (Comparison, Interval, bootstrap_interval, holm, method_intervals, paired_bootstrap,
                    paired_comparison, wilson_interval)
from .tables import markdown_table, summarise

INTERVAL_ROWS = {  # key of method_intervals -> (label, shown as a percentage)
    "simpleqa_correct": ("SimpleQA CORRECT", True), "accuracy_fluent": ("accurate (composite >= 0.6, not degenerate)", True),
    "accuracy": ("composite >= 0.6 (paper's rule)", True), "degenerate": ("degenerate outputs", True),
    "overlap_ge_05": ("overlap >= 0.5", True), "judge_ge_4": ("judge score >= 4", True),
    "composite_mean": ("composite mean", False), "overlap_mean": ("overlap mean", False),
}
SAMPLES = 20  # prompts shown in "Sample outputs"


def arm_order(names: set[str]) -> list[str]:
    """baseline, prompt_only, then each method followed by its controls."""
    methods = sorted({arm_by_name(n).method for n in names if n not in (BASELINE, PROMPT_ONLY)} - {None},
                     key=["full", "segmented"].index)
    order = [BASELINE, PROMPT_ONLY] + [n for m in methods for n in (m, f"{m}-random", f"{m}-mismatched")]
    return [n for n in order if n in names]


def by_arm(run: RunDir) -> dict[str, pd.DataFrame]:
    grades = pd.read_parquet(run.table("grades")).sort_values("prompt_id")
    return {a: grades[grades["method"] == a].reset_index(drop=True) for a in arm_order(set(grades["method"]))}


def _intervals(arms: dict[str, pd.DataFrame], seed: int) -> dict[str, dict[str, Interval]]:
    return {a: method_intervals(g["overlap"].tolist(), g["judge_score"].tolist(), g["grade"].tolist(), seed,
                                degenerate=g["degenerate"].tolist()) for a, g in arms.items()}


@dataclass(frozen=True)
class PairedRow:
    before: str
    after: str
    correct: Comparison  # SimpleQA CORRECT (yes/no) and composite (score)
    accurate: Comparison  # accurate, not degenerate (yes/no); its score part repeats the composite


def comparisons(arms: dict[str, pd.DataFrame], seed: int) -> list[PairedRow]:
    """The paired comparisons of a report: each method against its controls and the baseline, and the
    prompt change alone (baseline -> prompt_only)."""
    pairs = [(BASELINE, PROMPT_ONLY)]
    for method in (m for m in ("full", "segmented") if m in arms):
        pairs += [(PROMPT_ONLY, method), (f"{method}-random", method), (f"{method}-mismatched", method),
                  (BASELINE, method)]
    rows = []
    for before, after in ((a, b) for a, b in pairs if a in arms and b in arms):
        a, b = arms[before], arms[after].set_index("prompt_id").loc[arms[before]["prompt_id"]]
        composite = (a["composite"].tolist(), b["composite"].tolist())
        rows.append(PairedRow(
            before, after,
            paired_comparison((a["grade"] == "CORRECT").tolist(), (b["grade"] == "CORRECT").tolist(), *composite, seed),
            paired_comparison(a["accurate"].tolist(), b["accurate"].tolist(), *composite, seed)))
    return rows


def _p(value: float) -> str:
    return f"{value:.3g}"


def _points(interval: Interval) -> str:
    return f"{100 * interval.estimate:+.1f} [{100 * interval.low:+.1f}, {100 * interval.high:+.1f}]"


def paired_table(rows: list[PairedRow]) -> str:
    p_values = [p for r in rows for p in (r.correct.proportion.p_value, r.accurate.proportion.p_value,
                                          r.correct.score.p_value)]
    adjusted = iter(holm(p_values))
    lines = ["| comparison (same prompts) | SimpleQA CORRECT: change, points [95% CI] | gained / lost | p (Holm) "
             "| accurate: change, points [95% CI] | p (Holm) | composite: change [95% CI] | d_z | p (Holm) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, acc, s = r.correct.proportion, r.accurate.proportion, r.correct.score
        lines.append(
            f"| {label(r.before)} → {label(r.after)} | {_points(c.interval)} | {c.b01} / {c.b10} | "
            f"{_p(c.p_value)} ({_p(next(adjusted))}) | {_points(acc.interval)} | {_p(acc.p_value)} ({_p(next(adjusted))}) | "
            f"{s.difference:+.3f} [{s.interval.low:+.3f}, {s.interval.high:+.3f}] | {s.d_z:+.2f} | "
            f"{_p(s.p_value)} ({_p(next(adjusted))}) |")
    return "\n".join(lines)


def write_report(run: RunDir, cfg: SweepConfig) -> None:
    """Write report.md, report.html and the plots."""
    arms = by_arm(run)
    intervals = _intervals(arms, cfg.seed)
    paired = comparisons(arms, cfg.seed)
    trials = pd.read_parquet(run.table("trials"))
    best = pd.read_parquet(run.table("best"))
    run.plots.mkdir(exist_ok=True)
    labels = {a: label(a) for a in arms}
    figures = [
        plots.share_bars({INTERVAL_ROWS[k][0]: {labels[a]: intervals[a][k] for a in arms}
                          for k in ("simpleqa_correct", "accuracy_fluent", "degenerate")}, run.plots / "shares.png"),
        plots.composite_boxes({labels[a]: g["composite"].tolist() for a, g in arms.items()}, run.plots / "composite.png"),
        plots.judge_scores({labels[a]: g["judge_score"].tolist() for a, g in arms.items()},
                           run.plots / "judge_scores.png", cfg.judge.kind),
        plots.best_weights(best, run.plots / "best_weights.png"),
        plots.objective_by_trial(trials[trials["method"] != PROMPT_ONLY], run.plots / "objective_by_trial.png",
                                 cfg.scoring.objective),
    ]
    text = _markdown(cfg, run, arms, intervals, paired, figures)
    write_text_atomic(run.report, text)
    write_text_atomic(run.report_html, _html(text, run))


def _markdown(cfg: SweepConfig, run: RunDir, arms: dict[str, pd.DataFrame], intervals: dict[str, dict[str, Interval]],
              paired: list[PairedRow], figures: list[plots.Figure]) -> str:
    n = len(arms[BASELINE])
    dataset = json.loads(run.dataset.read_text())
    lines = [
        f"# Fusion Steering run: {run.root.name}", "",
        f"Model `{cfg.model.name}` ({cfg.model.quantization}); {n} prompts whose baseline was graded "
        f"{' or '.join(cfg.data.keep_grades)} among {dataset['rows_read']} rows of `{dataset['file']}` "
        f"(sha256 `{dataset['sha256'][:16]}…`{', the copy bundled with the package' if dataset['bundled'] else ''}); "
        f"{cfg.search.trials} Optuna trials per prompt and tuned arm, seed {cfg.seed}; objective "
        f"`{cfg.scoring.objective}`; judge `{cfg.judge.kind}`; steering mean `{cfg.steering.mean}`, "
        f"{'cached' if cfg.steering.cache else 'faithful'} mode, chat template "
        f"{'on' if cfg.prompt.chat_template else 'off'}; overlap on "
        f"{'prompt + continuation (paper)' if cfg.scoring.include_prompt else 'the continuation'}.", "",
        "**Oracle selection, as in the paper:** every arm marked (oracle) keeps, per prompt, the best of "
        f"{cfg.search.trials} trials by an objective that scores overlap with the gold answer, and `full` / "
        "`segmented` also steer toward a vector built from it: these columns are upper bounds, not results that "
        "transfer to questions without their answer (see \"Oracle vs transfer\" below). The controls show what "
        "the prompt change (`prompt_only`) and best-of-k selection with a vector that carries no answer "
        "(`-random`, `-mismatched`: same weights, budget and objective) do by themselves.", "",
        "## Headline: each method against its controls", "", _arm_table(arms, intervals), "",
        "Paired on the same prompts: McNemar's exact test for shares, a paired bootstrap (2,000 resamples) for "
        "the composite; changes are `after - before`; effect sizes: the change in points with Newcombe's "
        f"interval, and Cohen's d_z. The {3 * len(paired)} p-values are Holm-adjusted together (in brackets).", "",
        paired_table(paired), "",
        "## Paper-style table", "",
        markdown_table({label(a): summarise(g["overlap"].tolist(), g["judge_score"].tolist()) for a, g in arms.items()}),
        "## Every metric with its 95% interval", "",
        "Shares: Wilson score intervals; means: percentile bootstrap over prompts, 2,000 resamples, seed "
        f"{cfg.seed}.", "",
        "| metric | " + " | ".join(label(a) for a in arms) + " |", "|---" * (len(arms) + 1) + "|",
    ]
    for key, (name, percent) in INTERVAL_ROWS.items():
        lines.append(f"| {name} | " + " | ".join(intervals[a][key].fmt(percent) for a in arms) + " |")
    lines += ["", "## Degenerate outputs", "", _degenerate_section(arms, cfg), "",
              "## Overlap both ways", "",
              f"The composite uses {'prompt + continuation' if cfg.scoring.include_prompt else 'the continuation'}.", "",
              "| overlap | " + " | ".join(label(a) for a in arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for column, name in (("overlap_continuation", "continuation"), ("overlap_with_prompt", "prompt + continuation (paper)")):
        lines.append(f"| mean, {name} | " + " | ".join(f"{g[column].mean():.2f}" for g in arms.values()) + " |")
        lines.append(f"| >= 0.5, {name} | " + " | ".join(f"{(g[column] >= 0.5).mean():.1%}" for g in arms.values()) + " |")
    lines += ["", "## SimpleQA grades", "", _judge_note(cfg), "", _grader_agreement(cfg, arms), "",
              "| arm | n | correct | incorrect | not attempted | accuracy given attempted | F1 |",
              "|---|---|---|---|---|---|---|"]
    for arm, g in arms.items():
        m = simpleqa_metrics(g["grade"].tolist())
        lines.append(f"| {label(arm)} | {m.n} | {m.correct:.1%} | {m.incorrect:.1%} | {m.not_attempted:.1%} | "
                     f"{m.accuracy_given_attempted:.1%} | {m.f1:.3f} |")
    lines += ["", "## Figures", ""]
    lines += [f"**{f.title}.** {f.caption}\n\n![{f.title}](plots/{f.path.name})\n" for f in figures]
    lines += ["## Oracle vs transfer (held-out prompts)", "", _transfer_section(run, arms), "",
              "## Sample outputs", "", _samples(run, arms), "",
              "## Configuration", "", "Machine-local paths are shown by file name only; `config.yaml` in the run "
              "directory holds them in full.", "", "```yaml", shareable_yaml(cfg), "```", ""]
    return "\n".join(lines)


def _arm_table(arms: dict[str, pd.DataFrame], intervals: dict[str, dict[str, Interval]]) -> str:
    keys = ("simpleqa_correct", "accuracy_fluent", "composite_mean", "degenerate")
    lines = ["| arm | " + " | ".join(INTERVAL_ROWS[k][0] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for arm in arms:
        lines.append(f"| {label(arm)} | " + " | ".join(intervals[arm][k].fmt(INTERVAL_ROWS[k][1]) for k in keys) + " |")
    return "\n".join(lines)


def _degenerate_section(arms: dict[str, pd.DataFrame], cfg: SweepConfig) -> str:
    objective = (f"The `fluent` objective subtracts {REPETITION_WEIGHT} x repetition from the paper's, so the search "
                 "itself steers away from loops." if cfg.scoring.objective == "fluent" else
                 "The `paper` objective rewards low perplexity, which loops have: `scoring.objective=fluent` "
                 "penalises repetition in the search itself.")
    lines = [f"An output with repetition >= {DEGENERATE_REPETITION} (the larger of its share of repeated 4-grams and "
             "of words repeating the phrase just before them) is degenerate and never counts as accurate. "
             f"{objective}", "",
             "| arm | degenerate | accurate, paper's rule | accurate, degenerate excluded | mean repetition | mean distinct-2 |",
             "|---|---|---|---|---|---|"]
    for arm, g in arms.items():
        lines.append(f"| {label(arm)} | {int(g['degenerate'].sum())} of {len(g)} | {int(g['accurate_paper'].sum())} | "
                     f"{int(g['accurate'].sum())} | {g['repetition'].mean():.2f} | {g['distinct_2'].mean():.2f} |")
    return "\n".join(lines)


def _judge_note(cfg: SweepConfig) -> str:
    if cfg.judge.kind == "exact":
        return ("Judge: the strict deterministic grader (`sweep/grader.py`, SimpleQA's rubric as rules). Its 1-5 score "
                "is a function of its grade, not of overlap, so the composite mixes two different signals.")
    return f"Judge: `{cfg.judge.kind}` (`{cfg.judge.model}`)."


def _grader_agreement(cfg: SweepConfig, arms: dict[str, pd.DataFrame]) -> str:
    """How often the deterministic grader agrees with the configured judge, and where they differ."""
    if cfg.judge.kind == "exact":
        return "The deterministic grader is the judge: there is no second grader to compare."
    graded = pd.concat(arms.values())
    agree = (graded["grade"] == graded["exact_grade"]).mean()
    table = pd.crosstab(graded["grade"], graded["exact_grade"])
    lines = [f"Deterministic grader vs the `{cfg.judge.kind}` judge: same grade for {agree:.1%} of "
             f"{len(graded)} answers. Rows: judge; columns: deterministic.", "",
             "| judge \\ deterministic | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {grade} | " + " | ".join(str(v) for v in row) + " |" for grade, row in table.iterrows()]
    return "\n".join(lines)


def _transfer_section(run: RunDir, arms: dict[str, pd.DataFrame]) -> str:
    """Per method on the held-out prompts: the oracle beside weights transferred from the other prompts, with
    gold-answer, question-only and self vectors."""
    transfer = pd.read_parquet(run.table("transfer"))
    if transfer.empty:
        return "Too few prompts to hold any out."
    held = sorted(transfer["prompt_id"].unique())
    rows: dict[str, pd.DataFrame] = {label(BASELINE): arms[BASELINE]}
    if PROMPT_ONLY in arms:
        rows[label(PROMPT_ONLY)] = arms[PROMPT_ONLY]
    names = {"transfer": "transferred weights, gold-answer vectors",
             "question-only": "transferred weights, question-only vectors (no gold)",
             "self": "transferred weights, the model's own answer as vector (no gold)"}
    for method in (m for m in ("full", "segmented") if m in arms):
        rows[label(method)] = arms[method]
        for setting, name in names.items():
            rows[f"{method}: {name}"] = transfer[(transfer["method"] == method) & (transfer["setting"] == setting)]
    baseline = _on(rows[label(BASELINE)], held)["composite"].to_numpy()
    lines = [f"{len(held)} held-out prompts; the transferred weights are the per-parameter medians of the other "
             "prompts' best trials, applied unchanged (no selection against the gold answer). Composite: mean "
             "with its bootstrap interval, and its paired change from the baseline on the same prompts.", "",
             "| setting | SimpleQA CORRECT [95% CI] | accurate, not degenerate [95% CI] | composite mean [95% CI] | "
             "composite: change vs baseline [95% CI] | overlap mean |",
             "|---|---|---|---|---|---|"]
    for name, frame in rows.items():
        g = _on(frame, held)
        correct = wilson_interval(int((g["grade"] == "CORRECT").sum()), len(g))
        accurate = wilson_interval(int(g["accurate"].sum()), len(g))
        composite = bootstrap_interval(g["composite"].to_numpy())
        change = paired_bootstrap(baseline, g["composite"].to_numpy())
        change_cell = "" if name == label(BASELINE) else (
            f"{change.difference:+.3f} [{change.interval.low:+.3f}, {change.interval.high:+.3f}]")
        lines.append(f"| {name} | {correct.fmt(True)} | {accurate.fmt(True)} | {composite.fmt(False)} | "
                     f"{change_cell} | {g['overlap'].mean():.2f} |")
    return "\n".join(lines)


def _on(frame: pd.DataFrame, prompt_ids: list[int]) -> pd.DataFrame:
    """`frame`'s rows for `prompt_ids`, one per prompt, in that order (so two arms pair up row by row)."""
    return frame.set_index("prompt_id").loc[prompt_ids].reset_index()


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return (text[:limit] + "…" if len(text) > limit else text).replace("|", "\\|")


def _samples(run: RunDir, arms: dict[str, pd.DataFrame]) -> str:
    prompts = pd.read_parquet(run.table("prompts")).set_index("prompt_id")
    shown = [a for a in arms if a in (BASELINE, PROMPT_ONLY, "full", "segmented")]
    ids = list(prompts.index[:SAMPLES])
    lines = [f"{len(ids)} of {len(prompts)} prompts, in prompt order; the controls' texts are in grades.parquet.", "",
             "| question | gold | " + " | ".join(label(a) for a in shown) + " |", "|---" * (len(shown) + 2) + "|"]
    for pid in ids:
        texts = [_cell(arms[a].set_index("prompt_id").loc[pid, "text"]) for a in shown]
        lines.append(f"| {_cell(prompts.loc[pid, 'question'], 100)} | {_cell(prompts.loc[pid, 'answer'])} | "
                     + " | ".join(texts) + " |")
    return "\n".join(lines)


def shareable_yaml(cfg: SweepConfig) -> str:
    """The config without machine-local paths: file names only, no conf_dir."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg))
    del data["conf_dir"]
    for section, key in (("data", "csv"), ("judge", "template_path")):
        if data[section][key]:
            data[section][key] = data[section][key].rsplit("/", 1)[-1]
    if (data["tracking"]["uri"] or "").startswith("sqlite:"):
        data["tracking"]["uri"] = "sqlite:///…/" + data["tracking"]["uri"].rsplit("/", 1)[-1]
    return OmegaConf.to_yaml(OmegaConf.create(data)).strip()


def _html(text: str, run: RunDir) -> str:
    """The Markdown report as one HTML file, figures inlined, so it can be mailed or logged as one artifact."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])

    def inline(match: re.Match) -> str:
        data = base64.b64encode((run.root / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="(plots/[^"]+\.png)"', inline, body)
    style = ("body{font-family:sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;font-size:.9rem}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:1rem;overflow:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{run.root.name}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>")


def headline(run: RunDir) -> list[str]:
    """Three lines for the end of a run: CORRECT per arm, accurate per arm, each method against its best control."""
    arms = by_arm(run)
    correct = " · ".join(f"{label(a)} {(g['grade'] == 'CORRECT').mean():.0%}" for a, g in arms.items()
                         if a in (BASELINE, PROMPT_ONLY, "full", "segmented"))
    accurate = " · ".join(f"{label(a)} {g['accurate'].mean():.0%}" for a, g in arms.items()
                          if a in (BASELINE, PROMPT_ONLY, "full", "segmented"))
    versus = []
    for method in (m for m in ("full", "segmented") if m in arms):
        controls = [c for c in (PROMPT_ONLY, f"{method}-random", f"{method}-mismatched") if c in arms]
        if controls:
            strongest = max(controls, key=lambda c: (arms[c]["grade"] == "CORRECT").mean())
            gap = (arms[method]["grade"] == "CORRECT").mean() - (arms[strongest]["grade"] == "CORRECT").mean()
            versus.append(f"{method} {100 * gap:+.0f} points vs its strongest control ({strongest})")
    n = len(arms[BASELINE])
    return [f"SimpleQA CORRECT on {n} prompts: {correct}",
            f"accurate (composite >= 0.6, not degenerate): {accurate}",
            "CORRECT, " + ("; ".join(versus) if versus else "no controls were run") + " (intervals and tests: the report)"]


def summary_metrics(run: RunDir) -> dict[str, float]:
    """Per arm: SimpleQA correct and F1, accuracy both ways, degenerate share, composite and overlap means (the
    parent run's metrics; oracle arms are named oracle.ARM)."""
    metrics = {}
    for arm, g in by_arm(run).items():
        prefix = metric_prefix(arm)
        simpleqa = simpleqa_metrics(g["grade"].tolist())
        metrics |= {f"{prefix}.simpleqa_correct": simpleqa.correct, f"{prefix}.simpleqa_f1": simpleqa.f1,
                    f"{prefix}.accuracy": float(g["accurate"].mean()),
                    f"{prefix}.accuracy_paper": float(g["accurate_paper"].mean()),
                    f"{prefix}.degenerate": float(g["degenerate"].mean()),
                    f"{prefix}.composite_mean": float(g["composite"].mean()),
                    f"{prefix}.overlap_mean": float(g["overlap"].mean())}
    return metrics
