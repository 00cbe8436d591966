"""Numbers: numerals, number words, significant figures, a number or range gold."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import words

_NUMERAL = re.compile(
    r"(?<![\w.,])(?P<int>\d{1,3}(?:(?:,|[ \u00a0\u202f\u2009])\d{3})+(?!\d)|\d+)(?P<dec>\.\d+)?"
    r"(?:(?P<ord>st|nd|rd|th)|(?P<mag>k|mn|bn)|\s?(?P<magword>thousand|million|billion)|\s?(?P<pct>%|percent))?"
    r"(?![\w%])", re.I)
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORD = re.compile(r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[- ](?P<unit>" + "|".join(_UNITS[1:10])
                          + r"))?|(?P<small>" + "|".join(_UNITS) + r"))\b", re.I)
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
             "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()
# Only where the gold is an ordinal: elsewhere "first" and "second" are ordinary words.
_ORDINAL_WORD = re.compile(r"\b(?:" + "|".join(_ORDINALS) + r")\b", re.I)
# Units one answer may give in another scale than the gold ("4,600 cm" for "46 m"): (dimension, factor).
_SCALES = {**dict.fromkeys(("mm", "millimetre", "millimetres", "millimeter", "millimeters"), ("length", 1e-3)),
           **dict.fromkeys(("cm", "centimetre", "centimetres", "centimeter", "centimeters"), ("length", 1e-2)),
           **dict.fromkeys(("m", "metre", "metres", "meter", "meters"), ("length", 1.0)),
           **dict.fromkeys(("km", "kilometre", "kilometres", "kilometer", "kilometers"), ("length", 1e3)),
           **dict.fromkeys(("mg", "milligram", "milligrams"), ("mass", 1e-3)),
           **dict.fromkeys(("g", "gram", "grams"), ("mass", 1.0)),
           **dict.fromkeys(("kg", "kilogram", "kilograms"), ("mass", 1e3)),
           **dict.fromkeys(("tonne", "tonnes"), ("mass", 1e6)),
           # temperature: (value + offset) * factor is in kelvin
           **dict.fromkeys(("c", "celsius"), ("temperature", 1.0)),
           **dict.fromkeys(("f", "fahrenheit"), ("temperature", 5 / 9)),
           **dict.fromkeys(("k", "kelvin"), ("temperature", 1.0))}
_OFFSETS = {"c": 273.15, "celsius": 273.15, "f": 459.67, "fahrenheit": 459.67}
_MAGNITUDE = {"k": 1e3, "thousand": 1e3, "mn": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}


@dataclass(frozen=True)
class Number:
    value: float
    unit: float  # the place of the last significant figure: 1 for "1693", 10000 for "120k", 0.01 for "1.73"
    start: int
    end: int
    plain: bool  # digits only: no separators, decimals, suffixes or ordinal
    word: bool  # spelt out ("three")
    ordinal: bool = False  # "3rd", "third"

    @property
    def year_like(self) -> bool:
        return self.plain and not self.word and 100 <= self.value <= 9999


def _numeral(match: re.Match) -> Number:
    digits = re.sub(r"\D", "", match.group("int"))
    decimals = match.group("dec") or ""
    magnitude = _MAGNITUDE.get((match.group("mag") or match.group("magword") or "").lower(), 1.0)
    if decimals:
        unit = 10.0 ** -(len(decimals) - 1) * magnitude
    elif magnitude != 1.0:  # "120k": trailing zeros are not significant
        unit = 10.0 ** (len(digits) - len(digits.rstrip("0"))) * magnitude
    else:
        unit = 1.0
    plain = match.group("int").isdigit() and not (decimals or magnitude != 1.0 or match.group("ord")
                                                  or match.group("pct")) and not digits.startswith("0")
    return Number(float(digits + decimals) * magnitude, unit, match.start(), match.end(), plain, False,
                  bool(match.group("ord")))


def _number_word(match: re.Match) -> Number:
    if match.group("small"):
        value = _UNITS.index(match.group("small").lower())
    else:
        value = 10 * (_TENS.index(match.group("tens").lower()) + 2)
        value += _UNITS.index(match.group("unit").lower()) if match.group("unit") else 0
    return Number(float(value), 1.0, match.start(), match.end(), True, True)


def numbers(text: str, ordinals: bool = False) -> list[Number]:
    """Numerals ("1,200", "1 200", "120k", "1.73") and number words up to ninety-nine, in text order; with
    `ordinals`, ordinal words up to "twentieth" too."""
    found = [_numeral(m) for m in _NUMERAL.finditer(text)] + [_number_word(m) for m in _NUMBER_WORD.finditer(text)]
    if ordinals:
        found += [Number(float(_ORDINALS.index(m.group().lower()) + 1), 1.0, m.start(), m.end(), True, True, True)
                  for m in _ORDINAL_WORD.finditer(text)]
    found.sort(key=lambda n: n.start)
    for i in range(1, len(found)):  # "1950-52": the second year keeps the first one's century
        first, second = found[i - 1], found[i]
        if first.year_like and first.value >= 1000 and second.plain and not second.word and second.value < 100 \
                and re.fullmatch(r"[-\u2013]", text[first.end:second.start]) and second.end - second.start == 2:
            century = first.value - first.value % 100
            value = century + second.value + (100 if century + second.value < first.value else 0)
            found[i] = Number(value, 1.0, second.start, second.end, True, False)
    return found


@dataclass(frozen=True)
class GoldNumber:
    value: float
    unit: float
    year: bool
    units: frozenset[str] = frozenset()  # the gold's unit words ("votes", "mm"): part of a candidate's span
    scale: tuple[str, float] | None = None  # the gold's unit of length, mass or temperature, if any
    unit_word: str | None = None
    ordinal: bool = False

    def in_gold_scale(self, value: float, unit_word: str) -> float:
        """`value` given in `unit_word` converted to the gold's unit of the same dimension (else unchanged)."""
        other = _SCALES.get(unit_word)
        if self.scale is None or self.unit_word is None or other is None or other[0] != self.scale[0]:
            return value
        base = (value + _OFFSETS.get(unit_word, 0.0)) * other[1]
        return base / self.scale[1] - _OFFSETS.get(self.unit_word, 0.0)

    def matches(self, value: float) -> bool:
        """Right to the gold's last significant figure (rounding half up)."""
        return self.value - self.unit / 2 <= value < self.value + self.unit / 2

    def near(self, value: float) -> bool:
        return abs(value - self.value) <= (10 if self.year else 0.25 * abs(self.value))


