"""Roles: which mention fills the question's slot. A question's verbs and nouns ("die", "win", "directed") are its
role cues; a mention right after a cue ("died in 1713", "won 11", "directed by X") or right before one ("X won")
fills the slot, where one in another role ("born in 1653", "nominated for 14", "produced by Y") does not."""

from __future__ import annotations

import re

from .text import fold

# Question words that name no role.
_NO_ROLE = frozenset(
    "what which who whom whose when where why how many much year years date day month did does do done is are was "
    "were be been being the a an in of on at to for by from with and or as its it his her their this that these "
    "those has have had name named called first last number total exact during after before into about".split())
_IRREGULAR = {"won": "win", "wins": "win", "winning": "win", "died": "die", "dies": "die", "dying": "die",
              "began": "begin", "begun": "begin", "wrote": "write", "written": "write", "writes": "write",
              "built": "build", "held": "hold", "took": "take", "taken": "take", "gave": "give", "given": "give",
              "became": "become", "made": "make", "lost": "lose", "left": "leave", "met": "meet", "sold": "sell",
              "led": "lead", "ran": "run", "sang": "sing", "sung": "sing", "drew": "draw", "drawn": "draw",
              "chose": "choose", "chosen": "choose", "bought": "buy", "taught": "teach", "spoke": "speak",
              "spoken": "speak", "flew": "fly", "flown": "fly", "grew": "grow", "grown": "grow", "rose": "rise",
              "fell": "fall", "fallen": "fall", "sank": "sink", "sunk": "sink", "struck": "strike", "shot": "shoot",
              "born": "bear", "bore": "bear", "found": "find", "founded": "found",
              "awarded": "award", "received": "receive", "receives": "receive", "receiving": "receive"}
_ARTICLES = frozenset({"the", "a", "an", "his", "her", "its", "their"})
_PREPOSITIONS = frozenset("in on at by to for as of from with over about during since until into".split())
_CLAUSE = re.compile(r"[,;:!?()\n\u2013\u2014]|(?<!\b[A-Z])\.\s|\b(?:and|but|while|whereas|whose|which|who)\b", re.I)


def stem(word: str) -> str:
    """A crude stem that makes "died", "dies" and "die", or "opened" and "open", one: irregular forms, then -ing,
    -ed, -es, -s, -e."""
    word = _IRREGULAR.get(fold(word), fold(word))
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return re.sub(r"(.)\1$", r"\1", word)  # "planned" -> "plan"


def role_cues(question: str) -> frozenset[str]:
    """Stems of the question's lower-case content words ("died", "win", "directed"): names are topics, not roles."""
    return frozenset(stem(w) for w in re.findall(r"\b[a-z][a-z'-]+\b", question) if fold(w) not in _NO_ROLE)


def _clause_words_before(text: str, pos: int) -> list[str]:
    head = text[max(0, pos - 100):pos]
    breaks = list(_CLAUSE.finditer(head))
    clause = head[breaks[-1].end():] if breaks else head
    return re.findall(r"[A-Za-z'-]+", clause)


def cued_before(text: str, start: int, cues: frozenset[str]) -> bool:
    """A role cue of the question just before the mention, with at most a preposition and an article between:
    "died in 1713", "won 11", "directed by X", not "the film was produced by X" for "directed the film"."""
    before = _clause_words_before(text, start)
    while before and fold(before[-1]) in _ARTICLES:
        before.pop()
    if before and fold(before[-1]) in _PREPOSITIONS:
        before.pop()
    return bool(before) and before[-1][0].islower() and stem(before[-1]) in cues


def cued_after(text: str, end: int, cues: frozenset[str]) -> bool:
    """A role cue of the question right after the mention, as its verb: "Lotfi Zadeh won", "X directed it"."""
    after = re.match(r"\s*(?:(?:also|then|later|eventually|first|has|had|have|was|is)\s+)?([a-z][a-z'-]+)", text[end:])
    return bool(after) and stem(after.group(1)) in cues
