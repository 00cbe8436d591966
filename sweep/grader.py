"""A strict deterministic SimpleQA grader: CORRECT / INCORRECT / NOT_ATTEMPTED from the question and gold alone.

The outputs graded here are continuations that often ramble on after the answer, so the grader reads the first
committed answer and lets correct detail follow it. The gold's form picks the matcher (date, number, text):

- Dates: "23 October 2018" = "October 23, 2018" = "Oct. 23, 2018" = "23rd October 2018" = "2018-10-23" =
  "23/10/2018". In a numeric a/b/yyyy date a field above 12 is the day; when both are 12 or less and differ
  the date is ambiguous: CORRECT only if both readings are the gold, NOT_ATTEMPTED if one is, else
  INCORRECT. The committed date is the first as precise as the gold; one that is less precise but agrees
  ("2018" for a full date) is NOT_ATTEMPTED. A day and month without a year take their sentence's year.
- Numbers: "1,200" = "1200" = "1 200", "three" = "3", "120k" = "120,000"; unit words are ignored. The
  answer must be right to the gold's last significant figure: a plain integer exactly, "1.73" to 0.005,
  "120k" to 5k (a suffixed gold's trailing zeros are not significant). "around X" that is right is CORRECT
  (hedged); "around X" within 25 % (10 years for a year) and a bound the gold meets ("more than 50k") are
  NOT_ATTEMPTED; anything else is INCORRECT. Numbers the question holds are not candidates, nor are a
  date's day or, for a count, years; for a year gold only years of as many digits are.
- Ranges ("between 1 and 3", "1979 - 1989", "from 1976 to 1977"): the same two ends with any connector are
  CORRECT; one value inside is NOT_ATTEMPTED, outside INCORRECT. A range given for a one-value gold is
  NOT_ATTEMPTED if it holds the gold, else INCORRECT. "1985 and 1987" is a list of two (a text gold).
- Text and names: the gold's distinctive words must appear together (at most two other words among them),
  in any order ("Sugeno, Michio"); case, accents ("Bedřich" = "Bedrich"), punctuation and articles are
  ignored, and so is one typo in a word of 5+ letters or a vowel-only difference ("Choong" = "Chung"). Gold
  words the question holds need not be repeated ("Michelle" when the question names Obama), nor what
  follows a comma ("San Francisco, California") or sits in parentheses. A gold "A: B" is matched by either
  side. For a person (a "who" question) the surname is enough and middle or given names may be left out,
  but a different capitalised name before the surname ("Takeshi Sugeno") contradicts it. A list ("A and B")
  needs every item; an extra capitalised member ("A, B, and C") or another count ("three children") is
  INCORRECT. The gold must appear within three sentences of the first one that names anything the
  question does not, so a gold mentioned only deep in a ramble after another answer does not count.

Across types: the first candidate not negated is the committed answer. A second, different candidate for the
same slot ("1693 or 1694", "either X or Y", "1691, 1692, 1693", "X. Or it could be Y") is INCORRECT, and so is
a negated or retracted gold ("not X", "X? No, it was Y", "X, sorry, I mean Y"). Multiple-choice lines ("A. X",
"B. Y") are several candidates unless an "Answer: B" follows them; then option B alone is graded. Hedges that
still commit ("I'm not sure, but I think it was X") keep the grade and mark it hedged. Refusals ("I don't
know", "I cannot find information", empty output) are NOT_ATTEMPTED, and a candidate inside a refusing
sentence does not count. A number or date gold with no candidate of its kind in the answer is NOT_ATTEMPTED
unless the answer denies there is one ("did not commit any fouls": INCORRECT). Text without a text gold is
INCORRECT unless it declines to answer: without a model, a wrong name cannot be told from other words, so
the grader presumes one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

CORRECT, INCORRECT, NOT_ATTEMPTED = "CORRECT", "INCORRECT", "NOT_ATTEMPTED"
# How one candidate compares with the gold.
EQUAL, DIFFERENT, CONSISTENT, AMBIGUOUS = "equal", "different", "consistent", "ambiguous"


@dataclass(frozen=True)
class Verdict:
    grade: str
    hedged: bool = False  # a CORRECT answer given with hedging ("I think", "around", "not sure, but")
    reason: str = ""


# --- text: cleaning, folding, words, sentences ------------------------------------------------------

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_SPELT_OUT = str.maketrans({"ß": "ss", "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe", "ø": "o", "Ø": "O",
                            "đ": "d", "Đ": "D", "ł": "l", "Ł": "L", "ı": "i", "þ": "th", "ð": "d"})
_PROMPT_ECHO = re.compile(r"^\s*question:.*?\banswer(?: and explanation)?\s*:", re.I | re.S)
_LABEL = re.compile(r"^\s*(?:answer(?: and explanation)?|a)\s*:\s*", re.I)


def clean(text: str) -> str:
    """Markdown emphasis and an echoed 'Question: ... Answer:' prompt removed, quotes straightened."""
    text = re.sub(r"[*`#]+", "", text.translate(_QUOTES))
    text = _LABEL.sub("", _PROMPT_ECHO.sub("", text, count=1))
    return re.sub(r"[ \t]+", " ", text).strip()


def fold(text: str) -> str:
    """Lower-case ASCII: accents stripped, letters without a decomposition spelt out."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPELT_OUT))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).encode("ascii", "ignore").decode().lower()


