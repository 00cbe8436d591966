"""Per-trial scores: token overlap, perplexity normalisation and the tuning objective (method.md §6)."""

from __future__ import annotations

import functools
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


def objective(overlap: float, perplexity: float) -> float:
    """The paper's per-trial objective, to maximise: 0.7*overlap - 0.3*min(ppl/100, 1)."""
    return 0.7 * overlap - 0.3 * min(perplexity / 100.0, 1.0)


def composite(overlap: float, judge_score: float) -> float:
    """method.md §7: 0.5*overlap + 0.5*(score/5); a prompt counts as accurate at >= ACCURACY_THRESHOLD."""
    return 0.5 * overlap + 0.5 * (judge_score / 5.0)


ACCURACY_THRESHOLD = 0.6
