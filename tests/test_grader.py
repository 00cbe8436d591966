"""The strict SimpleQA grader behind the `exact` judge, on labelled cases (question, gold, predicted, grade).

The official rubric's own examples (simple-evals' GRADER_TEMPLATE, MIT, OpenAI) appear as rows under "template".
"""

from __future__ import annotations

import pytest
from grader_commit_cases import COMMIT_CASES

from sweep.evaluate import Answer, grade_answers
from sweep.grader import CORRECT, INCORRECT, NOT_ATTEMPTED, Verdict, grade
from sweep.judges import Item, exact_judge, exact_score, normalise, verdict_score
from sweep.scoring import token_overlap

C, I, NA = CORRECT, INCORRECT, NOT_ATTEMPTED

ROSENBLATT = "Who received the IEEE Frank Rosenblatt Award in 2010?"
VERKOLJE = "In what year did the Dutch painter Jan Verkolje die?"
LIEFDE = "What was the name of the first ship of the Dutch East India Company to reach Japan?"
WHEN = "On what date was the album certified gold?"
HOW_MANY = "How many fouls did Inter commit in the Champions League final on May 23, 2010?"
VISITORS = "How many visitors did the exhibition have?"
SMETANA = "Who composed Ma vlast?"
OBAMA_KIDS = "What are the names of Barack Obama's children?"
CITATIONS = "How many citations does the Transformer Paper have?"
EPISODE = "What episode did Derek and Meredith get legally married in Grey's Anatomy?"
AUTHOR = "Who is the first author of the Flan-T5 paper?"

