"""Chaos on a real multi-node Ray cluster: a head and two worker nodes started with `ray start` (each its own temp
dir and ports, token authentication), one replica on each worker (fake GPUs, computing on the CPU). During the
tune stage the MLflow server is stopped, the worker holding replica-0 is killed and a new one started, the MLflow
server is started again, and then replica-1 is frozen (SIGSTOP) past its per-attempt deadline and resumed. The
sweep must finish with every study once, trials.parquet equal to an uninterrupted run's, and no MLflow run
RUNNING; trials must go on while replica-1 is frozen; the test prints what each fault cost.

The faults come early (the node is killed after 8 of 96 trials, without waiting for MLflow's restart) so that
the tune stage is still running when replica-0 is back and when replica-1 freezes, however slow the machine."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import (QUESTIONS, MlflowServer, finish_sweep, finished_trials, free_port, kill_processes,
                      sweep_command, wait_for_trials, write_simpleqa_csv)

pytestmark = [pytest.mark.slow, pytest.mark.faults]
BUDGET = 12  # 96 trials: the tune stage outlasts a node's replacement
FREEZE_S = 40  # replica-1 stopped this long; its per-attempt deadline is cluster.attempt_floor_s=10
BIN = Path(sys.executable).parent


class RayNode:
    """One `ray start --block` node; every process it starts carries its marker in the environment, so it can
    be killed (a lost machine) by PID, never with `ray stop` (which stops every cluster of this user)."""

    def __init__(self, env: dict[str, str], root: Path, head: str | None, *flags: str) -> None:
        self.marker = secrets.token_hex(6)
        self.env = {**env, "FUSION_STEERING_CHAOS_NODE": self.marker}
        self.root = Path(tempfile.mkdtemp(prefix="fs-chaos-", dir=root))
        self.port = free_port()
        target = (["--head", f"--port={self.port}", "--include-dashboard=false"] if head is None
                  else [f"--address={head}"])
        self.node_manager_port = free_port()
        ports = [f"--node-manager-port={self.node_manager_port}", f"--object-manager-port={free_port()}",
                 f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                 f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}"]
        self.argv = [str(BIN / "ray"), "start", "--block", *target, "--node-ip-address=127.0.0.1",
                     f"--temp-dir={self.root}", "--disable-usage-stats", *ports, *flags]
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("FUSION_STEERING_CHAOS_NODE") == self.marker:
                    found.append(proc)
            except (psutil.Error, ProcessLookupError):
                continue
        return found

    def kill(self) -> None:
        kill_processes(self.processes())
        self.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "HF_HUB_OFFLINE": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    root = Path(tempfile.mkdtemp(prefix="fsc-"))  # short: Ray's socket paths must fit 107 bytes
    nodes = [RayNode(env, root, None, "--num-cpus=1")]
    address = f"127.0.0.1:{nodes[0].port}"
    try:
        time.sleep(5)
        nodes += [RayNode(env, root, address, "--num-cpus=1", "--num-gpus=1") for _ in range(2)]
        time.sleep(10)
        for i, node in enumerate(nodes[1:], start=1):
            if node.process.poll() is not None:  # a loaded machine can time a joining node out: once more
                node.kill()
                nodes[i] = RayNode(env, root, address, "--num-cpus=1", "--num-gpus=1")
        yield env, address, nodes
    finally:
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


# Asked from a subprocess: this process has imported Ray without token authentication, which Ray reads once.
QUERY = """
import sys, time, ray
ray.init(address=sys.argv[1], namespace="fusion-steering", log_to_driver=False)
deadline = time.monotonic() + 300
while True:
    try:
        if sys.argv[2] == "workers":
            assert ray.cluster_resources().get("GPU", 0) >= 2
            print("joined")
        else:  # the node manager port of the node the named replica answers from
            node = ray.get(ray.get_actor(sys.argv[2]).node_id.remote(), timeout=30)
            print(next(n["NodeManagerPort"] for n in ray.nodes() if n["NodeID"] == node))
        break
    except Exception:
        assert time.monotonic() < deadline, sys.argv[2]
        time.sleep(1)
