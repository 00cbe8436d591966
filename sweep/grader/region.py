"""The answer's region: where a response states its answer (from its first claim or its "Answer:" label, a
sentence or two), and whether it declines to answer."""

from __future__ import annotations

import re

from .names import SENTENCE_OPENERS
from .refusals import GUESS, PARTIAL_REFUSAL, is_refusal
from .text import sentence_at, words

_ANSWER_LABEL = re.compile(r"\banswer(?: is| would be)?\s*:|\bthe (?:correct )?answer is\b", re.I)


def makes_claim(sentence: str, question_words: set[str]) -> bool:
    """Names something the question does not: a capitalised word or a number of its own."""
    return any((w.capitalised or w.text.isdigit()) and w.text not in question_words
               and w.text not in SENTENCE_OPENERS for w in words(sentence))


def declines(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A refusal that no earlier sentence's claim and no later guess overrides."""
    if PARTIAL_REFUSAL.search(text):
        return True
    for start, end in spans:
        if is_refusal(text[start:end]):
            return not GUESS.search(text[end:])
        if makes_claim(text[start:end], question_words):
            return False
    return False


ANSWER_SENTENCES = 2


def answer_region_end(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> int:
    """Where the committed answer's region ends: ANSWER_SENTENCES sentences from the first one that names
    something the question does not (so a gold named only deep in a ramble does not count)."""
    cue = _ANSWER_LABEL.search(text)  # "... **Answer:** Gary Ablett": the answer follows its label
    for i, (start, end) in enumerate(spans):
        if makes_claim(text[start:end], question_words) or (cue and start <= cue.start() < end):
            i = max(i, sentence_at(spans, cue.start())) if cue else i
            return spans[min(i + ANSWER_SENTENCES, len(spans)) - 1][1]
    return spans[min(ANSWER_SENTENCES, len(spans)) - 1][1] if spans else len(text)
