"""Answers that commit to no name yet still contradict the gold: another number for a part of a numbered gold, a
description in place of a described gold, a denial of the asked event or of the question's premise, a value of
another type stated as the answer."""

from __future__ import annotations

import re

from .names import SENTENCE_OPENERS
from .numbers import numbers
from .refusals import denies, is_negated, is_refusal
from .roles import NO_ROLE, role_cues, stem
from .text import sentence_of, words

_NUMBERED = re.compile(r"\b([a-z]+)\s*,?\s*(?:no\.?\s*|#\s*)?(\d+)\b", re.I)  # "Season 1", "episode no. 3"
# Parts a number can also be given to in words, before or after it: "the third episode", "series one".
_PARTS = {"season": "season", "series": "season", "episode": "episode", "chapter": "chapter", "volume": "volume",
          "book": "book", "part": "part", "act": "act", "scene": "scene", "issue": "issue", "round": "round",
          "stage": "stage", "track": "track"}


def numbering(text: str) -> list[tuple[str, float]]:
    """The numbered parts `text` names, in order: "Season 1 episode 3", "the third episode of the first series" and
    "series one, episode three" all give [season 1, episode 3] (in their order)."""
    found = [(m.start(), (_PARTS.get(m.group(1).lower(), m.group(1).lower()), float(m.group(2))))
             for m in _NUMBERED.finditer(text)]
    for n in numbers(text, ordinals=True):
        before = re.search(r"\b([a-z]+)\s*$", text[:n.start], re.I)
        after = re.match(r"\s*([a-z]+)\b", text[n.end:], re.I)
        if n.word and before and before.group(1).lower() in _PARTS:  # "series one"
            found.append((n.start, (_PARTS[before.group(1).lower()], n.value)))
        elif n.ordinal and after and after.group(1).lower() in _PARTS:  # "the third episode", "3rd season"
            found.append((n.start, (_PARTS[after.group(1).lower()], n.value)))
    return [part for _, part in sorted(found)]


def other_numbering(text: str, gold_text: str) -> bool:
    """A gold that numbers its parts ("Season 1 episode 3") answered with another number for one of them
    ("Season 1, episode 6", "the sixth episode")."""
    wanted = dict(numbering(gold_text))
    return any(wanted.get(part, value) != value for part, value in numbering(text))


def same_numbering(text: str, gold_text: str) -> bool:
    """Every numbered part of the gold given the gold's number, in whatever words ("the third episode of the first
    series" for "Season 1 episode 3")."""
    wanted = set(numbering(gold_text))
    return len(wanted) >= 2 and wanted <= set(numbering(text))


_DESCRIPTION = re.compile(r"^[^.!?\n]*?\b(?:is|was|are|were)\s+(?:an?|the)\s+[a-z]", re.I)


