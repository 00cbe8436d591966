"""Integrity of the grader's labelled set (tests/data/grader_labels.csv), its held-out set
(grader_labels_holdout.csv) and a second labeller's labels of some of their cases (grader_labels_second.csv);
agreement is tested elsewhere."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

LABELS_CSV = Path(__file__).parent / "data" / "grader_labels.csv"
HOLDOUT_CSV = Path(__file__).parent / "data" / "grader_labels_holdout.csv"
SECOND_CSV = Path(__file__).parent / "data" / "grader_labels_second.csv"
COLUMNS = ["case_id", "source", "arm", "question", "gold", "response", "label", "hedged", "labelled_by", "why",
           "disputed"]
REAL_SOURCES = {"paper_baseline", "paper_full", "paper_segmented", "smollm2"}
PAPER_ARMS = {"paper_baseline": "baseline", "paper_full": "full", "paper_segmented": "segmented"}
LABELS = {"CORRECT", "INCORRECT", "NOT_ATTEMPTED"}
BOOLEANS = {"true", "false"}


def _read(path: Path, columns: list[str] = COLUMNS) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == columns
        return list(reader)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return _read(LABELS_CSV)


@pytest.fixture(scope="module")
def holdout() -> list[dict[str, str]]:
    return _read(HOLDOUT_CSV)


@pytest.fixture(scope="module", params=[LABELS_CSV, HOLDOUT_CSV], ids=["labelled", "held-out"])
def either(request) -> list[dict[str, str]]:
    return _read(request.param)


def test_the_held_out_set_is_real_outputs_none_of_them_in_the_labelled_set(rows, holdout) -> None:
    assert len(holdout) >= 50 and {row["source"] for row in holdout} <= REAL_SOURCES
    seen = {(row["question"], row["response"]) for row in rows}
    assert not [row["case_id"] for row in holdout if (row["question"], row["response"]) in seen]


def test_second_labels_are_of_labelled_cases_once_each(rows, holdout) -> None:
    second = _read(SECOND_CSV, ["case_id", "label", "hedged", "labelled_by", "why"])
    ids = [row["case_id"] for row in second]
    assert len(ids) == len(set(ids)) and set(ids) <= {row["case_id"] for row in rows + holdout}
    assert {row["label"] for row in second} <= LABELS and {row["hedged"] for row in second} <= BOOLEANS


def test_sizes(rows: list[dict[str, str]]) -> None:
    real = [row for row in rows if row["source"] in REAL_SOURCES]
    written = [row for row in rows if row["source"] == "written"]
    assert len(rows) >= 300
    assert len(real) >= 200
    assert len(written) <= 110


def test_every_row_is_well_formed(either: list[dict[str, str]]) -> None:
    for row in either:
        where = row["case_id"]
        assert row["source"] in REAL_SOURCES | {"written"}, where
        assert row["label"] in LABELS, where
        assert row["hedged"] in BOOLEANS and row["disputed"] in BOOLEANS, where
        assert row["hedged"] == "false" or row["label"] == "CORRECT", f"{where}: only a CORRECT answer is hedged"
        assert (row["disputed"] == "true") == ("Disputed:" in row["why"]), f"{where}: a disputed case says why"
        for column in ("question", "gold", "response", "labelled_by", "why", "arm"):
            assert row[column].strip(), f"{where}: empty {column}"


def test_case_ids_are_unique(rows, holdout) -> None:
    ids = [row["case_id"] for row in rows + holdout]
    assert len(ids) == len(set(ids))


def test_arms_match_sources(rows: list[dict[str, str]]) -> None:
    for row in rows:
        if row["source"] == "written":
            assert row["arm"] == "-", row["case_id"]
        elif row["source"] in PAPER_ARMS:
            assert row["arm"] == PAPER_ARMS[row["source"]], row["case_id"]
    smollm2_arms = {row["arm"] for row in rows if row["source"] == "smollm2"}
    assert {"baseline", "prompt_only", "full", "segmented"} <= smollm2_arms


def test_every_label_is_represented_in_real_and_written(rows: list[dict[str, str]]) -> None:
    for group in (REAL_SOURCES, {"written"}):
        assert {row["label"] for row in rows if row["source"] in group} == LABELS


def test_paper_golds_are_not_spreadsheet_dates(either: list[dict[str, str]]) -> None:
    mangled = [row["case_id"] for row in either
               if row["source"] in PAPER_ARMS and _looks_like_spreadsheet_date(row["gold"])]
    assert not mangled


def _looks_like_spreadsheet_date(text: str) -> bool:
    """'5-Feb-11', '8-Jan', 'Apr-98': what the spreadsheet made of dates such as 5 February 2011."""
    parts = text.split("-")
    months = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
    return 2 <= len(parts) <= 3 and any(part in months for part in parts)
