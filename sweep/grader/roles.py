"""Roles: which mention fills the question's slot. A question's verbs and nouns ("die", "win", "directed") are its
role cues; a mention right after a cue ("died in 1713", "won 11", "directed by X") or right before one ("X won")
fills the slot, where one in another role ("born in 1653", "nominated for 14", "produced by Y") does not."""

from __future__ import annotations

import re

from .text import fold

# Question words that name no role.
NO_ROLE = frozenset(
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
_CUE_WINDOW = 6  # words of the clause before a mention in which a role cue counts
_CLAUSE = re.compile(r"[,;:!?()\n\u2013\u2014]|(?<!\b[A-Z])\.\s|\b(?:and|but|while|whereas|whose|which|who)\b", re.I)


def stem(word: str) -> str:
    """A crude stem that makes "died", "dies" and "die", "opened" and "open", or "studied" and "study" one:
    irregular forms, -ied and -ies, then -ing, -ed, -es, -s, -e."""
    word = _IRREGULAR.get(fold(word), fold(word))
    word = re.sub(r"(?<=..)ie[ds]$", "y", word)  # "studied", "studies" -> "study"
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return re.sub(r"(.)\1$", r"\1", word)  # "planned" -> "plan"


def role_cues(question: str) -> frozenset[str]:
    """Stems of the question's verbs ("died", "win", "directed"): lower-case words ending in -ed or -en, irregular
    forms, or the question's last word ("did Corelli die?"). Names are topics, and nouns ("dish", "film") name the
    topic in answers too ("a dish of Yemen"), so neither is a role."""
    found = re.findall(r"\b[a-z][a-z'-]+\b", question)
    last = re.findall(r"([A-Za-z'-]+)\W*$", question)
    verbs = [w for w in found if re.search(r"(?:ed|en)$", w) or w in _IRREGULAR or w in _IRREGULAR.values()
             or (last and w == last[0] and _DID.search(question))]
    return frozenset(stem(w) for w in verbs if fold(w) not in NO_ROLE)


# What follows the verb of "did <subject> <verb>": a preposition, a particle, a determiner, the end of the clause.
_AFTER_VERB = re.compile(r"\s+(?:in|on|at|to|for|with|from|by|of|as|into|after|before|during|under|over|about|"
                         r"up|out|off|away|down|the|a|an|his|her|their|its|this|that|these|those)\b|\s*(?:[?,.;]|$)")
_DID = re.compile(r"\b(?:did|does|do)\b(.*)", re.I)


def _did_verb(question: str) -> frozenset[str]:
    """The stem of a "did" question's verb: the first lower-case word after "did" followed by a preposition, a
    determiner or the clause's end ("did the skaters finish in", "did Corelli die?"), else the last one followed by
    a name or number ("did the singer and actress Vanessa Hudgens marry Cole Tucker": nouns before a name come
    first)."""
    did = _DID.search(question)
    if not did:
        return frozenset()
    rest = did.group(1)
    lower = [m for m in re.finditer(r"\b[a-z][a-z'-]+\b", rest) if m.group() not in NO_ROLE]
    verbs = [m for m in lower if _AFTER_VERB.match(rest, m.end())][:1] or \
        [m for m in lower if re.match(r"\s+[A-Z0-9*\"]", rest[m.end():])][-1:]
    return frozenset(stem(m.group()) for m in verbs)


def answer_cues(question: str) -> frozenset[str]:
    """The cues that place an answer: the question's verbs and the verb of a "did" question ("did the skaters
    finish": "finished fifth"). A denial of the asked event (shapes.denies_event) reads `role_cues` alone."""
    return role_cues(question) | _did_verb(question)


def passive_cues(question: str) -> frozenset[str]:
    """Cues the question asks in the passive ("Who was awarded"): for them "awarded by X" names another role."""
    return frozenset(stem(m) for m in re.findall(r"\b(?:was|were|is|are|been|be)\s+([a-z][a-z'-]+)", question))


def _clause_words_before(text: str, pos: int) -> list[str]:
    head = text[max(0, pos - 100):pos]
    breaks = list(_CLAUSE.finditer(head))
    clause = head[breaks[-1].end():] if breaks else head
    return re.findall(r"[A-Za-z'-]+", clause)


def cued_before(text: str, start: int, cues: frozenset[str], passive: frozenset[str] = frozenset()) -> bool:
    """A role cue of the question shortly before the mention in its clause: "died in 1713", "won 11", "died in
    Rome in 1713", "directed by X"; not "awarded by X" when the question asks who was awarded."""
    before = _clause_words_before(text, start)[-_CUE_WINDOW:]
    for k in range(len(before) - 1, -1, -1):
        word = before[k]
        if word[0].islower() and stem(word) in cues:
            after = [fold(w) for w in before[k + 1:]]
            return not (after[:1] == ["by"] and stem(word) in passive)
    return False


def cued_after(text: str, end: int, cues: frozenset[str]) -> bool:
    """A role cue of the question right after the mention, as its verb: "Lotfi Zadeh won", "X directed it"."""
    after = re.match(r"\s*(?:(?:also|then|later|eventually|first|has|had|have|was|is|were|are)\s+)?([a-z][a-z'-]+)",
                     text[end:])
    return bool(after) and stem(after.group(1)) in cues