"""


def _ask(env: dict[str, str], address: str, what: str, driver: subprocess.Popen | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", QUERY, address, what], env=env, capture_output=True, text=True,
                          timeout=400)
    if done.returncode != 0 and driver is not None and driver.poll() is not None:
        pytest.fail(f"the sweep ended (exit {driver.returncode}) while {what} was awaited: "
                    f"{driver.stderr.read()[-3000:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]


def _replica_process(node: RayNode) -> psutil.Process:
    """The one replica actor process on `node` (Ray titles an actor's worker process `ray::Replica...`)."""
    found = [p for p in node.processes() if "ray::Replica" in " ".join(p.cmdline())]
    assert len(found) == 1, [" ".join(p.cmdline())[:80] for p in node.processes()]
    return found[0]


def _start(server: MlflowServer, timeout: float = 300) -> None:
    """MlflowServer.start, with longer patience: on a loaded machine the server can take over its 90 s."""
    try:
        server.start()
        return
    except RuntimeError:
        if server.process is None or server.process.poll() is not None:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{server.uri}/health", timeout=2).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(1)
    raise RuntimeError(f"mlflow server did not start within {timeout + 90:.0f} s")


def test_the_sweep_heals_through_a_lost_node_a_frozen_replica_and_a_tracking_outage(tmp_path, cluster):
    env, address, nodes = cluster
    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    overrides = [f"search.trials={BUDGET}", "controls=[]", "cluster.num_replicas=2", "cluster.max_batch=2",
                 "model.device=cpu", "cluster.call_timeout_s=300", "cluster.attempt_floor_s=10"]

    _ask(env, address, "workers")
    started = time.monotonic()
    calm = tmp_path / "calm"
    finish_sweep(subprocess.Popen(sweep_command(calm, csv, *overrides, f"cluster.address={address}"), env=env,
                                  stderr=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL,
                                  start_new_session=True))
    uninterrupted_s = time.monotonic() - started

    server = MlflowServer(tmp_path / "mlflow", log=tmp_path / "mlflow.log")
    _start(server)
    out = tmp_path / "chaos"
    started = time.monotonic()
    driver = subprocess.Popen(sweep_command(out, csv, *overrides, f"cluster.address={address}",
                                            f"tracking.uri={server.uri}"),
                              env=env, stderr=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for_trials(driver, out, 4)
        server.stop()
        stopped = time.monotonic()
        wait_for_trials(driver, out, 8)  # the sweep goes on without MLflow

        doomed = next(n for n in nodes[1:] if n.node_manager_port == int(_ask(env, address, "replica-0", driver)))
        survivor = next(n for n in nodes[1:] if n is not doomed)
        killed = time.monotonic()
        doomed.kill()
        nodes.remove(doomed)
        nodes.append(RayNode(env, doomed.root.parent, address, "--num-cpus=1", "--num-gpus=1"))
        _start(server)
        mlflow_outage = time.monotonic() - stopped
        back_on = int(_ask(env, address, "replica-0", driver))
        node_cost = time.monotonic() - killed
        assert back_on == nodes[-1].node_manager_port  # its placement group moved to the new node

        left = 8 * BUDGET - finished_trials(out)
        assert left > 8, f"only {left} trials were left when replica-0 came back: raise BUDGET"
        frozen = _replica_process(survivor)
        frozen.suspend()
        try:
            before = finished_trials(out)
            time.sleep(FREEZE_S)
            during = finished_trials(out) - before  # replica-0 took over once replica-1 missed its deadline
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):  # the sweep may finish the stage and release it first
                frozen.resume()
        assert during > 0, f"no trial finished in the {FREEZE_S} s replica-1 was frozen"
        finish_sweep(driver)
        chaos_s = time.monotonic() - started
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        server.stop()

    trials = pd.read_parquet(out / "trials.parquet")
    assert not trials.duplicated(["prompt_id", "method", "trial"]).any()
    assert set(trials.groupby(["prompt_id", "method"]).size()) == {BUDGET} and len(trials) == 8 * BUDGET
    pd.testing.assert_frame_equal(trials, pd.read_parquet(calm / "trials.parquet"))

    _start(server)
    try:
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("fusion-steering").experiment_id],
                                  max_results=1000)
        assert runs and not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
        studies = [(r.data.tags["fusion_steering.prompt_id"], r.data.tags["fusion_steering.method"]) for r in runs
                   if r.data.tags.get("fusion_steering.role") == "study"]
        assert len(studies) == len(set(studies)) == 8  # every study once
    finally:
        server.stop()
    print(f"\nuninterrupted {uninterrupted_s:.0f} s, with faults {chaos_s:.0f} s (+{chaos_s - uninterrupted_s:.0f} s); "
          f"lost worker node: replica-0 serving again {node_cost:.0f} s after the kill; "
          f"MLflow stopped for {mlflow_outage:.0f} s while the sweep went on; "
          f"{during} trials finished while replica-1 was frozen for {FREEZE_S} s")
