"""Figures of a run. Each function draws one PNG with its title and a one-line caption, and returns them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .stats import Interval  # noqa: E402


@dataclass(frozen=True)
class Figure:
    path: Path
    title: str
    caption: str


def _save(fig, path: Path, title: str, caption: str) -> Figure:  # noqa: ANN001 - a matplotlib Figure
    fig.suptitle(title, fontsize=11)
    fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Figure(path, title, caption)


def share_bars(shares: Mapping[str, Mapping[str, Interval]], path: Path, grade_derived: bool) -> Figure:
    """shares: metric -> {arm: interval}; bars at the estimate, whiskers at the 95% Wilson interval."""
    metrics = list(shares)
    arms = list(next(iter(shares.values())))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(arms)
    for i, arm in enumerate(arms):
        xs = [m + i * width for m in range(len(metrics))]
        values = [shares[k][arm] for k in metrics]
        ax.bar(xs, [100 * v.estimate for v in values], width, label=arm,
               yerr=[[100 * (v.estimate - v.low) for v in values], [100 * (v.high - v.estimate) for v in values]],
               capsize=2)
    ax.set_xticks([m + width * (len(arms) - 1) / 2 for m in range(len(metrics))], metrics)
    ax.set_ylabel("% of prompts")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path, "Shares of prompts per arm",
                 "Bars: share of prompts; whiskers: 95% Wilson intervals. Oracle arms keep their best of k trials "
                 "against the gold answer." + (" Accurate is grade-derived: the composite holds the rule-based judge's "
                                               "grade." if grade_derived else ""))


def composite_boxes(composites: Mapping[str, Sequence[float]], path: Path, grade_derived: bool) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.boxplot(list(composites.values()), tick_labels=list(composites))
    ax.axhline(0.6, linestyle="--", color="grey", linewidth=1)
    ax.set_ylabel("composite")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _save(fig, path, "Composite score per prompt",
                 "Composite = 0.5 overlap + 0.5 judge score / 5, one point per prompt; dashed: the 0.6 accuracy bar."
                 + (" Grade-derived: the rule-based judge's score is a function of the grade." if grade_derived else ""))


def judge_scores(scores: Mapping[str, Sequence[int]], path: Path, judge: str) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(scores)
    for i, (arm, values) in enumerate(scores.items()):
        counts = [list(values).count(s) for s in range(1, 6)]
        ax.bar([s + i * width for s in range(1, 6)], counts, width, label=arm)
    ax.set_xticks([s + width * (len(scores) - 1) / 2 for s in range(1, 6)], [str(s) for s in range(1, 6)])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("judge score")
    ax.set_ylabel("prompts")
    ax.legend(fontsize=7, ncol=2)
    note = " (grade-derived: 5 CORRECT, 4 hedged, 2 NOT_ATTEMPTED, 1 INCORRECT)" if judge == "exact" else ""
    return _save(fig, path, "Judge scores (1-5)", f"How many prompts got each 1-5 score from the `{judge}` judge{note}, "
                 "per arm.")


def best_weights(best: pd.DataFrame, path: Path) -> Figure:
    """The injection strength alpha*gamma of each prompt's best trial, per arm and segment."""
    groups = {}
    for arm, rows in best.groupby("method"):
        if rows["alpha_all"].notna().any():
            groups[arm] = (rows["alpha_all"] * rows["gamma_all"]).dropna().tolist()
        for segment in ("early", "middle", "late"):
            if rows[f"alpha_{segment}"].notna().any():
                groups[f"{arm} {segment}"] = (rows[f"alpha_{segment}"] * rows[f"gamma_{segment}"]).dropna().tolist()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.boxplot(list(groups.values()), tick_labels=list(groups))
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("alpha * gamma")
    return _save(fig, path, "Injection strength of the best trials",
                 "alpha * gamma of each prompt's best trial (the shift added is alpha*gamma*(h - mu)), per arm and "
                 "layer segment.")


