"""Bad input through the CLI: a clear message naming the problem, a non-zero exit, nothing written or lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from sweep.cli import main
from sweep.errors import ModelError
from sweep.models import decoder_layers

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
    assert set(table["simpleqa_correct"]) == {"baseline", "full", "segmented"}


def test_a_question_longer_than_the_context_is_refused_before_generation(tmp_path: Path, capsys):
    from conftest import write_simpleqa_csv
    csv = write_simpleqa_csv(tmp_path / "long.csv", [("word " * 3000 + "?", "x", "t", "Other")])
    code, err = run_cli(capsys, "select", "--config", str(CONF / "smoke.yaml"), "--out", str(tmp_path / "r"),
                        "model.name=tiny-random", "model.quantization=none", f"data.csv={csv}")
    assert code == 2
    assert "question too long for tiny-random" in err and "context 2048" in err
    assert not (tmp_path / "r" / "prompts.parquet").exists()


def test_a_corrupted_vectors_file_is_named_and_left_for_the_user(tmp_path: Path, capsys):
    from sweep.config import compose
    from sweep.rundir import SCHEMAS, RunDir, write_table

    run = RunDir(tmp_path / "r")
    overrides = ["model.name=tiny-random", "model.quantization=none", "controls=[prompt_only,random]"]
    run.prepare(compose(CONF / "smoke.yaml", overrides))
    write_table(run.table("prompts"), [{"prompt_id": 0, "question": "q", "answer": "a", "topic": "", "answer_type": "",
                                        "baseline_text": "", "baseline_grade": "INCORRECT"}], SCHEMAS["prompts"])
    write_table(run.table("references"), [{"prompt_id": 0, "question": "q", "answer": "a", "explanation": "",
                                           "explanation_source": "empty", "reference_text": "a"}],
                SCHEMAS["references"])
    run.dataset.write_text("{}")
    run.vectors.write_bytes(b"\x00garbage")
    write_table(run.table("shift_norms"), [], SCHEMAS["shift_norms"])  # the vectors stage's other output
    code, err = run_cli(capsys, "tune", "--config", str(CONF / "smoke.yaml"), "--out", str(run.root), *overrides)
    assert code == 2
    assert "vectors.safetensors is unreadable" in err and "rerun the vectors stage" in err
    assert run.vectors.read_bytes() == b"\x00garbage"
    assert not run.table("trials").exists()


def test_a_full_disk_leaves_the_previous_file_whole(tmp_path: Path, monkeypatch):
    """A real full disk cannot be made here without mounting a filesystem, so the Parquet writer is made to
    fail with ENOSPC halfway through its file (a stand-in, said so): the old file must survive untouched."""
    import errno

    import pyarrow.parquet as pq

    from sweep.rundir import SCHEMAS, write_table

    path = tmp_path / "prompts.parquet"
    rows = [{"prompt_id": 1, "question": "q", "answer": "a", "topic": "", "answer_type": "", "baseline_text": "",
             "baseline_grade": "INCORRECT"}]
    write_table(path, rows, SCHEMAS["prompts"])
    before = path.read_bytes()

    def full_disk(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_table(path, rows * 2, SCHEMAS["prompts"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.parquet"]


def test_replicas_the_cluster_cannot_place_fail_with_what_is_free(tmp_path: Path, capsys, simpleqa_csv):
    # A local CPU-only Ray cluster asked for one-GPU replicas: the reservation times out with a message.
    out = tmp_path / "r"
    code, err = run_cli(capsys, "run", "--config", str(CONF / "smoke.yaml"), "--out", str(out),
                        "model.name=tiny-random", "model.quantization=none", f"data.csv={simpleqa_csv}",
                        "model.device=cuda", "cluster.num_replicas=1", "cluster.call_timeout_s=5")
    assert code == 2
    assert "after 5 s, the replica replicas (1 x {'GPU': 1.0}) cannot be scheduled" in err and "free now" in err
    assert not (out / "prompts.parquet").exists()
