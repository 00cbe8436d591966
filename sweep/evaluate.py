"""Grades per (prompt, method): overlap, judge score, SimpleQA grade, composite; and SimpleQA's summary metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import prompts
from .judges import CORRECT, INCORRECT, NOT_ATTEMPTED, Item, Judge, exact_grade
from .scoring import ACCURACY_THRESHOLD, composite, scored_text, token_overlap


@dataclass(frozen=True)
class Answer:
    prompt_id: int
    method: str  # baseline | full | segmented
    question: str
    gold: str
    text: str  # the model's continuation


def answers(prompt_rows: Sequence[Mapping], best_rows: Sequence[Mapping]) -> list[Answer]:
    """The unsteered baseline and each method's best trial, for every selected prompt."""
    by_id = {r["prompt_id"]: r for r in prompt_rows}
    out = [Answer(r["prompt_id"], "baseline", r["question"], r["answer"], r["baseline_text"]) for r in prompt_rows]
    out += [Answer(r["prompt_id"], r["method"], by_id[r["prompt_id"]]["question"], by_id[r["prompt_id"]]["answer"],
                   r["text"]) for r in best_rows]
    return sorted(out, key=lambda a: (a.prompt_id, a.method))


def grade_answers(items: Sequence[Answer], judge: Judge, include_prompt: bool) -> list[dict]:
    """One grades.parquet row per answer. The composite uses the overlap scoring.include_prompt picks; both
    overlaps are kept, and the deterministic grade beside the judge's, so reports can show both."""
    judged = [Item(a.question, a.gold, a.text) for a in items]
    grades, scores = judge.grade(judged), judge.score(judged)
    rows = []
    for answer, item, grade, score in zip(items, judged, grades, scores):
        prompt = prompts.baseline(answer.question) if answer.method == "baseline" else prompts.steered(answer.question)
        continuation = token_overlap(answer.gold, answer.text)
        with_prompt = token_overlap(answer.gold, scored_text(prompt, answer.text, include_prompt=True))
        overlap = with_prompt if include_prompt else continuation
        value = composite(overlap, score.value)
        rows.append({"prompt_id": answer.prompt_id, "method": answer.method, "text": answer.text,
                     "overlap": overlap, "overlap_continuation": continuation, "overlap_with_prompt": with_prompt,
                     "judge_score": score.value,
                     "judge_parsed": score.parsed, "grade": grade, "exact_grade": exact_grade(item),
                     "composite": value, "accurate": value >= ACCURACY_THRESHOLD})
    return rows


@dataclass(frozen=True)
class SimpleQAMetrics:
    """As simple-evals reports them."""

    n: int
    correct: float
    incorrect: float
    not_attempted: float
    accuracy_given_attempted: float
    f1: float


def simpleqa_metrics(grades: Sequence[str]) -> SimpleQAMetrics:
    n = len(grades)
    if n == 0:
        raise ValueError("no grades to summarise")
    correct = sum(g == CORRECT for g in grades) / n
    incorrect = sum(g == INCORRECT for g in grades) / n
    not_attempted = sum(g == NOT_ATTEMPTED for g in grades) / n
    attempted = correct + incorrect
    given_attempted = correct / attempted if attempted else 0.0
    f1 = 2 * correct * given_attempted / (correct + given_attempted) if correct + given_attempted else 0.0
    return SimpleQAMetrics(n, correct, incorrect, not_attempted, given_attempted, f1)
