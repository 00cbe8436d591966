"""Shared storage is checked, never assumed: a node whose mount failed fails its set-up (cluster.yaml), and a
node that cannot read the run directory stops the sweep before the tune stage with its name and the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from sweep.errors import SweepError
from sweep.health import check_shared_storage
from sweep.rundir import RunDir

from conftest import REPO

SHIMS = {  # the node's tools, each recording its call; the NFS mount fails
    "sudo": 'echo "sudo $*" >> "$CALLS"; if [ "$1" = mount ]; then exit 32; fi',
    "mountpoint": "exit 1",
    "mount.nfs4": "exit 0",
}


def test_a_failed_mount_fails_the_node_set_up(tmp_path):
    (command,) = yaml.safe_load((REPO / "cluster.yaml").read_text())["initialization_commands"]
    for name, body in SHIMS.items():
        shim = tmp_path / name
        shim.write_text(f"#!/bin/sh\n{body}\n")
        shim.chmod(0o755)
    calls = tmp_path / "calls"
    result = subprocess.run(["bash", "-c", command], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "CALLS": str(calls)},
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "chown" not in calls.read_text()  # nothing after the failed mount ran


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root to unshare a mount")
def test_a_node_that_cannot_see_the_run_directory_is_named(tmp_path):
    """A real second Ray node in its own mount namespace, where an empty tmpfs hides the run directory: what a
    worker whose NFS mount failed sees."""
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    temp = Path(f"/tmp/fs-probe-{os.getpid()}")  # short: Ray's socket paths must fit 107 bytes
    node = None
    try:
        gcs = ray.get_runtime_context().gcs_address
        ray_bin = Path(sys.executable).parent / "ray"
        node = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs tmpfs {run.root} && exec {ray_bin} start --block --address={gcs} --num-cpus=1 "
             f"--node-ip-address=127.0.0.1 --temp-dir={temp} --disable-usage-stats"],
            env={**os.environ, "RAY_AUTH_MODE": "token"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert node.poll() is None and time.monotonic() < deadline, "the second node did not join"
            time.sleep(1)
        with pytest.raises(SweepError, match=rf"shared storage is not shared: node [\d.]+ \(\w+\) on host "
                                             rf".* cannot read {run.root}/\.storage-probe\.json"):
            check_shared_storage(run, [])
    finally:
        ray.shutdown()
        if node is not None:
            os.killpg(node.pid, 15)  # `ray start --block` stops the processes it started
            node.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
