"""The strict deterministic SimpleQA grader behind the `exact` judge. The rules, with an example each, and how
well they agree with labelled outputs: docs/grading.md."""

from __future__ import annotations

import re

from .commitment import grade_text
from .emphasis import emphasised
from .dates import parse_date_gold
from .names import parse_text_gold
from .numbers import parse_number_gold
from .region import declines
from .refusals import chosen_option, is_refusal, lists_options
from .slots import (Candidate, date_candidates, grade_slot, number_candidates, parse_version_gold,
                    version_candidates)
from .text import clean, normalise, sentence_spans, words
from .verdict import CORRECT, INCORRECT, NOT_ATTEMPTED, Verdict

__all__ = ["CORRECT", "INCORRECT", "NOT_ATTEMPTED", "Verdict", "grade", "normalise"]

def grade(question: str, gold: str, predicted: str) -> Verdict:
    """SimpleQA's grade of `predicted` against `gold`, with whether a CORRECT answer was hedged."""
    answer = _without_echo(question, predicted)
    text = clean(answer)
    spans = sentence_spans(text)
    if not re.search(r"[^\W_]", text):
        return Verdict(NOT_ATTEMPTED, reason="empty answer")
    if not words(gold):  # nothing folds to ASCII (e.g. "牛"): the gold as written must appear
        found = gold.strip().casefold() in text.casefold()
        return Verdict(CORRECT, reason="the gold answer is given") if found else Verdict(
            NOT_ATTEMPTED if declines(text, spans, set()) else INCORRECT, reason="the gold answer is not given")
    chosen = None
    if lists_options(text):  # multiple choice: only the option it then picks is its answer
        if (chosen := chosen_option(text)) is None:
            return Verdict(INCORRECT, reason="lists several options")
        text, spans = chosen, sentence_spans(chosen)
    refusing = [(s, e) for s, e in spans if is_refusal(text[s:e])]

    def answerable(candidates: list[Candidate]) -> list[Candidate]:
        return [c for c in candidates if not any(s <= c.start < e for s, e in refusing)]

    if (when := parse_date_gold(gold)) is not None:
        return grade_slot(text, question, gold, answerable(date_candidates(text, question, when)), spans,
                          answerable(date_candidates(text, question, when, any_precision=True)))
    if (version := parse_version_gold(gold)) is not None:
        return grade_slot(text, question, gold, answerable(version_candidates(text, question, version)), spans)
    if (number := parse_number_gold(question, gold)) is not None:
        return grade_slot(text, question, gold, answerable(number_candidates(text, question, number)), spans)
    emphasis = emphasised(answer) if chosen is None else None
    verdict = grade_text(text, question, parse_text_gold(question, gold), spans, gold, emphasis)
    if chosen is not None and verdict.grade == NOT_ATTEMPTED:  # the chosen option is a committed answer
        return Verdict(INCORRECT, reason="the chosen option is another answer")
    return verdict


def _without_echo(question: str, predicted: str) -> str:
    """The response without the question it may repeat first (a base model continuing its prompt)."""
    head = predicted.lstrip()
    return head[len(question.strip()):] if question.strip() and head.startswith(question.strip()) else predicted
