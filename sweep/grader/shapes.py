"""Answers that commit to no name yet still contradict the gold: another number for a part of a numbered gold, a
description in place of a described gold, a denial of the asked event."""

from __future__ import annotations

import re

from .roles import role_cues, stem
from .text import words

_NUMBERED = re.compile(r"\b([a-z]+)\s*,?\s*(?:no\.?\s*)?(\d+)\b", re.I)


def other_numbering(text: str, gold_text: str) -> bool:
    """A gold that numbers its parts ("Season 1 episode 3") answered with another number for one of them
    ("Season 1, episode 6")."""
    wanted = {m.group(1).lower(): m.group(2) for m in _NUMBERED.finditer(gold_text)}
    return any(wanted.get(m.group(1).lower(), m.group(2)) != m.group(2) for m in _NUMBERED.finditer(text))


_DESCRIPTION = re.compile(r"^[^.!?\n]*?\b(?:is|was|are|were)\s+(?:an?|the)\s+[a-z]", re.I)


def describes(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A gold that is a description ("a bell inside a circle"), answered by the first sentence with the question's
    subject and another description: "The election symbol of the party was a white flag with a red star"."""
    if not spans:
        return False
    start, end = spans[0]
    subject = re.split(r"\b(?:is|was|are|were)\b", text[start:end], maxsplit=1)[0]
    topical = sum(w.text in question_words for w in words(subject)) >= 2
    return topical and bool(_DESCRIPTION.match(text[start:end]))


def denies_event(text: str, question: str) -> bool:
    """Denies what the question asks about: "Rugged Lark did not win the title" for "In which years did it win"."""
    cues = role_cues(question)
    return any(stem(m) in cues for m in re.findall(r"\b(?:not|never|n't)\s+(?:\w+ly\s+)?([a-z]+)", text))
