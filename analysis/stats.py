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
from statistics import NormalDist
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


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _z(level: float) -> float:
    """The two-sided standard normal quantile for `level` (1.95996... at 0.95)."""
    _check_level(level)
    return NormalDist().inv_cdf((1 + level) / 2)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for the proportion successes / n (Wilson 1927; Newcombe 1998, method 3).

    The bounds are the proportions whose score test at `level` just fails to reject:
    (x + z²/2 ± z sqrt(x(n-x)/n + z²/4)) / (n + z²), with z the normal quantile for `level`. Unlike the
    percentile bootstrap (and the Wald interval) it has non-zero width at 0/n and n/n (0/8 gives
    [0, 0.324]), and it keeps near-nominal coverage for shares near 0 or 1 and small n. The bound on
    the side of an observed 0 or n is exactly 0 or 1.
    """
    if int(successes) != successes or int(n) != n:
        raise ValueError(f"successes and n must be integers, got {successes!r}, {n!r}")
    successes, n = int(successes), int(n)
    if n <= 0:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n] = [0, {n}], got {successes}")
    z = _z(level)
    centre = successes + z * z / 2
    half = z * math.sqrt(successes * (n - successes) / n + z * z / 4)
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / (n + z * z))
    high = 1.0 if successes == n else min(1.0, (centre + half) / (n + z * z))
    return Interval(successes / n, low, high)


def _share(flags: Sequence[bool], level: float = 0.95) -> Interval:
    """Wilson interval of the share of true values in `flags` (non-empty)."""
    return wilson_interval(sum(1 for flag in flags if flag), len(flags), level)


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
    _check_level(level)
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[..., Any] = np.mean,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile-bootstrap interval of `statistic` over `values` (for means of per-prompt scores).

    The percentile bootstrap makes no normality assumption, so it suits bounded, skewed scores. With 260
    prompts and 2000 resamples the bounds move a little between seeds; the seed makes reports
    reproducible. A constant sample (or a single value) gives a zero-width interval at that value, as
    every resample is the same: right for a mean of identical scores, wrong for a proportion, where 0/8
    does not mean the rate is exactly 0 - use `wilson_interval` for shares. No values raise ValueError.
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


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order.

    With m p-values sorted ascending, the i-th smallest (i from 0) is multiplied by m - i, capped at 1,
    and made non-decreasing along the sorted order (step-down: a p-value's adjustment is at least that
    of any smaller one). Rejecting where adjusted p <= alpha controls the family-wise error rate at alpha
    under any dependence between the tests, which matters here as all comparisons share prompts.
    Ties get equal adjusted values. NaN or values outside [0, 1] raise ValueError.
    """
    values = [float(p) for p in p_values]
    bad = [p for p in values if not 0.0 <= p <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"p-values must be in [0, 1], got {bad}")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def method_intervals(
    overlap: Sequence[float],
    judge_score: Sequence[float],
    grades: Sequence[str],
    seed: int,
    resamples: int = 2000,
) -> dict[str, Interval]:
    """95% intervals for one method's table column, given per-prompt overlap, judge score and grade.

    Keys follow `MethodSummary`: accuracy (composite >= ACCURACY_THRESHOLD), overlap_ge_05, judge_ge_4,
    composite_mean, overlap_mean, plus simpleqa_correct (share graded CORRECT). Shares get Wilson
    intervals (non-zero width at 0% and 100%); the two means get a seeded percentile bootstrap, both
    from the same seed, hence the same resampled prompt sets.
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
    return {
        "accuracy": _share([c >= ACCURACY_THRESHOLD for c in composites]),
        "overlap_ge_05": _share([o >= OVERLAP_BAR for o in overlap]),
        "judge_ge_4": _share([s >= JUDGE_BAR for s in judge_score]),
        "composite_mean": bootstrap_interval(composites, resamples=resamples, seed=seed),
        "overlap_mean": bootstrap_interval(list(overlap), resamples=resamples, seed=seed),
        "simpleqa_correct": _share([g == CORRECT for g in grades]),
    }
