"""Capacity that recovers and never deadlocks, on a real local Ray (replicas of the zero-cost stand-in model):
replicas restart without limit, one gone for good is created again, the sweep starts with `cluster.min_replicas`
and the rest join as their resources appear, trials reserve no CPU a replica needs, and work that cannot be
placed is named within a minute. Also: shared storage is checked by every node and replica."""

from __future__ import annotations

import logging
import time

import pytest
import ray
from ray import tune

from sweep.config import compose
from sweep.errors import SweepError
from sweep.health import StallWatch, check_shared_storage
from sweep.orchestration import ZeroCostModel
from sweep.rundir import RunDir
from sweep.session import Session, ray_address, trial_resources, wait_for_room

from conftest import CONF


@pytest.fixture(scope="module")
def ray_two_cpus():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             namespace="fusion-steering")
    yield
    ray.shutdown()


@pytest.fixture
def session(tmp_path):
    """A session factory; every pool it starts is released after the test (the Ray cluster is shared)."""
    made: list[Session] = []

    def make(*overrides: str) -> Session:
        cfg = compose(CONF / "smoke.yaml", ["model.name=tiny-random", "model.quantization=none", *overrides])
        made.append(Session(cfg, RunDir(tmp_path / "run")))
        return made[-1]

    yield make
    for each in made:
        each.release()


def test_ray_address_honours_the_environment_when_the_config_names_none():
    assert ray_address(None, {"RAY_ADDRESS": "http://head:8265"}) == "http://head:8265"
    assert ray_address("10.0.0.1:6379", {"RAY_ADDRESS": "http://head:8265"}) == "10.0.0.1:6379"
    assert ray_address(None, {}) == "local"


def test_replicas_restart_without_limit_and_one_gone_for_good_is_created_again(tmp_path, ray_two_cpus, session):
    pool = session("cluster.num_replicas=2").pool(build=ZeroCostModel)
    first = pool.actors[0]
    for _ in range(4):  # one more than the old max_restarts=3
        ray.kill(first, no_restart=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                assert ray.get(first.num_layers.remote(), timeout=10) == ZeroCostModel.num_layers
                break
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.2)
    ray.kill(first, no_restart=True)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(first.num_layers.remote(), timeout=30)
    deadline = time.monotonic() + 30
    while (live := pool.live())[0] is first:  # the dead actor's name is freed a moment after it dies
        assert time.monotonic() < deadline, "the dead replica was not created again"
        time.sleep(0.5)
    assert len(live) == 2
    assert ray.get(live[0].num_layers.remote(), timeout=60) == ZeroCostModel.num_layers


def test_the_sweep_starts_with_min_replicas_and_the_rest_join_when_room_appears(tmp_path, ray_two_cpus, session):
    """Three 1-CPU replicas on 2 CPUs, one of them held elsewhere: with min_replicas=1 the pool starts at once
    with one (all-or-nothing would wait call_timeout_s, then fail); a second joins once a CPU is freed."""
    blocker = ray.util.placement_group([{"CPU": 1}])
    try:
        ray.get(blocker.ready(), timeout=120)
        started = time.monotonic()
        pool = session("cluster.num_replicas=3", "cluster.min_replicas=1",
                       "cluster.call_timeout_s=600").pool(build=ZeroCostModel)
        assert time.monotonic() - started < 120  # all-or-nothing would wait call_timeout_s (600 s)
        assert len(pool.live()) == 1
    finally:  # the module shares one Ray: a CPU left held would starve the tests after this one
        ray.util.remove_placement_group(blocker)
    deadline = time.monotonic() + 120
    while len(pool.live()) < 2:
        assert time.monotonic() < deadline, "the waiting replica did not join"
        time.sleep(0.5)
    assert ray.get(pool.live()[1].num_layers.remote(), timeout=60) == ZeroCostModel.num_layers


def test_a_pool_that_cannot_be_placed_is_named_with_what_it_asks_and_what_is_free(tmp_path, ray_two_cpus, caplog,
                                                                                  monkeypatch):
    monkeypatch.setattr("sweep.session.STALL_AFTER_S", 0.5)
    groups = [ray.util.placement_group([{"CPU": 3}])]  # removed by wait_for_room when it gives up
    with caplog.at_level(logging.WARNING), pytest.raises(SweepError, match=r"each asks \{'CPU': 3\}.*'CPU': 2"):
        wait_for_room(groups, 1, "replica replicas (1 x {'CPU': 3})", {"CPU": 3}, timeout_s=3)
    assert "still waiting for room" in caplog.text and "free now" in caplog.text


def test_trials_need_no_cpu_that_replicas_reserve(tmp_path, ray_two_cpus, session):
    """Both CPUs held by replicas' groups (the deadlock of two CPU replicas on a 2-core machine): trials still
    run."""
    cfg = compose(CONF / "smoke.yaml", [])
    held = [ray.util.placement_group([{"CPU": 1}]) for _ in range(2)]
    ray.get([g.ready() for g in held], timeout=120)  # a CPU still held by an earlier test fails here, not hangs
    request = trial_resources(cfg.cluster)

    def trial(config):  # noqa: ANN001, ANN202 - Tune's trainable
        tune.report({"x": config["x"]})

    tuner = tune.Tuner(tune.with_resources(trial, request),
                       param_space={"x": tune.grid_search([1, 2])},
                       tune_config=tune.TuneConfig(time_budget_s=120),  # a deadlock fails, never hangs
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
    try:
        results = tuner.fit()
    finally:
        for group in held:
            ray.util.remove_placement_group(group)
    assert sorted(r.metrics["x"] for r in results) == [1, 2]


def test_a_tune_stage_that_cannot_start_says_so(tmp_path, ray_two_cpus, caplog):
    asked = {"cpu": 4}
    watch = StallWatch(asked, after_s=1)

    def trial(config):  # noqa: ANN001, ANN202 - never scheduled
        tune.report({"x": 1})

    tuner = tune.Tuner(tune.with_resources(trial, asked), param_space={"x": tune.grid_search([1])},
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0, callbacks=[watch],
                                                 stop={"training_iteration": 1}),
                       tune_config=tune.TuneConfig(time_budget_s=8))
    with caplog.at_level(logging.WARNING):
        tuner.fit()
    assert "no shard has run" in caplog.text and "each asks {'cpu': 4}" in caplog.text and "'CPU': 2.0" in caplog.text


def test_every_node_and_replica_reads_the_drivers_storage_probe(tmp_path, ray_two_cpus, session):
    pool = session("cluster.num_replicas=1").pool(build=ZeroCostModel)
    run = RunDir(tmp_path / "run")
    run.root.mkdir(parents=True, exist_ok=True)
    check_shared_storage(run, pool.live())
    assert not list(run.root.glob(".storage-probe*"))
