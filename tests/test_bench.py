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
                 "--overhead-batch-sizes", "", "--compaction-rows", "0",  # their own test below
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


def test_bench_measures_steer_overhead_and_finished_rows(tmp_path: Path, capsys):
    """The engine-cost figures alone (no sweep, no Ray): steered vs unsteered per mode and batch size, and the
    finished-row share with compaction timed at each threshold."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--config", str(CONF / "bench.yaml"), "--trials", "1", "--paper-trials", "1",
                 "--faithful-trials", "2", "--batch-sizes", "1", "--new-tokens", "2", "--sweep-studies", "0",
                 "--overhead-batch-sizes", "1,4", "--overhead-tokens", "3", "--faithful-overhead-tokens", "2",
                 "--repeats", "2", "--compaction-rows", "4", "--compaction-tokens", "6", "--compact-below", "0.5,1",
                 "--json", str(out), "model.name=tiny-random"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    # Cached at every size, faithful capped at --faithful-trials; steer_overhead is the pairs' median ratio.
    overhead = result["steer_overhead"]
    assert [(r["mode"], r["batch"], r["new_tokens"]) for r in overhead] == [
        ("cached", 1, 3), ("cached", 4, 3), ("faithful", 1, 2), ("faithful", 2, 2)]
    for r in overhead:
        ratios = [1 - u / s for u, s in zip(r["unsteered_s"], r["steered_s"])]
        assert len(ratios) == 2 and r["steer_overhead"] == pytest.approx(sum(ratios) / 2)
        assert r["steered_tokens_per_s"] > 0 and r["unsteered_tokens_per_s"] > 0
    compaction = result["compaction"]
    assert compaction["rows"] == 4 and 0 < compaction["real_share"] <= 1
    assert [r["compact_below"] for r in compaction["compacted"]] == [0.5, 1.0]
    for r in compaction["compacted"]:
        assert r["same_texts"] and r["speedup"] == pytest.approx(compaction["kept_s"] / r["seconds"])
        assert r["real_share"] >= compaction["real_share"]
    assert "sweep" not in result
    printed = capsys.readouterr().out
    assert "steer_overhead" in printed and "finished rows" in printed


def test_orchestration_bench_reports_components_projection_and_mlflow_rate(tmp_path: Path, capsys):
    """`bench --orchestration` at a small size: the real tune stage with zero-cost replicas, every default arm,
    then the MLflow sync and a no-op rerun, each size in its own process."""
    from sweep.orchestration import HEAD_CORES

    out = tmp_path / "orchestration.json"
    code = main(["bench", "--config", str(CONF / "bench.yaml"), "--orchestration", "--prompts", "6",
                 "--json", str(out), "search.trials=2", "search.in_flight=1", "cluster.max_batch=16",
                 "controls=[prompt_only,random,mismatched,in_context,sampled]"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    (size,) = result["orchestration"]
    assert size["prompts"] == 6 and size["studies"] == 6 * 9  # 2 methods, their 4 controls, 3 more arms
    assert size["trials"] > size["studies"] and size["trials_per_s"] > 0
    assert 0 <= size["mlflow_sync_studies"] <= size["studies"]
    assert {row["process"] for row in size["components"].values()} >= {"driver", "Tune trial actors", "replicas"}
    assert [p["head_cores"] for p in result["projection"]] == list(HEAD_CORES)
    printed = capsys.readouterr().out
    assert "studies/s" in printed and "Projection" in printed
