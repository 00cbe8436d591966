"""Tests for analysis.stats: hand-computed Wilson intervals and McNemar p-values, bootstrap intervals on
known samples, the sign-flip test against an independent enumeration, BCa against scipy, per-method
intervals and input validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.stats import (
    Interval,
    bca_interval,
    bootstrap_interval,
    cohens_dz,
    holm,
    mcnemar,
    method_intervals,
    paired_difference_interval,
    paired_scores,
    sign_flip_test,
    wilson_interval,
)
from analysis.tables import summarise


# z for 95%: NormalDist().inv_cdf(0.975) = 1.959964, z² = 3.841459. Wilson bounds:
# (x + z²/2 ± z sqrt(x(n-x)/n + z²/4)) / (n + z²).


def test_wilson_half() -> None:
    # 50/100: centre (50 + 1.920729) / 103.841459 = 0.5;
    # half-width 1.959964 * sqrt(25 + 0.960365) / 103.841459
    # = 1.959964 * 5.095132 / 103.841459 = 0.096168 -> [0.403832, 0.596168].
    interval = wilson_interval(50, 100)
    assert interval.estimate == 0.5
    assert interval.low == pytest.approx(0.403832, abs=1e-6)
    assert interval.high == pytest.approx(0.596168, abs=1e-6)


def test_wilson_four_of_five() -> None:
    # 4/5: x(n-x)/n = 0.8; sqrt(0.8 + 0.960365) = 1.326788; centre 4 + 1.920729 = 5.920729;
    # (5.920729 ∓ 1.959964 * 1.326788) / 8.841459 = (5.920729 ∓ 2.600457) / 8.841459
    # = [0.375535, 0.963776].
    interval = wilson_interval(4, 5)
    assert interval.estimate == pytest.approx(0.8)
    assert interval.low == pytest.approx(0.375535, abs=1e-6)
    assert interval.high == pytest.approx(0.963776, abs=1e-6)


def test_wilson_zero_and_all_have_width() -> None:
    # 0/8: low 0; high (0 + 1.920729 + 1.959964 * sqrt(0.960365)) / 11.841459 = 3.841459 / 11.841459
    # = 0.324408.
    zero = wilson_interval(0, 8)
    assert (zero.estimate, zero.low) == (0.0, 0.0)
    assert zero.high == pytest.approx(0.324408, abs=1e-6)
    assert zero.fmt(percent=True) == "0.0% [0.0, 32.4]"
    # 8/8 mirrors it: [1 - 0.324408, 1].
    full = wilson_interval(8, 8)
    assert (full.estimate, full.high) == (1.0, 1.0)
    assert full.low == pytest.approx(1 - 0.324408, abs=1e-6)
    assert full.fmt(percent=True) == "100.0% [67.6, 100.0]"


def test_wilson_level() -> None:
    # 90%: z = 1.644854, z² = 2.705543; 0/8 high = z² / (8 + z²) = 2.705543 / 10.705543 = 0.252724.
    assert wilson_interval(0, 8, level=0.9).high == pytest.approx(0.252724, abs=1e-6)
    # A higher level widens the interval.
    assert wilson_interval(3, 10, level=0.99).low < wilson_interval(3, 10).low


def test_wilson_validation() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"successes must be in \[0, n\]"):
        wilson_interval(9, 8)
    with pytest.raises(ValueError, match=r"successes must be in \[0, n\]"):
        wilson_interval(-1, 8)
    with pytest.raises(ValueError, match="integers"):
        wilson_interval(2.5, 8)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(2, 8, level=0.0)


def test_mcnemar_hand_case() -> None:
    # 1 prompt where only b is right (b01), 9 where only a is right (b10), 5 where both agree.
    # Exact two-sided p = 2 * sum_{k<=1} C(10, k) / 2^10 = 2 * (1 + 10) / 1024 = 22/1024 ≈ 0.02148.
    a = [False] * 1 + [True] * 9 + [True] * 3 + [False] * 2
    b = [True] * 1 + [False] * 9 + [True] * 3 + [False] * 2
    result = mcnemar(a, b)
    assert (result.b01, result.b10) == (1, 9)
    assert result.p_value == pytest.approx(22 / 1024, abs=1e-12)
    assert mcnemar(b, a).p_value == pytest.approx(22 / 1024, abs=1e-12)  # symmetric in the two methods


def test_mcnemar_effect_size() -> None:
    # Same table as test_mcnemar_hand_case: both right 3, only a 9, only b 1, neither 2, n = 15.
    # p_b - p_a = (1 - 9) / 15 = -0.5333, with the Newcombe interval of that table.
    a = [False] * 1 + [True] * 9 + [True] * 3 + [False] * 2
    b = [True] * 1 + [False] * 9 + [True] * 3 + [False] * 2
    result = mcnemar(a, b)
    assert result.n == 15
    assert result.difference == pytest.approx(-8 / 15)
    assert result.interval == paired_difference_interval(both=3, only_a=9, only_b=1, neither=2)
    assert result.interval.low < result.difference < result.interval.high < 0
    # Swapping the methods negates the difference and mirrors the interval.
    swapped = mcnemar(b, a)
    assert swapped.difference == pytest.approx(8 / 15)
    mirrored = (-result.interval.high, -result.interval.low)
    assert (swapped.interval.low, swapped.interval.high) == pytest.approx(mirrored)
    # A higher level widens it.
    wide = mcnemar(a, b, level=0.99).interval
    assert wide.low < result.interval.low and wide.high > result.interval.high


def test_mcnemar_balanced_and_no_discordant() -> None:
    # b01 = b10 = 3: 2 * sum_{k<=3} C(6, k) / 64 = 2 * 42 / 64 > 1, clipped to 1.
    a = [True] * 3 + [False] * 3
    b = [False] * 3 + [True] * 3
    assert mcnemar(a, b).p_value == 1.0
    # Identical outcomes: no discordant pairs, no evidence either way.
    same = mcnemar([True, False, True], [True, False, True])
    assert (same.b01, same.b10, same.p_value) == (0, 0, 1.0)
    assert same.difference == 0.0 and same.interval.low < 0 < same.interval.high
    empty = mcnemar([], [])
    assert (empty.p_value, empty.n) == (1.0, 0)
    assert np.isnan(empty.difference) and np.isnan(empty.interval.low) and np.isnan(empty.interval.high)


def test_mcnemar_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar([True, False], [True])


def test_paired_difference_interval_hand_case() -> None:
    # both 2, only a 1, only b 5, neither 2 (n = 10): p_b = 7/10, p_a = 3/10, d = 0.4.
    # Wilson 7/10 = [0.396778, 0.892209], 3/10 = [0.107791, 0.603222].
    # A = 2 * 2 - 1 * 5 = -1 < 0, so phi = -1 / sqrt(7 * 3 * 3 * 7) = -1/21.
    # low  = 0.4 - sqrt(0.303222² + 0.303222² + 2/21 * 0.303222²) = 0.4 - sqrt(0.192644) = -0.038912
    # high = 0.4 + sqrt(0.192209² + 0.192209² + 2/21 * 0.192209²) = 0.4 + sqrt(0.077407) = 0.678221
    interval = paired_difference_interval(both=2, only_a=1, only_b=5, neither=2)
    assert interval.estimate == pytest.approx(0.4)
    assert interval.low == pytest.approx(-0.038912, abs=1e-6)
    assert interval.high == pytest.approx(0.678221, abs=1e-6)


def test_paired_difference_interval_phi_cases() -> None:
    # both 3, only a 2, only b 2, neither 3: A = 9 - 4 = 5 <= n/2 = 5, so phi = 0; p_a = p_b = 0.5, d = 0;
    # Wilson 5/10 low = 0.236593, so the bounds are ± sqrt(2) * (0.5 - 0.236593) = ± 0.372514.
    even = paired_difference_interval(both=3, only_a=2, only_b=2, neither=3)
    assert even.estimate == 0.0
    assert (even.low, even.high) == pytest.approx((-0.372514, 0.372514), abs=1e-6)
    # No discordant pairs, both 5, neither 5: A = 25 > n/2 = 5, phi = (25 - 5) / sqrt(5^4) = 0.8;
    # bounds ± sqrt(2 - 1.6) * 0.263407 = ± 0.166593: narrower than the unpaired 0.372514, but not zero.
    concordant = paired_difference_interval(both=5, only_a=0, only_b=0, neither=5)
    assert (concordant.low, concordant.high) == pytest.approx((-0.166593, 0.166593), abs=1e-6)
    # All eight yes for both: a marginal total is 0, so phi = 0; p - l = 1 - 0.675592 = 0.324408 (Wilson 8/8),
    # u - p = 0: bounds -sqrt(0.324408² + 0) and +sqrt(0 + 0.324408²).
    ceiling = paired_difference_interval(both=8, only_a=0, only_b=0, neither=0)
    assert (ceiling.low, ceiling.high) == pytest.approx((-0.324408, 0.324408), abs=1e-6)


def test_paired_difference_interval_published_case() -> None:
    # Fagerland, Lydersen & Laake (2017), ch. 8, Cavo et al. (2012): table [[59, 6], [16, 80]]; their
    # Newcombe square-and-add interval for p_row - p_col is -0.0621 [-0.1186, -0.0046]. Row = b, column = a.
    interval = paired_difference_interval(both=59, only_a=16, only_b=6, neither=80)
    assert interval.estimate == pytest.approx(-10 / 161)
    assert (interval.low, interval.high) == pytest.approx((-0.1186, -0.0046), abs=5e-5)


def test_paired_difference_interval_validation() -> None:
    with pytest.raises(ValueError, match="at least one pair"):
        paired_difference_interval(0, 0, 0, 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        paired_difference_interval(1, -1, 0, 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        paired_difference_interval(1, 0.5, 0, 0)
    with pytest.raises(ValueError, match="level"):
        paired_difference_interval(1, 1, 1, 1, level=1.5)


def test_cohens_dz_hand_cases() -> None:
    # Differences 0.2, 0.1, 0.3: mean 0.2, sd (n - 1) sqrt((0 + 0.01 + 0.01) / 2) = 0.1, d_z = 2.
    assert cohens_dz([0.1, 0.2, 0.3], [0.3, 0.3, 0.6]) == pytest.approx(2.0)
    # Differences 1, -1, 0, 2: mean 0.5, squared deviations 0.25 + 2.25 + 0.25 + 2.25 = 5,
    # sd sqrt(5/3) = 1.290994, d_z = 0.5 / 1.290994 = 0.387298; reversing the arms flips the sign.
    assert cohens_dz([0, 1, 0, 0], [1, 0, 0, 2]) == pytest.approx(0.387298, abs=1e-6)
    assert cohens_dz([1, 0, 0, 2], [0, 1, 0, 0]) == pytest.approx(-0.387298, abs=1e-6)


def test_cohens_dz_degenerate_cases() -> None:
    assert cohens_dz([0.2, 0.5, 0.9], [0.2, 0.5, 0.9]) == 0.0  # identical arms: no effect
    a = list(np.random.default_rng(5).random(40))
    assert np.isnan(cohens_dz(a, [x + 0.1 for x in a]))  # constant shift (up to rounding): sd 0, undefined
    assert np.isnan(cohens_dz([0.1], [0.4]))  # one pair: sd undefined
    with pytest.raises(ValueError, match="equal lengths"):
        cohens_dz([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="non-empty"):
        cohens_dz([], [])


def test_bootstrap_constant_sample_is_zero_width() -> None:
    interval = bootstrap_interval([0.35] * 20)
    assert interval.estimate == interval.low == interval.high == pytest.approx(0.35)
    single = bootstrap_interval([0.7])
    assert (single.estimate, single.low, single.high) == (0.7, 0.7, 0.7)


def test_bootstrap_half_ones() -> None:
    # 50 ones in 100: estimate 0.5, standard error sqrt(0.5 * 0.5 / 100) = 0.05, so a 95% interval is
    # about 0.5 ± 1.96 * 0.05 = [0.402, 0.598], width ≈ 0.196.
    interval = bootstrap_interval([1.0] * 50 + [0.0] * 50, seed=1)
    assert interval.estimate == 0.5
    assert interval.low < 0.5 < interval.high
    assert 0.15 < interval.high - interval.low < 0.25


def test_bootstrap_is_seeded() -> None:
    values = list(np.random.default_rng(7).random(60))
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    assert bootstrap_interval(values, seed=3) != bootstrap_interval(values, seed=4)


def test_bootstrap_other_statistic_and_chunking() -> None:
    # Median via statistic=np.median; 5000 values force several index chunks (1e6 cells / 5000 = 200 rows).
    values = list(np.random.default_rng(0).normal(size=5000))
    interval = bootstrap_interval(values, statistic=np.median, resamples=450)
    assert interval.estimate == pytest.approx(float(np.median(values)))
    assert interval.low < interval.estimate < interval.high


def test_bootstrap_validation() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1.0, 2.0], level=1.0)


def _enumerated_p(differences: list[float]) -> float:
    """The sign-flip p-value by brute force: every sign pattern, one at a time, in plain Python."""
    observed = abs(sum(differences)) / len(differences)
    extreme = 0
    for signs in itertools.product((1, -1), repeat=len(differences)):
        flipped = abs(sum(s * d for s, d in zip(signs, differences))) / len(differences)
        extreme += flipped >= observed - 1e-12
    return extreme / 2 ** len(differences)


@pytest.mark.parametrize("n, seed", [(1, 0), (5, 1), (9, 2), (12, 3)])
def test_sign_flip_exact_matches_enumeration(n: int, seed: int) -> None:
    differences = list(np.random.default_rng(seed).normal(0.4, 1.0, n))
    result = sign_flip_test(differences)
    assert result.exact and result.flips == 2**n
    assert result.p_value == pytest.approx(_enumerated_p(differences), abs=1e-12)
    assert result.resolution == 2 / 2**n


def test_sign_flip_hand_cases() -> None:
    # All four differences positive: only the identity and the all-minus pattern reach |T|: p = 2/16.
    assert sign_flip_test([0.1, 0.2, 0.3, 0.4]).p_value == pytest.approx(2 / 16)
    # Ties in |T*| count: [1, 1, -1, -1] has T = 0, so every pattern reaches it: p = 1.
    assert sign_flip_test([1.0, 1.0, -1.0, -1.0]).p_value == 1.0
    # Discrete overlaps: differences 0.25 on 3 prompts and 0 on 7: the zeros' signs do not matter, so
    # p = 2 * 2^7 / 2^10 = 0.25.
    assert sign_flip_test([0.25] * 3 + [0.0] * 7).p_value == pytest.approx(0.25)
    assert sign_flip_test([0.0] * 6).p_value == 1.0  # identical arms


def test_sign_flip_monte_carlo_close_to_exact() -> None:
    # 18 pairs: the exact p, and 100,000 seeded flips of the same sample (exact_max=0 forces Monte Carlo),
    # whose p has standard error sqrt(p(1-p)/B) <= 0.0016: within 4 of them.
    differences = list(np.random.default_rng(8).normal(0.35, 1.0, 18))
    exact = sign_flip_test(differences)
    sampled = sign_flip_test(differences, seed=1, exact_max=0)
    assert not sampled.exact and sampled.flips == 100_000 and sampled.resolution == 1 / 100_001
    assert 0.01 < exact.p_value < 0.5
    assert sampled.p_value == pytest.approx(exact.p_value, abs=4 * np.sqrt(exact.p_value / 100_000))
    assert sign_flip_test(differences, seed=1, exact_max=0) == sampled  # seeded
    # A strong effect on many prompts: no flip reaches it, and p is the resolution, never 0.
    strong = sign_flip_test(list(np.random.default_rng(2).normal(1.0, 0.2, 60)), flips=2000)
    assert strong.p_value == 1 / 2001 == strong.resolution


def test_sign_flip_chunks_and_validation() -> None:
    # 5000 pairs: 200 flips per chunk (1e6 cells), so 1,000 flips take five chunks; no effect, p not small.
    noise = list(np.random.default_rng(4).normal(0.0, 1.0, 5000))
    assert sign_flip_test(noise, flips=1000).p_value > 0.01
    with pytest.raises(ValueError, match="non-empty"):
        sign_flip_test([])
    with pytest.raises(ValueError, match="flips"):
        sign_flip_test([0.1] * 30, flips=0)


def test_bca_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    # A right-skewed sample (exponential, n = 40), where BCa moves away from the percentile interval.
    sample = np.random.default_rng(6).exponential(1.0, 40)
    ours = bca_interval(sample, resamples=40_000, seed=1)
    theirs = scipy_stats.bootstrap((sample,), np.mean, method="BCa", n_resamples=40_000,
                                   random_state=np.random.default_rng(2)).confidence_interval
    assert ours.estimate == pytest.approx(float(np.mean(sample)))
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=0.01)
    percentile = bootstrap_interval(sample, resamples=40_000, seed=1)
    # Both bounds move right of the percentile interval's for this skew, as scipy's do.
    assert ours.low > percentile.low and ours.high > percentile.high


def test_bca_constant_and_level() -> None:
    assert bca_interval([0.25] * 10) == Interval(0.25, 0.25, 0.25)
    sample = list(np.random.default_rng(9).random(50))
    narrow, wide = bca_interval(sample, level=0.8), bca_interval(sample, level=0.99)
    assert wide.low < narrow.low < narrow.estimate < narrow.high < wide.high
    with pytest.raises(ValueError, match="level"):
        bca_interval(sample, level=1.0)


def test_paired_scores_combines_permutation_bca_and_dz() -> None:
    rng = np.random.default_rng(5)
    a = list(rng.random(40))
    b = [x + 0.1 + 0.1 * y for x, y in zip(a, rng.normal(size=40))]
    result = paired_scores(a, b, seed=3)
    differences = np.array(b) - np.array(a)
    assert result.difference == pytest.approx(float(differences.mean()))
    assert result.test == sign_flip_test(differences, seed=3)
    assert result.p_value == result.test.p_value < 0.001
    assert result.interval == bca_interval(differences, seed=3)
    assert result.d_z == pytest.approx(cohens_dz(a, b))
    same = paired_scores(a, a)
    assert (same.difference, same.p_value, same.d_z) == (0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_scores([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="non-empty"):
        paired_scores([], [])


def test_holm_hand_case() -> None:
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (step-down
    # monotonicity). Back in input order [0.01, 0.04, 0.03, 0.005]: [0.03, 0.06, 0.06, 0.02].
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_cap_and_order() -> None:
    # 0.3 * 3 = 0.9, 0.4 * 2 = 0.8 -> 0.9, 0.6 * 1 = 0.6 -> 0.9; and 0.5 * 3 = 1.5 capped at 1.
    assert holm([0.6, 0.3, 0.4]) == pytest.approx([0.9, 0.9, 0.9])
    assert holm([0.5, 0.9, 0.7]) == [1.0, 1.0, 1.0]


def test_holm_edge_cases() -> None:
    assert holm([]) == []
    assert holm([0.04]) == [0.04]  # one test: nothing to correct
    # Ties: 0.02 * 3 = 0.06 for both (the second, 0.02 * 2 = 0.04, is raised to 0.06); 0.5 * 1 -> 0.5.
    assert holm([0.02, 0.5, 0.02]) == pytest.approx([0.06, 0.5, 0.06])
    # Values of 1 stay 1 and do not disturb the others: 0.01 * 3 = 0.03.
    assert holm([1.0, 0.01, 1.0]) == pytest.approx([1.0, 0.03, 1.0])
    assert holm([0.0, 0.0]) == [0.0, 0.0]


def test_holm_validation() -> None:
    for bad in ([0.1, 1.5], [-0.1], [float("nan")]):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            holm(bad)


# Same five prompts as tests/test_paper_table.py: accuracy 4/5, overlap >= 0.5 2/5, judge >= 4 3/5,
# composite mean 0.539, overlap mean 0.438; grades CORRECT 2/5.
HAND_OVERLAP = [1.0, 0.5, 0.2, 0.0, 0.49]
HAND_SCORE = [1, 4, 5, 2, 4]
HAND_GRADES = ["CORRECT", "INCORRECT", "CORRECT", "NOT_ATTEMPTED", "INCORRECT"]


def test_method_intervals_estimates_are_the_plain_rates() -> None:
    intervals = method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0)
    summary = summarise(HAND_OVERLAP, HAND_SCORE)
    expected = {
        "accuracy": summary.accuracy,
        "overlap_ge_05": summary.overlap_ge_05,
        "judge_ge_4": summary.judge_ge_4,
        "composite_mean": summary.composite_mean,
        "overlap_mean": summary.overlap_mean,
        "simpleqa_correct": 2 / 5,
    }
    assert set(intervals) == set(expected)
    for name, value in expected.items():
        assert intervals[name].estimate == pytest.approx(value), name
        assert intervals[name].low <= intervals[name].estimate <= intervals[name].high, name
    assert expected["accuracy"] == pytest.approx(0.8) and expected["composite_mean"] == pytest.approx(0.539)


def test_method_intervals_wilson_for_shares_bootstrap_for_means() -> None:
    intervals = method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0)
    # Shares: accuracy 4/5, overlap >= 0.5 2/5, judge >= 4 3/5, CORRECT 2/5, each the Wilson interval.
    shares = (("accuracy", 4), ("overlap_ge_05", 2), ("judge_ge_4", 3), ("simpleqa_correct", 2))
    for name, successes in shares:
        assert intervals[name] == wilson_interval(successes, 5), name
    assert intervals["accuracy"].low == pytest.approx(0.375535, abs=1e-6)  # see test_wilson_four_of_five
    # Means: the seeded bootstrap of the per-prompt composites and overlaps.
    composites = [0.5 * o + 0.1 * s for o, s in zip(HAND_OVERLAP, HAND_SCORE)]
    assert intervals["composite_mean"] == bootstrap_interval(composites, seed=0)
    assert intervals["overlap_mean"] == bootstrap_interval(HAND_OVERLAP, seed=0)


def test_method_intervals_all_wrong_share_has_width() -> None:
    # Eight prompts, none accurate, none CORRECT: the bootstrap gave [0, 0]; Wilson gives [0, 32.4%].
    intervals = method_intervals([0.0] * 8, [1] * 8, ["INCORRECT"] * 8, seed=0)
    assert intervals["accuracy"].fmt(percent=True) == "0.0% [0.0, 32.4]"
    assert intervals["simpleqa_correct"].fmt(percent=True) == "0.0% [0.0, 32.4]"
    # The mean of a constant sample keeps its zero-width bootstrap interval: 0.5 * 0 + 0.5 * 1/5 = 0.1.
    mean = intervals["composite_mean"]
    assert mean.low == mean.high == pytest.approx(0.1)


def test_method_intervals_degenerate() -> None:
    # Accurate (composite >= 0.6) on prompts 0, 1, 2, 4 (composites 0.6, 0.65, 0.6, 0.2, 0.645);
    # degenerate on prompts 1 and 3. Degenerate share 2/5; accurate and not degenerate: prompts 0, 2, 4 = 3/5.
    degenerate = [False, True, False, True, False]
    intervals = method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0, degenerate=degenerate)
    assert intervals["degenerate"] == wilson_interval(2, 5)
    assert intervals["accuracy_fluent"] == wilson_interval(3, 5)
    assert intervals["accuracy"] == wilson_interval(4, 5)  # the other keys are unchanged
    plain = method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0)
    assert {k: v for k, v in intervals.items() if k not in ("degenerate", "accuracy_fluent")} == plain
    assert "degenerate" not in plain and "accuracy_fluent" not in plain
    # No degenerate output: 0/5 has width, [0, 43.4%] (z² / (5 + z²) = 3.841459 / 8.841459 = 0.434482).
    clean = method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0, degenerate=[False] * 5)
    assert clean["degenerate"].high == pytest.approx(0.434482, abs=1e-6)
    assert clean["accuracy_fluent"] == clean["accuracy"]


def test_method_intervals_validation() -> None:
    with pytest.raises(ValueError, match="degenerate flags"):
        method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES, seed=0, degenerate=[False] * 4)
    with pytest.raises(ValueError, match="equally many"):
        method_intervals(HAND_OVERLAP, HAND_SCORE[:4], HAND_GRADES, seed=0)
    with pytest.raises(ValueError, match="equally many"):
        method_intervals([], [], [], seed=0)
    with pytest.raises(ValueError, match="unknown SimpleQA grades"):
        method_intervals(HAND_OVERLAP, HAND_SCORE, HAND_GRADES[:4] + ["MAYBE"], seed=0)


def test_interval_format() -> None:
    assert Interval(0.162, 0.12, 0.208).fmt(percent=True) == "16.2% [12.0, 20.8]"
    assert Interval(0.35, 0.31, 0.39).fmt(percent=False) == "0.35 [0.31, 0.39]"