@dataclass(frozen=True)
class Word:
    text: str  # folded
    start: int
    end: int
    capitalised: bool  # Title-case ("Sasha"), not lower or ALL-CAPS
    initial: bool = False  # one capital letter and a period ("M.")


_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[Word]:
    """Letter/digit runs of `text` with their spans; punctuation and apostrophes split words."""
    found = (Word(fold(m.group()), m.start(), m.end(), m.group()[0].isupper() and not m.group()[1:].isupper(),
                  len(m.group()) == 1 and m.group().isupper() and text[m.end():m.end() + 1] == ".")
             for m in _WORD.finditer(text))
    return [w for w in found if w.text]


ARTICLES = frozenset({"a", "an", "the"})


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, articles dropped, whitespace collapsed."""
    return " ".join(w.text for w in words(text) if w.text not in ARTICLES)


_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs approx ca jan feb mar apr jun jul aug sep sept oct nov "
                           "dec".split())
_SENTENCE_END = re.compile(r"[.!?]+(?=[\s\"')\]]|$)|\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; a period after an initial or a common abbreviation ends none."""
    spans, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if end.group() == ".":
            last = re.search(r"(\w+)$", text[start:end.start()])
            if last and ((len(last.group(1)) == 1 and last.group(1).isalpha())
                         or last.group(1).lower() in _ABBREVIATIONS):
                continue
        if text[start:end.end()].strip():
            spans.append((start, end.end()))
        start = end.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def _sentence_at(spans: list[tuple[int, int]], pos: int) -> int:
    """Index of the sentence holding character `pos` (the last one starting at or before it)."""
    index = 0
    for i, (start, _) in enumerate(spans):
        if start <= pos:
            index = i
    return index


def _through_next_sentence(spans: list[tuple[int, int]], pos: int) -> int:
    """End of the sentence after the one holding `pos` (or of that one, if it is the last)."""
    i = _sentence_at(spans, pos)
    return spans[min(i + 1, len(spans) - 1)][1]


# --- cues: refusal, hedging, negation, alternatives, retraction, denial -----------------------------

_REFUSAL = re.compile(
    r"\b(?:i (?:do not|don't|dont|did not|didn't) know|(?:i'm|im|i am) (?:not (?:sure|certain|aware|able)|unsure|"
    r"unable)|not (?:sure|certain)|no (?:[\w-]+ ){0,3}(?:information|data|records?|sources?)\b|no way to (?:know|tell|"
    r"determine)\b|(?:cannot|can't|could not|couldn't|unable to|not able to) (?:find|answer|determine|provide|"
    r"say|confirm|verify|identify|access|locate|recall|tell)|need (?:more|additional) (?:context|information|"
    r"details)|(?:don't|do not) have (?:access|information|enough|that information)|(?:have|has) no (?:idea|"
    r"information)|no idea|not enough information|(?:is|are|remains?) unknown)\b|^\W*unknown\W*$", re.I)
_CONTRAST = re.compile(r"\b(?:but|however|though|although|while)\b", re.I)
_PARTIAL_REFUSAL = re.compile(r"\b(?:not sure|unsure|not certain|(?:don't|do not) know)\s+(?:about|of|who|what)\s+"
                              r"(?:is\s+|was\s+)?(?:the\s+)?(?:others?|rest|remaining|second|last one)\b", re.I)
_HEDGE = re.compile(
    r"\b(?:i think|i believe|i guess|i suppose|i'd say|would say|probably|possibly|perhaps|maybe|likely|might|"
    r"may be|could be|not (?:sure|certain|100)|unsure|uncertain|if i (?:recall|remember)|as far as i know|"
    r"it's possible|it is possible|double[- ]check|seems|apparently|presumably|i'm fairly)\b", re.I)
_GUESS = re.compile(r"\b(?:i think|i believe|i guess|my (?:best )?guess|it (?:might|may|could) be|probably|"
                    r"possibly|perhaps|maybe|likely)\b", re.I)
_CLAUSE_BREAK = re.compile(r"[,;:!?()\n\u2013\u2014]|(?<!\b[A-Z])\.|\b(?:but|however|though|although|whereas|"
                           r"while)\b", re.I)  # not the period of an initial ("not A. W. Skempton")
