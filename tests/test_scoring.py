"""Degenerate outputs: the repetition measure, distinct-2, and the fluent objective that penalises loops."""

from __future__ import annotations

import pytest

from sweep.scoring import DEGENERATE_REPETITION, REPETITION_WEIGHT, distinct_2, objective, repetition

FLUENT = [
    "Michio Sugeno received the award in 2010 for his work on fuzzy logic and fuzzy control.",
    "The answer is Paris. Paris is the capital of France and its largest city.",
    "1693",
    "",
]
LOOPS = [
    "Sugeno Sugeno Sugeno Michio Michio",  # a short loop: every 4-gram differs, but words repeat back to back
    "Lotfi Zadeh, Lotfi Zadeh, Lotfi Zadeh, Lotfi Zadeh",
    "He was born in 1900. He was born in 1900. He was born in 1900. He was born in 1900.",
    "the the the the the the",
]


@pytest.mark.parametrize("text", FLUENT)
def test_fluent_text_is_not_degenerate(text):
    assert repetition(text) < DEGENERATE_REPETITION


@pytest.mark.parametrize("text", LOOPS)
def test_loops_are_degenerate(text):
    assert repetition(text) >= DEGENERATE_REPETITION


def test_repetition_and_distinct_2_on_hand_counted_cases():
    # 5 words, 4 of them after the first; words 2, 3 and 5 repeat the word before: 3 / 4.
    assert repetition("Sugeno Sugeno Sugeno Michio Michio") == pytest.approx(0.75)
    # 10 words, 9 bigrams, of which (he was), (was born), (born in), (in 1900), (1900 he) are distinct: 5 / 9.
    text = "He was born in 1900. He was born in 1900."
    assert distinct_2(text) == pytest.approx(5 / 9)
    assert distinct_2("one") == 1.0


def test_the_fluent_objective_subtracts_the_repetition_penalty_and_paper_ignores_it():
    assert objective(1.0, 10.0, 1.0, "paper") == pytest.approx(0.7 - 0.03)
    assert objective(1.0, 10.0, 1.0, "fluent") == pytest.approx(0.7 - 0.03 - REPETITION_WEIGHT)
    # A loop with the gold's words and low perplexity no longer beats a fluent answer of the same overlap.
    loop = objective(1.0, 2.0, repetition(LOOPS[1]), "fluent")
    fluent = objective(1.0, 60.0, repetition(FLUENT[0]), "fluent")
    assert fluent > loop
    assert objective(1.0, 2.0, repetition(LOOPS[1]), "paper") > objective(1.0, 60.0, 0.0, "paper")
