"""Figures of a run: accuracy per method and the distribution of composite scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402


def accuracy_bars(shares: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """shares: metric name -> {method: share}; one group of bars per metric."""
    metrics = list(shares)
    methods = list(next(iter(shares.values())))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        ax.bar([m + i * width for m in range(len(metrics))], [100 * shares[k][method] for k in metrics],
               width, label=method)
    ax.set_xticks([m + width * (len(methods) - 1) / 2 for m in range(len(metrics))], metrics)
    ax.set_ylabel("% of prompts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def composite_boxes(composites: Mapping[str, Sequence[float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.boxplot(list(composites.values()), tick_labels=list(composites))
    ax.axhline(0.6, linestyle="--", color="grey", linewidth=1)
    ax.set_ylabel("composite (0.5 overlap + 0.5 judge/5)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
