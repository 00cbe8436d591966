"""Replica threads follow the CPUs the process may use (sweep/cpus.py), not the host's core count.

The affinity test runs a real subprocess pinned to one CPU (os.sched_setaffinity before exec, as `taskset -c 0`
does) and checks the thread count torch gets there. The cgroup quota is read from files shaped like the kernel's
(cpu.max, cpu.cfs_quota_us) in a temp dir: this machine's own quota cannot be changed from a test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweep.cpus import cgroup_cpu_quota

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, os
import torch
from sweep.cpus import usable_cpus
from sweep.replica_model import set_replica_threads
print(json.dumps({"mask": len(os.sched_getaffinity(0)), "usable": usable_cpus(), "threads": set_replica_threads(0),
                  "explicit": set_replica_threads(3)}))
"""


def probe(cpus: set[int] | None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # set_num_threads must override it
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_replica_threads_follow_an_affinity_mask_smaller_than_the_host() -> None:
    host = os.cpu_count() or 1
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip(f"this process may use {len(allowed)} CPU: no smaller mask to pin a child to")
    pinned = probe({allowed[0]})
    assert pinned["mask"] == 1
    assert pinned["usable"] == pinned["threads"] == 1, f"{pinned} on a {host}-core host"
    assert pinned["explicit"] == 3, "an explicit cluster.torch_threads is kept"
    unpinned = probe(None)
    assert unpinned["threads"] == unpinned["usable"] >= 2 and unpinned["usable"] <= len(allowed)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_smallest_on_the_path_rounded_by_the_caller(tmp_path: Path) -> None:
    root, own = tmp_path / "cgroup", tmp_path / "self-cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "kubepods" / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "250000 100000\n")  # a 2500m limit
    write(own, "0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(root, own) == pytest.approx(2.5)
    write(root / "kubepods" / "cpu.max", "150000 100000\n")  # a parent's tighter quota wins
    assert cgroup_cpu_quota(root, own) == pytest.approx(1.5)
    write(own, "0::/\n")  # a container with its own cgroup namespace: the root's cpu.max, here none
    assert cgroup_cpu_quota(root, own) is None


def test_cgroup_v1_quota_and_unlimited(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "absent") is None
    write(root / "cpu" / "cpu.cfs_quota_us", "400000\n")
    assert cgroup_cpu_quota(root, tmp_path / "absent") == pytest.approx(4.0)