CASES = [
    # more than one candidate answer for the slot
    ("several", VERKOLJE, "1693", "1691, 1692, 1693, 1694 or 1695", I),
    ("several", VERKOLJE, "1693", "1693 or 1694", I),
    ("several", "On what day, month and year was he born?", "22 June 1880",
     "He was born on 22 June 1880, though his birth year is 1881.", I),  # a coarser rival after a contrast
    ("several", VERKOLJE, "1693", "He died in either 1693 or 1694.", I),
    ("several", VERKOLJE, "1693", "1693. Or it could be 1694.", I),
    ("several", ROSENBLATT, "Michio Sugeno", "It was either Michio Sugeno or Lotfi Zadeh.", I),
    ("several", ROSENBLATT, "Michio Sugeno", "Lotfi Zadeh or Michio Sugeno", I),
    ("several", WHEN, "23 October 2018", "23 October 2018 or 24 October 2018", I),
    ("several", HOW_MANY, "13", "13 or 14 fouls", I),
    ("several", VERKOLJE, "1693", "1693 and 1694.", I),
    ("several", "How many votes did the motion get?", "66 votes", "66 votes and 12 abstentions.", C),
    ("several", ROSENBLATT, "Michio Sugeno", "\nA. Michio Sugeno\nB. Lotfi Zadeh\nC. Geoffrey Hinton", I),
    ("several", ROSENBLATT, "Michio Sugeno", "\n**A.** Michio Sugeno\n**B.** Lotfi Zadeh\n\n**Answer:** **A.** "
     "Michio Sugeno", C),  # the option it picks
    ("several", ROSENBLATT, "Michio Sugeno", "\nA. Michio Sugeno\nB. Lotfi Zadeh\n\nThe answer is (B) Lotfi Zadeh.", I),
    ("several", "Who designed it?", "A. W. Skempton", "A. W. Skempton designed it.", C),  # initials, no options
    # negation, contradiction, retraction
    ("negation", ROSENBLATT, "Michio Sugeno", "Michio Sugeno? No, it was Lotfi Zadeh.", I),
    ("negation", ROSENBLATT, "Michio Sugeno", "It was not Michio Sugeno but Lotfi Zadeh.", I),
    ("negation", ROSENBLATT, "Michio Sugeno", "It was Lotfi Zadeh, not Michio Sugeno.", I),
    ("negation", ROSENBLATT, "Michio Sugeno", "Not Lotfi Zadeh but Michio Sugeno.", C),
    ("negation", ROSENBLATT, "Michio Sugeno", "Michio Sugeno, sorry, I mean Lotfi Zadeh.", I),
    ("negation", VERKOLJE, "1693", "Not 1693 but 1694.", I),
    ("negation", VERKOLJE, "1693", "1693? No, it was 1694.", I),
    ("negation", HOW_MANY, "13", "Inter did not commit any fouls in the final.", I),
    # hedges that still commit are graded on what they commit to
    ("hedge", LIEFDE, "De Liefde", "I'm not sure, but I think it was De Liefde", C),
    ("hedge", ROSENBLATT, "Michio Sugeno", "I'm not sure, but I think it was Lotfi Zadeh.", I),
    ("hedge", VERKOLJE, "1693", "I think he died around 1693.", C),
    ("hedge", VERKOLJE, "1693", "Probably 1694, though I am not certain.", I),
    # refusals
    ("refusal", ROSENBLATT, "Michio Sugeno", "I don't know", NA),
    ("refusal", ROSENBLATT, "Michio Sugeno", "I cannot find information on that", NA),
    ("refusal", ROSENBLATT, "Michio Sugeno", "", NA),
    ("refusal", ROSENBLATT, "Michio Sugeno", "  **  ", NA),
    ("refusal", ROSENBLATT, "Michio Sugeno", "I'm not sure.", NA),
    ("refusal", VERKOLJE, "1693", "I don't know what happened in 1693.", NA),
    ("refusal", HOW_MANY, "13", "There is no reliable information about the number of fouls.", NA),
    # dates in other formats; ambiguous day/month order; precision
    ("date", WHEN, "23 October 2018", "October 23, 2018", C),
    ("date", WHEN, "23 October 2018", "2018-10-23", C),
    ("date", WHEN, "23 October 2018", "23/10/2018", C),
    ("date", WHEN, "23 October 2018", "10/23/2018", C),
    ("date", WHEN, "23 October 2018", "Oct. 23, 2018", C),
    ("date", WHEN, "23 October 2018", "23rd October 2018", C),
    ("date", WHEN, "23 October 2018", "It was certified on the 23rd of October, 2018.", C),
    ("date", WHEN, "October 23, 2018", "23 Oct 2018", C),
    ("date", WHEN, "11 October 2018", "10/11/2018", NA),  # 10 Nov or 11 Oct: ambiguous
    ("date", WHEN, "5 May 2018", "05/05/2018", C),  # both readings agree
    ("date", WHEN, "23 October 2018", "24 October 2018", I),
    ("date", WHEN, "23 October 2018", "It happened in 2018.", NA),  # less precise, agrees
    ("date", WHEN, "23 October 2018", "It happened in 2017.", I),
    ("date", WHEN, "April 2024", "April 15, 2024", C),  # more precise, agrees
    ("date", WHEN, "23 October 2018", "The band formed in 2001 and the album went gold on 23 October 2018.", C),
    # numbers: separators, words, significant figures
    ("number", VISITORS, "1,200", "1200", C),
    ("number", VISITORS, "1200", "1 200 visitors", C),
    ("number", VISITORS, "1 200", "1,200", C),
    ("number", VISITORS, "3", "three", C),
    ("number", VISITORS, "three", "3", C),
    ("number", VISITORS, "1,376", "1,367", I),
    ("number", VISITORS, "1.2 million", "1,200,000", C),
    ("number", HOW_MANY, "13", "On May 23, 2010, Inter committed 13 fouls.", C),  # the question's numbers skipped
    ("number", HOW_MANY, "13", "Inter committed 23 fouls.", I),
    # ranges and lists as gold
    ("range", VISITORS, "between 1 and 3", "between 1 and 3", C),
    ("range", VISITORS, "between 1 and 3", "1-3", C),
    ("range", VISITORS, "between 1 and 3", "2", NA),
    ("range", VISITORS, "between 1 and 3", "5", I),
    ("range", VERKOLJE, "1950-52", "from 1950 to 1952", C),
    ("range", VERKOLJE, "1693", "between 1690 and 1695", NA),
    ("range", "In which two years did Rugged Lark win?", "1985 and 1987", "1985 and 1987", C),
    ("range", "In which two years did Rugged Lark win?", "1985 and 1987", "1985.", I),
    # names: order, case, accents, punctuation, partial names, typos
    ("name", ROSENBLATT, "Michio Sugeno", "Sugeno, Michio", C),
    ("name", ROSENBLATT, "Michio Sugeno", "It was MICHIO SUGENO!", C),
    ("name", ROSENBLATT, "Michio Sugeno", "michio sugeno", C),
    ("name", SMETANA, "Bedřich Smetana", "Bedrich Smetana", C),
    ("name", SMETANA, "Bedrich Smetana", "Bedřich Smetana.", C),
    ("name", "Who founded the company?", "Jean-Luc O'Brien", "Jean Luc OBrien", C),
    ("name", "Who founded the company?", "Jean-Luc O'Brien", "jean-luc o'brien", C),
    ("name", ROSENBLATT, "Michio Sugeno", "Sugeno received it.", C),  # surname alone
    ("name", "Who painted it?", "Jan Davidsz de Heem", "Jan de Heem", C),  # a middle name left out
    ("name", ROSENBLATT, "Michio Sugeno", "Takeshi Sugeno", I),  # another given name
    ("name", ROSENBLATT, "Michio Sugeno", "Michio Kaku", I),  # shares a word, different surname
    ("name", ROSENBLATT, "Michio Sugeno", "Michio Sugenoff", I),
    ("name", ROSENBLATT, "Michio Sugeno", "Michio Kakezawa received the award in 2010.", I),
    ("name", LIEFDE, "De Liefde", "the ship Liefde", NA),  # part of the gold, contradicting nothing
    # the answer is the first committed one: detail may follow, a rival may not precede
    ("ramble", VERKOLJE, "1693", "1693. He was born in Delft in 1632 and painted portraits.", C),
    ("ramble", VERKOLJE, "1693", "He died in 1693, aged 51.", C),
    ("ramble", VERKOLJE, "1693", "He died in 1694. His father died in 1693.", I),
    ("ramble", ROSENBLATT, "Michio Sugeno",
     "Michio Sugeno. He is a Japanese engineer known for fuzzy logic, and he later won other awards.", C),
    ("ramble", "Which body elected the mayors of Toronto?", "The public",
     "The answer is the Municipal Council. Here is why: councils govern cities. They elect mayors. Mayors "
     "serve two years. Later reforms gave the vote to the public.", I),
    ("ramble", "Who requested the flight restriction?", "The Coast Guard",
     "**The Coast Guard** requested the Coast Guard requested the Coast Guard", C),
    # the grade follows the name committed for the slot (issue 14), not every mention: tests/grader_commit_cases.py
    *COMMIT_CASES,
    # roles: numbers and dates in other roles do not count against a right answer
    ("role", "In what year did Arcangelo Corelli die?", "1713", "Corelli, born in 1653, died in 1713.", C),
    ("role", "In what year did Arcangelo Corelli die?", "1713", "Corelli, born in 1653 in Fusignano, died in Rome "
     "in 1713.", C),
    ("role", "How many Academy Awards did Ben-Hur win?", "11", "Ben-Hur was nominated for 14 Academy Awards and "
     "won 11.", C),
    ("role", "On what date did the Golden Gate Bridge open?", "27 May 1937",
     "Construction began on 5 January 1933 and the bridge opened on 27 May 1937.", C),
    ("role", "How many people were injured in the blast?", "24", "Two people were killed and 24 were injured.", C),
    ("role", "In what year did Arcangelo Corelli die?", "1713", "Corelli was born in 1653 and died in 1712.", I),
    ("role", "In what year did Arcangelo Corelli die?", "1713", "He died in 1713, though some sources give 1714.", I),
    ("commit", "What was the election symbol of the party?", "a bell inside a circle",
     "The election symbol of the party was a white flag with a red star.", I),  # another description
    # refusals, bounds, ordinals, units
    ("refusal", ROSENBLATT, "Michio Sugeno", "I'm sorry, but I don't have information about that.", NA),
    ("refusal", ROSENBLATT, "Michio Sugeno", "Michio Sugeno, but I'm not certain.", C),
    ("number", "How many children did he have?", "2", "He had at least 2 children.", NA),  # a bound holding the gold
    ("number", "How many children did he have?", "2", "He had more than 2 children.", I),
    ("number", "In which place did she finish?", "3rd", "She finished third.", C),
    ("number", "In which place did she finish?", "third", "She finished 3rd.", C),
    ("number", "How tall is the tower in meters?", "46 m", "The tower is 4,600 cm tall.", C),
    ("number", "At what temperature does water boil at sea level?", "100 °C", "It boils at 212 °F.", C),
    ("number", "In what year was he ordained?", "1821", "He was ordained in the 1810s.", I),
    ("number", "What is the peak brightness of the phone in nits?", "1200 nits", "It peaks at 1,600 nits.", I),
    ("number", "What was the total number of locations surveyed?", "1571", "The study surveyed 150 locations.", I),
    ("negation", ROSENBLATT, "Michio Sugeno", "The petitioner was represented by no one other than Michio Sugeno.",
     C),
    ("negation", "In which two years did Rugged Lark win the title?", "1985 and 1987",
     "Rugged Lark did not win the title.", I),
    ("negation", VERKOLJE, "1693", "1693 - wait, I'm mistaken, I don't actually know.", I),
    ("ramble", "As a teen, what job sparked her interest in hospitals?", "hospital volunteer",
     "work at a hospital. work at a hospital. work at a hospital. work at a hospital. work at hospital volunteer "
     "work at hospital", NA),  # the gold's words deep in a loop
    ("ramble", ROSENBLATT, "Michio Sugeno",
     "Who received the IEEE Frank Rosenblatt Award in 2010?\n\nI need this information for a project.", NA),
    # the official template's examples
    ("template", OBAMA_KIDS, "Malia Obama and Sasha Obama", "sasha and malia obama", C),
    ("template", OBAMA_KIDS, "Malia Obama and Sasha Obama",
     "most people would say Malia and Sasha, but I'm not sure and would have to double check", C),
    ("template", OBAMA_KIDS, "Malia Obama and Sasha Obama",
     "Barack Obama has two children. Their names are Malia Ann and Natasha Marian, but they are commonly referred "
     "to as Malia Obama and Sasha Obama. Malia was born on July 4, 1998, and Sasha was born on June 10, 2001.", C),
    ("template", OBAMA_KIDS, "Malia and Sasha", "Malia.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha", "Malia, Sasha, and Susan.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha", "Barack Obama does not have any children.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "I think it's either Malia and Sasha. Or it could be Malia and Jackie. Or it could be Joey and Malia.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "While I don't know their exact names, I can tell you that Barack Obama has three children.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "It's possible you may mean Betsy and Olivia. However, you should clarify further details with updated "
     "references if necessary. Is that the correct answer?", I),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "It may be the case that Obama's child is named James. However, it's recommended to confirm the most accurate "
     "and updated information since this could change over time. This model may not always reflect the most "
     "current information.", I),
    ("template", OBAMA_KIDS, "Malia and Sasha", "I don't know.", NA),
    ("template", OBAMA_KIDS, "Malia and Sasha", "I need more context about which Obama you are talking about.", NA),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "Without researching the web, I cannot answer this question. However, I can tell you that Barack Obama has "
     "two children.", NA),
    ("template", OBAMA_KIDS, "Malia and Sasha",
     "Barack Obama has two children. I know that one of them is Malia, but I'm not sure about the other one.", NA),
    ("template", CITATIONS, "120k", "120k", C),
    ("template", CITATIONS, "120k", "124k", C),
    ("template", CITATIONS, "120k", "115k", C),
    ("template", CITATIONS, "120k", "100k", I),
    ("template", CITATIONS, "120k", "113k", I),
    ("template", CITATIONS, "120k", "around 100k", NA),
    ("template", CITATIONS, "120k", "more than 50k", NA),
    ("template", EPISODE, "Season 7, Episode 20: White Wedding", "Season 7, Episode 20", C),
    ("template", EPISODE, "Season 7, Episode 20: White Wedding", "White Wedding", C),
    ("template", "What city is OpenAI headquartered in?", "San Francisco, California", "San Francisco", C),
    ("template", "What award did A pretrainer's guide to training data: Measuring the effects of data age, domain "
     "coverage, quality, & toxicity win at NAACL '24?", "Outstanding Paper Award", "Outstanding Paper", C),
    ("template", "What is the height of Jason Wei in meters?", "1.73 m", "1.75", C,
     "deliberately unsupported: the template calls 1.75 CORRECT for 1.73 m, against its own rule that a number be "
     "right to the gold's last significant figure"),
    ("template", "What is the height of Jason Wei in meters?", "1.73 m", "1.73", C),
    ("template", "What is the name of Barack Obama's wife?", "Michelle Obama", "Michelle", C),
    ("template", AUTHOR, "Hyung Won Chung", "Hyoong Won Choong", C),
    ("template", AUTHOR, "Hyung Won Chung", "Hyungwon Chung", C),
    ("template", AUTHOR, "Hyung Won Chung", "Hyun Won Chung", C),
]


