"""Judges: the SimpleQA rubric (CORRECT / INCORRECT / NOT_ATTEMPTED) and the 1-5 quality score.

Two kinds share one interface: `exact` (the strict rule-based grader of `sweep.grader`, deterministic and
offline) and `local` (an HF model answering rubric prompts on a Ray replica). A judge is a pair of small
functions over batches.

The exact judge's score is a function of its grade alone, never of token overlap (the composite adds overlap
separately): CORRECT 5, CORRECT but hedged 4, NOT_ATTEMPTED 2, INCORRECT 1, so it ranks answers as SimpleQA
values them: a committed right answer above a hedged one, and an abstention above a confident wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The grade names and `normalise` are re-exported: other modules import them from here.
from .grader import CORRECT, INCORRECT, NOT_ATTEMPTED, Verdict, grade, normalise  # noqa: F401

GRADE_LETTERS = {"A": CORRECT, "B": INCORRECT, "C": NOT_ATTEMPTED}


@dataclass(frozen=True)
class Item:
    question: str
    gold: str
    predicted: str


@dataclass(frozen=True)
class Score:
    value: int  # 1-5
    parsed: bool  # False when the judge's reply held no score (then value is 1)


@dataclass(frozen=True)
class Judge:
    name: str
    grade: Callable[[list[Item]], list[str]]
    score: Callable[[list[Item]], list[Score]]


# --- exact: deterministic, offline ---------------------------------------------------------------

EXACT_SCORES = {CORRECT: 5, NOT_ATTEMPTED: 2, INCORRECT: 1}
HEDGED_CORRECT_SCORE = 4


def exact_verdict(item: Item) -> Verdict:
    """The strict grader's grade of the item, with whether a CORRECT answer was hedged and why."""
    return grade(item.question, item.gold, item.predicted)


def exact_grade(item: Item) -> str:
    return exact_verdict(item).grade


def verdict_score(verdict: Verdict) -> int:
    """The 1-5 score of a grade: 5 correct, 4 correct but hedged, 2 not attempted, 1 incorrect."""
    if verdict.grade == CORRECT and verdict.hedged:
        return HEDGED_CORRECT_SCORE
    return EXACT_SCORES[verdict.grade]


def exact_score(item: Item) -> Score:
    return Score(verdict_score(exact_verdict(item)), True)


def exact_judge() -> Judge:
    return Judge("exact", lambda items: [exact_grade(i) for i in items], lambda items: [exact_score(i) for i in items])


# --- local: an LLM on a replica --------------------------------------------------------------------

RUBRIC_PROMPT = """You grade answers to factual questions against a gold target.
Reply with one letter:
A) CORRECT: the answer contains the gold target's meaning and contradicts nothing in it.
B) INCORRECT: the answer states something that contradicts the gold target, even with hedging.
C) NOT_ATTEMPTED: the answer does not give the target and contradicts nothing (e.g. "I don't know").
Small spelling differences, missing middle names and added correct detail are fine.

Question: {question}
Gold target: {target}
Predicted answer: {predicted_answer}

Grade (A, B or C):"""

SCORE_PROMPT = """Rate the answer to the question against the gold answer, for correctness, relevance and
completeness, from 1 to 5: 5 fully correct, 4 mostly correct, 3 partly correct, 2 mostly wrong,
1 wrong, irrelevant or hallucinated. Reply as "Score: N".

Question: {question}
Gold answer: {target}
Answer: {predicted_answer}

Score:"""


def load_template(path: Path) -> str:
    """A grader template with {question} {target} {predicted_answer}; text between BEGIN/END TEMPLATE
    markers if the file has them (as the official simple-evals copy does)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(r"-----BEGIN TEMPLATE-----\n(.*?)\n-----END TEMPLATE-----", text, re.S)
    template = (match.group(1) if match else text).strip()
    missing = [f for f in ("{question}", "{target}", "{predicted_answer}") if f not in template]
    if missing:
        raise ValueError(f"grader template {path} lacks placeholder(s) {', '.join(missing)}")
    return template


def parse_grade(reply: str) -> str:
    """The first A/B/C letter (or grade word) in the reply; anything else counts as NOT_ATTEMPTED."""
    match = re.search(r"\b(CORRECT|INCORRECT|NOT_ATTEMPTED|[ABC])\b", reply.strip())
    if not match:
        return NOT_ATTEMPTED
    token = match.group(1)
    return GRADE_LETTERS.get(token, token)


def parse_score(reply: str) -> Score:
    match = re.search(r"score\s*:?\s*([1-5])", reply, re.I) or re.search(r"\b([1-5])\b", reply)
    return Score(int(match.group(1)), True) if match else Score(1, False)


def model_judge(name: str, generate: Callable[[list[str], int], list[str]], grade_template: str,
                max_new_tokens: int) -> Judge:
    """A judge whose replies come from `generate(prompts, max_new_tokens)` (a model replica)."""
    def fill(template: str, item: Item) -> str:
        return template.format(question=item.question, target=item.gold, predicted_answer=item.predicted)

    def grade(items: list[Item]) -> list[str]:
        return [parse_grade(r) for r in generate([fill(grade_template, i) for i in items], max_new_tokens)]

    def score(items: list[Item]) -> list[Score]:
        return [parse_score(r) for r in generate([fill(SCORE_PROMPT, i) for i in items], max_new_tokens)]

    return Judge(name, grade, score)
