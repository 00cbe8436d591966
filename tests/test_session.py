"""Where replicas go: how many (`cluster.num_replicas=auto`), what they reserve, where they compute; and a judge
on another model that takes the steering replicas' GPUs instead of asking for a second set."""

from __future__ import annotations

import pandas as pd
import pytest

from sweep.errors import SweepError
from sweep.session import replica_bundle, replica_count, replica_device, reserves_gpus

from conftest import QUESTIONS, finish_sweep, start_sweep, sweep_command, write_simpleqa_csv


def node(cpus: float, gpus: float = 0.0, alive: bool = True) -> dict:
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


@pytest.mark.parametrize(("requested", "on_gpus", "share", "nodes", "expected"), [
    ("auto", True, 1.0, [node(0), node(8, 4), node(8, 4)], 8),  # one per GPU; the CPU-only head has none
    ("auto", True, 0.25, [node(8, 2)], 8),  # four small replicas per GPU
    ("auto", True, 1.0, [node(8, 4), node(8, 4, alive=False)], 4),  # a dead node counts for nothing
    ("auto", False, 1.0, [node(0), node(16), node(16)], 2),  # a CPU cluster: one per node with CPUs
    (3, True, 1.0, [node(8, 8)], 3),  # a number is taken as it is
])
def test_replica_count(requested, on_gpus, share, nodes, expected):
    assert replica_count(requested, on_gpus, share, nodes) == expected


def test_auto_on_a_cluster_without_gpus_yet_asks_for_a_number():
    with pytest.raises(SweepError, match="set cluster.num_replicas"):
        replica_count("auto", True, 1.0, [node(4)])


def test_reservations_and_devices():
    assert reserves_gpus("auto", 2.0) and not reserves_gpus("auto", 0.0) and reserves_gpus("cuda", 0.0)
    assert replica_device("auto", on_gpus=True) == "cuda"  # and replica_model refuses to run without CUDA
    assert replica_device("cpu", on_gpus=True) == "cpu"  # GPUs faked in Ray: reserved, computed on the CPU
    assert replica_device("auto", on_gpus=False) == "cpu"
    assert replica_bundle(1.0, 0.25) == {"GPU": 0.25} and replica_bundle(1.0, 0.0) == {"CPU": 1.0}


@pytest.mark.slow
def test_a_judge_on_another_model_takes_the_steering_replicas_gpu(tmp_path):
    """One (fake) GPU on the cluster, held by the steering replica; the SmolLM2 judge gets it only because the
    steering replica is released first (else it would wait call_timeout_s and fail)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    try:
        csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS[:2])
        out = tmp_path / "run"
        err = finish_sweep(start_sweep(sweep_command(
            # A 135M judge grades a random model's noise at random: keep every row whatever its grade. The
            # judge reads SimpleQA's long rubric per answer: as few answers as go through every stage, and
            # unquantized (bitsandbytes' 8-bit is slower than fp32 on a CPU).
            out, csv, "data.rows=2", "data.keep_grades=[CORRECT,INCORRECT,NOT_ATTEMPTED]", "search.trials=1",
            "search.methods=[full]", "controls=[prompt_only]", "model.quantization=none",
            f"cluster.address={cluster.address}", "model.device=cpu", "judge.kind=local", "judge.model=smollm2-135m",
            "cluster.call_timeout_s=120")))
        assert "judge: 1 replica of smollm2-135m on 1 GPU" in err and "replica: 1 replica of tiny-random on 1 GPU" in err
        grades = pd.read_parquet(out / "grades.parquet")
        assert set(grades["method"]) == {"baseline", "prompt_only", "full"}
        assert grades["judge_parsed"].any()
    finally:
        ray.shutdown()
        cluster.shutdown()
