"""`fusion-steering grade`: other systems' answers on this project's scale, CSV or Parquet in and out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sweep.cli import main

from conftest import CONF
from test_http_judge import Stub

ROWS = pd.DataFrame({
    "id": [7, 8, 9, 10],
    "question": ["Who received the IEEE Frank Rosenblatt Award in 2010?",
                 "In what year did the Dutch painter Jan Verkolje die?", "What is the capital of France?",
                 "On what date was it announced?"],
    "answer": ["Michio Sugeno", "1693", "Paris", "23 October 2018"],
    "response": ["I'm not sure, but I think it was Michio Sugeno.", "1691, 1692, 1693, 1694 or 1695",
                 "I don't know.", "October 23, 2018"],
})


def grade(capsys, source: Path, target: Path, *overrides: str) -> tuple[int, str, str]:
    code = main(["grade", "--config", str(CONF / "grade.yaml"), "--input", str(source), "--output", str(target),
                 *overrides])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("source", "target"), [("in.csv", "out.csv"), ("in.parquet", "out.parquet"),
                                                ("in.csv", "out.parquet")])
def test_rows_come_back_with_grades_in_the_outputs_format_and_metrics_are_printed(tmp_path, capsys, source, target):
    src = tmp_path / source
    ROWS.to_csv(src, index=False) if src.suffix == ".csv" else ROWS.to_parquet(src, index=False)
    code, out, _ = grade(capsys, src, tmp_path / target)
    assert code == 0
    graded = pd.read_csv(tmp_path / target) if target.endswith(".csv") else pd.read_parquet(tmp_path / target)
    assert list(graded.columns) == [*ROWS.columns, "grade", "judge_score", "judge_parsed"]
    assert graded["id"].tolist() == [7, 8, 9, 10]  # every input column kept, rows in order
    assert graded["grade"].tolist() == ["CORRECT", "INCORRECT", "NOT_ATTEMPTED", "CORRECT"]
    assert graded["judge_score"].tolist() == [4, 1, 2, 5]
    assert "correct 50.0%, incorrect 25.0%, not attempted 25.0%, accuracy given attempted 66.7%, F1 0.571" in out


def test_missing_columns_and_unknown_formats_are_refused_and_nothing_is_written(tmp_path, capsys):
    src = tmp_path / "in.csv"
    ROWS.drop(columns=["response"]).to_csv(src, index=False)
    code, _, err = grade(capsys, src, tmp_path / "out.csv")
    assert code == 2 and "lacks column(s) response" in err
    ROWS.to_csv(src, index=False)
    code, _, err = grade(capsys, src, tmp_path / "out.json")
    assert code == 2 and "the output must be .csv or .parquet" in err
    code, _, err = grade(capsys, tmp_path / "absent.csv", tmp_path / "out.csv")
    assert code == 2 and "no such file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_an_http_judge_grades_through_the_same_command_and_caches_beside_the_output(tmp_path, capsys):
    # A stdlib stand-in for an OpenAI-compatible server (the real transformers-serve one is tested in
    # test_http_judge.py): it answers "A" to rubric prompts and "Score: 4" to score prompts.
    stub = Stub([])
    try:
        src = tmp_path / "in.csv"
        ROWS.to_csv(src, index=False)
        code, out, _ = grade(capsys, src, tmp_path / "out.csv", "judge.kind=http", f"judge.base_url={stub.url}",
                             "judge.model=stub-model")
        assert code == 0 and "by the `http` judge" in out
        graded = pd.read_csv(tmp_path / "out.csv")
        assert graded["grade"].tolist() == ["CORRECT"] * 4 and graded["judge_score"].tolist() == [4] * 4
        assert (tmp_path / "judge_cache.sqlite").exists() and len(stub.received) == 8
    finally:
        stub.server.shutdown()
        stub.server.server_close()


def test_the_packaged_defaults_grade_from_an_empty_folder_without_a_config_file(tmp_path, capsys, monkeypatch):
    # A pip-installed user has no conf/: with no --config the command uses the defaults shipped in the package.
    monkeypatch.chdir(tmp_path)
    ROWS.to_csv(tmp_path / "in.csv", index=False)
    code = main(["grade", "--input", "in.csv", "--output", "out.csv"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert pd.read_csv(tmp_path / "out.csv")["grade"].tolist() == ["CORRECT", "INCORRECT", "NOT_ATTEMPTED", "CORRECT"]
    assert "by the `exact` judge" in out.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_a_local_judge_without_a_config_file_says_what_it_needs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ROWS.to_csv(tmp_path / "in.csv", index=False)
    code = main(["grade", "--input", "in.csv", "--output", "out.csv", "judge.kind=local"])
    assert code == 2 and "pass --config conf/grade.yaml" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()
