"""Slots and commitment for a text gold: the names an answer commits to for the question's slot, and its grade.

A committed name stands in an answer position, in this order of strength: right by a role cue of the question or
an answer cue ("directed by X", "X won", "the answer is X"); leading the first sentence that names anything
("X.", "X, ...", "It was X") or after its copula ("... is called X"); after a participle ("awarded to X"). A cue
inside a loop is none, and a person introduced with their life is no answer unless a person is asked for. The
first committed name decides: the gold, or another answer (INCORRECT even
with the gold after it), or a part of the gold that contradicts nothing (NOT_ATTEMPTED)."""

from __future__ import annotations

import re

from .names import (PARTICLES, PERSON_QUESTION, TITLES, GoldItem, GoldText, another_generation,
                    count_contradicts, covers, extra_member, has_given_name, locate, other_given_name, same_token)
from .emphasis import another_answer, within
from .entities import ANSWER_CUE, JOINERS, entities
from .refusals import is_hedged, is_negated, is_refusal, is_retracted, offers_alternative
from .region import answer_region_end, answer_start, declines, makes_claim
from .roles import answer_cues, cued_after, cued_before, passive_cues
from .shapes import denies_the_question, describes, other_numbering, same_numbering, states_other_answer
from .text import Word, sentence_at, words
from .verdict import CORRECT, INCORRECT, NOT_ATTEMPTED, Verdict

_LEADING = re.compile(r"^\W*(?:(?:the (?:correct )?answer is|answer|(?:it|this|that) (?:\w+ ){0,2}(?:is|was|be|been)|"
                      r"i (?:think|believe)(?: (?:it|that) (?:is|was))?|probably|perhaps|maybe|yes|sure|"
                      r"the)\W*)*$", re.I)
_COPULA = re.compile(r"\b(?:(?:is|was|are|were)(?:\s+(?:called|named|known as|titled))?|called|named|known as|"
                     r"titled)\s+[\"']?(?:the\s+)?(?:\d{1,4}(?:st|nd|rd|th)?\s+)?\W*$", re.I)  # "The X"; "the 2019 X"
# "awarded to X", "went to X" (the agent of "awarded by X" is another role).
_PARTICIPLE = re.compile(r"\b(?:[a-z]+ed|[a-z]+en|won|went|goes|gave|belongs?|made|built|led|held|sold|"
                         r"taught|found)\s+(?:[a-z]+\s+)?to\s+(?:the\s+)?\W*(?:(?:dr|prof|sir|mr|mrs|ms)\b\W*)?$", re.I)
# A leading name ends the sentence or clause, or its verb follows ("Djokovic beat"); "Most people", "Albanian folk
# music" are no names in answer position.
_ENDS_NAME = re.compile(r"[ \t]*(?:\n|[^\w\s]|$|(?:is|was|were|are|has|had|have|did|does|will|would|also|then|beat|won|"
                        r"wrote|led|made|became|took|gave|held|built|found|began|ran|sang|came|went|got|saw|met|"
                        r"said|told|brought|bought|taught|drew|lost|left|[a-z]+ed|[a-z]+es)\b)")


def _strength(text: str, ws: list[Word], run: tuple[int, int], cues: tuple[frozenset[str], frozenset[str]],
              lead_sentence: tuple[int, int], emphasis: str | None, question_words: set[str],
              spans: list[tuple[int, int]]) -> int:
    start, end = ws[run[0]].start, ws[run[1]].end
    before = text[lead_sentence[0]:start]
    cued = cued_before(text, start, *cues) or cued_after(text, end, cues[0])
    if (cued and not _in_loop(ws, spans[sentence_at(spans, start)], run[0])) or ANSWER_CUE.search(text[:start]) \
            or _asked_field(text[:start], question_words):
        return 0
    if within(text, start, end, emphasis):
        return 1
    in_lead = lead_sentence[0] <= start < lead_sentence[1]
    if in_lead and ((_LEADING.match(before) and _ENDS_NAME.match(text, end)) or _COPULA.search(before)
                    or _appositive(before, text[end:end + 2], question_words)):
        return 1
    if _PARTICIPLE.search(text[max(0, start - 60):start]):
        return 2
    return 9


