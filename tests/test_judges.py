"""Judges and SimpleQA metrics on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.evaluate import Answer, grade_answers, simpleqa_metrics
from sweep.judges import (CORRECT, INCORRECT, NOT_ATTEMPTED, Item, exact_grade, exact_judge, exact_score,
                          load_template, model_judge, parse_grade, parse_score)
from sweep.scoring import composite, objective, token_overlap


@pytest.mark.parametrize(("predicted", "grade"), [
    ("The award went to Michio Sugeno in 2010.", CORRECT),
    ("It was MICHIO SUGENO!", CORRECT),
    ("Geoffrey Hinton received it.", INCORRECT),
    ("Michio Sugenoff", INCORRECT),
    ("I don't know who received it.", NOT_ATTEMPTED),
    ("   ", NOT_ATTEMPTED),
])
def test_exact_grade(predicted, grade):
    assert exact_grade(Item("Who?", "Michio Sugeno", predicted)) == grade


def test_exact_score_follows_the_grade_not_the_gold_words_present():
    assert exact_score(Item("Who?", "Michio Sugeno", "Michio Sugeno")).value == 5
    assert exact_score(Item("Who?", "Michio Sugeno", "Michio Kaku")).value == 1  # half the gold words, still wrong
    assert exact_score(Item("Who?", "Michio Sugeno", "nobody")).value == 1


def test_overlap_objective_and_composite_follow_the_paper():
    assert token_overlap("Michio Sugeno", "michio, who?") == 0.5
    assert token_overlap("", "anything") == 0.0
    assert token_overlap("Paris, France", "Paris") == 0.5  # the comma is not a word
    assert objective(1.0, 50.0, 0.0) == pytest.approx(0.7 - 0.15)
    assert objective(0.0, 1e6, 0.0) == pytest.approx(-0.3)
    assert composite(1.0, 1) == pytest.approx(0.6)  # overlap 1.0 alone passes the 0.6 bar (method.md §9.5)


@pytest.mark.parametrize(("reply", "grade"), [
    ("A", CORRECT), (" B) INCORRECT", INCORRECT), ("C", NOT_ATTEMPTED), ("NOT_ATTEMPTED", NOT_ATTEMPTED),
    ("The answer is correct", NOT_ATTEMPTED), ("", NOT_ATTEMPTED),
])
def test_grade_replies_parse_and_unparseable_counts_as_not_attempted(reply, grade):
    assert parse_grade(reply) == grade


def test_score_replies_parse():
    assert parse_score("Score: 4").value == 4
    assert parse_score("I'd give it 3 out of 5").value == 3
    unparsed = parse_score("no idea")
    assert (unparsed.value, unparsed.parsed) == (1, False)


def test_model_judge_fills_the_template_and_parses_replies():
    seen: list[str] = []

    def generate(prompts: list[str], max_new_tokens: int) -> list[str]:
        seen.extend(prompts)
        return ["A" if "Sugeno" in p.split("Predicted answer:")[-1] else "Score: 2" for p in prompts]

    judge = model_judge("test", generate, "Q={question} T={target} P=Predicted answer: {predicted_answer}", 4)
    assert judge.grade([Item("Who?", "Michio Sugeno", "Sugeno"), Item("Who?", "X", "Y")]) == [CORRECT, NOT_ATTEMPTED]
    assert "Q=Who? T=Michio Sugeno" in seen[0]


def test_official_template_is_read_between_its_markers():
    path = Path(__file__).resolve().parents[2] / "shared/reference/simpleqa_grader_template.txt"
    if not path.exists():
        pytest.skip(f"the official grader template is not at {path}")
    template = load_template(path)
    assert template.startswith("Your job is to look at a question")
    assert "{predicted_answer}" in template


def test_template_without_placeholders_is_refused(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_text("Grade {question}")
    with pytest.raises(ValueError, match="lacks placeholder"):
        load_template(path)


def test_simpleqa_metrics_by_hand():
    # 2 correct, 1 incorrect, 1 not attempted: correct 0.5, given attempted 2/3, F1 = 2*0.5*(2/3)/(0.5+2/3) = 4/7
    m = simpleqa_metrics([CORRECT, CORRECT, INCORRECT, NOT_ATTEMPTED])
    assert (m.correct, m.incorrect, m.not_attempted) == (0.5, 0.25, 0.25)
    assert m.accuracy_given_attempted == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(4 / 7)
    assert simpleqa_metrics([NOT_ATTEMPTED]).f1 == 0.0


def test_grade_rows_use_the_paper_variant_only_when_asked():
    answers = [Answer(7, "full", "Who won?", "Adolf Anderssen", "Anderssen won.")]
    continuation = grade_answers(answers, exact_judge(), include_prompt=False)[0]
    assert continuation["overlap"] == 0.5
    assert continuation["grade"] == continuation["exact_grade"] == CORRECT  # a surname names a person
    assert continuation["judge_score"] == 5
    assert continuation["composite"] == pytest.approx(0.5 * 0.5 + 0.5 * 5 / 5)
    with_prompt = grade_answers([Answer(7, "full", "Who won, Adolf?", "Adolf Anderssen", "Anderssen won.")],
                                exact_judge(), include_prompt=True)[0]
    assert with_prompt["overlap"] == 1.0