_NEGATION = re.compile(r"\b(?:not|never|no|neither|nor|instead of|rather than|other than|except|unlike)\b|n't\b",
                       re.I)
_NOT_A_NEGATION = re.compile(
    r"\b(?:not|never)\s+(?:\w+\s+)?(?:sure|certain|know|knew|aware|remember|recall|100)\b|n't\s+(?:\w+\s+)?"
    r"(?:sure|certain|know|knew|remember|recall)\b|\bno doubt\b|\bnot only\b|\bnot until\b|"
    r"\bno(?:t)? (?:more|less|fewer|later|earlier|sooner) than\b", re.I)
_NEGATED_AFTER = re.compile(
    r"(?:[^\w?]*\?\s*(?:no|nope|not)\b|\s*[,;:.!\u2013\u2014-]?\s*(?:no|nope)\s*[,.;:!\u2013\u2014]|"
    r"\s*(?:is|was|would be)\s+(?:wrong|incorrect|not (?:right|correct|true|accurate))\b)", re.I)
_ALTERNATIVE_AFTER = re.compile(
    r"(?:^[^\w.!?;]*|[.!?;]\s*)(?:or|alternatively)\b(?!\s+(?:so|not|more|less|rather|later|earlier|thereabouts)\b)"
    r"|\b(?:or (?:it |that )?(?:could|might|may) (?:also )?be|(?:it|that) (?:could|might|may) also be|"
    r"or (?:possibly|perhaps|maybe))\b", re.I)
_LIST_WITH_OR = re.compile(r"(?:\s*,\s*(?:[A-Z0-9][\w'.-]*\s*){1,3})+,?\s*or\b")
_ALTERNATIVE_BEFORE = re.compile(r"\beither\b[^.!?]*$|\bor\s+(?:maybe\s+|perhaps\s+|possibly\s+)?$", re.I)
_CORRECTION = re.compile(r"\b(?:correction|sorry|i mean|i meant|no,? wait|wait,? no|scratch that|on second "
                         r"thought|i was wrong|that's (?:wrong|incorrect|not right)|that is (?:wrong|incorrect)|"
                         r"i misspoke)\b", re.I)
_DENIAL = re.compile(r"\b(?:not|never)\s+(?:\w+\s+){0,2}any\b|n't\s+(?:\w+\s+){0,2}any\b|\b(?:has|had|have|with|"
                     r"there (?:is|are|was|were)) no\b(?! (?:doubt|idea|information|records?|data)\b)|"
                     r"\bno(?: one|body)\b|\bnone\b", re.I)
_SMALL_COUNT = ("two three four five six seven eight nine ten eleven twelve").split()
_COUNT = re.compile(r"(?<![\w.,])(\d{1,2}|" + "|".join(_SMALL_COUNT) + r")\s+(?:children|people|[a-z]+s)\b", re.I)


def is_refusal(sentence: str) -> bool:
    """Declines to answer: "I don't know", "cannot find", a partial refusal; not when it goes on with "but"."""
    return bool(_PARTIAL_REFUSAL.search(sentence)
                or (_REFUSAL.search(sentence.strip()) and not _CONTRAST.search(sentence)))


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
    sentence_start = spans[_sentence_at(spans, start)][0]
    if _ALTERNATIVE_BEFORE.search(text[sentence_start:start]):
        return True
    after = text[end:_through_next_sentence(spans, end)]
    return bool(_ALTERNATIVE_AFTER.search(after) or _LIST_WITH_OR.match(after))


def is_retracted(text: str, end: int, spans: list[tuple[int, int]], restated: Callable[[int], bool]) -> bool:
    """A correction marker ("sorry, I mean", "scratch that") follows the answer and the answer is not restated."""
    marker = _CORRECTION.search(text, end, _through_next_sentence(spans, end))
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


def denies(text: str, spans: list[tuple[int, int]]) -> bool:
    """Says there is no such thing ("does not have any children", "no one received it", "none") in a sentence
    that is not a refusal ("there is no information" is one)."""
    return any(_DENIAL.search(text[s:e]) and not is_refusal(text[s:e]) for s, e in spans)


# --- numbers --------------------------------------------------------------------------------------

_NUMERAL = re.compile(
    r"(?<![\w.,])(?P<int>\d{1,3}(?:(?:,|[ \u00a0\u202f\u2009])\d{3})+(?!\d)|\d+)(?P<dec>\.\d+)?"
    r"(?:(?P<ord>st|nd|rd|th)|(?P<mag>k|mn|bn)|\s?(?P<magword>thousand|million|billion)|\s?(?P<pct>%|percent))?"
    r"(?![\w%])", re.I)
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORD = re.compile(r"\b(?:(?P<tens>" + "|".join(_TENS) + r")(?:[- ](?P<unit>" + "|".join(_UNITS[1:10])
                          + r"))?|(?P<small>" + "|".join(_UNITS) + r"))\b", re.I)
