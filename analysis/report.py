"""report.md and a self-contained report.html for a run directory, from its Parquet files alone.

It opens with one figure: the declared family (`analysis.family`: each method against each reference, on CORRECT
among non-degenerate outputs and mean gold overlap, Holm over that family alone) beside each arm's figures;
the tables follow. Every share has a Wilson interval, every mean a bootstrap interval; rows against the baseline
are descriptive. Arms picked best-of-k against the gold answer say "oracle"; with the rule-based judge the
composite and "judge score >= 4" are marked grade-derived.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

import markdown
import pandas as pd
from omegaconf import OmegaConf

from sweep.arms import BASELINE, PROMPT_ONLY, label, metric_prefix
from sweep.config import SweepConfig, from_yaml
from sweep.evaluate import simpleqa_metrics
from sweep.rundir import RunDir, write_text_atomic
from sweep.scoring import DEGENERATE_REPETITION, REPETITION_WEIGHT

from . import plots, sections
from .family import IN_CONTEXT, METHODS, SAMPLED, FamilyTest, correct_flags, declared_family, min_detectable_gain
from .stats import Interval, method_intervals
from .tables import markdown_table, summarise

INTERVAL_ROWS = {  # key of method_intervals -> (label, shown as a percentage)
    "simpleqa_correct": ("SimpleQA CORRECT", True), "accuracy_fluent": ("accurate (composite >= 0.6, not degenerate)", True),
    "accuracy": ("composite >= 0.6 (paper's rule)", True), "degenerate": ("degenerate outputs", True),
    "overlap_ge_05": ("overlap >= 0.5", True), "judge_ge_4": ("judge score >= 4", True),
    "composite_mean": ("composite mean", False), "overlap_mean": ("overlap mean", False),
}
GRADE_DERIVED_ROWS = {"accuracy_fluent", "accuracy", "judge_ge_4", "composite_mean"}  # they contain the judge score
SAMPLES = 20  # prompts shown in "Sample outputs"


def arm_order(names: set[str]) -> list[str]:
    """baseline, prompt_only, the in_context and sampled oracles, then each method followed by its controls."""
    order = [BASELINE, PROMPT_ONLY, IN_CONTEXT, SAMPLED]
    order += [n for m in METHODS for n in (m, f"{m}-random", f"{m}-mismatched")]
    return [n for n in order if n in names] + sorted(names - set(order))  # an arm new to the report comes last


def by_arm(run: RunDir) -> dict[str, pd.DataFrame]:
    grades = pd.read_parquet(run.table("grades")).sort_values("prompt_id")
    return {a: grades[grades["method"] == a].reset_index(drop=True) for a in arm_order(set(grades["method"]))}


def _intervals(arms: dict[str, pd.DataFrame], seed: int) -> dict[str, dict[str, Interval]]:
    return {a: method_intervals(g["overlap"].tolist(), g["judge_score"].tolist(), g["grade"].tolist(), seed,
                                degenerate=g["degenerate"].tolist()) for a, g in arms.items()}


def write_report(run: RunDir, cfg: SweepConfig) -> None:
    """Write report.md, report.html and the plots."""
    arms = by_arm(run)
    intervals = _intervals(arms, cfg.seed)
    family = declared_family(arms, cfg.seed)
    figures_by_arm = sections.arm_figures(arms, intervals)
    trials = pd.read_parquet(run.table("trials"))
    best = pd.read_parquet(run.table("best"))
    run.plots.mkdir(exist_ok=True)
    labels = {a: label(a) for a in arms}
    grade_derived = cfg.judge.kind == "exact"
    steer_text, splits = sections.steerability_table(arms)
    opening = plots.family_forest(family, {labels[a]: f for a, f in figures_by_arm.items()}, run.plots / "family.png",
                                  len(arms[BASELINE]))
    figures = [
        plots.share_bars({INTERVAL_ROWS[k][0]: {labels[a]: intervals[a][k] for a in arms}
                          for k in ("simpleqa_correct", "accuracy_fluent", "degenerate")}, run.plots / "shares.png",
                         grade_derived),
        plots.composite_boxes({labels[a]: g["composite"].tolist() for a, g in arms.items()}, run.plots / "composite.png",
                              grade_derived),
        plots.judge_scores({labels[a]: g["judge_score"].tolist() for a, g in arms.items()},
                           run.plots / "judge_scores.png", cfg.judge.kind),
        plots.best_weights(best, run.plots / "best_weights.png"),
        plots.objective_by_trial(trials[trials["method"] != PROMPT_ONLY], run.plots / "objective_by_trial.png",
                                 cfg.scoring.objective),
    ]
    steer_figure = (plots.steerability_hist({labels[a]: s.changes for a, s in splits.items()},
                                            run.plots / "steerability.png") if splits else None)
    parts = Parts(opening, family, figures, steer_text, steer_figure, figures_by_arm, best, grade_derived)
    text = _markdown(cfg, run, arms, intervals, parts)
    write_text_atomic(run.report, text)
    write_text_atomic(run.report_html, _html(text, run))


@dataclass(frozen=True)
class Parts:
    """What the Markdown is assembled from, computed once by `write_report`."""

    opening: plots.Figure
    family: list[FamilyTest]
    figures: list[plots.Figure]
    steerability: str
    steerability_figure: plots.Figure | None
    arm_figures: dict[str, tuple[Interval, Interval]]
    best: pd.DataFrame
    grade_derived: bool


def _figure(f: plots.Figure) -> str:
    return f"**{f.title}.** {f.caption}\n\n![{f.title}](plots/{f.path.name})\n"


def _markdown(cfg: SweepConfig, run: RunDir, arms: dict[str, pd.DataFrame], intervals: dict[str, dict[str, Interval]],
              body: Parts) -> str:
    n = len(arms[BASELINE])
    dataset = json.loads(run.dataset.read_text())
    grade_derived = body.grade_derived
    mark = sections.dagger(grade_derived)
    steer_text, steer_figure = body.steerability, body.steerability_figure
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
        _figure(body.opening),
        "**Oracle selection, as in the paper:** every arm marked (oracle) keeps, per prompt, the best of "
        f"{cfg.search.trials} trials by an objective that scores overlap with the gold answer (`in_context`: the gold "
        "text in the prompt), and `full` / `segmented` also steer toward a vector built from it: these columns are "
        "upper bounds, not results that transfer to questions without their answer (see \"Oracle vs transfer\"). "
        "The references show what the prompt change (`prompt_only`), best-of-k selection with a vector that carries "
        "no answer (`-random`, `-mismatched`: same weights, budget and objective), best-of-k sampling with no vector "
        "(`sampled`) and the gold text given in the prompt (`in_context`) do by themselves. A degenerate trial "
        f"(repetition >= {DEGENERATE_REPETITION}) wins best-of-k only when every trial is degenerate.", "",
        "## Headline: each arm", "",
        "CORRECT counts only non-degenerate outputs (the raw count beside it); mean gold overlap is the per-prompt "
        "`overlap` the objective uses. Shares: Wilson intervals; means: percentile bootstrap.", "",
        sections.arm_table(arms, body.arm_figures, {a: intervals[a]["composite_mean"] for a in arms}, grade_derived),
        "", *([sections.GRADE_DERIVED, ""] if grade_derived else []),
        "## The declared family: each method against each reference", "",
        "Declared before the run: each method against `prompt_only`, its `-random` and `-mismatched` controls, "
        "`sampled` and `in_context` (those run), on CORRECT among non-degenerate outputs (McNemar's exact test; "
        "change in points with Newcombe's interval; resolution 2^(1-D) with D discordant prompts) and mean gold "
        "overlap (sign-flip permutation test: exact up to 20 prompts, else 100,000 seeded flips; BCa interval; "
        "d_z). Holm adjusts these p-values together and nothing else. Changes read method - reference.", "",
        sections.family_table(body.family, n) if body.family else "No method and reference pair in this run.", "",
        "### Against the baseline", "", sections.baseline_rows(arms, list(cfg.data.keep_grades)), "",
        "## Per-prompt steerability", "",
        "Per prompt, whether the arm's best output's gold overlap is above, equal to or below `prompt_only`'s.", "",
        steer_text, "", *([_figure(steer_figure)] if steer_figure else []),
        "## Best trials' strengths", "",
        "The hook adds alpha * (x + gamma * (v - mu)) + (1 - alpha) * x = x + alpha * gamma * (v - mu), so "
        "alpha * gamma is the strength that acts: median [quartiles] over prompts of each best trial's.", "",
        sections.strengths_table(body.best, list(arms)), "",
    ]
    norms = run.root / "shift_norms.parquet"
    if norms.exists():
        lines += ["## Matched shift norms", "",
                  "Median over prompts and layers of the injected shift's norm ||v - mu|| per layer segment: the "
                  "random control is drawn to match the gold vector's, layer by layer.", "",
                  sections.shift_norms_table(pd.read_parquet(norms)), ""]
    lines += [
        "## Paper-style table", "",
        markdown_table({label(a): summarise(g["overlap"].tolist(), g["judge_score"].tolist()) for a, g in arms.items()}),
        *([f"Composite and judge score rows: {sections.GRADE_DERIVED}", ""] if grade_derived else []),
        "## Every metric with its 95% interval", "",
        "Shares: Wilson score intervals; means: percentile bootstrap over prompts, 2,000 resamples, seed "
        f"{cfg.seed}.{' Rows marked † are grade-derived (see the headline).' if grade_derived else ''}", "",
        "| metric | " + " | ".join(label(a) for a in arms) + " |", "|---" * (len(arms) + 1) + "|",
    ]
    for key, (name, percent) in INTERVAL_ROWS.items():
        shown = f"{name}{mark if key in GRADE_DERIVED_ROWS else ''}"
        lines.append(f"| {shown} | " + " | ".join(intervals[a][key].fmt(percent) for a in arms) + " |")
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
    lines += ["", "## Figures", "", *(_figure(f) for f in body.figures)]
    lines += ["## Oracle vs transfer (held-out prompts)", "",
              sections.transfer_table(pd.read_parquet(run.table("transfer")), arms, cfg.seed, grade_derived), "",
              "## Sample outputs", "", _samples(run, arms), "",
              "## Configuration", "", "Machine-local paths are shown by file name only; `config.yaml` in the run "
              "directory holds them in full.", "", "```yaml", shareable_yaml(cfg), "```", ""]
    return "\n".join(lines)


def _degenerate_section(arms: dict[str, pd.DataFrame], cfg: SweepConfig) -> str:
    mark = sections.dagger(cfg.judge.kind == "exact")  # accurate is composite >= 0.6
    objective = (f"The `fluent` objective subtracts {REPETITION_WEIGHT} x repetition from the paper's, so the search "
                 "itself steers away from loops." if cfg.scoring.objective == "fluent" else
                 "The `paper` objective rewards low perplexity, which loops have: `scoring.objective=fluent` "
                 "penalises repetition in the search itself.")
    lines = [f"An output with repetition >= {DEGENERATE_REPETITION} (the larger of its share of repeated 4-grams and "
             "of words repeating the phrase just before them) is degenerate and never counts as accurate. "
             f"{objective}", "",
             f"| arm | degenerate | accurate{mark}, paper's rule | accurate{mark}, degenerate excluded | mean repetition | "
             "mean distinct-2 |",
             "|---|---|---|---|---|---|"]
    for arm, g in arms.items():
        lines.append(f"| {label(arm)} | {int(g['degenerate'].sum())} of {len(g)} | {int(g['accurate_paper'].sum())} | "
                     f"{int(g['accurate'].sum())} | {g['repetition'].mean():.2f} | {g['distinct_2'].mean():.2f} |")
    return "\n".join(lines)


def _judge_note(cfg: SweepConfig) -> str:
    if cfg.judge.kind == "exact":
        return ("Judge: the strict deterministic grader (`sweep/grader/`, SimpleQA's rubric as rules; docs/grading.md). Its 1-5 score "
                "is a function of its grade, not of overlap: " + sections.GRADE_DERIVED.removeprefix("† "))
    return (f"Judge: `{cfg.judge.kind}` (`{cfg.judge.model}`). Its 1-5 score is the judge's own, on the paper's rubric "
            "(correctness, relevance and completeness against the gold answer).")


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
    """Three lines for the end of a run: CORRECT (non-degenerate, raw in brackets) and mean gold overlap per arm,
    and how much of the declared family is Holm-significant (the run's seed, as the report), with its power."""
    arms = by_arm(run)
    seed = from_yaml(run.config.read_text()).seed
    shown = [a for a in arms if a in (BASELINE, PROMPT_ONLY, IN_CONTEXT, SAMPLED, *METHODS)]
    correct = " · ".join(f"{label(a)} {sum(correct_flags(arms[a])) / len(arms[a]):.0%} "
                         f"({(arms[a]['grade'] == 'CORRECT').mean():.0%})" for a in shown)
    overlap = " · ".join(f"{label(a)} {arms[a]['overlap'].mean():.2f}" for a in shown)
    n = len(arms[BASELINE])
    family = declared_family(arms, seed)
    if family:
        significant = [f"{t.method} vs {t.reference} ({t.outcome} {t.difference:+.2f})" for t in family if t.significant]
        gained = min_detectable_gain(n, len(family))
        verdict = (f"declared family: {len(significant)} of {len(family)} tests Holm-significant at 0.05"
                   + (f": {'; '.join(significant)}" if significant else " (no detectable effect)")
                   + (f"; a CORRECT gain needs >= {gained} prompts gained, none lost" if gained else
                      f"; no CORRECT gain on {n} prompts could reach it"))
    else:
        verdict = "no method and reference were run together: no paired test"
    return [f"SimpleQA CORRECT on {n} prompts, non-degenerate outputs (raw): {correct}",
            f"mean gold overlap: {overlap}", verdict + " (intervals and tests: the report)"]


def summary_metrics(run: RunDir) -> dict[str, float]:
    """Per arm: SimpleQA correct (raw and among non-degenerate outputs) and F1, accuracy both ways, degenerate share, composite and overlap means (the
    parent run's metrics; oracle arms are named oracle.ARM)."""
    metrics = {}
    for arm, g in by_arm(run).items():
        prefix = metric_prefix(arm)
        simpleqa = simpleqa_metrics(g["grade"].tolist())
        metrics |= {f"{prefix}.simpleqa_correct": simpleqa.correct, f"{prefix}.simpleqa_f1": simpleqa.f1,
                    f"{prefix}.correct_non_degenerate": sum(correct_flags(g)) / len(g),
                    f"{prefix}.accuracy": float(g["accurate"].mean()),
                    f"{prefix}.accuracy_paper": float(g["accurate_paper"].mean()),
                    f"{prefix}.degenerate": float(g["degenerate"].mean()),
                    f"{prefix}.composite_mean": float(g["composite"].mean()),
                    f"{prefix}.overlap_mean": float(g["overlap"].mean())}
    return metrics