def _param(case: tuple) -> object:
    """(rule, question, gold, predicted, expected[, why the grader deliberately disagrees: a strict xfail])."""
    rule, question, gold, predicted, expected, *unsupported = case
    marks = [pytest.mark.xfail(strict=True, reason=unsupported[0])] if unsupported else []
    return pytest.param(question, gold, predicted, expected, marks=marks, id=f"{rule}: {predicted[:40]!r} for {gold!r}")


@pytest.mark.parametrize(("question", "gold", "predicted", "expected"), [_param(c) for c in CASES])
def test_labelled_case(question: str, gold: str, predicted: str, expected: str):
    verdict = grade(question, gold, predicted)
    assert verdict.grade == expected, verdict.reason


def test_the_table_covers_every_rule_with_enough_cases():
    rules = [c[0] for c in CASES]
    assert len(rules) >= 60
    assert {r: rules.count(r) >= 2 for r in set(rules)} == {r: True for r in set(rules)}


@pytest.mark.parametrize(("question", "gold", "predicted", "hedged"), [
    (LIEFDE, "De Liefde", "I'm not sure, but I think it was De Liefde", True),
    (LIEFDE, "De Liefde", "De Liefde.", False),
    (VERKOLJE, "1693", "Around 1693.", True),
    (VERKOLJE, "1693", "1693. Perhaps his best-known painting is from 1680.", False),  # the hedge is later
    (OBAMA_KIDS, "Malia and Sasha", "most people would say Malia and Sasha, but I'm not sure", True),
])
def test_a_correct_answer_knows_whether_it_was_hedged(question, gold, predicted, hedged):
    verdict = grade(question, gold, predicted)
    assert (verdict.grade, verdict.hedged) == (CORRECT, hedged)