# A line that opens with a label of one to three words and a colon: "Award: Primetime Emmy Award" (markdown already
# removed); "Identify the third director: ..." is a step, not a field.
_FIELD = re.compile(r"(?:^|\n)[ \t\-\u2022]*([A-Za-z]+(?: [A-Za-z]+){0,2})[ \t]*:[ \t]*$")


def _asked_field(before: str, question_words: set[str]) -> bool:
    """The name fills a field the question asks for: "Award: X" for "Which award ...", "School: X"."""
    field = _FIELD.search(before)
    return bool(field) and words(field.group(1))[-1].text in question_words


def _appositive(before: str, after: str, question_words: set[str]) -> bool:
    """A name set off by commas after the question's own noun phrase: "The smallest exoplanet, X, is ..."."""
    lead = re.fullmatch(r"\W*the\s+([^,.;:!?\n]{1,60}?)\s*,\s*", before, re.I)
    return bool(lead and after.startswith(",") and all(w.text in question_words for w in words(lead.group(1))))


# A person introduced with their life ("X, born in 1921, ...", "X (1929-2012)"): the subject of a sentence, no
# answer to a question that asks for no person.
_BIOGRAPHY = re.compile(r"\s*(?:,\s*(?:who was )?born\b|\(\s*(?:born\b|b\.)|\(\s*\d{3,4}\s*[-\u2013]\s*\d{2,4}\s*\))",
                        re.I)


def committed(text: str, ws: list[Word], question: str, spans: list[tuple[int, int]],
              emphasis: str | None = None) -> tuple[int, int, int] | None:
    """The name the answer commits to for the slot (first and last word index, strength), if any."""
    question_words = {w.text for w in words(question)}
    runs = entities(text, ws, question_words)
    if not runs:
        return None
    lead = spans[sentence_at(spans, ws[runs[0][0]].start)]
    cues = (answer_cues(question), passive_cues(question))
    person_asked = bool(PERSON_QUESTION.search(question))
    ranked = [(_strength(text, ws, r, cues, lead, emphasis, question_words, spans), k, r) for k, r in enumerate(runs)
              if not is_negated(text, ws[r[0]].start, ws[r[1]].end)
              and (person_asked or not _BIOGRAPHY.match(text, ws[r[1]].end))]
    if not ranked:
        return None
    best = min(ranked)
    return (*best[2], best[0]) if best[0] < 9 else None


def _topic(word: Word, question_words: set[str], gold_words: set[str]) -> bool:
    """A question word, or its cut-off start, that is no gold word: the topic, never a spelling of the gold
    ("Laurentia" or a truncated "Lauren" for "Laurent")."""
    return word.text not in gold_words and any(q.startswith(word.text) for q in question_words)


def is_gold(ws: list[Word], run: tuple[int, int], item: GoldItem, question_words: set[str]) -> bool:
    """The committed name is the gold: it holds the gold's required words and, for a person, no given name of its
    own ("Shaukat Ali Ahmed" is not "Fakhruddin Ali Ahmed") and no part of the gold's middle names without the rest
    ("George W. Bush" is not "George H. W. Bush")."""
    inside = ws[run[0]:run[1] + 1]
    acronym = len(inside) == 1 and not inside[0].capitalised and len(inside[0].text) >= 2
    if acronym and inside[0].text == _initials(item):  # "JNU" for Jawaharlal Nehru University
        return True
    if item.person:  # "Masoodi of the National Conference": the person ends before "of"
        cut = [k for k, w in enumerate(inside) if w.text in {"of", "the", "and", "for"}]
        inside = inside[:cut[0]] if cut else inside
    if locate(item, [w for w in inside if not _topic(w, question_words, set(item.tokens))]) is None:
        return False
    if not item.person:
        return True
    held: set[int] = set()
    for j, w in enumerate(inside):
        hits, _ = covers(inside, j, item)
        if _topic(w, question_words, set(item.tokens)):
            hits = frozenset()
        # "Dr. A. P. J. Abdul Kalam" for "Dr. Kalam": a gold with no given name leaves the answer's free
        surname_ahead = not has_given_name(item) and item.core - 1 not in held
        if not hits and w.text not in question_words | TITLES | PARTICLES | JOINERS and not surname_ahead:
            return False
        held |= hits
    middle = {k for k in range(1, item.core - 1) if item.tokens[k] not in PARTICLES}
    return not (held & middle) or middle <= held


