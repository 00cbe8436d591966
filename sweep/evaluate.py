"""Grades per (prompt, arm): overlap, repetition, judge score, SimpleQA grade, composite; SimpleQA's metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import prompts
from .judges import CORRECT, INCORRECT, NOT_ATTEMPTED, Item, Judge, Score, exact_grade
from .progress import Progress
from .scoring import ACCURACY_THRESHOLD, DEGENERATE_REPETITION, composite, distinct_2, repetition, scored_text, token_overlap


JUDGE_CHUNK = 32


@dataclass(frozen=True)
class Answer:
    prompt_id: int
    method: str  # baseline, or an arm (sweep/arms.py)
    question: str
    gold: str
    text: str  # the model's continuation


def answers(prompt_rows: Sequence[Mapping], best_rows: Sequence[Mapping]) -> list[Answer]:
    """The unsteered baseline and each arm's best trial, for every selected prompt."""
    by_id = {r["prompt_id"]: r for r in prompt_rows}
    out = [Answer(r["prompt_id"], "baseline", r["question"], r["answer"], r["baseline_text"]) for r in prompt_rows]
    out += [Answer(r["prompt_id"], r["method"], by_id[r["prompt_id"]]["question"], by_id[r["prompt_id"]]["answer"],
                   r["text"]) for r in best_rows]
    return sorted(out, key=lambda a: (a.prompt_id, a.method))


def judge_all(judge: Judge, items: list[Item], progress: Progress | None) -> tuple[list[str], list[Score]]:
    """The judge's grades and scores, JUDGE_CHUNK items per call so that the progress line moves."""
    grades, scores = [], []
    for start in range(0, len(items), JUDGE_CHUNK):
        chunk = items[start:start + JUDGE_CHUNK]
        grades += judge.grade(chunk)
        scores += judge.score(chunk)
        if progress is not None:
            progress.update(len(chunk))
    return grades, scores


def grade_answers(items: Sequence[Answer], judge: Judge, include_prompt: bool,
                  progress: Progress | None = None) -> list[dict]:
    """One grades.parquet row per answer. The composite uses the overlap scoring.include_prompt picks; both
    overlaps are kept, and the deterministic grade beside the judge's, so reports can show both. `accurate` is
    the paper's rule (composite >= 0.6) for an output that is not degenerate; `accurate_paper` the rule alone."""
    judged = [Item(a.question, a.gold, a.text) for a in items]
    grades, scores = judge_all(judge, judged, progress)
    rows = []
    for answer, item, grade, score in zip(items, judged, grades, scores):
        prompt = prompts.baseline(answer.question) if answer.method == "baseline" else prompts.steered(answer.question)
        continuation = token_overlap(answer.gold, answer.text)
        with_prompt = token_overlap(answer.gold, scored_text(prompt, answer.text, include_prompt=True))
        overlap = with_prompt if include_prompt else continuation
        value = composite(overlap, score.value)
        repeated = repetition(answer.text)
        degenerate = repeated >= DEGENERATE_REPETITION
        rows.append({"prompt_id": answer.prompt_id, "method": answer.method, "text": answer.text,
                     "overlap": overlap, "overlap_continuation": continuation, "overlap_with_prompt": with_prompt,
                     "repetition": repeated, "distinct_2": distinct_2(answer.text), "degenerate": degenerate,
                     "judge_score": score.value, "judge_parsed": score.parsed, "grade": grade,
                     "exact_grade": exact_grade(item), "composite": value,
                     "accurate_paper": value >= ACCURACY_THRESHOLD,
                     "accurate": value >= ACCURACY_THRESHOLD and not degenerate})
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
