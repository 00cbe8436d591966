"""Uncertainty for the paper-style table: bootstrap intervals and paired tests between methods.

The paper reports bare rates over 260 prompts with no intervals (method.md §9.6). Here every rate and mean
gets a seeded percentile-bootstrap 95% interval, and two methods are compared on the same prompts with
paired tests: exact McNemar for yes/no outcomes (accurate, SimpleQA correct) and a paired bootstrap for
per-prompt scores (composite, overlap). Pairing matters: the methods answer the same questions, so
per-prompt difficulty cancels in the differences, which an unpaired comparison of two rates ignores.
Only numpy and the standard library are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.tables import JUDGE_BAR, OVERLAP_BAR
from sweep.judges import CORRECT, INCORRECT, NOT_ATTEMPTED
from sweep.scoring import ACCURACY_THRESHOLD, composite

# Most index cells drawn at once (8 MB of int64): resamples are drawn in chunks of rows so that memory
# stays small whatever the sample size, while each chunk is still one vectorised numpy call.
_MAX_CELLS = 1_000_000
_GRADES = frozenset({CORRECT, INCORRECT, NOT_ATTEMPTED})


@dataclass(frozen=True)
class Interval:
    """A point estimate with the bounds of its confidence interval."""

    estimate: float
    low: float
    high: float

    def fmt(self, percent: bool) -> str:
        """'16.2% [12.0, 20.8]' for shares (percent=True) or '0.35 [0.31, 0.39]' for means."""
        if percent:
            return f"{100 * self.estimate:.1f}% [{100 * self.low:.1f}, {100 * self.high:.1f}]"
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass(frozen=True)
class McNemarResult:
    """Discordant pair counts (b01: a false, b true; b10: a true, b false) and the exact two-sided p."""

    b01: int
    b10: int
    p_value: float


@dataclass(frozen=True)
class PairedResult:
    """Mean per-prompt difference b - a, its bootstrap interval and a two-sided bootstrap p-value."""

    difference: float
    interval: Interval
    p_value: float


def _as_sample(values: Sequence[float]) -> np.ndarray:
    """A non-empty 1-D float array, or ValueError: a bootstrap of nothing has no meaning."""
    sample = np.asarray(values, dtype=float)
    if sample.ndim != 1 or sample.size == 0:
        raise ValueError(f"need a non-empty 1-D sample, got shape {sample.shape}")
    return sample


def _resampled(sample: np.ndarray, statistic: Callable[..., Any], resamples: int, seed: int) -> np.ndarray:
    """`statistic` of `resamples` with-replacement resamples of `sample`, from a generator seeded by `seed`.

    `statistic` must accept `axis=1` (np.mean, np.median, ...): each chunk is an index matrix
    [rows, n] and the statistic runs over its rows in one call.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    n = sample.size
    rows = max(1, _MAX_CELLS // n)
    chunks = []
    for start in range(0, resamples, rows):
        index = rng.integers(0, n, size=(min(rows, resamples - start), n))
        chunks.append(np.asarray(statistic(sample[index], axis=1), dtype=float))
    return np.concatenate(chunks)


def _percentile_interval(estimate: float, replicates: np.ndarray, level: float) -> Interval:
    """The percentile interval: the (1-level)/2 and (1+level)/2 quantiles of the bootstrap replicates."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.mean,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile-bootstrap interval of `statistic` over `values` (e.g. 0/1 outcomes for a rate).

    The percentile bootstrap makes no normality assumption, so it suits both shares near 0 (the
    baseline's 1.2%) and bounded, skewed scores. With 260 prompts and 2000 resamples a rate's bounds
    move between seeds by about one prompt (0.4 points); the seed makes reports reproducible. A single value gives
    a zero-width interval at that value (every resample is the same); no values raise ValueError.
    """
    sample = _as_sample(values)
    replicates = _resampled(sample, statistic, resamples, seed)
    return _percentile_interval(float(statistic(sample)), replicates, level)


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemarResult:
    """Exact two-sided McNemar test of paired yes/no outcomes of two methods on the same prompts.

    Only discordant prompts (one method right, the other wrong) carry information about a difference;
    under the null each is equally likely to favour either method, so b01 ~ Binomial(b01 + b10, 1/2).
    The exact binomial tail is used rather than the chi-squared approximation because discordant counts
    here are small (tens of prompts), where the approximation is poor. p = min(1, 2 * P(X <= min)),
    computed exactly with integer binomial coefficients; 1.0 when no prompt is discordant.
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths: {len(a)} vs {len(b)}")
    b01 = sum(1 for x, y in zip(a, b) if not x and y)
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    discordant = b01 + b10
    if discordant == 0:
        return McNemarResult(b01, b10, 1.0)
    tail = sum(math.comb(discordant, k) for k in range(min(b01, b10) + 1))
    return McNemarResult(b01, b10, min(1.0, 2 * tail / 2**discordant))


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> PairedResult:
    """Paired bootstrap of the mean per-prompt difference b - a (e.g. composite of two methods).

    Prompts are resampled as pairs, so each method's score stays with its prompt and per-prompt
    difficulty cancels. p = 2 * min(share of resampled mean differences <= 0, share >= 0), clipped to 1:
    identical inputs give 1.0; 0.0 means no resample crossed zero, i.e. p below 1 / resamples.
    """
    first, second = _as_sample(a), _as_sample(b)
    if first.size != second.size:
        raise ValueError(f"paired values need equal lengths: {first.size} vs {second.size}")
    differences = second - first
    replicates = _resampled(differences, np.mean, resamples, seed)
    difference = float(np.mean(differences))
    p_value = min(1.0, 2 * min(float(np.mean(replicates <= 0)), float(np.mean(replicates >= 0))))
    return PairedResult(difference, _percentile_interval(difference, replicates, level), p_value)


def method_intervals(
    overlap: Sequence[float],
    judge_score: Sequence[float],
    grades: Sequence[str],
    seed: int,
    resamples: int = 2000,
) -> dict[str, Interval]:
    """Bootstrap intervals for one method's table column, given per-prompt overlap, judge score and grade.

    Keys follow `MethodSummary`: accuracy (composite >= ACCURACY_THRESHOLD), overlap_ge_05, judge_ge_4,
    composite_mean, overlap_mean, plus simpleqa_correct (share graded CORRECT). Every metric uses the same
    seed, hence the same resampled prompt sets, so the intervals describe one consistent set of replicates.
    """
    n = len(overlap)
    if n == 0 or len(judge_score) != n or len(grades) != n:
        raise ValueError(
            f"need equally many overlaps, scores and grades (>0): {n}, {len(judge_score)}, {len(grades)}"
        )
    unknown = set(grades) - _GRADES
    if unknown:
        raise ValueError(f"unknown SimpleQA grades: {sorted(unknown)}")
    composites = [composite(o, s) for o, s in zip(overlap, judge_score)]
    samples = {
        "accuracy": [c >= ACCURACY_THRESHOLD for c in composites],
        "overlap_ge_05": [o >= OVERLAP_BAR for o in overlap],
        "judge_ge_4": [s >= JUDGE_BAR for s in judge_score],
        "composite_mean": composites,
        "overlap_mean": list(overlap),
        "simpleqa_correct": [g == CORRECT for g in grades],
    }
    return {name: bootstrap_interval(values, resamples=resamples, seed=seed) for name, values in samples.items()}