@dataclass(frozen=True)
class GoldRange:
    low: GoldNumber
    high: GoldNumber


# "#" stands for a number: a currency sign before it, at most two unit words after it.
_NUMBER_GOLD = re.compile(r"\s*(?:about|around|approximately|~)?\s*[$\u00a3\u20ac\u00a5]?\s*#"
                          r"\s*\u00b0?\s*(?:[a-z%]+(?:\s+[a-z]+)?)?\s*\.?\s*", re.I)
# "X and Y" without "between" is a list of two (a text gold), not a range.
_RANGE_GOLD = re.compile(r"\s*(?:between\s*#\s*(?:and|-|\u2013|\u2014)|(?:from\s*)?#\s*(?:-|\u2013|\u2014|to|until))"
                         r"\s*#\s*\.?\s*", re.I)


def _gold_number(number: Number, question: str, gold: str = "") -> GoldNumber:
    unit_words = [w.text for w in words(gold[number.end:])]
    counting = re.search(r"\bhow (?:many|much)\b|\bnumber of\b", question, re.I)  # 1571 locations is no year
    year = number.year_like and not counting and (1000 <= number.value <= 2100 or "year" in question.lower()) and (
        not unit_words or unit_words[0] in ("ad", "bc", "ce", "bce"))  # "1200 nits" is no year
    scale = _SCALES.get(unit_words[0]) if unit_words else None
    return GoldNumber(number.value, number.unit, year, frozenset(unit_words), scale,
                      unit_words[0] if scale else None, number.ordinal)


def parse_number_gold(question: str, gold: str) -> GoldNumber | GoldRange | None:
    """A gold that is one number (with at most two unit words) or a range of two; else None."""
    found = numbers(gold, ordinals=bool(_ORDINAL_WORD.fullmatch(gold.strip(" ."))))
    skeleton = gold
    for n in reversed(found):
        skeleton = skeleton[:n.start] + "#" + skeleton[n.end:]
    if len(found) == 1 and _NUMBER_GOLD.fullmatch(skeleton):
        return _gold_number(found[0], question, gold)
    if len(found) == 2 and _RANGE_GOLD.fullmatch(skeleton):
        low, high = sorted((_gold_number(n, question) for n in found), key=lambda g: g.value)
        return GoldRange(low, high)
    return None
