"""Uncertainty for a run's tables: intervals, calibrated paired tests with effect sizes, and Holm's correction.

The paper reports bare rates over 260 prompts with no intervals (method.md §9.6). Shares (accuracy,
SimpleQA correct, ...) get Wilson score intervals: a bootstrap of an all-wrong arm resamples nothing but
zeros and claims a rate of exactly 0, while Wilson says 0/8 is compatible with up to 32%; it also keeps
near-nominal coverage near 0% and 100%, where the Wald interval fails. Means of per-prompt scores keep
a seeded percentile bootstrap, which needs no normality for bounded, skewed scores.

Two arms are compared on the same prompts with paired tests, so per-prompt difficulty cancels: exact
McNemar for yes/no outcomes; for continuous outcomes (overlap, composite) a sign-flip permutation test,
exact up to 20 prompts and 100,000 seeded Monte Carlo flips beyond, whose p-value is calibrated and whose
resolution (the smallest p it can give) is stated, with a BCa bootstrap interval for the mean difference.
A percentile-interval inversion, used before, gave p-values at its resampling floor and intervals that
ignored the differences' skew. A p-value alone says only whether arms differ, so each comes with an effect
size: the change in a share in points (Newcombe's paired interval) beside the discordant counts it rests
on, and for scores the mean difference with its interval and Cohen's d_z. `holm` adjusts a declared
family of p-values together, controlling the chance of any false positive without assuming the tests
independent (they share prompts). Only numpy and the standard library are used.
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
    """Paired yes/no outcomes of methods a and b on n prompts.

    b01: prompts where a is false and b true; b10: a true, b false (the discordant pairs); p_value: exact
    two-sided McNemar p. difference: p_b - p_a = (b01 - b10) / n, the change in the share of yes;
    interval: its Newcombe (method 10) interval, whose estimate equals `difference`. With n = 0 the
    difference and the interval's bounds are NaN.
    """

    b01: int
    b10: int
    p_value: float
    n: int
    difference: float
    interval: Interval


@dataclass(frozen=True)
class PermutationResult:
    """A two-sided sign-flip test of a mean paired difference: its p-value, the smallest p it could give
    (`resolution`), and whether every sign pattern was enumerated (`exact`) or `flips` were drawn."""

    p_value: float
    resolution: float
    exact: bool
    flips: int


@dataclass(frozen=True)
class PairedResult:
    """Mean per-prompt difference b - a, its BCa interval, the sign-flip test's two-sided p-value and Cohen's
    d_z (the mean difference in standard deviations of the per-prompt differences; see `cohens_dz`); `test`
    says how the p-value was computed and its resolution."""

    difference: float
    interval: Interval
    p_value: float
    d_z: float
    test: PermutationResult


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _z(level: float) -> float:
    """The two-sided standard normal quantile for `level` (1.95996... at 0.95)."""
    _check_level(level)
    return NormalDist().inv_cdf((1 + level) / 2)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval for the proportion successes / n (Wilson 1927; Newcombe 1998, Stat. Med. 17:857, method 3).

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


def paired_difference_interval(
    both: int, only_a: int, only_b: int, neither: int, level: float = 0.95
) -> Interval:
    """Interval for p_b - p_a from a paired 2x2 table, by Newcombe's method 10 (Newcombe 1998, "Improved
    confidence intervals for the difference between binomial proportions based on paired data",
    Stat. Med. 17:2635-2650; as in Fagerland, Lydersen & Laake 2017, ch. 8, "Newcombe square-and-add").

    Counts: both yes, only a yes, only b yes, neither. With p_b, p_a the two marginal shares, (l_b, u_b)
    and (l_a, u_a) their Wilson intervals and d = p_b - p_a = (only_b - only_a) / n:
        low  = d - sqrt((p_b - l_b)² + (u_a - p_a)² - 2 phi (p_b - l_b)(u_a - p_a))
        high = d + sqrt((u_b - p_b)² + (p_a - l_a)² - 2 phi (u_b - p_b)(p_a - l_a))
    where phi corrects for the pairing: with A = both * neither - only_a * only_b and P the product of
    the four marginal totals, phi = (A - n/2) / sqrt(P) if A > n/2, 0 if 0 <= A <= n/2, A / sqrt(P) if
    A < 0, and 0 if a marginal total is 0. Chosen over the Wald interval because it stays inside
    [-1, 1], keeps width with few or no discordant pairs, and has near-nominal coverage there. It is not
    the inversion of the exact McNemar test, so near alpha the two can disagree on whether 0 is excluded.
    """
    counts = (both, only_a, only_b, neither)
    if any(int(c) != c or c < 0 for c in counts):
        raise ValueError(f"counts must be non-negative integers, got {counts}")
    both, only_a, only_b, neither = (int(c) for c in counts)
    n = both + only_a + only_b + neither
    if n == 0:
        raise ValueError("need at least one pair")
    b_yes, a_yes = both + only_b, both + only_a
    p_b, p_a = b_yes / n, a_yes / n
    wilson_b, wilson_a = wilson_interval(b_yes, n, level), wilson_interval(a_yes, n, level)
    product = b_yes * (n - b_yes) * a_yes * (n - a_yes)
    cross = both * neither - only_a * only_b
    if product == 0 or 0 <= cross <= n / 2:
        phi = 0.0
    else:
        phi = (cross - n / 2 if cross > 0 else cross) / math.sqrt(product)
    difference = p_b - p_a

    def spread(x: float, y: float) -> float:
        return math.sqrt(max(0.0, x * x + y * y - 2 * phi * x * y))

    low = difference - spread(p_b - wilson_b.low, wilson_a.high - p_a)
    high = difference + spread(wilson_b.high - p_b, p_a - wilson_a.low)
    return Interval(difference, max(-1.0, low), min(1.0, high))


def mcnemar(a: Sequence[bool], b: Sequence[bool], level: float = 0.95) -> McNemarResult:
    """Exact two-sided McNemar test of paired yes/no outcomes of two methods on the same prompts, with
    the difference in the share of yes, p_b - p_a, and its `paired_difference_interval` at `level`.

    Only discordant prompts (one method right, the other wrong) carry information about a difference;
    under the null each is equally likely to favour either method, so b01 ~ Binomial(b01 + b10, 1/2).
    The exact binomial tail is used rather than the chi-squared approximation because discordant counts
    here are small (tens of prompts), where the approximation is poor. p = min(1, 2 * P(X <= min)),
    computed exactly with integer binomial coefficients; 1.0 when no prompt is discordant. The p-value
    says whether there is a difference, the interval how large it could be (a rate change in points,
    read against the discordant counts, which show how many prompts the difference rests on).
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths: {len(a)} vs {len(b)}")
    _check_level(level)
    b01 = sum(1 for x, y in zip(a, b) if not x and y)
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    both = sum(1 for x, y in zip(a, b) if x and y)
    n = len(a)
    if n == 0:
        nan = float("nan")
        return McNemarResult(0, 0, 1.0, 0, nan, Interval(nan, nan, nan))
    interval = paired_difference_interval(both, b10, b01, n - both - b01 - b10, level)
    discordant = b01 + b10
    if discordant == 0:
        p_value = 1.0
    else:
        tail = sum(math.comb(discordant, k) for k in range(min(b01, b10) + 1))
        p_value = min(1.0, 2 * tail / 2**discordant)
    return McNemarResult(b01, b10, p_value, n, interval.estimate, interval)