def _initials(item: GoldItem) -> str:
    return "".join(t[0] for t in item.tokens[:item.core] if t not in JOINERS)


def _names_something(gold: GoldText) -> bool:
    """A gold of one name: capitalised first and last words, no digits ("University of Toronto", "De Liefde")."""
    return any(len(items) == 1 and not any(t.isdigit() for t in items[0].tokens) for items in gold.alternatives) \
        and gold.capitalised


def _loose(text: str, ws: list[Word], first: int, last: int, item: GoldItem, spans: list[tuple[int, int]]) -> bool:
    """A gold found by its words alone that is no answer: spread over sentences, a name's words scattered ("liberal
    reforms and a strong national" for "National Liberal Party"), or inside a loop that repeats itself."""
    sentence = sentence_at(spans, ws[first].start)
    if sentence != sentence_at(spans, ws[last].start):
        return True
    strays = [w for w in ws[first:last + 1] if w.text not in JOINERS and not any(same_token(w.text, t)
                                                                                  for t in item.tokens)]
    if not item.person and len(strays) > 1:
        return True
    return _in_loop(ws, spans[sentence])


def _in_loop(ws: list[Word], sentence: tuple[int, int], at: int | None = None) -> bool:
    """The sentence repeats a run of four words three times or more (with `at`, the three words ending at word
    `at`): a loop states nothing ("contested thein Masoodi, …, contested thein Masoodi, …")."""
    size = 4 if at is None else 3
    start, end = sentence
    grams = [tuple(w.text for w in ws[k:k + size]) for k in range(len(ws) - size + 1) if start <= ws[k].start < end]
    wanted = set(grams) if at is None else {tuple(w.text for w in ws[max(0, at - size + 1):at + 1])}
    return any(grams.count(g) >= 3 for g in wanted)


def _resembles(text: str, ws: list[Word], gold: GoldText, question_words: set[str]) -> bool:
    """A name sharing a required word with the gold but not the gold ("the Bastion of Lost Souls" for the Bastion
    of Unborn Souls): another answer, even where it stands in no answer position."""
    for run in entities(text, ws, question_words):
        for items in gold.alternatives:
            item = items[0]
            shares = any(same_token(w.text, item.tokens[k]) for w in ws[run[0]:run[1] + 1] for k in item.required)
            if len(items) == 1 and shares and not is_gold(ws, run, item, question_words) \
                    and not _partial(ws, run, item):
                return True
    return False


def _partial(ws: list[Word], run: tuple[int, int], item: GoldItem) -> bool:
    """Only words of the gold, but not enough of them ("Sugeno" for a ship called "Michio Sugeno")."""
    inside = ws[run[0]:run[1] + 1]
    return locate(item, inside) is None and all(any(same_token(w.text, t) for t in item.tokens[:item.core])
                                                for w in inside)


