"""Text: cleaning, folding to ASCII, words with their spans, sentences."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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


def echoes(word: str, others: set[str]) -> bool:
    """`word` (folded) is one of `others` or another form of one: "diagnosis" of "diagnosed", "Painting" of
    "Painted" (a shared start of five letters or more, missing at most three of the shorter word's)."""
    return word in others or any(_shared_start(word, o) >= max(5, min(len(word), len(o)) - 3) for o in others)


def _shared_start(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


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


def sentence_at(spans: list[tuple[int, int]], pos: int) -> int:
    """Index of the sentence holding character `pos` (the last one starting at or before it)."""
    index = 0
    for i, (start, _) in enumerate(spans):
        if start <= pos:
            index = i
    return index


def sentence_of(text: str, spans: list[tuple[int, int]], pos: int) -> tuple[int, int]:
    """(start, end) of the sentence holding `pos`; the whole text when it has no sentences."""
    return spans[sentence_at(spans, pos)] if spans else (0, len(text))


def through_next_sentence(spans: list[tuple[int, int]], pos: int) -> int:
    """End of the sentence after the one holding `pos` (or of that one, if it is the last)."""
    i = sentence_at(spans, pos)
    return spans[min(i + 1, len(spans) - 1)][1]
