"""Per-trial scores: token overlap, perplexity normalisation and the tuning objective (method.md §6)."""

from __future__ import annotations

import functools
import re
import string

# The authors used NLTK's word_tokenize: punkt sentence split, then NLTKWordTokenizer (the improved
# Treebank tokenizer; unlike TreebankWordTokenizer it splits "**bold**" markup off words). Punkt's trained
# model needs a download; punkt's code with empty parameters runs offline and, like the trained one, also
# ends a sentence at a period followed by markup ("Bangermau.**"), so that period comes off the word.
# Agreement with the authors' recorded overlaps on their 520 best trials (tests/test_paper_table.py):
# this pair 100 %; NLTKWordTokenizer after a regex split on [.!?]+whitespace 99.2 %; TreebankWordTokenizer 88 %.
@functools.cache
def _tokenizers():  # noqa: ANN202 - (PunktSentenceTokenizer, NLTKWordTokenizer)
    # Imported on first use: importing nltk costs over a second, and Tune's trial workers import this
    # module for `objective` alone (overlap is computed in the replicas).
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def word_set(text: str) -> set[str]:
    """Lower-cased word tokens of `text`, without tokens that are one punctuation character."""
    sentence_splitter, word_tokenizer = _tokenizers()
    tokens: set[str] = set()
    for sentence in sentence_splitter.tokenize(text.lower()):
        tokens.update(word_tokenizer.tokenize(sentence))
    return {t for t in tokens if not (len(t) == 1 and t in string.punctuation)}


def token_overlap(gold: str, output: str) -> float:
    """|G ∩ O| / |G| over word sets, 0 when the gold answer has no words; rounded to 4 dp as the paper."""
    gold_words = word_set(gold)
    if not gold_words:
        return 0.0
    return round(len(gold_words & word_set(output)) / len(gold_words), 4)


def scored_text(prompt: str, continuation: str, include_prompt: bool) -> str:
    """What overlap and perplexity see: the continuation, or (the paper's variant) the plain prompt before it."""
    return f"{prompt}{continuation}" if include_prompt else continuation


def words(text: str) -> list[str]:
    """Lower-cased word tokens for the repetition measures (cheap, no NLTK: a trial worker may call it)."""
    return re.findall(r"\w+", text.lower())


def _distinct(tokens: list[str], n: int) -> float:
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _tandem_share(tokens: list[str], longest: int = 4) -> float:
    """Share of tokens (after the first) that complete a phrase of 1..longest words repeated back to back
    ("Sugeno Sugeno", "Lotfi Zadeh, Lotfi Zadeh"); natural prose almost never does this."""
    looping = sum(any(i + 1 >= 2 * n and tokens[i - n + 1:i + 1] == tokens[i - 2 * n + 1:i - n + 1]
                      for n in range(1, longest + 1)) for i in range(1, len(tokens)))
    return looping / (len(tokens) - 1)


def repetition(text: str) -> float:
    """How much of a text repeats itself, in [0, 1]: the larger of the share of repeated 4-grams (a sentence
    going round in a loop) and the share of words that repeat the phrase just before them (short loops such
    as "Sugeno Sugeno Sugeno Michio Michio", whose 4-grams are all distinct). Fluent answers score near 0."""
    tokens = words(text)
    if len(tokens) < 2:
        return 0.0
    return max(1.0 - _distinct(tokens, 4), _tandem_share(tokens))


def distinct_2(text: str) -> float:
    """Distinct bigrams / bigrams of the text's words (1.0 with fewer than two words)."""
    return _distinct(words(text), 2)


# An output this repetitive is degenerate: it never counts as accurate, whatever its composite.
DEGENERATE_REPETITION = 0.5
# The fluent objective's penalty per unit of repetition. A pure loop (repetition 1) loses 0.5, more than the
# paper's whole perplexity term can cost (0.3), so a loop never beats a fluent answer of the same overlap.
REPETITION_WEIGHT = 0.5


def objective(overlap: float, perplexity: float, repeated: float, kind: str = "paper") -> float:
    """The per-trial objective, to maximise. paper: 0.7*overlap - 0.3*min(ppl/100, 1) (loops have low
    perplexity, so the paper's objective rewards them); fluent: that minus REPETITION_WEIGHT * repetition."""
    paper = 0.7 * overlap - 0.3 * min(perplexity / 100.0, 1.0)
    return paper - REPETITION_WEIGHT * repeated if kind == "fluent" else paper


def composite(overlap: float, judge_score: float) -> float:
    """method.md §7: 0.5*overlap + 0.5*(score/5); a prompt counts as accurate at >= ACCURACY_THRESHOLD."""
    return 0.5 * overlap + 0.5 * (judge_score / 5.0)


ACCURACY_THRESHOLD = 0.6