_MAGNITUDE = {"k": 1e3, "thousand": 1e3, "mn": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}


@dataclass(frozen=True)
class Number:
    value: float
    unit: float  # the place of the last significant figure: 1 for "1693", 10000 for "120k", 0.01 for "1.73"
    start: int
    end: int
    plain: bool  # digits only: no separators, decimals, suffixes or ordinal
    word: bool  # spelt out ("three")

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
    return Number(float(digits + decimals) * magnitude, unit, match.start(), match.end(), plain, False)


def _number_word(match: re.Match) -> Number:
    if match.group("small"):
        value = _UNITS.index(match.group("small").lower())
    else:
        value = 10 * (_TENS.index(match.group("tens").lower()) + 2)
        value += _UNITS.index(match.group("unit").lower()) if match.group("unit") else 0
    return Number(float(value), 1.0, match.start(), match.end(), True, True)


def numbers(text: str) -> list[Number]:
    """Numerals ("1,200", "1 200", "120k", "1.73") and number words up to ninety-nine, in text order."""
    found = [_numeral(m) for m in _NUMERAL.finditer(text)] + [_number_word(m) for m in _NUMBER_WORD.finditer(text)]
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
                          r"\s*(?:[a-z%]+(?:\s+[a-z]+)?)?\s*\.?\s*", re.I)
# "X and Y" without "between" is a list of two (a text gold), not a range.
_RANGE_GOLD = re.compile(r"\s*(?:between\s*#\s*(?:and|-|\u2013|\u2014)|(?:from\s*)?#\s*(?:-|\u2013|\u2014|to|until))"
                         r"\s*#\s*\.?\s*", re.I)


def _gold_number(number: Number, question: str, gold: str = "") -> GoldNumber:
    year = number.year_like and (1000 <= number.value <= 2100 or "year" in question.lower())
    return GoldNumber(number.value, number.unit, year, frozenset(w.text for w in words(gold[number.end:])))


def parse_number_gold(question: str, gold: str) -> GoldNumber | GoldRange | None:
    """A gold that is one number (with at most two unit words) or a range of two; else None."""
    found = numbers(gold)
    skeleton = gold
    for n in reversed(found):
        skeleton = skeleton[:n.start] + "#" + skeleton[n.end:]
    if len(found) == 1 and _NUMBER_GOLD.fullmatch(skeleton):
        return _gold_number(found[0], question, gold)
    if len(found) == 2 and _RANGE_GOLD.fullmatch(skeleton):
        low, high = sorted((_gold_number(n, question) for n in found), key=lambda g: g.value)
        return GoldRange(low, high)
    return None


# --- dates ----------------------------------------------------------------------------------------

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
        month = groups["m"]
        month_number = int(month) if month.isdigit() else _MONTHS[month.rstrip(".").lower()]
        options = {(year, month_number, int(groups["d"]) if groups.get("d") else None)}
    return tuple(sorted((o for o in options if _valid(o)), key=str))


def _year_nearby(text: str, match: re.Match) -> int | None:
    """A day and month without a year take the first year-like number of their sentence."""
    spans = sentence_spans(text)
    start, end = spans[_sentence_at(spans, match.start())] if spans else (0, len(text))
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


# --- candidates for a number or date slot ---------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    status: str  # EQUAL / DIFFERENT / CONSISTENT / AMBIGUOUS against the gold
    key: object  # what makes two candidates the same answer
    approximate: bool = False


_APPROX = re.compile(r"(?:\b(?:around|about|approximately|approx\.?|roughly|nearly|almost|some|circa|ca\.|c\.|"
                     r"close to|an estimated|estimated)|~)\s*$", re.I)
_ABOVE = re.compile(r"\b(?:more than|over|at least|above|greater than|exceeding|upwards of|in excess of|"
                    r"no fewer than|no less than|after)\s*$", re.I)
_BELOW = re.compile(r"\b(?:less than|fewer than|under|below|at most|up to|no more than|before)\s*$", re.I)
_RANGE_GAP = re.compile(r"\s*(?:-|\u2013|\u2014|to|until|till|through|and)\s*", re.I)
_GROUP_GAP = re.compile(r"[\s,;/]*(?:(?:or|and|either|maybe|perhaps|possibly|probably)\b[\s,;/]*)*", re.I)
_ALTERNATIVE_GAP = re.compile(r"\b(?:or|either|maybe|perhaps|possibly|probably)\b|/", re.I)


def _qualifier(text: str, start: int) -> str:
    before = text[max(0, start - 30):start]
    for name, pattern in (("approx", _APPROX), ("above", _ABOVE), ("below", _BELOW)):
        if pattern.search(before):
            return name
    return ""


