"""Dates: full dates in many formats, month-year, day-month, a day and year without their month, bare years; a
date gold."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from .numbers import numbers
from .text import sentence_of, sentence_spans
from .verdict import AMBIGUOUS, CONSISTENT, DIFFERENT, EQUAL

_MONTHS = {"january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
           "september": 9, "october": 10, "november": 11, "december": 12, "jan": 1, "feb": 2, "mar": 3, "apr": 4,
           "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10, "nov": 11, "dec": 12}
# "May" only capitalised, so the verb is not a month.
_MONTH = (r"\b(?P<m>(?i:(?:january|february|march|april|june|july|august|september|october|november|december|"
          r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)(?![a-z]))\.?|May(?![a-z])|MAY(?![A-Z]))")
_DAY = r"(?<![\d,.])(?P<d>\d{1,2})(?i:st|nd|rd|th)?"
_YEAR = r"(?P<y>\d{3,4})(?!\d)"
_DATE_PATTERNS = [  # most specific first; a later pattern may not overlap an earlier match
    re.compile(r"(?<![\d/.-])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?![\d-])"),
    re.compile(r"(?<![\d/.-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4})(?!\d)"),
    re.compile(rf"(?i:the\s+)?{_DAY},?(?i:\s+of)?\s+{_MONTH},?\s+(?i:of\s+)?{_YEAR}"),
    re.compile(rf"{_MONTH}\s+{_DAY},?\s+{_YEAR}"),
    re.compile(rf"{_MONTH},?\s+(?i:of\s+)?(?P<y>\d{{4}})(?!\d)"),
    re.compile(r"(?<![\d,.])(?P<d>\d{1,2})(?i:st|nd|rd|th),?\s+(?P<y>\d{4})(?!\d)"),  # "the 28th, 1956": no month
    re.compile(r"(?<![\d/.-])(?P<m>\d{1,2})[/-](?P<y>\d{4})(?![\d/-])"),
    re.compile(rf"(?i:the\s+)?{_DAY}(?i:\s+of)?\s+{_MONTH}"),
    re.compile(rf"{_MONTH}\s+{_DAY}(?!\d)"),
]

DateParts = tuple[int | None, int | None, int | None]  # (year, month, day)
_WEEKDAY_BEFORE = re.compile(r"\b(?i:monday|tuesday|wednesday|thursday|friday|saturday|sunday),?\s*$")


@dataclass(frozen=True)
class DateMention:
    start: int
    end: int
    readings: tuple[DateParts, ...]  # two for an ambiguous "10/11/2018"

    @property
    def precision(self) -> int:
        return max(sum(p is not None for p in r) for r in self.readings)


def _valid(parts: DateParts) -> bool:
    year, month, day = parts
    try:
        date(year or 2000, month or 1, day or 1)
    except ValueError:
        return False
    return True


def _readings(match: re.Match, text: str) -> tuple[DateParts, ...]:
    groups = match.groupdict()
    year = int(groups["y"]) if groups.get("y") else _year_nearby(text, match)
    if groups.get("a"):
        a, b = int(groups["a"]), int(groups["b"])
        options = {(year, b, a), (year, a, b)}  # day-month and month-day
    else:
        month = groups.get("m")
        month_number = None if month is None else int(month) if month.isdigit() else _MONTHS[month.rstrip(".").lower()]
        options = {(year, month_number, int(groups["d"]) if groups.get("d") else None)}
    return tuple(sorted((o for o in options if _valid(o)), key=str))


def _year_nearby(text: str, match: re.Match) -> int | None:
    """A day and month without a year take the first year-like number of their sentence."""
    spans = sentence_spans(text)
    start, end = sentence_of(text, spans, match.start())
    years = [n for n in numbers(text[start:end]) if n.year_like and 1000 <= n.value <= 2100]
    return int(years[0].value) if years else None


def date_mentions(text: str) -> list[DateMention]:
    """Full dates, month-year and day-month mentions (no bare years), in text order."""
    taken: list[tuple[int, int]] = []
    found = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < e and s < match.end() for s, e in taken):
                continue
            readings = _readings(match, text)
            if readings:
                weekday = _WEEKDAY_BEFORE.search(text, 0, match.start())
                start = weekday.start() if weekday else match.start()
                taken.append((start, match.end()))
                found.append(DateMention(start, match.end(), readings))
    return sorted(found, key=lambda m: m.start)


def year_mentions(text: str, dates: list[DateMention]) -> list[DateMention]:
    """Bare years (1000-2100) outside the date mentions, as year-only dates."""
    return [DateMention(n.start, n.end, ((int(n.value), None, None),)) for n in numbers(text)
            if n.year_like and 1000 <= n.value <= 2100 and not any(d.start <= n.start < d.end for d in dates)]


@dataclass(frozen=True)
class GoldDate:
    parts: DateParts


def parse_date_gold(gold: str) -> GoldDate | None:
    text = gold.strip().rstrip(".")
    mentions = date_mentions(text)
    if len(mentions) == 1 and len(mentions[0].readings) == 1 and mentions[0].start == 0 \
            and mentions[0].end == len(text):
        return GoldDate(mentions[0].readings[0])
    return None


def compare_date(gold: DateParts, reading: DateParts) -> str:
    pairs = [(g, p) for g, p in zip(gold, reading) if g is not None]
    if any(p is not None and p != g for g, p in pairs):
        return DIFFERENT
    return EQUAL if all(p is not None for _, p in pairs) else CONSISTENT


def combine(statuses: list[str]) -> str:
    """One status for a mention with several readings (an ambiguous numeric date)."""
    if all(s == statuses[0] for s in statuses):
        return statuses[0]
    return AMBIGUOUS if any(s in (EQUAL, CONSISTENT) for s in statuses) else DIFFERENT
