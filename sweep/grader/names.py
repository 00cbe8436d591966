"""Names and text: a text gold's items and where an answer holds them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import ARTICLES, Word, echoes, fold, sentence_at, words

_SMALL_COUNT = ("two three four five six seven eight nine ten eleven twelve").split()
_COUNT = re.compile(r"(?<![\w.,])(\d{1,2}|" + "|".join(_SMALL_COUNT) + r")\s+(?:children|people|[a-z]+s)\b", re.I)

_FILLER = ARTICLES | {"of", "and"}
PARTICLES = frozenset("de van von der den da di du del della la le bin ibn al el y dos das".split())
TITLES = frozenset("dr doctor prof professor mr mrs ms miss sir dame lord lady saint st president king queen "
                    "prince princess general captain judge justice rev reverend father pope emperor".split())
# A who-question, or one asking for a person by a noun ("Which tennis player", "the name of the architect",
# "Name the mission director").
PERSON_QUESTION = re.compile(
    r"\b(?:who|whom|whose)\b|\b(?:which|what|name of the|name the)\s+(?:[\w-]+\s+){0,2}(?:person|people|man|"
    r"woman|player|actor|actress|artist|painter|sculptor|writer|author|poet|novelist|composer|musician|singer|"
    r"scientist|physicist|chemist|mathematician|economist|philosopher|politician|president|prime minister|"
    r"minister|king|queen|emperor|architect|engineer|inventor|director|producer|designer|photographer|journalist|"
    r"coach|manager|judge|bishop|pope|general|explorer|astronaut|athlete|cricketer|footballer|boxer|wrestler|"
    r"chess player|mayor|governor|senator|founder|ceo|professor|student|historian|botanist|zoologist|"
    r"biologist|astronomer|researcher|doctor|surgeon|lawyer|officer|soldier|pilot|chef|dancer|comedian)s?\b",
    re.I)
# Capitalised at the start of a sentence, but no answer: not a claim, not a rival name, never required.
SENTENCE_OPENERS = frozenset("he she it they the this that these those in on at there i a an as his her its "
                              "their we you however but and so also although while when what who which to for "
                              "from with by of if yes no unfortunately sorry based without according please my "
                              "our one some sure here well okay ok note answer explanation let correct "
                              "incorrect option options question step not never first second third finally "
                              "then next lastly overall".split())
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
    capitalised: bool = False  # the gold's first and last words are capitalised: a name


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
        p[0].isupper() or fold(p) in PARTICLES for p in parts)


def _gold_item(tokens: list[str], optional: list[str], question_words: set[str], others: set[str],
               person: bool) -> GoldItem:
    """Which of the item's words must appear; `optional` words may follow them."""
    own = [k for k, t in enumerate(tokens) if t not in others] or list(range(len(tokens)))
    distinctive = [k for k in own if tokens[k] not in SENTENCE_OPENERS and not echoes(tokens[k], question_words)] \
        or own
    if person:
        names = [k for k in distinctive if tokens[k] not in PARTICLES] or distinctive
        required = frozenset({names[-1]}) if names[-1] == len(tokens) - 1 or len(names) == 1 else frozenset(names)
    else:
        required = frozenset(distinctive)
    return GoldItem(tuple(tokens + optional), required, person, len(tokens))


def _split_items(text: str, person: bool) -> list[tuple[str, str]]:
    """A list gold ("A, B and C") into items; else one item. Each item as (required text, optional text):
    what follows a comma in a one-item gold is optional ("San Francisco, California")."""
    if re.search(r"\band\b|&", text, re.I) and not re.search(r"\bof\b[^,;]*\band\b", text, re.I):  # not "Academy
        # of Arts and Sciences": one name
        return [(p, "") for p in re.split(r"\s*(?:,\s*and\b|,|\band\b|&|;)\s*", text, flags=re.I) if p.strip()]
    if text.count(",") >= 2 and not re.search(r"\d", text):  # "Sonipat, Ghaziabad, Hisar"
        return [(p, "") for p in re.split(r"\s*,\s*", text) if p.strip()]
    head, comma, tail = text.partition(",")
    if comma and person and len(head.split()) == 1 and _looks_like_name(head) and _looks_like_name(tail.strip()):
        return [(f"{tail.strip()} {head}", "")]  # "Sugeno, Michio"
    if comma and tail.strip() and not re.search(r"\d", tail):
        return [(head, tail)]
    return [(text, "")]


_ASKED_KIND = re.compile(r"\b(?:what|which)\s+([a-z]+)\b", re.I)


def _asked_whole(question: str, gold: str) -> list[str]:
    """The thing the question asks for, where the gold names a part of it: "University of California, Berkeley"
    for "what university" and "The Department of Mathematics of the University of California, Berkeley"."""
    kind = _ASKED_KIND.search(question)
    if not kind or len(kind.group(1)) < 4:
        return []
    part = re.match(rf"(.+)\s+of\s+(?:the\s+)?(.*\b{kind.group(1)}\b.*)$", gold.strip().rstrip("."), re.I)
    return [part.group(2)] if part and not re.search(rf"\b{kind.group(1)}\b", part.group(1), re.I) else []


