"""Slots and commitment for numbers and dates: the candidates that could fill the gold's slot and the one the
answer commits to."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .dates import GoldDate, combine, compare_date, date_mentions, year_mentions
from .numbers import GoldNumber, GoldRange, Number, numbers
from .refusals import is_hedged, is_negated, is_retracted, offers_alternative
from .roles import answer_cues, cued_after, cued_before
from .shapes import denies_the_question, states_other_answer
from .text import fold, sentence_at
from .verdict import AMBIGUOUS, CONSISTENT, CORRECT, DIFFERENT, EQUAL, INCORRECT, NOT_ATTEMPTED, Verdict

@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    status: str  # EQUAL / DIFFERENT / CONSISTENT / AMBIGUOUS against the gold
    key: object  # what makes two candidates the same answer
    approximate: bool = False


_APPROX = re.compile(r"(?:\b(?:around|about|approximately|approx\.?|roughly|nearly|almost|some|circa|ca\.|c\.|"
                     r"close to|an estimated|estimated)|~)\s*$", re.I)
# A bound that holds the gold neither confirms nor contradicts it: "at least 2" for 2, "more than 50k" for 120k.
_AT_LEAST = re.compile(r"\b(?:at least|no fewer than|no less than|a minimum of)\s*$", re.I)
_AT_MOST = re.compile(r"\b(?:at most|up to|no more than|a maximum of)\s*$", re.I)
_ABOVE = re.compile(r"\b(?:more than|over|above|greater than|exceeding|upwards of|in excess of|after)\s*$", re.I)
_BELOW = re.compile(r"\b(?:less than|fewer than|under|below|before)\s*$", re.I)
_RANGE_GAP = re.compile(r"\s*(?:-|\u2013|\u2014|to|until|till|through|and)\s*", re.I)
_GROUP_GAP = re.compile(r"[\s,;/]*(?:(?:or|and|either|maybe|perhaps|possibly|probably)\b[\s,;/]*)*", re.I)
_ALTERNATIVE_GAP = re.compile(r"\b(?:or|either|maybe|perhaps|possibly|probably)\b|/", re.I)


def _qualifier(text: str, start: int) -> str:
    before = text[max(0, start - 30):start]
    for name, pattern in (("approx", _APPROX), ("at_least", _AT_LEAST), ("at_most", _AT_MOST), ("above", _ABOVE),
                          ("below", _BELOW)):
        if pattern.search(before):
            return name
    return ""


def _number_status(gold: GoldNumber | GoldRange, value: float, qualifier: str) -> str:
    if isinstance(gold, GoldRange):
        return CONSISTENT if gold.low.value <= value <= gold.high.value else DIFFERENT
    holds = {"above": gold.value > value, "below": gold.value < value, "at_least": gold.value >= value,
             "at_most": gold.value <= value}
    if qualifier in holds:
        return CONSISTENT if holds[qualifier] else DIFFERENT
    if gold.matches(value):
        return EQUAL
    return CONSISTENT if qualifier == "approx" and gold.near(value) else DIFFERENT


def _range_status(gold: GoldNumber | GoldRange, low: float, high: float) -> str:
    low, high = sorted((low, high))
    if isinstance(gold, GoldRange):
        return EQUAL if gold.low.matches(low) and gold.high.matches(high) else DIFFERENT
    return CONSISTENT if low <= gold.value <= high else DIFFERENT


_NEXT_WORD = re.compile(r"\s*\u00b0?\s*([^\W\d_]+|%)")  # "212 °F": the degree sign before a unit


def _over_words(text: str, end: int, vocabulary: frozenset[str]) -> int:
    """`end` moved past the words right after it that are in `vocabulary` (a number's unit: "66 votes")."""
    while (match := _NEXT_WORD.match(text, end)) and fold(match.group(1)) in vocabulary:
        end = match.end()
    return end


def _is_list_marker(text: str, number: Number) -> bool:
    """ "1." or "2)" opening a line of a numbered list (one with at least two such lines)."""
    return bool(number.value < 100 and re.search(r"(?:^|\n)\s*$", text[:number.start])
                and re.match(r"[.)]\s+\S", text[number.end:])
                and len(re.findall(r"(?:^|\n)\s*\d{1,2}[.)]\s+\S", text)) >= 2)


# Operators of cleaned text (text.clean has removed markdown's "*"); not "=" before: a result is a value.
_OPERATOR_BEFORE = re.compile(r"[\u00d7/+^]\s*\(?\s*$")
_OPERATOR_AFTER = re.compile(r"\s*\)?\s*[=\u00d7/+^]")


def _in_formula(text: str, number: Number) -> bool:
    """An operand of a formula ("°F = (°C × 9/5) + 32"): a way to compute, not a value stated."""
    return bool(_OPERATOR_BEFORE.search(text[max(0, number.start - 6):number.start])
                or _OPERATOR_AFTER.match(text, number.end))


def number_candidates(text: str, question: str, gold: GoldNumber | GoldRange) -> list[Candidate]:
    """Numbers that could answer the gold's slot, with ranges ("between 1 and 3", "1979-1989") merged."""
    point = gold.low if isinstance(gold, GoldRange) else gold
    asked_dates = date_mentions(question)  # of a date the question holds, only the year is "asked"
    # a number restates the question's when it has its value and precision ("Alpha 1", not "1.00000000000000004")
    asked = {(n.value, n.unit) for n in numbers(question)
             if n.year_like or not any(d.start <= n.start < d.end for d in asked_dates)}
    masked = [] if point.year else date_mentions(text)

    def could_answer(n: Number) -> bool:
        if _is_list_marker(text, n) or _in_formula(text, n) or any(d.start <= n.start < d.end for d in masked):
            return False
        if re.fullmatch(r"0\d+", text[n.start:n.end]):  # "000", "0100": digits, not a number anyone states
            return False
        if isinstance(gold, GoldNumber) and gold.matches(n.value):
            return True
        if (n.value, n.unit) in asked:
            return False
        if point.year:  # a year of as many digits as the gold's ("He was 40" and "300 works" are no years)
            return n.year_like and len(str(int(n.value))) == len(str(int(point.value)))
        return not (n.year_like and 1000 <= n.value <= 2100) and not (n.word and n.value == 1)

    found = [n for n in numbers(text, ordinals=point.ordinal) if could_answer(n)]
    out = _decades(text, gold) if point.year else []
    i = 0
    while i < len(found):
        n = found[i]
        if i + 1 < len(found) and _RANGE_GAP.fullmatch(text[n.end:found[i + 1].start]):
            gap = text[n.end:found[i + 1].start].strip().lower()
            if gap != "and" or re.search(r"\bbetween\s*$", text[:n.start], re.I) or isinstance(gold, GoldRange):
                high = found[i + 1]
                out.append(Candidate(n.start, high.end, _range_status(gold, n.value, high.value),
                                     ("range", n.value, high.value)))
                i += 2
                continue
        qualifier = _qualifier(text, n.start)
        end = _over_words(text, n.end, point.units)
        unit_word = _NEXT_WORD.match(text, n.end)
        value = point.in_gold_scale(n.value, fold(unit_word.group(1)) if unit_word else "")
        out.append(Candidate(n.start, end, _number_status(gold, value, qualifier), value, qualifier == "approx"))
        i += 1
    return sorted(out, key=lambda c: c.start)


_CENTURY = re.compile(r"\b(?:the\s+)?(\d{1,2})(?:st|nd|rd|th)[ -]century\b", re.I)


def _decades(text: str, gold: GoldNumber | GoldRange) -> list[Candidate]:
    """ "the 1810s" for a year: the range 1810-1819; "the 8th century": 701-800."""
    decades = [Candidate(m.start(), m.end(), _range_status(gold, float(m.group(1)), float(m.group(1)) + 9),
                         ("decade", m.group(1))) for m in re.finditer(r"(?<![\w.])(\d{3}0)'?s\b", text)]
    last_years = [(m, 100.0 * int(m.group(1))) for m in _CENTURY.finditer(text)]
    centuries = [Candidate(m.start(), m.end(), _range_status(gold, last - 99, last), ("century", m.group(1)))
                 for m, last in last_years]
    return decades + centuries


_VERSION = re.compile(r"(?<![\w.])v?(\d+(?:\.\d+)+[a-z]?)(?![\w]|\.\d)", re.I)


def parse_version_gold(gold: str) -> str | None:
    """A gold that is a version or patch ("1.2.3", "6.88b", "v2.0"), as its folded string; else None. A plain
    decimal ("1.47") is a number gold."""
    match = _VERSION.fullmatch(gold.strip().rstrip("."))
    version = match.group(1).lower() if match else None
    return version if version and (version.count(".") >= 2 or not version[-1].isdigit()) else None


def version_candidates(text: str, question: str, gold: str) -> list[Candidate]:
    """Versions in the answer ("Patch 1.4", "6.8"), those the question holds left out: the gold, a coarser
    version that holds it ("6.88" for "6.88b", "1.2" for "1.2.3"), or another version."""
    asked = {m.group(1).lower() for m in _VERSION.finditer(question)}

    def status(version: str) -> str:
        if version == gold:
            return EQUAL
        coarser = gold.startswith(version) and re.match(r"\.|[a-z]", gold[len(version):])
        return CONSISTENT if coarser else DIFFERENT

    return [Candidate(m.start(), m.end(), status(m.group(1).lower()), m.group(1).lower())
            for m in _VERSION.finditer(text) if m.group(1).lower() not in asked]


def date_candidates(text: str, question: str, gold: GoldDate, any_precision: bool = False) -> list[Candidate]:
    """Date mentions as precise as the gold (or, if the text has none, less precise ones; or all, with
    `any_precision`), those restating the question left out: a bare year mentioned in passing does not hide the
    full date after it."""
    asked = {r for m in date_mentions(question) for r in m.readings}
    asked |= {(int(n.value), None, None) for n in numbers(question) if n.year_like}
    dates = date_mentions(text)
    candidates = [Candidate(m.start, m.end, combine([compare_date(gold.parts, r) for r in m.readings]), m.readings)
                  for m in sorted(dates + year_mentions(text, dates), key=lambda m: m.start)]
    candidates = [c for c in candidates if not set(c.key) <= asked or c.status == EQUAL]
    precision = sum(p is not None for p in gold.parts)
    precise = [c for c in candidates if max(sum(p is not None for p in r) for r in c.key) >= precision]
    return candidates if any_precision else precise or candidates


def _several(text: str, candidates: list[Candidate], spans: list[tuple[int, int]]) -> bool:
    """The first candidate opens a list of different values: "1693 or 1694", "1691, 1692, 1693", "1693 and
    1694." ("66 votes and 12 abstentions" goes on with a word: two facts, not two answers)."""
    group, gaps = [candidates[0]], []
    for nxt in candidates[1:]:
        gap = text[group[-1].end:nxt.start]
        if not _GROUP_GAP.fullmatch(gap):
            break
        group.append(nxt)
        gaps.append(gap)
    if len({c.key for c in group}) < 2:
        return False
    sentence_start = spans[sentence_at(spans, group[0].start)][0]
    either = re.search(r"\beither\b", text[sentence_start:group[0].start], re.I)
    joined = any(re.search(r"\band\b", g, re.I) for g in gaps) and re.match(r"\s*(?:[^\w\s]|$)", text[group[-1].end:])
    return bool(either or joined or len(group) >= 3 or any(_ALTERNATIVE_GAP.search(g) for g in gaps))


_ASKS_LIFE = re.compile(r"\b(?:born|birth|birthday|die[sd]?|dying|death|dead|passed away|age|old|lived?|lifespan)\b",
                        re.I)
_LIFE_EVENTS = frozenset({"bear", "die"})  # stems of "born", "died"


def in_role(text: str, question: str, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates from the first one in the question's role on ("born in 1653, died in 1713" for a death year:
    from 1713): a number or date in another role is no answer. All of them if none has a role cue. A birth or death
    date is no answer to a question that asks about neither ("born in 1929" for the year of an exhibition)."""
    cues = answer_cues(question)
    if not _ASKS_LIFE.search(question):
        candidates = [c for c in candidates if not cued_before(text, c.start, _LIFE_EVENTS)]
    cued = [i for i, c in enumerate(candidates) if cued_before(text, c.start, cues) or cued_after(text, c.end, cues)]
    return candidates[cued[0]:] if cued else candidates


_CONTRAST = re.compile(r"\b(?:though|although|but|however|whereas|yet)\b", re.I)


def _contradicted(text: str, first: Candidate, live: list[Candidate], spans: list[tuple[int, int]]) -> bool:
    """A different value for the slot after a contrast in the same sentence: "born on 22 June 1880, though his
    birth year is 1881"."""
    sentence_end = spans[sentence_at(spans, first.start)][1]
    return any(c.start > first.end and c.end <= sentence_end and c.status == DIFFERENT
               and _CONTRAST.search(text, first.end, c.start) for c in live)


def _uncommitted(text: str, spans: list[tuple[int, int]], gold: str, question: str) -> Verdict | None:
    """The grade of an answer that commits to no value for the slot (or only to one that holds the gold, "the
    19th century"), where it still contradicts the gold: a denial, or another value stated as the answer."""
    if denies_the_question(text, spans, question):
        return Verdict(INCORRECT, reason="denies that there is an answer")
    if states_other_answer(text, spans, gold, question):
        return Verdict(INCORRECT, reason="states another value as the answer")
    return None


def grade_slot(text: str, question: str, gold: str, candidates: list[Candidate], spans: list[tuple[int, int]],
               rivals: list[Candidate] | None = None) -> Verdict:
    """Grade a number or date answer from its candidates (refusing sentences already left out); `rivals` (the
    candidates by default) may contradict it after a contrast, a coarser date too ("though his birth year is 1881")."""
    negated = [c for c in candidates if is_negated(text, c.start, c.end)]
    live = in_role(text, question, [c for c in candidates if c not in negated])
    if any(c.status == EQUAL for c in negated):
        return Verdict(INCORRECT, reason="the gold answer is negated")
    if not live:
        return _uncommitted(text, spans, gold, question) or Verdict(NOT_ATTEMPTED,
                                                                    reason="no answer of the gold's type")
    first = live[0]
    if _several(text, live, spans):
        return Verdict(INCORRECT, reason="several candidate answers")
    if first.status == DIFFERENT:
        return Verdict(INCORRECT, reason="a different answer")
    if first.status in (CONSISTENT, AMBIGUOUS):
        return _uncommitted(text, spans, gold, question) or Verdict(
            NOT_ATTEMPTED, reason=f"{first.status}: neither confirms nor contradicts the gold")
    if offers_alternative(text, first.start, first.end, spans):
        return Verdict(INCORRECT, reason="offers an alternative answer")
    if is_retracted(text, first.end, spans, lambda pos: any(c.status == EQUAL and c.start >= pos for c in live)):
        return Verdict(INCORRECT, reason="the answer is retracted")
    if _contradicted(text, first, live if rivals is None else rivals, spans):
        return Verdict(INCORRECT, reason="contradicted later in the sentence")
    hedged = first.approximate or is_hedged(text[:spans[sentence_at(spans, first.start)][1]])
    return Verdict(CORRECT, hedged, "the committed answer matches")
