"""Refusals and hedges, and the other cues around an answer: negation, alternatives, retraction, denial,
multiple-choice options."""

from __future__ import annotations

import re
from collections.abc import Callable

from .text import echoes, sentence_at, through_next_sentence, words

_REFUSAL = re.compile(
    r"\b(?:i (?:do not|don't|dont|did not|didn't) know|(?:i'm|im|i am) (?:not (?:sure|certain|aware|able)|unsure|"
    r"unable)|not (?:sure|certain)|no (?:[\w-]+ ){0,3}(?:information|data|records?|sources?)\b|no way to (?:know|tell|"
    r"determine)\b|(?:cannot|can't|could not|couldn't|unable to|not able to) (?:find|answer|determine|provide|"
    r"say|confirm|verify|identify|access|locate|recall|tell)|need (?:more|additional) (?:context|information|"
    r"details)|(?:don't|do not) have (?:access|information|enough|that information)|(?:have|has) no (?:idea|"
    r"information)|no idea|not enough information|(?:is|are|remains?) unknown)\b|^\W*unknown\W*$", re.I)
_CONTRAST = re.compile(r"\b(?:but|however|though|although|while)\b", re.I)
PARTIAL_REFUSAL = re.compile(r"\b(?:(?:not sure|unsure|not certain|(?:don't|do not) know)\s+(?:about|of|who|what)|"
                             r"(?:can't|cannot|can not|don't|do not) (?:recall|remember|name))\s+"
                             r"(?:is\s+|was\s+)?(?:the\s+)?(?:others?|rest|remaining|second|last one)\b", re.I)
_HEDGE = re.compile(
    r"\b(?:i think|i believe|i guess|i suppose|i'd say|would say|probably|possibly|perhaps|maybe|likely|might|"
    r"may be|could be|not (?:sure|certain|100)|unsure|uncertain|if i (?:recall|remember)|as far as i know|"
    r"it's possible|it is possible|double[- ]check|seems|apparently|presumably|i'm fairly)\b", re.I)
GUESS = re.compile(r"\b(?:i think|i believe|i guess|my (?:best )?guess|it (?:might|may|could) be|probably|"
                    r"possibly|perhaps|maybe|likely)\b", re.I)
_CLAUSE_BREAK = re.compile(r"[,;:!?()\n\u2013\u2014]|(?<!\b[A-Z])\.|\b(?:but|however|though|although|whereas|"
                           r"while)\b", re.I)  # not the period of an initial ("not A. W. Skempton")
_NEGATION = re.compile(r"\b(?:not|never|no|neither|nor|instead of|rather than|other than|except|unlike)\b|n't\b",
                       re.I)
_NOT_A_NEGATION = re.compile(
    r"\b(?:not|never)\s+(?:\w+\s+)?(?:sure|certain|know|knew|aware|remember|recall|100)\b|n't\s+(?:\w+\s+)?"
    r"(?:sure|certain|know|knew|remember|recall)\b|\bno doubt\b|\bnot only\b|\bnot until\b|"
    r"\bno(?:t)? (?:more|less|fewer|later|earlier|sooner) than\b|\bno(?:ne| one)? other than\b|"
    r"(?:\b(?:not|never)\b|n't\b)(?=.*\buntil\s+(?:the\s+)?$)", re.I)  # "did not join it until 1835" joined then
_NEGATED_AFTER = re.compile(
    r"(?:[^\w?]*\?\s*(?:no|nope|not)\b|\s*[,;:.!\u2013\u2014-]?\s*(?:no|nope)\s*[,.;:!\u2013\u2014]|"
    r"\s*(?:is|was|would be)\s+(?:wrong|incorrect|not (?:right|correct|true|accurate))\b)", re.I)
_ALTERNATIVE_AFTER = re.compile(
    r"(?:^[^\w.!?;]*|[.!?;]\s*)(?:or|alternatively)\b(?!\s+(?:so|not|more|less|rather|later|earlier|thereabouts)\b)"
    r"|\b(?:or (?:it |that )?(?:could|might|may) (?:also )?be|(?:it|that) (?:could|might|may) also be|"
    r"or (?:possibly|perhaps|maybe))\b", re.I)
_LIST_WITH_OR = re.compile(r"(?:\s*,\s*(?:[A-Z0-9][\w'.-]*\s*){1,3})+,?\s*or\b")
_ALTERNATIVE_BEFORE = re.compile(r"\beither\b[^.!?]*$|\bor\s+(?:maybe\s+|perhaps\s+|possibly\s+)?$", re.I)
_CORRECTION = re.compile(r"\b(?:correction|sorry|i mean|i meant|wait|(?:i'm|i am|i was) mistaken|scratch that|"
                         r"on second thought|i was wrong|that's (?:wrong|incorrect|not right)|that is (?:wrong|"
                         r"incorrect)|i misspoke)\b", re.I)
