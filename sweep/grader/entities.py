"""The names a response mentions: runs of capitalised words with a word of their own ("George H. W. Bush",
"University of Toronto"), short quoted answers, and what is no name (the question's acronym spelt out, a loop, a
field label, an option letter, a [placeholder])."""

from __future__ import annotations

import re

from .names import SENTENCE_OPENERS, TITLES
from .text import Word, echoes, words

JOINERS = frozenset({"of", "the", "and", "for", "de", "van", "von", "der", "den", "da", "di", "du", "del", "la",
                     "le", "al", "el", "bin", "ibn", "y"})
ANSWER_CUE = re.compile(r"\b(?:answer(?: is| would be)?|none other than)\s*:?\s*$", re.I)


def _joined(text: str, a: Word, b: Word) -> bool:
    gap = text[a.end:b.start]
    return bool(re.fullmatch(r"[ \t'-]*", gap) or ((a.initial or a.text in TITLES) and re.fullmatch(r"\.\s*", gap)))


def _name_word(text: str, w: Word) -> bool:
    return text[w.start].isupper()


def entities(text: str, ws: list[Word], question_words: set[str]) -> list[tuple[int, int]]:
    """Runs of capitalised words ("George H. W. Bush", "University of Toronto") with a word of their own: not
    only question words, titles and sentence openers."""
    runs, i = _quoted(text, ws, question_words), 0
    while i < len(ws):
        if not _name_word(text, ws[i]):
            i += 1
            continue
        if _not_a_name(text, ws[i]):
            i += 1
            continue
        j = i
        while (step := _continues(text, ws, j)) > 0:
            j += step
        own = [w for w in ws[i:j + 1]
               if w.text not in SENTENCE_OPENERS | TITLES | JOINERS and not echoes(w.text, question_words)]
        while i < j and ws[i].text in SENTENCE_OPENERS:  # "The University of Toronto"
            i += 1
        j = _before_loop(ws, i, j)
        answers = ANSWER_CUE.search(text[:ws[i].start]) or _restated_then_named(text, ws[i].start, ws[j].end,
                                                                                  question_words)
        if (own or answers) and not _no_name(text, ws[i:j + 1], question_words):
            runs.append((i, j))  # "The answer is Sikkim" names an answer, though the question says Sikkim
        i = j + 1
    return sorted(set(runs))


def _before_loop(ws: list[Word], i: int, j: int) -> int:
    """The end of a name that then loops: "Charles-François-Joseph-Marie-François-Joseph-Marie-…" is the name
    "Charles-François-Joseph-Marie" (two or more words before the first repeat); a run that loops sooner is kept
    whole, for `_no_name` to reject ("Orientalia Orientalia Orientalia")."""
    seen: set[str] = set()
    for k in range(i, j + 1):
        if ws[k].text in seen and ws[k].text not in JOINERS:
            return k - 1 if k - i >= 2 and sum(w.text == ws[k].text for w in ws[i:j + 1]) >= 3 else j
        seen.add(ws[k].text)
    return j


def _restated_then_named(text: str, start: int, end: int, question_words: set[str]) -> bool:
    """A sentence that restates the question and ends on a copula and a name: "The full name of the exhibition Kara
    Walker had in 2016 is Kara Walker." names an answer, though only of the question's words."""
    head = re.split(r"[.!?\n]", text[:start])[-1]
    copula = re.search(r"\b(?:is|was|are|were)\s+$", head)
    restated = sum(w.text in question_words for w in words(head)) >= 3
    return bool(copula and restated and re.match(r"\s*(?:[.!]|$)", text[end:]))


def _no_name(text: str, run: list[Word], question_words: set[str]) -> bool:
    """Capitalised words that name no answer: the question's acronym spelt out ("Indian Premier League" for
    "IPL"), a loop ("Orientalia Orientalia Orientalia"), a field label opening a line ("Latitude: 13° S")."""
    initials = "".join(w.text[0] for w in run if w.text not in JOINERS)
    looping = any(sum(w.text == v.text for v in run) >= 3 for w in run)
    label = re.match(r"[ \t]*:", text[run[-1].end:]) and re.search(r"(?:^|\n)\W*$", text[:run[0].start])
    return (len(initials) >= 2 and initials in question_words) or looping or bool(label)


def _continues(text: str, ws: list[Word], j: int) -> int:
    """How many words the name run ending at ws[j] grows by: a capitalised word, or up to two joiners and one
    ("Bastion of the Stars"); 0 if it ends."""
    for step in (1, 2, 3):
        if j + step >= len(ws) or not _joined(text, ws[j + step - 1], ws[j + step]):
            return 0
        if _name_word(text, ws[j + step]) and not _not_a_name(text, ws[j + step]):
            return step
        if ws[j + step].text not in JOINERS:
            return 0
    return 0


def _not_a_name(text: str, word: Word) -> bool:
    """An option letter ("A)", "(B)", "A." alone on its line) or a [placeholder]."""
    option = re.match(r"[A-E](?:\)|\.[ \t]*(?:\n|$))", text[word.start:])
    return bool(option or re.search(r"\[[^\]]*$", text[:word.start]))


def _quoted(text: str, ws: list[Word], question_words: set[str]) -> list[tuple[int, int]]:
    """Short quoted answers ("selfie") with a word the question does not hold."""
    runs = []
    for quote in re.finditer(r'"([^"\n]{1,60})"', text):
        inside = [k for k, w in enumerate(ws) if quote.start(1) <= w.start < quote.end(1)]
        if inside and any(ws[k].text not in question_words for k in inside):
            runs.append((inside[0], inside[-1]))
    return runs
