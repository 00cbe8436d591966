"""Whole sweeps through the CLI that used to stall or abort: two CPU replicas on a 2-core machine (the replicas
reserve every CPU; trials must still run), and a tracking server that is not there when the sweep starts."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from conftest import QUESTIONS, finish_sweep, free_port, start_sweep, sweep_command, write_simpleqa_csv

# Minutes each: in the fault group (make test-faults), out of the default run.
pytestmark = [pytest.mark.slow, pytest.mark.faults]
BUDGET = 2


def _complete(out) -> None:  # noqa: ANN001 - Path
    trials = pd.read_parquet(out / "trials.parquet")
    assert set(trials.groupby(["prompt_id", "method"]).size()) == {BUDGET}
    assert (out / "report.md").exists()


@pytest.mark.skipif(os.cpu_count() != 2, reason="the deadlock needs the replicas to reserve every CPU: 2 here")
def test_two_cpu_replicas_on_two_cores_finish_the_smoke_sweep(tmp_path):
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    err = finish_sweep(start_sweep(sweep_command(out, csv, "cluster.num_replicas=2", "controls=[]")), timeout=900)
    assert "replica: 2 replicas of tiny-random on CPUs" in err
    _complete(out)


def test_a_tracking_server_down_at_start_costs_nothing_and_is_reported_once(tmp_path):
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    err = finish_sweep(start_sweep(sweep_command(out, csv, f"tracking.uri={uri}", "controls=[]")))
    _complete(out)
    assert err.count("MLflow cannot be reached") == 1
    assert "was not brought up to date" in err and uri in err
