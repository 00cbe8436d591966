"""best-of-k selection (sweep/stages/tune.py best_trials): a degenerate trial never wins while a fluent one exists."""

from __future__ import annotations

from sweep.scoring import DEGENERATE_REPETITION
from sweep.stages.tune import best_trials


def _trial(prompt_id: int, trial: int, objective: float, repetition: float, method: str = "full") -> dict:
    return {"prompt_id": prompt_id, "method": method, "trial": trial, "objective": objective, "repetition": repetition}


def test_a_degenerate_trial_loses_to_any_fluent_one() -> None:
    loop = _trial(0, 0, objective=0.9, repetition=DEGENERATE_REPETITION)  # at the bar: degenerate, as evaluate says
    fluent = _trial(0, 1, objective=0.1, repetition=0.49)
    assert best_trials([loop, fluent]) == [fluent]
    assert best_trials([fluent, loop]) == [fluent]


def test_highest_objective_among_fluent_then_among_degenerate_earliest_on_ties() -> None:
    rows = [_trial(0, 0, 0.3, 0.0), _trial(0, 1, 0.5, 0.2), _trial(0, 2, 0.5, 0.1), _trial(0, 3, 0.8, 0.9),
            _trial(1, 0, 0.2, 0.7), _trial(1, 1, 0.4, 1.0), _trial(1, 2, 0.4, 0.6),
            _trial(0, 0, 0.1, 0.0, method="full-random")]
    best = {(r["prompt_id"], r["method"]): r["trial"] for r in best_trials(rows)}
    # prompt 0: trial 3 is degenerate; trials 1 and 2 tie at 0.5, the earliest wins. prompt 1: all degenerate,
    # so the highest objective among them, earliest on the tie.
    assert best == {(0, "full"): 1, (0, "full-random"): 0, (1, "full"): 1}
