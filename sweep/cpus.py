"""How many CPUs this process may use: its affinity mask and its cgroup's CPU quota, not the host's core count.

os.cpu_count() is the host's: inside a 4-CPU Kubernetes pod on a 64-core node it says 64, and a replica that
starts 64 threads on 4 CPUs' worth of quota spends its time throttled and switching. The affinity mask
(taskset, cpusets, Kubernetes' static CPU manager) and the CFS quota (a pod's CPU limit) are what it can use."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (os.cpu_count() where the platform has no affinity call)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cgroup_path(proc_cgroup: Path) -> str:
    """This process's cgroup v2 path ("0::/kubepods/..."), "/" when there is none (a container's namespace)."""
    try:
        for line in proc_cgroup.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:] or "/"
    except OSError:
        pass
    return "/"


def _quota(quota: str, period: str) -> float | None:
    if quota.strip() in ("max", "-1"):
        return None
    quota_us, period_us = int(quota), int(period)
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (2.5 for a 2500m limit), None when unlimited or unknown.

    cgroup v2: cpu.max ("QUOTA PERIOD" or "max PERIOD") of the process's cgroup and of each parent, the smallest
    quota winning; cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us of the cpu controller (-1: unlimited)."""
    quotas: list[float] = []
    if (root / "cgroup.controllers").exists():  # v2, the unified hierarchy
        folder = root / _cgroup_path(proc_cgroup).lstrip("/")
        for directory in [folder, *folder.parents]:
            if not directory.is_relative_to(root):
                break
            try:
                quota, period = (directory / "cpu.max").read_text().split()
            except (OSError, ValueError):
                continue
            if (cpus := _quota(quota, period)) is not None:
                quotas.append(cpus)
    else:
        for controller in ("cpu", "cpu,cpuacct"):
            try:
                quota = (root / controller / "cpu.cfs_quota_us").read_text()
                period = (root / controller / "cpu.cfs_period_us").read_text()
            except OSError:
                continue
            if (cpus := _quota(quota, period)) is not None:
                quotas.append(cpus)
    return min(quotas) if quotas else None


def usable_cpus() -> int:
    """The CPUs this process can keep busy: its affinity mask, capped by its cgroup quota rounded up (a 2.5-CPU
    limit runs 3 threads well), at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(cpus, 1)