@pytest.mark.parametrize(("verdict", "score"), [
    (Verdict(CORRECT), 5), (Verdict(CORRECT, hedged=True), 4), (Verdict(NOT_ATTEMPTED), 2), (Verdict(INCORRECT), 1),
])
def test_score_mapping(verdict, score):
    assert verdict_score(verdict) == score


def test_exact_scores_come_from_the_grade():
    scores = [exact_score(Item(LIEFDE, "De Liefde", p)).value for p in
              ("De Liefde", "I'm not sure, but I think it was De Liefde", "I don't know", "The Hoop")]
    assert scores == [5, 4, 2, 1]


def test_exact_score_does_not_depend_on_overlap():
    half = Item(ROSENBLATT, "Michio Sugeno", "Michio Kaku")
    none = Item(ROSENBLATT, "Michio Sugeno", "Geoffrey Hinton")
    assert token_overlap(half.gold, half.predicted) == 0.5 and token_overlap(none.gold, none.predicted) == 0.0
    assert exact_score(half) == exact_score(none)
    rows = grade_answers([Answer(1, "full", i.question, i.gold, i.predicted) for i in (half, none)], exact_judge(),
                         include_prompt=False)
    assert [r["grade"] for r in rows] == [INCORRECT, INCORRECT]
    assert rows[0]["judge_score"] == rows[1]["judge_score"] == 1
    # the composite differs by the overlap term alone: 0.5 * (0.5 - 0.0)
    assert rows[0]["composite"] - rows[1]["composite"] == pytest.approx(0.25)


def test_exact_judge_grades_and_scores_batches():
    judge = exact_judge()
    items = [Item(VERKOLJE, "1693", "1693."), Item(VERKOLJE, "1693", "1693 or 1694")]
    assert judge.grade(items) == [CORRECT, INCORRECT]
    assert [s.value for s in judge.score(items)] == [5, 1]
    assert all(s.parsed for s in judge.score(items))


def test_normalise_is_kept_for_its_callers():
    assert normalise("The  Bedřich Smetana, Jr.!") == "bedrich smetana jr"


def test_a_gold_with_no_latin_letters_must_appear_as_written():
    assert grade("Which mansion?", "牛", "牛").grade == CORRECT
    assert grade("Which mansion?", "牛", "斗").grade == INCORRECT
