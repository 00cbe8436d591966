"""Same config, same seed, same numbers: batches are composed by the config (shards and rounds), never by timing,
so two runs write identical trials.parquet and grades.parquet. (With fp32 weights here; the demo's 8-bit
SmolLM2 was checked the same way by hand, docs/results.md says with which command.)"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import QUESTIONS, finish_sweep, start_sweep, sweep_command, write_simpleqa_csv

pytestmark = pytest.mark.slow


def test_two_runs_of_one_config_write_identical_trials_and_grades(tmp_path):
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        # Small shards and two trials in flight per study: several batches per round, several rounds.
        finish_sweep(start_sweep(sweep_command(out, csv, "data.rows=5", "search.trials=3", "search.in_flight=2",
                                               "cluster.max_batch=6", "steering.cache=true")))
    for table in ("trials", "best", "grades", "transfer"):
        first, second = (pd.read_parquet(out / f"{table}.parquet") for out in outs)
        pd.testing.assert_frame_equal(first, second, check_exact=True, obj=table)
    # 6 tuned arms and sampled: 3 trials each; prompt_only and in_context: one.
    assert len(pd.read_parquet(outs[0] / "trials.parquet")) == 5 * (7 * 3 + 2)