def grade_text(text: str, question: str, gold: GoldText, spans: list[tuple[int, int]], gold_text: str = "",
               emphasis: str | None = None) -> Verdict:
    question_words = {w.text for w in words(question)}
    refusing = [(s, e) for s, e in spans if is_refusal(text[s:e])]
    answer_sentence = answer_start(text, spans, question_words)
    region_end = answer_region_end(text, spans, answer_sentence)
    ws = [w for w in words(text) if w.start < region_end and not any(s <= w.start < e for s, e in refusing)]
    commitment = committed(text, ws, question, spans, emphasis)
    # A name is asked for: what the answer commits to decides. Other golds ("Season 7, Episode 20") are looked for.
    named = _names_something(gold)
    for items in gold.alternatives:
        named_here = named and len(items) == 1 and commitment is not None
        if named_here:  # one name asked: only the committed one counts
            if not is_gold(ws, commitment, items[0], question_words):
                continue
            inside = locate(items[0], ws[commitment[0]:commitment[1] + 1]) or (0, commitment[1] - commitment[0])
            found: list[tuple[int, int] | None] = [(inside[0] + commitment[0], inside[1] + commitment[0])]
        else:  # a question word, or its cut-off start, is no spelling of a gold word ("Laurentia" for "Laurent")
            gold_words = {t for item in items for t in item.tokens}
            kept = [k for k, w in enumerate(ws) if not _topic(w, question_words, gold_words)]
            located = [locate(item, [ws[k] for k in kept]) for item in items]
            found = [(kept[f[0]], kept[f[1]]) if f else None for f in located]
        if any(f is None for f in found):
            continue
        if not named_here and any(_loose(text, ws, f, e, item, spans) for (f, e), item in zip(found, items)):
            continue
        if named and len(items) == 1 and not named_here and \
                sentence_at(spans, ws[found[0][0]].start) != answer_sentence:
            continue  # one name asked, none committed: the gold mentioned after the answer's sentence is no answer
        if commitment is not None and commitment[2] <= 1 and not any(
                f <= commitment[1] and commitment[0] <= e for f, e in found):
            return Verdict(INCORRECT, reason="commits to another answer")
        spans_found = [(ws[f].start, ws[e].end) for f, e in found]
        block_start, block_end = min(s for s, _ in spans_found), max(e for _, e in spans_found)
        if any(is_negated(text, s, e) for s, e in spans_found):
            return Verdict(INCORRECT, reason="the gold answer is negated")
        if offers_alternative(text, block_start, block_end, spans):
            return Verdict(INCORRECT, reason="offers an alternative answer")
        if is_retracted(text, block_end, spans, lambda pos, items=items: all(locate(i, ws, pos) for i in items)):
            return Verdict(INCORRECT, reason="the answer is retracted")
        if len(items) > 1 and extra_member(text, ws, found, items, question_words):
            return Verdict(INCORRECT, reason="an extra member in the list")
        if any(other_given_name(ws, f, item, items, spans, question_words) for (f, _), item in zip(found, items)):
            return Verdict(INCORRECT, reason="a different given name")
        if any(item.person and another_generation(text, ws[e].end, gold_text) for (_, e), item in zip(found, items)):
            return Verdict(INCORRECT, reason="another generation of the same name")
        hedged = is_hedged(text[:spans[sentence_at(spans, block_end - 1)][1]])
        return Verdict(CORRECT, hedged, "the gold answer is committed")
    largest = max(len(items) for items in gold.alternatives)
    if largest > 1 and count_contradicts(text, largest):
        return Verdict(INCORRECT, reason="states a different number of items")
    if other_numbering(text[:region_end], gold_text):
        return Verdict(INCORRECT, reason="gives another number for a part of the gold")
    if same_numbering(text[:region_end], gold_text):
        return Verdict(CORRECT, is_hedged(text[:region_end]), "numbers every part of the gold as the gold does")
    if denies_the_question(text, spans, question):
        return Verdict(INCORRECT, reason="denies that there is an answer")
    if declines(text, spans, question_words):
        return Verdict(NOT_ATTEMPTED, reason="declines to answer")
    if largest > 1 and any(makes_claim(text[s:e], question_words) for s, e in spans):
        return Verdict(INCORRECT, reason="the gold list is not given")
    if commitment is None and named and _resembles(text, ws, gold, question_words):
        return Verdict(INCORRECT, reason="names something like the gold that is not the gold")
    if commitment is None and not named and describes(text, spans, question_words):
        return Verdict(INCORRECT, reason="describes another answer")
    gold_words = {t for items in gold.alternatives for item in items for t in item.tokens}
    if commitment is None and another_answer(text, region_end, emphasis, gold_words, question_words):
        return Verdict(INCORRECT, reason="emphasises another answer")
    if commitment is None and states_other_answer(text, spans, gold_text, question):
        return Verdict(INCORRECT, reason="states another value as the answer")
    if commitment is None:
        return Verdict(NOT_ATTEMPTED, reason="commits to no answer for the slot")
    if named and any(_partial(ws, commitment, items[0]) for items in gold.alternatives):
        return Verdict(NOT_ATTEMPTED, reason="names only part of the gold, contradicting nothing")
    return Verdict(INCORRECT, reason="commits to another answer")