def _number_status(gold: GoldNumber | GoldRange, value: float, qualifier: str) -> str:
    if isinstance(gold, GoldRange):
        return CONSISTENT if gold.low.value <= value <= gold.high.value else DIFFERENT
    if qualifier == "above":
        return CONSISTENT if gold.value > value else DIFFERENT
    if qualifier == "below":
        return CONSISTENT if gold.value < value else DIFFERENT
    if gold.matches(value):
        return EQUAL
    return CONSISTENT if qualifier == "approx" and gold.near(value) else DIFFERENT


def _range_status(gold: GoldNumber | GoldRange, low: float, high: float) -> str:
    low, high = sorted((low, high))
    if isinstance(gold, GoldRange):
        return EQUAL if gold.low.matches(low) and gold.high.matches(high) else DIFFERENT
    return CONSISTENT if low <= gold.value <= high else DIFFERENT


_NEXT_WORD = re.compile(r"\s*([^\W\d_]+|%)")


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


def number_candidates(text: str, question: str, gold: GoldNumber | GoldRange) -> list[Candidate]:
    """Numbers that could answer the gold's slot, with ranges ("between 1 and 3", "1979-1989") merged."""
    point = gold.low if isinstance(gold, GoldRange) else gold
    asked_dates = date_mentions(question)  # of a date the question holds, only the year is "asked"
    asked = {n.value for n in numbers(question)
             if n.year_like or not any(d.start <= n.start < d.end for d in asked_dates)}
    masked = [] if point.year else date_mentions(text)

    def could_answer(n: Number) -> bool:
        if _is_list_marker(text, n) or any(d.start <= n.start < d.end for d in masked):
            return False
        if isinstance(gold, GoldNumber) and gold.matches(n.value):
            return True
        if n.value in asked:
            return False
        if point.year:  # a year of as many digits as the gold's ("He was 40" and "300 works" are no years)
            return n.year_like and len(str(int(n.value))) == len(str(int(point.value)))
        return not (n.year_like and 1000 <= n.value <= 2100) and not (n.word and n.value == 1)

    found = [n for n in numbers(text) if could_answer(n)]
    out, i = [], 0
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
        out.append(Candidate(n.start, end, _number_status(gold, n.value, qualifier), n.value, qualifier == "approx"))
        i += 1
    return out


def date_candidates(text: str, question: str, gold: GoldDate) -> list[Candidate]:
    """Date mentions as precise as the gold (or, if the text has none, less precise ones), those restating the
    question left out: a bare year mentioned in passing does not hide the full date after it."""
    asked = {r for m in date_mentions(question) for r in m.readings}
    asked |= {(int(n.value), None, None) for n in numbers(question) if n.year_like}
    dates = date_mentions(text)
    candidates = [Candidate(m.start, m.end, combine([compare_date(gold.parts, r) for r in m.readings]), m.readings)
                  for m in sorted(dates + year_mentions(text, dates), key=lambda m: m.start)]
    candidates = [c for c in candidates if not set(c.key) <= asked or c.status == EQUAL]
    precision = sum(p is not None for p in gold.parts)
    precise = [c for c in candidates if max(sum(p is not None for p in r) for r in c.key) >= precision]
    return precise or candidates


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
    sentence_start = spans[_sentence_at(spans, group[0].start)][0]
    either = re.search(r"\beither\b", text[sentence_start:group[0].start], re.I)
    joined = any(re.search(r"\band\b", g, re.I) for g in gaps) and re.match(r"\s*(?:[^\w\s]|$)", text[group[-1].end:])
    return bool(either or joined or len(group) >= 3 or any(_ALTERNATIVE_GAP.search(g) for g in gaps))


def grade_slot(text: str, candidates: list[Candidate], spans: list[tuple[int, int]]) -> Verdict:
    """Grade a number or date answer from its candidates (refusing sentences already left out)."""
    live = [c for c in candidates if not is_negated(text, c.start, c.end)]
    if any(c.status == EQUAL for c in candidates if c not in live):
        return Verdict(INCORRECT, reason="the gold answer is negated")
    if not live:
        if denies(text, spans):
            return Verdict(INCORRECT, reason="denies that there is an answer")
        return Verdict(NOT_ATTEMPTED, reason="no answer of the gold's type")
    first = live[0]
    if _several(text, live, spans):
        return Verdict(INCORRECT, reason="several candidate answers")
    if first.status == DIFFERENT:
        return Verdict(INCORRECT, reason="a different answer")
    if first.status in (CONSISTENT, AMBIGUOUS):
        return Verdict(NOT_ATTEMPTED, reason=f"{first.status}: neither confirms nor contradicts the gold")
    if offers_alternative(text, first.start, first.end, spans):
        return Verdict(INCORRECT, reason="offers an alternative answer")
    if is_retracted(text, first.end, spans, lambda pos: any(c.status == EQUAL and c.start >= pos for c in live)):
        return Verdict(INCORRECT, reason="the answer is retracted")
    hedged = first.approximate or is_hedged(text[:spans[_sentence_at(spans, first.start)][1]])
    return Verdict(CORRECT, hedged, "the committed answer matches")


