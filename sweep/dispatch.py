"""Which replica runs a shard's next batch: a live one with the least work queued, never a fixed index.

One small `Dispatcher` actor per tune stage keeps, for every replica, the batches sent to it and not yet
answered, and whether it is out of the pool. A batch that has not answered within its per-attempt deadline
(`cluster.attempt_factor` x the median seconds per trial of recent batches x the batch's size, at least
`cluster.attempt_floor_s`) is cancelled and sent to another replica; the one that missed it leaves the pool
for a back-off that doubles with each miss, then rejoins (a replica that restarted, or was only slow, comes
back by answering). A replica that is gone for good (RayActorError) leaves the same way. A replica whose
resources were not free when the stage began (`cluster.min_replicas`) joins as soon as its placement group is
placed and it has loaded its model. Every replica computes a batch alike, so which one answers changes nothing
in the results. Pure Python and Ray.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.util import placement_group_table
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

BACKOFF_S = (5.0, 600.0)  # first and longest time out of the pool after a miss
RECENT = 256  # answered calls whose seconds per item set the deadline
JOIN_CHECK_S = 2.0  # how often the replicas still waiting for resources are looked at (a GCS call each)


@dataclass(frozen=True)
class Patience:
    """How long a replica call may take before it goes to another replica: `factor` x the median seconds per
    item of recent answers x its items, at least `floor_s` (cluster.attempt_floor_s / attempt_factor). The last
    replica left gets `last_s` (cluster.call_timeout_s): with nowhere else to go, a slow answer beats none. The
    rule of the tune stage's dispatch and of every other stage's calls (session.on_replicas)."""

    floor_s: float = 300.0
    factor: float = 4.0
    last_s: float = 1800.0

    def deadline(self, per_item_s: Sequence[float], size: int, last: bool = False) -> float:
        expected = self.factor * statistics.median(per_item_s) * size if per_item_s else 0.0
        return max(self.floor_s, expected, self.last_s if last else 0.0)


class Dispatcher:
    """The pool's bookkeeping; every method is quick, so one actor serves every shard. Slot i is replica i of
    the pool; only the slots in `serving` are handed out."""

    def __init__(self, names: list[str], groups: list, serving: list[int], patience: Patience) -> None:
        # Replicas by name, not handle: handles among an actor's constructor arguments could be gone when it
        # restarts (ray-project/ray#53727).
        self.names, self.groups = names, groups
        self.serving = set(serving)
        self.loading: dict[int, Any] = {}  # slot -> its model-loaded call, once its group is placed
        self.checked = 0.0
        self.queued = [0] * len(names)
        self.out_until = [0.0] * len(names)
        self.misses = [0] * len(names)
        self.patience = patience
        self.per_trial_s: deque[float] = deque(maxlen=RECENT)

    def acquire(self, exclude: list[int], size: int) -> tuple[int, float] | None:
        """A replica for a batch of `size` and the attempt's deadline; None when every serving replica is
        excluded. Replicas out of the pool are used only when no other is left (the soonest back first); the last
        candidate gets the patience's `last_s`."""
        self._admit_joiners()
        candidates = [i for i in sorted(self.serving) if i not in exclude]
        if not candidates:
            return None
        now = time.monotonic()
        live = [i for i in candidates if self.out_until[i] <= now]
        chosen = min(live, key=lambda i: (self.queued[i], i)) if live else min(candidates, key=self.out_until.__getitem__)
        self.queued[chosen] += 1
        last = len(candidates) == 1
        return chosen, min(self.patience.deadline(self.per_trial_s, size, last), self.patience.last_s)

    def _admit_joiners(self) -> None:
        """Slots whose group got placed since the stage began serve once their model answers (a call sent to a
        replica still loading would spend its deadline on the load)."""
        now = time.monotonic()
        if now - self.checked < JOIN_CHECK_S or len(self.serving) == len(self.names):
            return
        self.checked = now
        for slot in range(len(self.names)):
            if slot in self.serving:
                continue
            if slot not in self.loading:
                if placement_group_table(self.groups[slot])["state"] == "CREATED":
                    try:
                        self.loading[slot] = ray.get_actor(self.names[slot]).num_layers.remote()
                    except ValueError:  # gone for good: the driver creates it again before the next stage
                        continue
            elif ray.wait([self.loading[slot]], timeout=0)[0]:
                del self.loading[slot]  # an error (it died loading) shows as misses once it serves
                self.serving.add(slot)

    def release(self, replica: int, seconds: float | None, size: int) -> None:
        """A batch's end: answered in `seconds`, or missed (None: deadline passed, or the replica is gone)."""
        self.queued[replica] = max(0, self.queued[replica] - 1)  # a restarted dispatcher counts from zero
        if seconds is None:
            self.misses[replica] += 1
            backoff = min(BACKOFF_S[0] * 2 ** (self.misses[replica] - 1), BACKOFF_S[1])
            self.out_until[replica] = time.monotonic() + backoff
        else:
            self.misses[replica], self.out_until[replica] = 0, 0.0
            self.per_trial_s.append(seconds / max(size, 1))

    def state(self) -> dict[str, list]:
        """For operators and tests: work queued per replica and which are out of the pool now."""
        now = time.monotonic()
        return {"queued": list(self.queued), "out": [until > now for until in self.out_until],
                "serving": sorted(self.serving)}


def start_dispatcher(names: list[str], groups: list, serving: list[int], patience: Patience) -> Any:
    """Pinned to the driver's node, reserving nothing: it only counts. Anywhere else, losing that node would
    take it away mid-stage (calls to it retry while it restarts, but every shard would wait on it)."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, scheduling_strategy=here)(
        Dispatcher).remote(names, groups, serving, patience)


def call_replicas(dispatcher: Any, replicas: list, settings: Any, requests: list) -> list:
    """`replicas[i].steer(settings, requests)` on the replica the dispatcher picks, re-sent elsewhere when an
    attempt misses its deadline or the replica is gone; every replica tried once at most. The last one gets
    cluster.call_timeout_s: with nowhere else to go, a slow answer beats none (so one replica never misses)."""
    tried: list[int] = []
    errors = []
    while True:
        picked = ray.get(dispatcher.acquire.remote(tried, len(requests)))
        if picked is None:
            raise RuntimeError(f"no replica answered this batch ({'; '.join(errors)})")
        index, deadline = picked
        tried.append(index)
        started = time.monotonic()
        ref = replicas[index].steer.remote(settings, requests)
        try:
            ready, _ = ray.wait([ref], timeout=deadline)
            if ready:
                outputs = ray.get(ref)
                dispatcher.release.remote(index, time.monotonic() - started, len(requests))
                return outputs
            ray.cancel(ref)
            errors.append(f"replica {index}: no answer in {deadline:.0f} s")
        except ray.exceptions.RayActorError as err:
            errors.append(f"replica {index}: {str(err).splitlines()[0]}")
        dispatcher.release.remote(index, None, len(requests))
