"""SimpleQA loading: validation and clear errors for files that are not SimpleQA."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.config import DataConfig
from sweep.data import BUNDLED_CSV, BUNDLED_SHA256, choose_rows, file_sha256, load_questions, locate_csv
from sweep.errors import DataError

from conftest import QUESTIONS, write_simpleqa_csv


def test_rows_are_loaded_in_order_with_metadata(simpleqa_csv: Path):
    questions = load_questions(simpleqa_csv)[:3]
    assert [q.prompt_id for q in questions] == [0, 1, 2]
    assert questions[0].answer == "Michio Sugeno"
    assert questions[2].topic == "Sports"
    assert questions[3 - 1].answer_type == "Person"
    assert len(load_questions(simpleqa_csv)) == len(QUESTIONS)


def test_rows_are_chosen_in_order_or_as_a_seeded_sample_after_the_skipped_ones(simpleqa_csv: Path):
    questions = load_questions(simpleqa_csv)
    assert [q.prompt_id for q in choose_rows(questions, DataConfig(rows=2, skip=1))] == [1, 2]
    sample = choose_rows(questions, DataConfig(rows=3, skip=2, sample_seed=7))
    assert len(sample) == 3 and all(q.prompt_id >= 2 for q in sample)
    assert sample == choose_rows(questions, DataConfig(rows=3, skip=2, sample_seed=7))
    assert [q.prompt_id for q in sample] == sorted(q.prompt_id for q in sample)
    assert {q.prompt_id for q in choose_rows(questions, DataConfig(rows=3, skip=2, sample_seed=8))} != \
        {q.prompt_id for q in sample} or len(questions) - 2 == 3
    with pytest.raises(DataError, match="data.skip=99 leaves no rows"):
        choose_rows(questions, DataConfig(rows=1, skip=99))


def test_the_bundled_simpleqa_is_found_and_its_hash_checked(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("SIMPLEQA_CSV", raising=False)
    dataset = locate_csv(DataConfig())
    assert dataset.bundled and dataset.sha256 == BUNDLED_SHA256
    questions = load_questions(dataset.path)
    assert len(questions) == 4326 and questions[0].answer == "Michio Sugeno"
    damaged = tmp_path / "simple_qa_test_set.csv"
    damaged.write_bytes(BUNDLED_CSV.read_bytes()[:-10])
    monkeypatch.setattr("sweep.data.BUNDLED_CSV", damaged)
    with pytest.raises(DataError, match="installation is damaged"):
        locate_csv(DataConfig())


def test_a_configured_csv_wins_and_relative_paths_resolve_against_the_working_folder(
        monkeypatch, tmp_path: Path, simpleqa_csv: Path):
    from sweep.config import compose, resolve_paths

    from conftest import CONF

    monkeypatch.setenv("SIMPLEQA_CSV", "data/my.csv")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    cfg = compose(CONF / "smoke.yaml", [])
    resolve_paths(cfg, tmp_path)
    assert cfg.data.csv == str(tmp_path / "data" / "my.csv")
    assert cfg.tracking.uri == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    cfg = compose(CONF / "smoke.yaml", [f"data.csv={simpleqa_csv}", "tracking.uri=http://127.0.0.1:5000"])
    resolve_paths(cfg, tmp_path)
    assert cfg.data.csv == str(simpleqa_csv) and cfg.tracking.uri == "http://127.0.0.1:5000"
    dataset = locate_csv(cfg.data)
    assert not dataset.bundled and dataset.path == simpleqa_csv


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
        load_questions(path)


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(DataError, match="SimpleQA CSV not found: .*absent.csv"):
        load_questions(tmp_path / "absent.csv")


def test_shared_simpleqa_has_the_official_shape():
    path = Path(__file__).resolve().parents[2] / "shared/data/simpleqa/simple_qa_test_set.csv"
    if not path.exists():
        pytest.skip(f"the shared SimpleQA copy is not at {path}")
    questions = load_questions(path)
    assert len(questions) == 4326
    assert file_sha256(path) == BUNDLED_SHA256
    assert questions[0].answer == "Michio Sugeno"


def test_helper_writes_what_the_loader_reads(tmp_path: Path):
    path = write_simpleqa_csv(tmp_path / "x.csv", [("Q, with comma?", 'A "quoted"', "t", "Other")])
    (question,) = load_questions(path)
    assert (question.question, question.answer) == ("Q, with comma?", 'A "quoted"')


def test_duplicate_questions_are_refused(tmp_path: Path):
    path = write_simpleqa_csv(tmp_path / "dup.csv", [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]])
    with pytest.raises(DataError, match="rows 0 and 2 hold the same question"):
        load_questions(path)
