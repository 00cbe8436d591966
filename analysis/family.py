"""The report's one pre-declared family of paired tests, its power, and per-prompt steerability.

Declared before looking at the data, so that Holm's correction is over the questions the run was built to
answer and nothing else: each steered method (`full`, `segmented`) against each reference run beside it
(`prompt_only`, its own `-random` and `-mismatched` controls, and the `sampled` and `in_context` oracles),
on two outcomes that do not repeat each other:
- CORRECT among non-degenerate outputs (a loop of the gold's words is not an answer): exact McNemar;
- mean gold overlap: the sign-flip permutation test, with a BCa interval.
The composite is left out: under the rule-based judge half of it is the grade again. Rows against `baseline`
are descriptive only: prompts were kept because the baseline was INCORRECT, so any arm gains on it by
construction (regression to the mean), and testing that difference would test the selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from sweep.arms import IN_CONTEXT, PROMPT_ONLY, SAMPLED
from sweep.config import METHODS
from sweep.judges import CORRECT

from .stats import Interval, holm, mcnemar, paired_scores

OUTCOMES = {"correct": "CORRECT, non-degenerate", "overlap": "mean gold overlap"}
ALPHA = 0.05
EQUAL = 1e-9  # per-prompt overlap changes this small count as no change (overlap is rounded to 4 dp)


@dataclass(frozen=True)
class FamilyTest:
    """One paired test of the family: `method` against `reference` on `outcome`, effect read method - reference.

    difference: change in the share (CORRECT) or in the mean (overlap); interval: Newcombe's or BCa;
    detail: the prompts gained / lost (CORRECT) or d_z (overlap); resolution: the smallest p the test could
    give here (McNemar: 2^(1-D) with D discordant prompts; permutation: see `sign_flip_test`)."""

    method: str
    reference: str
    outcome: str
    difference: float
    interval: Interval
    detail: str
    p_value: float
    resolution: float
    p_holm: float = math.nan

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


def correct_flags(grades: pd.DataFrame) -> list[bool]:
    """CORRECT and not degenerate, per row."""
    return ((grades["grade"] == CORRECT) & ~grades["degenerate"].astype(bool)).tolist()


def references(method: str, arms: dict[str, pd.DataFrame]) -> list[str]:
    """The method's references present in the run, in the family's order."""
    wanted = (PROMPT_ONLY, f"{method}-random", f"{method}-mismatched", SAMPLED, IN_CONTEXT)
    return [r for r in wanted if r in arms]


def pairs(arms: dict[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """(method, reference) for every comparison of the family."""
    return [(m, r) for m in METHODS if m in arms for r in references(m, arms)]


def paired_frames(arms: dict[str, pd.DataFrame], first: str, second: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two arms' rows on the prompts both have, in the same prompt order."""
    ids = sorted(set(arms[first]["prompt_id"]) & set(arms[second]["prompt_id"]))
    return tuple(arms[a].set_index("prompt_id").loc[ids].reset_index() for a in (first, second))


def _correct_test(method: str, reference: str, ref: pd.DataFrame, steered: pd.DataFrame) -> FamilyTest:
    result = mcnemar(correct_flags(ref), correct_flags(steered))
    discordant = result.b01 + result.b10
    return FamilyTest(method, reference, "correct", result.difference, result.interval,
                      f"{result.b01} / {result.b10}", result.p_value, min(1.0, 2.0 ** (1 - discordant)))


def _overlap_test(method: str, reference: str, ref: pd.DataFrame, steered: pd.DataFrame, seed: int) -> FamilyTest:
    result = paired_scores(ref["overlap"].tolist(), steered["overlap"].tolist(), seed=seed)
    return FamilyTest(method, reference, "overlap", result.difference, result.interval, f"{result.d_z:+.2f}",
                      result.p_value, result.test.resolution)


def declared_family(arms: dict[str, pd.DataFrame], seed: int) -> list[FamilyTest]:
    """Every test of the family, with Holm-adjusted p-values over the family alone."""
    tests = []
    for method, reference in pairs(arms):
        ref, steered = paired_frames(arms, reference, method)
        tests += [_correct_test(method, reference, ref, steered),
                  _overlap_test(method, reference, ref, steered, seed)]
    adjusted = holm([t.p_value for t in tests])
    return [replace(t, p_holm=p) for t, p in zip(tests, adjusted)]


def min_detectable_gain(n: int, m: int, alpha: float = ALPHA) -> int | None:
    """The fewest prompts a method must gain, with none lost, for McNemar's exact p, Holm-adjusted as the
    family's first step (p * m), to fall below alpha: with G discordant prompts all one way p = 2^(1-G).
    None when even all n prompts would not do."""
    if m < 1:
        raise ValueError(f"need at least one test in the family, got m = {m}")
    for gained in range(1, n + 1):
        if min(1.0, 2.0 ** (1 - gained)) * m < alpha:
            return gained
    return None


def power_line(n: int, m: int) -> str:
    gained = min_detectable_gain(n, m)
    if gained is None:
        return (f"With n = {n} and m = {m} tests, no CORRECT change can reach Holm-adjusted p < {ALPHA}: even "
                f"all {n} prompts gained with none lost would not.")
    return (f"With n = {n} and m = {m} tests, a method must gain at least {gained} prompts with none lost to "
            f"reach Holm-adjusted p < {ALPHA}.")


@dataclass(frozen=True)
class Steerability:
    """Per-prompt overlap change of an arm against `prompt_only`: how many prompts moved which way."""

    arm: str
    better: int
    equal: int
    worse: int
    changes: list[float]

    @property
    def n(self) -> int:
        return self.better + self.equal + self.worse


def steerability(arms: dict[str, pd.DataFrame], arm: str) -> Steerability:
    """How `arm`'s best output's overlap compares with `prompt_only`'s, prompt by prompt."""
    ref, steered = paired_frames(arms, PROMPT_ONLY, arm)
    changes = (steered["overlap"] - ref["overlap"]).tolist()
    return Steerability(arm, sum(c > EQUAL for c in changes), sum(abs(c) <= EQUAL for c in changes),
                        sum(c < -EQUAL for c in changes), changes)
