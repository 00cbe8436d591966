"""The grades and a verdict: what every part of the grader returns."""

from __future__ import annotations

from dataclasses import dataclass

CORRECT, INCORRECT, NOT_ATTEMPTED = "CORRECT", "INCORRECT", "NOT_ATTEMPTED"
# How one candidate compares with the gold.
EQUAL, DIFFERENT, CONSISTENT, AMBIGUOUS = "equal", "different", "consistent", "ambiguous"


@dataclass(frozen=True)
class Verdict:
    grade: str
    hedged: bool = False  # a CORRECT answer given with hedging ("I think", "around", "not sure, but")
    reason: str = ""
