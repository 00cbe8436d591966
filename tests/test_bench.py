"""`fusion-steering bench` end to end on the tiny random model: every documented JSON key, sane figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep.cli import main

from conftest import CONF

pytestmark = pytest.mark.slow


def test_bench_writes_every_documented_figure(tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--config", str(CONF / "bench.yaml"), "--trials", "4", "--paper-trials", "1",
                 "--faithful-trials", "2", "--batch-sizes", "2,4", "--new-tokens", "4", "--sweep-studies", "2",
                 "--json", str(out), "model.name=tiny-random", "search.trials=2"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    for mode in ("paper_loop", "faithful", "cached"):
        assert result[mode]["trials_per_s"] > 0 and result[mode]["tokens_per_s"] > 0
    assert [r["batch"] for r in result["faithful_by_batch"]] == [2]  # capped at --faithful-trials
    assert [r["batch"] for r in result["cached_by_batch"]] == [2, 4]
    assert result["speedup_cached"] == pytest.approx(result["cached"]["trials_per_s"]
                                                     / result["paper_loop"]["trials_per_s"])
    assert 0 < result["mfu_cached"] < 1
    assert result["batch_agreement"] == 1.0  # unquantized weights: batched rows equal rows alone
    assert result["sweep"]["trials"] == 2 * 2 * 2  # studies x methods x search.trials, each run once
    assert result["sweep_overhead"] == pytest.approx(
        (result["sweep"]["tune_stage_s"] - result["sweep"]["engine_s"]) / result["sweep"]["engine_s"])
    assert "speedup faithful" in capsys.readouterr().out