def cohens_dz(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d_z for paired scores: mean(b - a) / sd(b - a), the sd with n - 1 (Cohen 1988; Lakens 2013).

    It says how large the mean per-prompt change is relative to how much the change varies between
    prompts (about 0.2 small, 0.5 medium, 0.8 large by Cohen's rough labels), so score effects on
    different scales can be set side by side. When the differences do not vary (sd <= 1e-12 times the
    largest |difference|, to absorb rounding) it is 0.0 if they are all zero (identical arms) and NaN
    otherwise (a constant shift has no finite standardised size: read the raw difference); NaN for a
    single pair, whose sd is undefined. Empty or unequal inputs raise ValueError.
    """
    first, second = _as_sample(a), _as_sample(b)
    if first.size != second.size:
        raise ValueError(f"paired values need equal lengths: {first.size} vs {second.size}")
    differences = second - first
    if differences.size < 2:
        return float("nan")
    scale = float(np.max(np.abs(differences)))
    sd = float(np.std(differences, ddof=1))
    if sd <= 1e-12 * scale:
        return 0.0 if scale == 0.0 else float("nan")
    return float(np.mean(differences)) / sd


EXACT_MAX_PAIRS = 20  # up to 2^20 sign patterns: enumerate them all
SIGN_FLIPS = 100_000  # Monte Carlo sign flips beyond that: resolution 1 / 100,001


def _flipped_means(differences: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Mean of differences * signs per row of a [rows, n] +-1 matrix."""
    return signs @ differences / differences.size


def sign_flip_test(differences: Sequence[float], seed: int = 0, flips: int = SIGN_FLIPS,
                   exact_max: int = EXACT_MAX_PAIRS) -> PermutationResult:
    """Two-sided paired permutation test of mean(differences) = 0 (Fisher 1935; Good 2005, ch. 3).

    Under the null each per-prompt difference is as likely to have either sign, so the observed mean T is
    compared with the means T* of the same differences under sign flips. With n <= exact_max every one of the
    2^n sign patterns is enumerated: p = #{|T*| >= |T|} / 2^n, exact, resolution 2 / 2^n (a pattern and its
    mirror give the same |T*|). Beyond that `flips` seeded random patterns: p = (1 + #{|T*| >= |T|}) / (1 +
    flips), which counts the observed sample among them and so is never 0 (resolution 1 / (1 + flips)). Ties
    are counted with a relative tolerance of 1e-9, so that rounding does not push the identity below |T|.
    Patterns are drawn in chunks of at most _MAX_CELLS signs, so memory stays small for any n.
    """
    sample = _as_sample(differences)
    n = sample.size
    observed = abs(float(np.mean(sample)))
    bar = observed - 1e-9 * max(observed, float(np.max(np.abs(sample))))
    rows = max(1, _MAX_CELLS // n)
    if n <= exact_max:
        patterns = 2**n
        bits = 1 << np.arange(n, dtype=np.int64)
        extreme = 0
        for start in range(0, patterns, rows):
            codes = np.arange(start, min(start + rows, patterns), dtype=np.int64)
            signs = np.where(codes[:, None] & bits, -1.0, 1.0)
            extreme += int(np.sum(np.abs(_flipped_means(sample, signs)) >= bar))
        return PermutationResult(extreme / patterns, 2 / patterns, True, patterns)
    if flips < 1:
        raise ValueError(f"flips must be >= 1, got {flips}")
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, flips, rows):
        signs = rng.integers(0, 2, size=(min(rows, flips - start), n)) * 2.0 - 1.0
        extreme += int(np.sum(np.abs(_flipped_means(sample, signs)) >= bar))
    return PermutationResult((1 + extreme) / (1 + flips), 1 / (1 + flips), False, flips)


def bca_interval(values: Sequence[float], resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> Interval:
    """Bias-corrected and accelerated (BCa) bootstrap interval of the mean (Efron 1987; Efron & Tibshirani
    1993, ch. 14), as scipy.stats.bootstrap(method='BCa') computes it.

    The percentile interval's quantiles are moved by z0 = Phi^-1(share of resampled means below the mean),
    which corrects median bias, and by the acceleration a = sum(d^3) / (6 (sum(d^2))^1.5), d the jackknife
    means' deviations from their mean, which corrects for a standard error that changes with the mean (the
    skew of bounded per-prompt differences): the quantiles are Phi(z0 + (z0 + z) / (1 - a (z0 + z))) for z =
    -+ the normal quantile of `level`. Second-order accurate where the percentile interval is first-order. A
    sample whose resampled means do not vary gives a zero-width interval at the mean.
    """
    sample = _as_sample(values)
    _check_level(level)
    estimate = float(np.mean(sample))
    replicates = _resampled(sample, np.mean, resamples, seed)
    if np.ptp(replicates) <= 1e-12 * max(1.0, abs(estimate)):
        return Interval(estimate, estimate, estimate)
    below = float(np.mean(replicates < estimate))
    z0 = NormalDist().inv_cdf(min(max(below, 0.5 / resamples), 1 - 0.5 / resamples))
    jackknife = (sample.sum() - sample) / (sample.size - 1) if sample.size > 1 else sample
    deviations = jackknife.mean() - jackknife
    spread = float(np.sum(deviations**2))
    acceleration = float(np.sum(deviations**3)) / (6 * spread**1.5) if spread > 0 else 0.0
    z = _z(level)
    quantiles = [NormalDist().cdf(z0 + (z0 + q) / (1 - acceleration * (z0 + q))) for q in (-z, z)]
    low, high = np.percentile(replicates, [100 * q for q in quantiles])
    return Interval(estimate, float(low), float(high))


def paired_scores(a: Sequence[float], b: Sequence[float], seed: int = 0, level: float = 0.95,
                  flips: int = SIGN_FLIPS, resamples: int = 10_000) -> PairedResult:
    """Mean per-prompt difference b - a of a paired continuous outcome (overlap, composite): the sign-flip
    permutation p-value (`sign_flip_test`: exact up to 20 prompts, else `flips` seeded flips), a BCa interval
    (`bca_interval`) and Cohen's d_z. Prompts stay paired, so per-prompt difficulty cancels."""
    first, second = _as_sample(a), _as_sample(b)
    if first.size != second.size:
        raise ValueError(f"paired values need equal lengths: {first.size} vs {second.size}")
    differences = second - first
    test = sign_flip_test(differences, seed=seed, flips=flips)
    interval = bca_interval(differences, resamples=resamples, seed=seed, level=level)
    return PairedResult(interval.estimate, interval, test.p_value, cohens_dz(first, second), test)


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
    degenerate: Sequence[bool] | None = None,
) -> dict[str, Interval]:
    """95% intervals for one method's table column, given per-prompt overlap, judge score and grade.

    Keys follow `MethodSummary`: accuracy (composite >= ACCURACY_THRESHOLD), overlap_ge_05, judge_ge_4,
    composite_mean, overlap_mean, plus simpleqa_correct (share graded CORRECT). Given per-prompt
    `degenerate` flags (outputs judged degenerate, e.g. repetition loops), two more shares: degenerate,
    and accuracy_fluent (accurate and not degenerate, over all prompts), so accuracy can be read net of
    degenerate outputs that still clear the composite bar. Shares get Wilson intervals (non-zero
    width at 0% and 100%); the two means get a seeded percentile bootstrap, both from the same seed,
    hence the same resampled prompt sets.
    """
    n = len(overlap)
    if n == 0 or len(judge_score) != n or len(grades) != n:
        raise ValueError(
            f"need equally many overlaps, scores and grades (>0): {n}, {len(judge_score)}, {len(grades)}"
        )
    if degenerate is not None and len(degenerate) != n:
        raise ValueError(f"need equally many degenerate flags as overlaps: {len(degenerate)} vs {n}")
    unknown = set(grades) - _GRADES
    if unknown:
        raise ValueError(f"unknown SimpleQA grades: {sorted(unknown)}")
    composites = [composite(o, s) for o, s in zip(overlap, judge_score)]
    accurate = [c >= ACCURACY_THRESHOLD for c in composites]
    intervals = {
        "accuracy": _share(accurate),
        "overlap_ge_05": _share([o >= OVERLAP_BAR for o in overlap]),
        "judge_ge_4": _share([s >= JUDGE_BAR for s in judge_score]),
        "composite_mean": bootstrap_interval(composites, resamples=resamples, seed=seed),
        "overlap_mean": bootstrap_interval(list(overlap), resamples=resamples, seed=seed),
        "simpleqa_correct": _share([g == CORRECT for g in grades]),
    }
    if degenerate is not None:
        intervals["degenerate"] = _share([bool(d) for d in degenerate])
        intervals["accuracy_fluent"] = _share([a and not d for a, d in zip(accurate, degenerate)])
    return intervals