def describes(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A gold that is a description ("a bell inside a circle"), answered by the first sentence with the question's
    subject and another description: "The election symbol of the party was a white flag with a red star"."""
    if not spans:
        return False
    start, end = spans[0]
    subject = re.split(r"\b(?:is|was|are|were)\b", text[start:end], maxsplit=1)[0]
    topical = sum(w.text in question_words and w.text not in SENTENCE_OPENERS for w in words(subject)) >= 2
    return topical and bool(_DESCRIPTION.match(text[start:end]))


def denies_event(text: str, spans: list[tuple[int, int]], question: str) -> bool:
    """Denies what the question asks about, in a sentence that does not refuse: its verb negated ("Rugged Lark did
    not win the title" for "In which years did it win"), or what it says of its subject ("She was not a member of
    the Royal Society" for "In which year did she join the Royal Society?"): three or more of the question's words,
    one of them lower-case, in the negated clause. "I was not able to find ...", "not only", "not until" deny
    nothing."""
    cues = role_cues(question)
    content = [w for w in words(question) if w.text not in NO_ROLE]
    asked = {stem(w.text) for w in content}
    said_of_subject = {stem(w.text) for w in content if question[w.start].islower()}
    for match in _NEGATED.finditer(text):
        start, end = sentence_of(text, spans, match.start())
        if is_refusal(text[start:end]) or _FIRST_PERSON.search(text, start, match.start()):
            continue
        clause = words(_CLAUSE_END.split(text[match.end():end], maxsplit=1)[0])
        verb = clause[1:2] if clause[:1] and clause[0].text.endswith("ly") else clause[:1]  # "not actually win"
        verb = [w for w in verb if w.text not in NO_ROLE]  # "was not a member": no verb after the negation
        if _ABOUT_SOURCES.search(text, match.end(), end) or (verb and _affirmed_later(text, end, stem(verb[0].text))):
            continue
        said = {stem(w.text) for w in clause}
        if (verb and stem(verb[0].text) in cues) or (len(said & asked) >= 3 and said & said_of_subject):
            return True
    return False


def denies_the_question(text: str, spans: list[tuple[int, int]], question: str) -> bool:
    """Says there is no answer to the question: no such thing (refusals.denies), the asked event did not happen, or
    its premise is false."""
    return denies(text, spans, question) or denies_event(text, spans, question) or denies_premise(text, spans, question)


def _affirmed_later(text: str, after: int, verb: str) -> bool:
    """The negated verb said again, not negated, later on: "did not receive it for civil services. He received it
    for medicine" corrects a detail of the event, and denies nothing."""
    return any(w.start >= after and stem(w.text) == verb and not is_negated(text, w.start, w.end) for w in words(text))


_NEGATED = re.compile(r"\b(?:not|never)\b(?!\s+(?:only|until|just|merely)\b)|n't\b", re.I)
_FIRST_PERSON = re.compile(r"\b(?:i|we)\b[^,;:.!?]*$", re.I)  # "I was not able to find": a refusal's shape
# "The paper does not provide information about ...": what the sources say, not what happened.
_ABOUT_SOURCES = re.compile(r"\b(?:information|details?|data|records?|mentions?|specif(?:y|ies|ied)|says?|states?|"
                            r"reveals?|disclose[sd]?|documented|known|clear|sources?)\b", re.I)
_CLAUSE_END = re.compile(r"[,;:!?()\n]|\.\s|\b(?:but|because|although|though|while|whereas|until|before|after|"
                         r"since|as)\b", re.I)


# Rejects the question itself (the rubric's "Barack Obama does not have any children"): a false premise, a person
# or thing that does not exist or is invented.
_PREMISE_DENIAL = re.compile(
    r"\b(?:based on|rests on|relies on|built on) (?:a|an) (?:(?:false|mistaken|incorrect|faulty|flawed) "
    r"(?:premise|assumption)|misunderstanding|misconception)\b|\b(?:question|premise) (?:is|seems) (?:false|"
    r"mistaken|incorrect|flawed)\b|\b(?:does|did) not (?:actually |really )?exist\b|\bnever (?:actually |really )?"
    r"existed\b|\bno such [a-z]+(?: [a-z]+)? (?:ever )?(?:exists?|existed)\b|\bthere (?:is|was|are|were) no such\b|"
    r"\b(?:a |an )?(?:fictional|fictitious|made-up|imaginary|invented) (?:character|person|figure|place|entity|"
    r"event)\b", re.I)
# A question about a story may ask about its fictional people: there "a fictional character" denies nothing.
_ABOUT_FICTION = re.compile(r"\b(?:fictional|character|novel|film|movie|series|episode|season|game|show|book|"
                            r"comic|manga|anime|play|story|saga|campaign|cartoon)s?\b", re.I)


# The model writing as the asker ("…, and I'm looking for information about the real one"): no answer's voice.
_ASKER = re.compile(r"\bI(?:'m| am)?\s+(?:looking|searching|trying|hoping|need|want|would like)\b")


def denies_premise(text: str, spans: list[tuple[int, int]], question: str) -> bool:
    """Says the question's premise is false ("This question is based on a misunderstanding", "is a fictional
    character created by", "no such person") in a sentence that does not refuse or ask."""
    fiction = bool(_ABOUT_FICTION.search(question))
    for match in _PREMISE_DENIAL.finditer(text):
        start, end = sentence_of(text, spans, match.start())
        story = fiction and re.search(r"fictio|imagin|invent|made-up", match.group(), re.I)
        if story or is_refusal(text[start:end]) or _ASKER.search(text, start, end):
            continue
        return True
    return False


# "The answer is 111", "**Answer:** 0000": a value stated as the answer, whatever its type.
_STATED = re.compile(r"(?i:\bthe (?:correct |final |right )?answer (?:is|was)|(?:^|\n)[ \t*#]*answer[ \t*]*:)"
                     r"[ \t*:\-]*([A-Z0-9][^\n*]*)")  # the value opens with a capital or a digit: a name or number
_STATED_END = re.compile(r"[.!?;](?:\s|$)|,")
# "777 is the year the town was founded": a value that opens its sentence, then says what it is.
_STATED_FIRST = re.compile(r"(?:^|[.!?\n][ \t]*)(?i:the)?[ \t]*([A-Z0-9][\w'-]*(?:[ \t]+[A-Z0-9][\w'-]*){0,3})\.?[ \t]+"
                           r"(?:is|was)[ \t]+the[ \t]+(?:year|date|day|answer|name|number|total|figure)\b")


def states_other_answer(text: str, spans: list[tuple[int, int]], gold: str, question: str) -> bool:
    """A value the response states as its answer ("The answer is 111" for a city, "Answer: 0000" for a year, "777 is
    the year") that shares no word with the gold, in a sentence that does not refuse. A lone letter is an option,
    not a value; a value of nothing but the question's own words (letters, not a number) restates the question."""
    gold_words = {w.text for w in words(gold)}
    asked = {w.text for w in words(question)}
    for match in [*_STATED.finditer(text), *_STATED_FIRST.finditer(text)]:
        value = match.group(1)
        value = value[:cut.start()] if (cut := _STATED_END.search(value)) else value
        said = {w.text for w in words(value)}
        start, end = sentence_of(text, spans, match.start(1))
        if not said or re.fullmatch(r"[A-Z]\W*", value.strip()) or said & gold_words or is_refusal(text[start:end]):
            continue
        if not any(c.isdigit() for c in value) and said <= asked:
            continue
        return True
    return False
