"""One driver per run directory: an exclusive lease file in it, kept fresh by a heartbeat thread.

A second driver on the same directory (a resubmitted `ray job submit`, whose Ctrl-C did not stop the first job;
a second cluster on the same shared storage) would run the same studies and write duplicate MLflow children.
It refuses instead, naming the holder. A lease whose heartbeat is older than `stale_after_s` has expired (its
driver died with its node), and so has one held by a process of this host that no longer exists (a killed
driver rerun at once on the same machine needs no wait).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SweepError
from .rundir import write_text_atomic

log = logging.getLogger(__name__)
HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0  # six missed heartbeats; also absorbs modest clock skew between hosts on shared storage


@dataclass(frozen=True)
class Holder:
    token: str  # random, per lease: which driver wrote the file
    user: str
    host: str
    pid: int
    job_id: str  # Ray's job submission id, when the driver runs as a Ray job
    heartbeat: float  # time.time() of the last heartbeat

    def describe(self) -> str:
        job = f", Ray job {self.job_id}" if self.job_id else ""
        return f"{self.user}@{self.host} pid {self.pid}{job}"


def _read(path: Path) -> Holder | None:
    try:
        return Holder(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):  # a torn or foreign file: treat it as expired, the heartbeat age decides
        return Holder("?", "?", "?", -1, "", 0.0)


def _process_gone(holder: Holder) -> bool:
    if holder.host != socket.gethostname() or holder.pid <= 0:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # a killed driver its parent has not reaped yet is gone too
        return Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Lease:
    """`with Lease(path):` holds the directory for the block; raises SweepError if another driver holds it."""

    def __init__(self, path: Path, heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S) -> None:
        self.path, self.heartbeat_s, self.stale_after_s = path, heartbeat_s, stale_after_s
        self.holder = Holder(uuid.uuid4().hex, getpass.getuser(), socket.gethostname(), os.getpid(),
                             os.environ.get("RAY_JOB_SUBMISSION_ID", ""), time.time())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-dir-lease", daemon=True)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        while not self._create():
            current = _read(self.path)
            if current is None:
                continue  # released between our attempt and the read
            age = time.time() - current.heartbeat
            if age <= self.stale_after_s and not _process_gone(current):
                raise SweepError(
                    f"{self.path.parent} is in use by another driver ({current.describe()}, last heartbeat "
                    f"{age:.0f} s ago): stop it first (`ray job stop` for a job), or wait {self.stale_after_s:.0f} s "
                    f"after it died for its lease ({self.path.name}) to expire")
            log.warning("taking over the expired lease of %s (last heartbeat %.0f s ago)", current.describe(), age)
            self._expire(current)
        self._thread.start()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(asdict(self.holder)))
            file.flush()
            os.fsync(file.fileno())
        return True

    def _expire(self, stale: Holder) -> None:
        """Move the stale file aside; of two drivers expiring it at once, one rename wins, the other finds it gone,
        and both retry the exclusive create, which one wins. A fresh lease moved aside by mistake (made between our
        read and our rename) is linked back, never over another."""
        aside = self.path.with_name(f".{self.path.name}.{self.holder.token}.expired")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        taken = _read(aside)
        if taken is not None and taken.token != stale.token:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            current = _read(self.path)
            if current is None or current.token != self.holder.token:
                log.error("the lease on %s was taken by %s: this driver stopped renewing it", self.path.parent,
                          current.describe() if current else "nobody")
                return
            write_text_atomic(self.path, json.dumps({**asdict(self.holder), "heartbeat": time.time()}))

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        current = _read(self.path)
        if current is not None and current.token == self.holder.token:
            self.path.unlink(missing_ok=True)
