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


def answer_start(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> int:
    """The sentence where the answer starts: the first that names something the question does not, or the one of
    its "Answer:" label if that comes later ("... **Answer:** Gary Ablett"); the first sentence if none does."""
    cue = _ANSWER_LABEL.search(text)
    for i, (start, end) in enumerate(spans):
        if makes_claim(text[start:end], question_words) or (cue and start <= cue.start() < end):
            return max(i, sentence_at(spans, cue.start())) if cue else i
    return 0


def answer_region_end(text: str, spans: list[tuple[int, int]], start: int) -> int:
    """Where the committed answer's region ends: ANSWER_SENTENCES sentences from sentence `start` (`answer_start`),
    so a gold named only deep in a ramble does not count."""
    if not spans:
        return len(text)
    return spans[min(start + ANSWER_SENTENCES, len(spans)) - 1][1]
