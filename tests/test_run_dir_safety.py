"""A run directory's integrity: atomic writes reach the disk (file and directory fsynced), one driver at a time
holds it (a lease with a heartbeat), and its MLflow parent is found by the directory's random id, not its path."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import psutil
import pytest

from sweep.errors import SweepError
from sweep.lease import Lease
from sweep.rundir import RunDir, write_text_atomic
from sweep.tracking import Tracker


def test_an_atomic_write_fsyncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (synced.append("rename"), real_replace(a, b))[1])
    write_text_atomic(tmp_path / "x.json", "{}")
    assert len(synced) == 3 and synced[1] == "rename"
    assert ".x.json." in synced[0] and synced[2] == str(tmp_path)
    assert (tmp_path / "x.json").read_text() == "{}"


def test_a_second_driver_is_refused_with_the_holder_named(tmp_path):
    path = tmp_path / "driver.lease"
    with Lease(path, heartbeat_s=0.2):
        with pytest.raises(SweepError, match=rf"in use by another driver \(.*@.* pid {os.getpid()}"):
            Lease(path).acquire()
        first = json.loads(path.read_text())["heartbeat"]
        time.sleep(0.6)
        assert json.loads(path.read_text())["heartbeat"] > first  # the heartbeat thread renews it
    assert not path.exists()  # released on exit
    with Lease(path):  # and free for the next driver
        pass


def test_a_stale_lease_expires(tmp_path):
    """A holder on another host whose heartbeat stopped (its node was lost): refused while fresh, taken over
    once older than stale_after_s."""
    path = tmp_path / "driver.lease"
    stale = {"token": "t", "user": "u", "host": "lost-node", "pid": 1, "job_id": "raysubmit_1",
             "heartbeat": time.time()}
    path.write_text(json.dumps(stale))
    with pytest.raises(SweepError, match="u@lost-node pid 1, Ray job raysubmit_1"):
        Lease(path, stale_after_s=30).acquire()
    path.write_text(json.dumps({**stale, "heartbeat": time.time() - 31}))
    with Lease(path, stale_after_s=30) as lease:
        assert json.loads(path.read_text())["token"] == lease.holder.token


def test_a_lease_of_a_dead_process_on_this_host_expires_at_once(tmp_path):
    """A driver killed with SIGKILL and rerun on the same machine waits for nothing."""
    path = tmp_path / "driver.lease"
    for reaped in (True, False):  # gone, or a zombie its parent has not waited for yet
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        if reaped:
            dead.wait()
        else:
            while psutil.Process(dead.pid).status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.05)
        path.write_text(json.dumps({"token": "t", "user": "u", "host": socket.gethostname(), "pid": dead.pid,
                                    "job_id": "", "heartbeat": time.time()}))
        with Lease(path):
            pass
        dead.wait()


def tracker(store, run_dir) -> Tracker:  # noqa: ANN001 - Paths
    return Tracker(f"sqlite:///{store}", "fusion-steering", "abc", run_dir, run_dir / "mlflow_run.json",
                   RunDir(run_dir).run_id())


def test_a_run_directory_made_again_at_the_same_path_gets_a_new_mlflow_parent(tmp_path):
    store, run_dir = tmp_path / "mlflow.db", tmp_path / "run"
    run_dir.mkdir()
    old = tracker(store, run_dir)
    (run_dir / "mlflow_run.json").unlink()  # lost: found again by the directory's id
    assert tracker(store, run_dir).parent_id == old.parent_id
    shutil.rmtree(run_dir)
    run_dir.mkdir()
    assert tracker(store, run_dir).parent_id != old.parent_id