# --- names and text -------------------------------------------------------------------------------

_FILLER = ARTICLES | {"of", "and"}
_PARTICLES = frozenset("de van von der den da di du del della la le bin ibn al el y dos das".split())
_TITLES = frozenset("dr doctor prof professor mr mrs ms miss sir dame lord lady saint st president king queen "
                    "prince princess general captain judge justice rev reverend father pope emperor".split())
_PERSON_QUESTION = re.compile(r"\b(?:who|whom|whose)\b", re.I)
# Capitalised at the start of a sentence, but no answer: not a claim, not a rival name, never required.
_SENTENCE_OPENERS = frozenset("he she it they the this that these those in on at there i a an as his her its "
                              "their we you however but and so also although while when what who which to for "
                              "from with by of if yes no unfortunately sorry based without according please my "
                              "our one some".split())
_VOWELS = re.compile(r"[aeiou]")


@dataclass(frozen=True)
class GoldItem:
    tokens: tuple[str, ...]  # the item's words, then its optional qualifier's
    required: frozenset[int]  # indices of tokens that must appear
    person: bool
    core: int  # how many tokens are the item's own (a person's surname is the last of them)


@dataclass(frozen=True)
class GoldText:
    alternatives: tuple[tuple[GoldItem, ...], ...]  # any one alternative, all of its items


def _one_edit(a: str, b: str) -> bool:
    """Levenshtein distance of at most one."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:] or (len(a) == len(b) and a[i + 1:] == b[i + 1:])


def _skeleton(token: str) -> str:
    return re.sub(r"(.)\1+", r"\1", _VOWELS.sub("", token))


def same_token(a: str, b: str) -> bool:
    """Equal folded words, or a small spelling difference in a long word (never in numbers)."""
    if a == b:
        return True
    if not (a.isalpha() and b.isalpha()) or a[0] != b[0] or min(len(a), len(b)) < 4:
        return False
    if len(_skeleton(a)) >= 4 and _skeleton(a) == _skeleton(b):
        return True
    return max(len(a), len(b)) >= 5 and _one_edit(a, b)


def _looks_like_name(text: str) -> bool:
    parts = text.split()
    return 0 < len(parts) <= 5 and not re.search(r"\d", text) and all(
        p[0].isupper() or fold(p) in _PARTICLES for p in parts)


def _gold_item(tokens: list[str], optional: list[str], question_words: set[str], others: set[str],
               person: bool) -> GoldItem:
    """Which of the item's words must appear; `optional` words may follow them."""
    own = [k for k, t in enumerate(tokens) if t not in others] or list(range(len(tokens)))
    distinctive = [k for k in own if tokens[k] not in question_words | _SENTENCE_OPENERS] or own
    if person:
        names = [k for k in distinctive if tokens[k] not in _PARTICLES] or distinctive
        required = frozenset({names[-1]}) if names[-1] == len(tokens) - 1 or len(names) == 1 else frozenset(names)
    else:
        required = frozenset(distinctive)
    return GoldItem(tuple(tokens + optional), required, person, len(tokens))


def _split_items(text: str, person: bool) -> list[tuple[str, str]]:
    """A list gold ("A, B and C") into items; else one item. Each item as (required text, optional text):
    what follows a comma in a one-item gold is optional ("San Francisco, California")."""
    if re.search(r"\band\b|&", text, re.I):
        return [(p, "") for p in re.split(r"\s*(?:,\s*and\b|,|\band\b|&|;)\s*", text, flags=re.I) if p.strip()]
    head, comma, tail = text.partition(",")
    if comma and person and len(head.split()) == 1 and _looks_like_name(head) and _looks_like_name(tail.strip()):
        return [(f"{tail.strip()} {head}", "")]  # "Sugeno, Michio"
    if comma and tail.strip() and not re.search(r"\d", tail):
        return [(head, tail)]
    return [(text, "")]