def parse_text_gold(question: str, gold: str) -> GoldText:
    question_words = {w.text for w in words(question)}
    # A gold with a personal title ("Dr. Kalam") is a person whatever the question's wording.
    person = bool(PERSON_QUESTION.search(question)) or any(w.text in TITLES for w in words(gold)[:1])
    alternatives = []
    spelt = re.split(r"\s*:\s+", re.sub(r"\([^)]*\)", " ", gold))
    spelt += _asked_whole(question, gold)
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
    letters = re.findall(r"[^\W\d_][\w'-]*", gold)
    return GoldText(tuple(alternatives), bool(letters) and letters[0][0].isupper() and letters[-1][0].isupper())


def covers(ws: list[Word], j: int, item: GoldItem) -> tuple[frozenset[int], int]:
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
        covered, step = covers(ws, i, item)
        if not covered:
            continue
        seen, last, j, extra = set(covered), i + step - 1, i + step, 0
        while not item.required <= seen and j < len(ws):
            more, step = covers(ws, j, item)
            if more:
                seen |= more
                last = j + step - 1
            elif ws[j].text not in _FILLER:
                extra += 1
                if extra > 2:
                    break
            j += step
        if item.required <= seen:
            while last + 1 < len(ws) and (more := covers(ws, last + 1, item))[0]:  # and the optional words after
                last += more[1]
            return i, last
    return None


def foreign_name(word: Word, items: tuple[GoldItem, ...], question_words: set[str]) -> bool:
    """A capitalised word that is no gold word, no question word, no title and no common sentence opener."""
    return (word.capitalised and word.text not in SENTENCE_OPENERS | TITLES and word.text not in question_words
            and not any(same_token(word.text, t) for item in items for t in item.tokens))


_GENERATION = re.compile(r"[ \t]*,?[ \t]*(fils|p[eè]re|jr|sr|junior|senior|the younger|the elder|ii|iii|iv)\b\.?", re.I)


def another_generation(text: str, end: int, gold: str) -> bool:
    """The person named before `end` is marked as another generation than the gold's ("Alexandre Dumas fils" for
    Alexandre Dumas, "Ken Griffey Jr." for Ken Griffey): a different person of the same name."""
    mark = _GENERATION.match(text, end)
    return bool(mark) and not re.search(rf"\b{re.escape(mark.group(1))}\b", gold, re.I)


def has_given_name(item: GoldItem) -> bool:
    """The gold person has a name before the surname, not only a title ("Dr. Kalam" has none)."""
    return any(t not in TITLES | PARTICLES for t in item.tokens[:item.core - 1])


def other_given_name(ws: list[Word], first: int, item: GoldItem, items: tuple[GoldItem, ...],
                      spans: list[tuple[int, int]], question_words: set[str]) -> bool:
    """A person found by surname alone, right after a capitalised word that is not theirs ("Takeshi Sugeno")."""
    covered, _ = covers(ws, first, item)
    surname = item.core - 1
    if not item.person or first == 0 or covered != {surname} or not has_given_name(item):
        return False
    before = ws[first - 1]
    same_sentence = sentence_at(spans, before.start) == sentence_at(spans, ws[first].start)
    return same_sentence and foreign_name(before, items, question_words)


_EXTRA_AFTER = re.compile(r"\s*,\s*(?:and\s+|&\s*)?[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?\s*(?:[.;!?]|$|,?\s*(?:and|or)\b)"
                          r"|\s*,?\s*(?:and|&)\s+[A-Z]")
_EXTRA_BEFORE = re.compile(r"[A-Z][\w'-]*\s*,\s*$")


def extra_member(text: str, ws: list[Word], found: list[tuple[int, int]], items: tuple[GoldItem, ...],
                  question_words: set[str]) -> bool:
    """A gold list answered with another member: "Malia, Sasha, and Susan"."""
    first = min(f for f, _ in found)
    last = max(e for _, e in found)
    if last - first > 3 * len(items) + 2:  # the items are not one list
        return False
    if any(foreign_name(ws[k], items, question_words) for k in range(first, last + 1)):
        return True
    return bool(_EXTRA_AFTER.match(text, ws[last].end) or _EXTRA_BEFORE.search(text[:ws[first].start]))


def count_contradicts(text: str, size: int) -> bool:
    """A list gold of `size` items and a stated count of something else ("three children")."""
    for match in _COUNT.finditer(text):
        value = match.group(1).lower()
        count = int(value) if value.isdigit() else _SMALL_COUNT.index(value) + 2
        if count != size:
            return True
    return False
