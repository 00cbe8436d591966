"""Bad input through the CLI: a clear message naming the problem, a non-zero exit, nothing written or lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from sweep.cli import main
from sweep.models import ModelError, decoder_layers

from conftest import CONF


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


def test_missing_csv_is_named_and_only_the_config_is_written(tmp_path: Path, capsys):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "select", "--config", str(CONF / "smoke.yaml"), "--out", str(out),
                        f"data.csv={tmp_path / 'absent.csv'}", "model.name=tiny-random")
    assert code == 2
    assert "SimpleQA CSV not found" in err and "absent.csv" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_unknown_model_and_quantization_are_refused_before_anything_runs(tmp_path: Path, capsys):
    code, err = run_cli(capsys, "run", "--config", str(CONF / "smoke.yaml"), "--out", str(tmp_path / "r"),
                        "model.name=llama-9000")
    assert code == 2 and "unknown model 'llama-9000'" in err and "smollm2-135m" in err
    code, err = run_cli(capsys, "run", "--config", str(CONF / "smoke.yaml"), "--out", str(tmp_path / "r"),
                        "model.quantization=2bit")
    assert code == 2 and "choose one of: 8bit, 4bit, none" in err
    assert not (tmp_path / "r").exists()


def test_a_stage_whose_inputs_are_missing_says_which(tmp_path: Path, capsys):
    code, err = run_cli(capsys, "tune", "--config", str(CONF / "smoke.yaml"), "--out", str(tmp_path / "r"))
    assert code == 2
    assert "stage 'tune' needs select, enrich, vectors first" in err


def test_a_model_without_decoder_layers_is_refused():
    with pytest.raises(ModelError, match="has no model.layers"):
        decoder_layers(nn.Linear(2, 2), "linear")


def test_paper_table_json_has_the_documented_keys(capsys):
    csvs = Path(__file__).resolve().parents[2] / "shared/reference/paper-notebook"
    if not csvs.exists():
        pytest.skip(f"the authors' CSVs are not at {csvs}")
    import json
    assert main(["paper-table", "--notebook-csvs", str(csvs), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert round(100 * table["segmented"]["accuracy"], 1) == 25.4
    assert {"accuracy", "overlap_ge_05", "judge_ge_4", "composite_mean", "overlap_mean"} <= set(table["full"])
    assert table["overlap_agreement"] >= 0.99