def parse_text_gold(question: str, gold: str) -> GoldText:
    question_words = {w.text for w in words(question)}
    person = bool(_PERSON_QUESTION.search(question))
    alternatives = []
    spelt = re.split(r"\s*:\s+", re.sub(r"\([^)]*\)", " ", gold))
    for a, alternative in enumerate(spelt):
        # Optional words that may follow an item: its comma qualifier, a parenthesis, the other alternatives.
        elsewhere = " ".join(re.findall(r"\(([^)]*)\)", gold) + spelt[:a] + spelt[a + 1:])
        parts = [(p, optional) for p, optional in _split_items(alternative, person) if words(p)]
        token_lists = [[w.text for w in words(p) if w.text not in _FILLER] or [w.text for w in words(p)]
                       for p, _ in parts]
        items = tuple(
            _gold_item(tokens, [w.text for w in words(f"{parts[i][1]} {elsewhere}") if w.text not in _FILLER],
                       question_words, {t for j, other in enumerate(token_lists) if j != i for t in other},
                       person and _looks_like_name(parts[i][0]))
            for i, tokens in enumerate(token_lists))
        if items:
            alternatives.append(items)
    return GoldText(tuple(alternatives))


def _covers(ws: list[Word], j: int, item: GoldItem) -> tuple[frozenset[int], int]:
    """Gold token indices that ws[j] stands for, and how many words that took."""
    word, tokens = ws[j], item.tokens
    for k in range(len(tokens) - 1):  # "Hyungwon" for "Hyung Won" (spelt exactly)
        if word.text == tokens[k] + tokens[k + 1]:
            return frozenset({k, k + 1}), 1
    if j + 1 < len(ws) and word.text + ws[j + 1].text in tokens:  # "Hyung Won" for "Hyungwon"
        return frozenset({tokens.index(word.text + ws[j + 1].text)}), 2
    hits = {k for k, t in enumerate(tokens) if same_token(word.text, t)}
    if item.person and word.initial:  # an initial for a given name
        hits |= {k for k, t in enumerate(tokens[:item.core - 1]) if t[0] == word.text}
    return frozenset(hits), 1


def locate(item: GoldItem, ws: list[Word], after: int = 0) -> tuple[int, int] | None:
    """Word indices (first, last) of the first place, at or after character `after`, holding the item: its
    required words in any order, with at most two other words ("of", "the", "and" are free) among them, and
    any of its optional words right after."""
    for i, word in enumerate(ws):
        if word.start < after:
            continue
        covered, step = _covers(ws, i, item)
        if not covered:
            continue
        seen, last, j, extra = set(covered), i + step - 1, i + step, 0
        while not item.required <= seen and j < len(ws):
            more, step = _covers(ws, j, item)
            if more:
                seen |= more
                last = j + step - 1
            elif ws[j].text not in _FILLER:
                extra += 1
                if extra > 2:
                    break
            j += step
        if item.required <= seen:
            while last + 1 < len(ws) and (more := _covers(ws, last + 1, item))[0]:  # and the optional words after
                last += more[1]
            return i, last
    return None


def _foreign_name(word: Word, items: tuple[GoldItem, ...], question_words: set[str]) -> bool:
    """A capitalised word that is no gold word, no question word, no title and no common sentence opener."""
    return (word.capitalised and word.text not in _SENTENCE_OPENERS | _TITLES and word.text not in question_words
            and not any(same_token(word.text, t) for item in items for t in item.tokens))


