"""Emphasis as an answer position: a model that bolds its answer ("... from the shop of **Giovanni Battista
Pitti**") commits to the first phrase it bolds, unless that phrase is a label ("**Explanation:**") or one of
several bolded in its line ("**Yemen**, **Saudi Arabia** and **Iraq**" commits to none of them)."""

from __future__ import annotations

import re

from .text import ARTICLES, echoes, fold, words

# Markdown's rule: the opening mark is followed, and the closing mark preceded, by no space.
_BOLD = re.compile(r"\*\*(\S(?:[^*\n]{0,78}\S)?)\*\*|__(\S(?:[^_\n]{0,78}\S)?)__")
MOST_WORDS = 8
_PROMPT_ECHO = re.compile(r"^\s*question:.*?\banswer(?: and explanation)?\s*:", re.I | re.S)


def emphasised(response: str) -> str | None:
    """The first bolded phrase of the answer that is not a label (folded, markdown removed), if any."""
    answer = _PROMPT_ECHO.sub("", response, count=1)
    for bold in _BOLD.finditer(answer):
        phrase = (bold.group(1) or bold.group(2)).strip()
        if phrase.endswith(":") or answer[bold.end():bold.end() + 1] == ":" or not re.search(r"[^\W_]", phrase) \
                or re.fullmatch(r"\[[^\]]*\]", phrase):  # a label, or a [placeholder]
            continue
        if len(phrase.split()) > MOST_WORDS or phrase[-1] in ".!?":  # a bolded sentence stresses, it does not answer
            return None
        line_start, line_end = answer.rfind("\n", 0, bold.start()) + 1, answer.find("\n", bold.end())
        line = answer[line_start:line_end if line_end >= 0 else len(answer)]
        return fold(phrase) if len(_BOLD.findall(line)) == 1 else None
    return None


def within(text: str, start: int, end: int, phrase: str | None) -> bool:
    """Characters start..end of the cleaned answer lie inside the first place the emphasised phrase appears."""
    if not phrase:
        return False
    at = fold(text).find(phrase)  # folding keeps offsets only for ASCII text: checked against the words below
    return at >= 0 and at <= start and end <= at + len(phrase) and fold(text[at:at + len(phrase)]) == phrase


def another_answer(text: str, region_end: int, phrase: str | None, gold_words: set[str],
                   question_words: set[str]) -> bool:
    """The emphasised phrase, in the answer's region, holds a word (not a number) of its own, neither the gold's
    nor the question's: "was a **total solar eclipse**" for an annular one. A phrase said thrice is a loop."""
    if not phrase or phrase not in fold(text[:region_end]) or fold(text).count(phrase) >= 3:
        return False
    return any(w.text.isalpha() and w.text not in gold_words | ARTICLES and not echoes(w.text, question_words)
               for w in words(phrase))
