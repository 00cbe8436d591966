"""The grader against the labelled set (tests/data/grader_labels.csv): real model outputs (the authors' Gemma-2-2B
baseline and steered outputs, this project's SmolLM2 outputs) and hand-written cases, labelled by reading per the
simple-evals rubric. The confusion matrices are printed (pytest -s); `python -m sweep.grader.evaluate_labels
tests/data/grader_labels.csv` prints them per arm too (docs/grading.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweep.grader.evaluate_labels import (GRADES, WRITTEN, agreement, cohen_kappa, graded, labeller_report,
                                          read_labels, report, second_labels)

LABELS = Path(__file__).parent / "data" / "grader_labels.csv"
HOLDOUT = Path(__file__).parent / "data" / "grader_labels_holdout.csv"
SECOND = Path(__file__).parent / "data" / "grader_labels_second.csv"  # a blind second labeller's labels
# The issue's targets: overall agreement, agreement on real outputs, and the false-CORRECT rate (the error that
# flatters steering). The rules were written while reading the labelled set, so its figures are in-sample. Each
# round of the held-out set was labelled blind and graded with the rules frozen; that first figure is the
# out-of-sample one (docs/grading.md), later rules may have read a round's misses.
FALSE_CORRECT_MAX = 0.01
AGREEMENT_TARGET, REAL_AGREEMENT_TARGET = 0.95, 0.90
HOLDOUT_AGREEMENT_FLOOR = 0.86  # under the measured 88.8% (240 held-out cases: four rounds of 60)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    result = graded(read_labels(LABELS))
    print("\n" + report(result))
    return result


def test_the_set_holds_enough_real_outputs(frame):
    assert len(frame) >= 250 and (frame["source"] != WRITTEN).sum() >= 150


def test_non_correct_answers_are_almost_never_graded_correct(frame):
    a = agreement(frame)
    assert a.false_correct <= FALSE_CORRECT_MAX, f"{a.false_correct:.1%} of {a.non_correct} non-CORRECT labels"


def test_agreement_on_real_outputs_reaches_the_issues_target(frame):
    assert agreement(frame[frame["source"] != WRITTEN]).agree >= REAL_AGREEMENT_TARGET


def test_overall_agreement_reaches_the_issues_target(frame):  # in-sample: 95.2% of 440
    assert agreement(frame).agree >= AGREEMENT_TARGET


def test_on_held_out_outputs_no_false_correct_and_agreement_above_its_floor():
    held_out = graded(read_labels(HOLDOUT))
    print("\n" + report(held_out))
    a = agreement(held_out)
    assert a.false_correct <= FALSE_CORRECT_MAX, f"{a.false_correct:.1%} of {a.non_correct} non-CORRECT labels"
    assert a.agree >= HOLDOUT_AGREEMENT_FLOOR


def test_a_second_labeller_labelled_known_cases_and_is_compared_with_the_first(frame):
    held_out = graded(read_labels(HOLDOUT))
    both = pd.concat([second_labels(SECOND, frame), second_labels(SECOND, held_out)])
    assert len(both) == len(pd.read_csv(SECOND)) >= 200  # every second label belongs to a labelled case
    print("\n" + labeller_report(both))
    assert cohen_kappa(both["label"], both["second"]) > 0.6  # two readers of one rubric mostly agree


def test_cohen_kappa_is_one_for_agreement_and_near_zero_for_chance():
    labels = pd.Series(GRADES * 40)
    assert cohen_kappa(labels, labels) == pytest.approx(1.0)
    assert abs(cohen_kappa(labels, labels.sample(frac=1, random_state=0).reset_index(drop=True))) < 0.15


def test_a_label_outside_the_three_grades_is_refused(tmp_path):
    bad = tmp_path / "labels.csv"
    pd.read_csv(LABELS, keep_default_na=False, dtype=str).head(2).assign(label="MAYBE").to_csv(bad, index=False)
    with pytest.raises(ValueError, match="labels must be one of"):
        read_labels(bad)
