"""SimpleQA loading: validation and clear errors for files that are not SimpleQA."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.data import DataError, load_questions

from conftest import QUESTIONS, write_simpleqa_csv


def test_rows_are_loaded_in_order_with_metadata(simpleqa_csv: Path):
    questions = load_questions(simpleqa_csv, 3)
    assert [q.prompt_id for q in questions] == [0, 1, 2]
    assert questions[0].answer == "Michio Sugeno"
    assert questions[2].topic == "Sports"
    assert questions[3 - 1].answer_type == "Person"
    assert len(load_questions(simpleqa_csv, 100)) == len(QUESTIONS)


@pytest.mark.parametrize(("content", "message"), [
    (b"problem,answer\nq,a\n", "lacks SimpleQA column\\(s\\) metadata"),
    (b"", "lacks SimpleQA column"),
    (b"metadata,problem,answer\n", "has no data rows"),
    (b"metadata,problem,answer\n\"{}\",,a\n", "row 0: empty problem"),
    (b"metadata,problem,answer\nnot a dict,q,a\n", "row 0: metadata is not a dict literal"),
    (b"metadata,problem,answer\n\"{}\",\"unclosed,a\n", "row 0: empty answer|not valid CSV"),
    (b"metadata,problem,answer\n\"{}\",caf\xe9,a\n", "is not UTF-8"),
])
def test_malformed_files_get_specific_errors(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_questions(path, 10)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(DataError, match="SimpleQA CSV not found: .*absent.csv"):
        load_questions(tmp_path / "absent.csv", 10)


def test_shared_simpleqa_has_the_official_shape():
    path = Path(__file__).resolve().parents[2] / "shared/data/simpleqa/simple_qa_test_set.csv"
    if not path.exists():
        pytest.skip(f"the shared SimpleQA copy is not at {path}")
    questions = load_questions(path, 5000)
    assert len(questions) == 4326
    assert questions[0].answer == "Michio Sugeno"


def test_helper_writes_what_the_loader_reads(tmp_path: Path):
    path = write_simpleqa_csv(tmp_path / "x.csv", [("Q, with comma?", 'A "quoted"', "t", "Other")])
    (question,) = load_questions(path, 1)
    assert (question.question, question.answer) == ("Q, with comma?", 'A "quoted"')


def test_duplicate_questions_are_refused(tmp_path: Path):
    path = write_simpleqa_csv(tmp_path / "dup.csv", [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]])
    with pytest.raises(DataError, match="rows 0 and 2 hold the same question"):
        load_questions(path, 10)