_DENIAL = re.compile(r"\b(?:not|never)\s+(?:\w+\s+){0,2}any\b|n't\s+(?:\w+\s+){0,2}any\b|\b(?:has|had|have|with|"
                     r"there (?:is|are|was|were)) no\b(?! (?:doubt|idea|information|records?|data)\b)|"
                     r"\bno(?: one|body)\b|\bnone\b", re.I)


def is_refusal(sentence: str) -> bool:
    """Declines to answer: "I don't know", "cannot find", a partial refusal. What follows the last "but" decides:
    "I'm sorry, but I don't have information" refuses, "I'm not sure, but I think it was X" answers. A refusing
    clause before a semicolon refuses whatever the next clause remarks ("I cannot say; X was, however, famous")."""
    first = _SEMICOLON.split(sentence, maxsplit=1)[0]
    return (first != sentence and _refuses(first)) or _refuses(sentence)


_SEMICOLON = re.compile(r";(?!\s*(?:but|however|though|although|while)\b)", re.I)


def _refuses(sentence: str) -> bool:
    if PARTIAL_REFUSAL.search(sentence):
        return True
    contrasts = list(_CONTRAST.finditer(sentence))
    if not contrasts:
        return bool(_REFUSAL.search(sentence.strip()))
    before, after = sentence[:contrasts[-1].start()], sentence[contrasts[-1].end():]
    return bool(_REFUSAL.search(after)) and not _claims(before)


def _claims(clause: str) -> bool:
    """Holds a number or a capitalised word past its first ("Probably 1694", "Malia and Sasha", not "I'm sorry")."""
    return bool(re.search(r"\d", clause)) or any(w[0].isupper() and w not in ("I", "I'm")
                                                 for w in re.findall(r"[\w']+", clause)[1:])


def is_hedged(text: str) -> bool:
    return bool(_HEDGE.search(text))


def _clause_before(text: str, pos: int) -> str:
    head = text[max(0, pos - 80):pos]
    breaks = list(_CLAUSE_BREAK.finditer(head))
    return head[breaks[-1].end():] if breaks else head


def is_negated(text: str, start: int, end: int) -> bool:
    """The mention at text[start:end] is denied: "not X", "instead of X", "X? No, ...", "X is wrong"."""
    before = _NOT_A_NEGATION.sub(" ", _clause_before(text, start))
    return bool(_NEGATION.search(before) or _NEGATED_AFTER.match(text, end))


def offers_alternative(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    """Another candidate offered for the same slot: "either X ...", "Y or X", "X, Y or Z", "X. Or it could be"."""
    sentence_start = spans[sentence_at(spans, start)][0]
    if _ALTERNATIVE_BEFORE.search(text[sentence_start:start]):
        return True
    after = text[end:through_next_sentence(spans, end)]
    return bool(_ALTERNATIVE_AFTER.search(after) or _LIST_WITH_OR.match(after))


def is_retracted(text: str, end: int, spans: list[tuple[int, int]], restated: Callable[[int], bool]) -> bool:
    """A correction marker ("sorry, I mean", "scratch that") follows the answer and the answer is not restated."""
    marker = _CORRECTION.search(text, end, through_next_sentence(spans, end))
    return bool(marker) and not restated(marker.end())


_OPTION = re.compile(r"^[ \t]*\(?([A-E])[.)][ \t]+\S", re.M)


_CHOICE = re.compile(r"\b(?i:answer)\s*(?i:is)?\s*:?\s*\(?([A-E])\s*[.):]")


def lists_options(text: str) -> bool:
    """Multiple-choice lines ("A. X", "B. Y"): several candidates, unless one is then chosen."""
    return "AB" in "".join(m.group(1) for m in _OPTION.finditer(text))


def chosen_option(text: str) -> str | None:
    """The text of the option that follows the options as the answer ("Answer: D."), if any."""
    options = list(_OPTION.finditer(text))
    choice = _CHOICE.search(text, options[-1].end()) if options else None
    line = choice and re.search(rf"^[ \t]*\(?{choice.group(1)}[.)][ \t]+(.*)$", text, re.M)
    return line.group(1) if line else None


# The thing denied: up to four words after "any" or "no", to the first preposition or conjunction.
_DENIED_THING = re.compile(r"[ \t]+((?:(?!(?:of|in|on|at|or|and|to|for|from|with|by|about|as|into|than|that|"
                           r"which|who|because|but|the|an?)\b)[A-Za-z][\w'-]*[ \t]*){1,4})")


def denies(text: str, spans: list[tuple[int, int]], question: str) -> bool:
    """Says there is no such thing as the question asks about ("does not have any children", "no one received it",
    "none") in a sentence that is not a refusal ("there is no information" is one). A denied thing the question
    does not name is a side remark ("does not have any external amplifiers" for a count of channels)."""
    asked = {w.text for w in words(question)}

    def of_the_asked(sentence: str) -> bool:
        for match in _DENIAL.finditer(sentence):
            thing = _DENIED_THING.match(sentence, match.end())
            if not thing or echoes(words(thing.group(1))[-1].text, asked):
                return True
        return False

    return any(of_the_asked(text[s:e]) and not is_refusal(text[s:e]) for s, e in spans)