def objective_by_trial(trials: pd.DataFrame, path: Path, objective: str) -> Figure:
    """Mean objective against trial number, and the running best, per tuned arm."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, group in trials.groupby("method"):
        ordered = group.sort_values("trial")
        mean = ordered.groupby("trial")["objective"].mean()
        best_so_far = ordered.groupby("prompt_id")["objective"].cummax().groupby(ordered["trial"]).mean()
        line, = ax.plot(mean.index, mean.values, marker="o", label=f"{arm}: mean")
        ax.plot(best_so_far.index, best_so_far.values, linestyle="--", color=line.get_color(),
                label=f"{arm}: best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"objective ({objective})")
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path, "Objective by trial",
                 "Mean over prompts of each trial's objective (solid) and of the best so far (dashed), per tuned arm.")


def family_forest(tests: Sequence, arms: Mapping[str, tuple[Interval, Interval]], path: Path, n: int) -> Figure:
    """The report's opening figure: the declared family's paired differences (`analysis.family.FamilyTest`s)
    with their 95% intervals, CORRECT in points and overlap apart, beside each arm's CORRECT share and mean
    gold overlap (arms: label -> (CORRECT interval, overlap interval)). Filled markers: Holm-adjusted p < 0.05."""
    rows = list(dict.fromkeys(f"{t.method} vs {t.reference}" for t in tests))
    fig, axes = plt.subplots(1, 4, figsize=(16, 1.4 + 0.38 * max(len(rows), len(arms), 3)),
                             gridspec_kw={"width_ratios": [1.4, 1.4, 1, 1]})
    scales = {"correct": 100.0, "overlap": 1.0}
    for ax, (outcome, xlabel) in zip(axes[:2], (("correct", "CORRECT change, points"),
                                                 ("overlap", "mean gold overlap change"))):
        for t in (t for t in tests if t.outcome == outcome):
            y = rows.index(f"{t.method} vs {t.reference}")
            scale = scales[outcome]
            colour = "tab:blue" if t.method == "full" else "tab:orange"
            ax.errorbar(t.difference * scale, y, xerr=[[(t.difference - t.interval.low) * scale],
                                                        [(t.interval.high - t.difference) * scale]],
                        fmt="o", color=colour, mfc=colour if t.significant else "white", capsize=3)
        if not rows:
            ax.text(0.5, 0.5, "no method and reference\npair in this run", ha="center", va="center", fontsize=9)
            ax.set_axis_off()
            continue
        ax.axvline(0, color="grey", linewidth=1, linestyle="--")
        ax.set_yticks(range(len(rows)), rows if ax is axes[0] else [""] * len(rows), fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel(xlabel, fontsize=8)
    names = list(arms)
    for ax, index, scale, xlabel in ((axes[2], 0, 100.0, "CORRECT, non-degenerate, %"),
                                     (axes[3], 1, 1.0, "mean gold overlap")):
        values = [arms[a][index] for a in names]
        ax.errorbar([v.estimate * scale for v in values], range(len(names)), fmt="s", color="black", capsize=3,
                    xerr=[[(v.estimate - v.low) * scale for v in values], [(v.high - v.estimate) * scale for v in values]])
        ax.set_yticks(range(len(names)), names if ax is axes[2] else [""] * len(names), fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlabel(xlabel, fontsize=8)
    for ax, title in zip(axes, ("method - reference: CORRECT", "method - reference: overlap",
                                f"each arm (n = {n}): CORRECT", "each arm: overlap")):
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, path, "The declared family at a glance",
                 "Left: each method minus each reference on the same prompts, 95% intervals (Newcombe for CORRECT, "
                 "BCa for overlap); filled: Holm-adjusted p < 0.05 over the family. Right: each arm, Wilson and "
                 "bootstrap intervals. Oracle arms keep their best of k against the gold answer.")


def steerability_hist(changes: Mapping[str, Sequence[float]], path: Path) -> Figure:
    """Histogram of the per-prompt change in overlap against prompt_only, per method."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    values = [v for series in changes.values() for v in series]
    edges = np.linspace(min(values + [-0.05]), max(values + [0.05]), 21)
    ax.hist(list(changes.values()), bins=edges, label=list(changes))
    ax.axvline(0, color="grey", linewidth=1, linestyle="--")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("overlap: best output - prompt_only's, per prompt")
    ax.set_ylabel("prompts")
    ax.legend(fontsize=7)
    return _save(fig, path, "Per-prompt steerability",
                 "How far each prompt's gold overlap moved from prompt_only's; left of the dashed line: the method made "
                 "that prompt worse.")
