"""Checks that turn a silent stall into a message: shared storage seen by every node and replica before the tune
stage, and a stage whose work Ray cannot schedule named within a minute, with what it asks and what is free."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .errors import SweepError
from .rundir import RunDir, write_text_atomic

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 120.0  # a node that cannot run a zero-CPU task in this long is named, not waited for
STALL_AFTER_S = 60.0


def read_probe(path: str) -> tuple[str, str | None]:
    """(this node's host name, the probe's token or None where the file is not there)."""
    try:
        with open(path) as file:
            return socket.gethostname(), json.load(file)["token"]
    except (OSError, ValueError, KeyError):
        return socket.gethostname(), None


_read_probe = ray.remote(num_cpus=0, max_retries=0)(read_probe)


def check_shared_storage(run: RunDir, replicas: list) -> None:
    """The driver writes a probe into the run directory; a task on every live node and every replica read it
    back. Trials on a node whose mount failed would write study state to its local disk (lost), and replicas
    there would not find the run's vectors: refuse to start instead, naming the node and the path."""
    probe = run.root / ".storage-probe.json"
    token = uuid.uuid4().hex
    write_text_atomic(probe, json.dumps({"token": token, "host": socket.gethostname()}))
    nodes = [n for n in ray.nodes() if n["Alive"]]
    readers = {f"node {n['NodeManagerAddress']} ({n['NodeID'][:8]})": _read_probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(probe))
        for n in nodes}
    readers |= {f"replica {i}": replica.read_probe.remote(str(probe)) for i, replica in enumerate(replicas)}
    ready, _ = ray.wait(list(readers.values()), num_returns=len(readers), timeout=PROBE_TIMEOUT_S)
    done = set(ready)
    blind, silent = [], []
    for name, ref in readers.items():
        if ref not in done:
            silent.append(name)
            continue
        host, seen = ray.get(ref)
        if seen != token:
            blind.append(f"{name} on host {host}")
    probe.unlink(missing_ok=True)
    if blind:
        raise SweepError(f"shared storage is not shared: {', '.join(blind)} cannot read {probe} (written by the "
                         f"driver on {socket.gethostname()}). Mount the run directory's file system on every node "
                         "(docs/cluster.md), or remove those nodes, then rerun")
    if silent:
        log.warning("shared storage: %s did not answer the probe within %.0f s (going away?)", ", ".join(silent),
                    PROBE_TIMEOUT_S)
    log.info("shared storage: %d nodes and %d replicas read %s", len(nodes), len(replicas), run.root)


def unschedulable(what: str, asked: dict[str, float]) -> str:
    """What to say about work Ray has not placed: what it asks, what is free now, and where it goes."""
    free = {k: round(v, 3) for k, v in sorted(ray.available_resources().items())
            if not k.startswith(("node:", "bundle_group", "CPU_group", "GPU_group", "memory_group"))}
    total = {k: v for k, v in sorted(ray.cluster_resources().items()) if k in ("CPU", "GPU")}
    return (f"{what} cannot be scheduled: each asks {asked}; the cluster has {total} in all and free now {free}. "
            "Add nodes, or lower cluster.num_replicas / cluster.replica_cpus / cluster.gpus_per_replica")


class StallWatch(tune.Callback):
    """Says once, within STALL_AFTER_S, that no shard has started when Tune holds them all pending for want of
    resources (Ray itself only lists the demand in `ray status`)."""

    def __init__(self, asked: dict[str, float], after_s: float = STALL_AFTER_S) -> None:
        self.asked, self.after_s = asked, after_s
        self._since: float | None = None
        self._warned = False

    def __getstate__(self) -> dict:
        return {"asked": self.asked, "after_s": self.after_s, "_since": None, "_warned": False}

    def on_step_begin(self, iteration, trials, **info) -> None:  # noqa: ANN001 - Tune's signature
        statuses = {t.status for t in trials}
        waiting = "PENDING" in statuses and "RUNNING" not in statuses
        if not waiting:
            self._since = None
            return
        self._since = self._since or time.monotonic()
        if not self._warned and time.monotonic() - self._since >= self.after_s:
            self._warned = True
            log.warning("tune: no shard has run for %.0f s: %s", self.after_s,
                        unschedulable("a shard (one Tune trial)", self.asked))
