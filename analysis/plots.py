"""Figures of a run. Each function draws one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402

from .stats import Interval  # noqa: E402


def _save(fig, path: Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_bars(shares: Mapping[str, Mapping[str, Interval]], path: Path) -> Path:
    """shares: metric -> {method: interval}; bars at the estimate, whiskers at the 95% interval."""
    metrics = list(shares)
    methods = list(next(iter(shares.values())))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        xs = [m + i * width for m in range(len(metrics))]
        values = [shares[k][method] for k in metrics]
        ax.bar(xs, [100 * v.estimate for v in values], width, label=method,
               yerr=[[100 * (v.estimate - v.low) for v in values], [100 * (v.high - v.estimate) for v in values]],
               capsize=3)
    ax.set_xticks([m + width * (len(methods) - 1) / 2 for m in range(len(metrics))], metrics)
    ax.set_ylabel("% of prompts (95% CI)")
    ax.legend()
    return _save(fig, path)


def composite_boxes(composites: Mapping[str, Sequence[float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.boxplot(list(composites.values()), tick_labels=list(composites))
    ax.axhline(0.6, linestyle="--", color="grey", linewidth=1)
    ax.set_ylabel("composite (0.5 overlap + 0.5 judge/5)")
    return _save(fig, path)


def judge_scores(scores: Mapping[str, Sequence[int]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    width = 0.8 / len(scores)
    for i, (method, values) in enumerate(scores.items()):
        counts = [list(values).count(s) for s in range(1, 6)]
        ax.bar([s + i * width for s in range(1, 6)], counts, width, label=method)
    ax.set_xticks([s + width * (len(scores) - 1) / 2 for s in range(1, 6)], [str(s) for s in range(1, 6)])
    ax.set_xlabel("judge score")
    ax.set_ylabel("prompts")
    ax.legend()
    return _save(fig, path)


def best_weights(best: pd.DataFrame, path: Path) -> Path:
    """The injection strength alpha*gamma of each prompt's best trial, per segment (full-layer as one)."""
    groups = {"full": best["alpha_all"] * best["gamma_all"]}
    for segment in ("early", "middle", "late"):
        groups[f"segmented {segment}"] = best[f"alpha_{segment}"] * best[f"gamma_{segment}"]
    groups = {k: v.dropna().tolist() for k, v in groups.items() if v.notna().any()}
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot(list(groups.values()), tick_labels=list(groups))
    ax.set_ylabel("alpha * gamma of the best trial")
    return _save(fig, path)


def objective_by_trial(trials: pd.DataFrame, path: Path) -> Path:
    """Mean objective against trial number, and the running best, per method."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, group in trials.groupby("method"):
        mean = group.groupby("trial")["objective"].mean()
        running = group.sort_values("trial").groupby("prompt_id")["objective"].cummax()
        best_so_far = running.groupby(group.sort_values("trial")["trial"]).mean()
        ax.plot(mean.index, mean.values, marker="o", label=f"{method}: mean")
        ax.plot(best_so_far.index, best_so_far.values, linestyle="--", label=f"{method}: best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.legend(fontsize=8)
    return _save(fig, path)