def _other_given_name(ws: list[Word], first: int, item: GoldItem, items: tuple[GoldItem, ...],
                      spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A person found by surname alone, right after a capitalised word that is not theirs ("Takeshi Sugeno")."""
    covered, _ = _covers(ws, first, item)
    surname = item.core - 1
    if not item.person or first == 0 or covered != {surname} or item.core < 2:
        return False
    before = ws[first - 1]
    same_sentence = _sentence_at(spans, before.start) == _sentence_at(spans, ws[first].start)
    return same_sentence and _foreign_name(before, items, question_words)


_EXTRA_AFTER = re.compile(r"\s*,\s*(?:and\s+|&\s*)?[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?\s*(?:[.;!?]|$|,?\s*(?:and|or)\b)"
                          r"|\s*,?\s*(?:and|&)\s+[A-Z]")
_EXTRA_BEFORE = re.compile(r"[A-Z][\w'-]*\s*,\s*$")


def _extra_member(text: str, ws: list[Word], found: list[tuple[int, int]], items: tuple[GoldItem, ...],
                  question_words: set[str]) -> bool:
    """A gold list answered with another member: "Malia, Sasha, and Susan"."""
    first = min(f for f, _ in found)
    last = max(e for _, e in found)
    if last - first > 3 * len(items) + 2:  # the items are not one list
        return False
    if any(_foreign_name(ws[k], items, question_words) for k in range(first, last + 1)):
        return True
    return bool(_EXTRA_AFTER.match(text, ws[last].end) or _EXTRA_BEFORE.search(text[:ws[first].start]))


def _count_contradicts(text: str, size: int) -> bool:
    """A list gold of `size` items and a stated count of something else ("three children")."""
    for match in _COUNT.finditer(text):
        value = match.group(1).lower()
        count = int(value) if value.isdigit() else _SMALL_COUNT.index(value) + 2
        if count != size:
            return True
    return False


def _makes_claim(sentence: str, question_words: set[str]) -> bool:
    """Names something the question does not: a capitalised word or a number of its own."""
    return any((w.capitalised or w.text.isdigit()) and w.text not in question_words
               and w.text not in _SENTENCE_OPENERS for w in words(sentence))


def declines(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A refusal that no earlier sentence's claim and no later guess overrides."""
    if _PARTIAL_REFUSAL.search(text):
        return True
    for start, end in spans:
        if is_refusal(text[start:end]):
            return not _GUESS.search(text[end:])
        if _makes_claim(text[start:end], question_words):
            return False
    return False


ANSWER_SENTENCES = 3


def answer_region_end(text: str, spans: list[tuple[int, int]], question_words: set[str]) -> int:
    """Where the committed answer's region ends: ANSWER_SENTENCES sentences from the first one that names
    something the question does not (so a gold named only deep in a ramble does not count)."""
    for i, (start, end) in enumerate(spans):
        if _makes_claim(text[start:end], question_words):
            return spans[min(i + ANSWER_SENTENCES, len(spans)) - 1][1]
    return len(text)


def grade_text(text: str, question: str, gold: GoldText, spans: list[tuple[int, int]]) -> Verdict:
    question_words = {w.text for w in words(question)}
    refusing = [(s, e) for s, e in spans if is_refusal(text[s:e])]
    region_end = answer_region_end(text, spans, question_words)
    ws = [w for w in words(text) if w.start < region_end and not any(s <= w.start < e for s, e in refusing)]
    for items in gold.alternatives:
        found = [locate(item, ws) for item in items]
        if any(f is None for f in found):
            continue
        spans_found = [(ws[f].start, ws[e].end) for f, e in found]
        block_start, block_end = min(s for s, _ in spans_found), max(e for _, e in spans_found)
        if any(is_negated(text, s, e) for s, e in spans_found):
            return Verdict(INCORRECT, reason="the gold answer is negated")
        if offers_alternative(text, block_start, block_end, spans):
            return Verdict(INCORRECT, reason="offers an alternative answer")
        if is_retracted(text, block_end, spans, lambda pos, items=items: all(locate(i, ws, pos) for i in items)):
            return Verdict(INCORRECT, reason="the answer is retracted")
        if len(items) > 1 and _extra_member(text, ws, found, items, question_words):
            return Verdict(INCORRECT, reason="an extra member in the list")
        if any(_other_given_name(ws, f, item, items, spans, question_words) for (f, _), item in zip(found, items)):
            return Verdict(INCORRECT, reason="a different given name")
        hedged = is_hedged(text[:spans[_sentence_at(spans, block_end - 1)][1]])
        return Verdict(CORRECT, hedged, "the gold answer is given")
    largest = max(len(items) for items in gold.alternatives)
    if largest > 1 and _count_contradicts(text, largest):
        return Verdict(INCORRECT, reason="states a different number of items")
    if denies(text, spans):
        return Verdict(INCORRECT, reason="denies that there is an answer")
    if declines(text, spans, question_words):
        return Verdict(NOT_ATTEMPTED, reason="declines to answer")
    return Verdict(INCORRECT, reason="the gold answer is not given")


# --- the grader -----------------------------------------------------------------------------------

def grade(question: str, gold: str, predicted: str) -> Verdict:
    """SimpleQA's grade of `predicted` against `gold`, with whether a CORRECT answer was hedged."""
    text = clean(predicted)
    spans = sentence_spans(text)
    if not re.search(r"[^\W_]", text):
        return Verdict(NOT_ATTEMPTED, reason="empty answer")
    if not words(gold):  # nothing folds to ASCII (e.g. "牛"): the gold as written must appear
        found = gold.strip().casefold() in text.casefold()
        return Verdict(CORRECT, reason="the gold answer is given") if found else Verdict(
            NOT_ATTEMPTED if declines(text, spans, set()) else INCORRECT, reason="the gold answer is not given")
    if lists_options(text):  # multiple choice: only the option it then picks is its answer
        if (text := chosen_option(text)) is None:
            return Verdict(INCORRECT, reason="lists several options")
        spans = sentence_spans(text)
    refusing = [(s, e) for s, e in spans if is_refusal(text[s:e])]

    def answerable(candidates: list[Candidate]) -> list[Candidate]:
        return [c for c in candidates if not any(s <= c.start < e for s, e in refusing)]

    if (when := parse_date_gold(gold)) is not None:
        return grade_slot(text, answerable(date_candidates(text, question, when)), spans)
    if (number := parse_number_gold(question, gold)) is not None:
        return grade_slot(text, answerable(number_candidates(text, question, number)), spans)
    return grade_text(text, question, parse_text_gold(question, gold), spans)
