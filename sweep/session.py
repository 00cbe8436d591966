"""The driver's resources for one command: the Ray connection, the model replicas (steering or judge, one set at
a time on the same reserved resources), the judge, and the MLflow tracker."""

from __future__ import annotations

import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .config import ClusterConfig, ModelConfig, SweepConfig, fingerprint, flatten
from .dispatch import RECENT, Patience
from .errors import SweepError
from .health import STALL_AFTER_S, unschedulable
from .http_judge import http_judge
from .judges import RUBRIC_PROMPT, Judge, exact_judge, load_template, model_judge
from .messages import SteerSettings
from .models import locate, model_config
from .progress import Progress
from .replica import Replica
from .rundir import RunDir
from .tracking import Tracker, default_uri

log = logging.getLogger(__name__)
NAMESPACE = "fusion-steering"  # one sweep per Ray cluster at a time (Tune supports one Tuner per cluster)
BATCH = 8  # prompts per unsteered generation call
TRIAL_MEMORY = 128 * 2**20  # bytes a Tune trial reserves (Ray's logical "memory" resource)


@dataclass
class Pool:
    """A set of replica actors of one model, each with its own placement group reserving its resources: the
    sweep starts with the replicas that fit, the others join as their resources appear, and each keeps its
    resources while it restarts."""

    role: str  # "replica" (the steered model) or "judge"
    actors: list
    groups: list
    on_gpu: bool
    create: Callable[[int], Any]  # a new actor for slot i, in its group

    def live(self) -> list:
        """The replicas whose resources are reserved, in slot order; one gone for good (killed without restart)
        is created again in its slot first."""
        return [self.actors[i] for i in self.live_slots()]

    def live_slots(self) -> list[int]:
        """The slots of `live()`: the tune stage hands out all of `actors` and lets the others join later."""
        placed = [i for i, group in enumerate(self.groups) if is_placed(group)]
        for i in placed:
            try:
                ray.get_actor(f"{self.role}-{i}", namespace=NAMESPACE)
            except ValueError:  # a dead actor's name is free again
                log.warning("%s-%d was gone for good: created again", self.role, i)
                self.actors[i] = self.create(i)
        return placed


def replica_count(requested: int | str, on_gpu: bool, gpus_per_replica: float, nodes: list[dict]) -> int:
    """`auto`: one replica per gpus_per_replica of the cluster's GPUs, or one per node with CPUs on a CPU
    cluster (a replica uses every core of its node). A number is taken as it is."""
    if requested != "auto":
        return int(requested)
    if on_gpu:
        gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes if n["Alive"])
        if gpus == 0:
            raise SweepError("model.device=cuda but the cluster shows no GPUs yet (an autoscaling cluster starts "
                             "GPU workers on demand): set cluster.num_replicas to the number you want")
        return max(1, int(gpus // gpus_per_replica))
    return max(1, sum(1 for n in nodes if n["Alive"] and n["Resources"].get("CPU", 0.0) > 0))


def ray_address(configured: str | None, environ: Mapping[str, str]) -> str:
    """cluster.address, else $RAY_ADDRESS (a `ray job submit` entrypoint gets the cluster's), else a new local
    cluster."""
    return configured or environ.get("RAY_ADDRESS") or "local"


def trial_resources(cluster: ClusterConfig) -> dict[str, float]:
    """What one Tune trial reserves. Trials mostly wait on replica calls, so they ask for no CPU by default
    (cluster.trial_cpus): replicas that reserve every CPU of a node cannot starve the trials that feed them (a
    deadlock). Tune needs a non-empty request: a little memory, which replicas never reserve."""
    return {"cpu": cluster.trial_cpus, "memory": TRIAL_MEMORY}


def is_placed(group: Any) -> bool:
    """Whether a placement group holds its resources now (asked of the GCS; PlacementGroup.wait(0) never is)."""
    return placement_group_table(group)["state"] == "CREATED"


def wait_for_room(groups: list, needed: int, what: str, bundle: dict[str, float], timeout_s: float) -> None:
    """Until `needed` of the placement groups are placed. Says within a minute what is asked and what is free
    if they are not, and gives up after `timeout_s` (removing the groups)."""
    started = time.monotonic()
    warned = False
    while (placed := sum(map(is_placed, groups))) < needed:
        waited = time.monotonic() - started
        if waited >= timeout_s:
            for group in groups:
                remove_placement_group(group)
            raise SweepError(f"after {timeout_s:.0f} s, {unschedulable(what, bundle)}")
        if not warned and waited >= STALL_AFTER_S:
            warned = True
            log.warning("still waiting for room (%d of %d needed placed): %s", placed, needed,
                        unschedulable(what, bundle))
        time.sleep(0.5)


def _create_replica(actor_class: Any, role: str, groups: list, build: Callable[[], Any], i: int) -> Any:
    return actor_class.options(name=f"{role}-{i}", scheduling_strategy=PlacementGroupSchedulingStrategy(
        groups[i], placement_group_bundle_index=0)).remote(build)


def replica_bundle(cpus: float, gpus: float) -> dict[str, float]:
    """A GPU replica reserves its GPU share only: Tune trials need CPU only and may fill a GPU node's CPUs, and
    must never keep a replica that restarts after losing its node off a free GPU."""
    return {"GPU": gpus} if gpus else {"CPU": cpus}


def reserves_gpus(device: str, cluster_gpus: float) -> bool:
    """Replicas reserve GPUs on a cluster that has them. The driver may sit on a CPU-only head node, so this asks
    the cluster, not the driver's own machine."""
    return device == "cuda" or cluster_gpus > 0


def replica_device(device: str, on_gpus: bool) -> str:
    """Where a replica computes: CUDA when it reserved a GPU (and refuses to fall back to its CPU, see
    replica_model.py), unless model.device=cpu says so (as tests that fake GPUs in Ray do)."""
    return "cpu" if device == "cpu" or not on_gpus else "cuda"


def build_replica_model(model_cfg: ModelConfig, location, threads: int, scorer=None):  # noqa: ANN001, ANN201
    """Runs inside the actor (a partial of it is what the driver sends)."""
    from .replica_model import ReplicaModel

    return ReplicaModel(model_cfg, location, threads, scorer)


class Session:
    def __init__(self, cfg: SweepConfig, run: RunDir, verbose: bool = False) -> None:
        self.cfg, self.run, self.verbose = cfg, run, verbose
        self._pool: Pool | None = None
        self._tracker: Tracker | None = None

    @property
    def conf_dir(self) -> Path:
        return Path(self.cfg.conf_dir)

    @property
    def tracking_uri(self) -> str:
        return self.cfg.tracking.uri or default_uri(self.run.mlflow_db)

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self.connect_tracker()
        return self._tracker

    def tracker_args(self) -> tuple:
        """What builds this run's Tracker, here or in another process (MLflow's live writer)."""
        return (self.tracking_uri, self.cfg.tracking.experiment, fingerprint(self.cfg), self.run.root,
                self.run.mlflow_ids, self.run.run_id())

    def connect_tracker(self) -> Tracker:
        """A Tracker that reads the store afresh (after an outage what it holds may have moved on); the session
        keeps it for the end of the command. Raises while the store cannot be reached."""
        self._tracker = None
        tracker = Tracker(*self.tracker_args())
        tracker.log_config(flatten(self.cfg))
        self._tracker = tracker
        return tracker

    def connect(self) -> None:
        if not ray.is_initialized():
            # Without an address (cluster.address, else $RAY_ADDRESS as `ray job submit` sets it), always a fresh
            # local cluster on loopback: Ray would otherwise join whatever cluster /tmp/ray last recorded, and hang
            # if that one has died.
            address = ray_address(self.cfg.cluster.address, os.environ)
            local = {"_node_ip_address": "127.0.0.1"} if address == "local" else {}
            if not self.verbose:  # Ray's notices (token auth, resources) only with -v; import ray set this level
                logging.getLogger("ray").setLevel(logging.ERROR)
            ray.init(address=address, namespace=NAMESPACE, include_dashboard=False,
                     log_to_driver=self.verbose, configure_logging=self.verbose, **local)

    def _start(self, role: str, model_cfg: ModelConfig, scorer: tuple | None = None,
               build: Callable[..., Any] | None = None) -> Pool:
        """Named actors `{role}-{i}` in the `fusion-steering` namespace, so operators (and fault tests) can find
        them. A replica restarts without limit inside its placement group (the group bounds what it holds)."""
        self.connect()
        cluster = self.cfg.cluster
        on_gpus = reserves_gpus(model_cfg.device, ray.cluster_resources().get("GPU", 0.0))
        device = replica_device(model_cfg.device, on_gpus)
        count = replica_count(cluster.num_replicas, on_gpus, cluster.gpus_per_replica, ray.nodes())
        bundle = replica_bundle(cluster.replica_cpus, cluster.gpus_per_replica if on_gpus else 0.0)
        model_cfg = replace(model_cfg, device=device)
        build = build or functools.partial(build_replica_model, model_cfg, locate(model_cfg, self.conf_dir),
                                           cluster.torch_threads, scorer)
        # A bounded number of retries per call: unbounded ones would hang a caller while no capacity is left.
        actor = ray.remote(num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0), max_restarts=-1,
                           max_task_retries=3)(Replica)
        groups = [placement_group([bundle]) for _ in range(count)]
        create = functools.partial(_create_replica, actor, role, groups, build)
        needed = min(count, cluster.min_replicas or count)
        wait_for_room(groups, needed, f"the {role} replicas ({count} x {bundle})", bundle, cluster.call_timeout_s)
        pool = Pool(role, [create(i) for i in range(count)], groups, on_gpus, create)
        ready = pool.live()
        ray.get([a.num_layers.remote() for a in ready])  # surface load errors here, not mid-sweep
        nodes = len({ray.get(a.node_id.remote()) for a in ready})
        gpus = len(ready) * bundle.get("GPU", 0)
        where = f"{gpus:g} GPU{'s' * (gpus != 1)}" if gpus else "CPUs"
        log.info("%s: %d replica%s of %s on %s across %d node%s%s", role, len(ready), "s" * (len(ready) > 1),
                 model_cfg.name, where, nodes, "s" * (nodes > 1),
                 f" ({count - len(ready)} more join as they get resources)" if len(ready) < count else "")
        return pool

    def _use(self, role: str, start: Callable[[], Pool]) -> Pool:
        """The pool for `role`; another role's pool is released first, so a judge on another model never
        needs a second set of GPUs."""
        if self._pool is not None and self._pool.role != role:
            self.release()
        if self._pool is None:
            self._pool = start()
        return self._pool

    def release(self) -> None:
        if self._pool is not None:
            for actor in self._pool.actors:
                ray.kill(actor)
            for group in self._pool.groups:
                remove_placement_group(group)
            self._pool = None

    def pool(self, build: Callable[..., Any] | None = None) -> Pool:
        """The steered model's replicas (and its perplexity scorer if another model scores)."""
        def start() -> Pool:
            scorer = None
            if self.cfg.scoring.perplexity_model != "self":
                scorer_cfg = model_config(self.conf_dir, self.cfg.scoring.perplexity_model)
                scorer = (scorer_cfg, locate(scorer_cfg, self.conf_dir))
            return self._start("replica", self.cfg.model, scorer, build)
        return self._use("replica", start)

    @property
    def patience(self) -> Patience:
        """How long a stage's replica call may take before another replica gets it (on_replicas)."""
        cluster = self.cfg.cluster
        return Patience(cluster.attempt_floor_s, cluster.attempt_factor, cluster.call_timeout_s)

    @property
    def replicas(self) -> list:
        """The steered model's replicas that have their resources now (more join later as theirs appear)."""
        return self.pool().live()

    def judge(self) -> Judge:
        judge_cfg = self.cfg.judge
        if judge_cfg.kind == "exact":
            return exact_judge()
        template = load_template(Path(judge_cfg.template_path)) if judge_cfg.template_path else RUBRIC_PROMPT
        if judge_cfg.kind == "http":
            return http_judge(judge_cfg.base_url, judge_cfg.model, judge_cfg.api_key_env,
                              self.run.root / "judge_cache.sqlite", template, judge_cfg.max_new_tokens,
                              judge_cfg.concurrency, judge_cfg.timeout_s, judge_cfg.retries)
        model_cfg = replace(model_config(self.conf_dir, judge_cfg.model, self.cfg.model.quantization),
                            device=self.cfg.model.device)
        same = judge_cfg.model == self.cfg.model.name
        actors = lambda: (self.replicas if same else self._use("judge", lambda: self._start("judge", model_cfg)).live())  # noqa: E731
        return model_judge(f"local:{judge_cfg.model}", lambda texts, n: fan_out(actors(), "generate", texts, None, n, None, patience=self.patience),
                           template, judge_cfg.max_new_tokens)

    def close(self, ok: bool) -> None:
        try:
            if self._tracker is not None:
                self._tracker.close(ok)
        except Exception as err:  # noqa: BLE001 - an unreachable tracker must not fail a finished command
            log.warning("could not mark the MLflow runs %s: %s", "finished" if ok else "failed", err)
        finally:
            if ray.is_initialized():
                ray.shutdown()


def fan_out(replicas: list, method: str, items: Sequence, progress: Progress | None, *args: Any,
            patience: Patience = Patience()) -> list:
    """Split `items` into batches of BATCH over the replicas; results in order, progress as batches return."""
    batches = [list(items[i:i + BATCH]) for i in range(0, len(items), BATCH)]
    results = on_replicas(replicas, [(method, (batch, *args)) for batch in batches], progress,
                          [len(batch) for batch in batches], patience)
    return [result for batch in results for result in batch]


def on_replicas(replicas: list, calls: Sequence[tuple[str, tuple]], progress: Progress | None = None,
                sizes: Sequence[int] | None = None, patience: Patience = Patience()) -> list:
    """Call i, (actor method, args), on replica i mod n, all sent at once; the results in call order, progress by
    `sizes[i]` (else 1) as calls return. A replica runs its calls one at a time in the order they arrive, so its
    oldest unanswered call is timed from when the one before it answered. A replica whose oldest call misses its
    deadline (frozen, restarting, its node lost) or that is gone (RayActorError) leaves, and its unanswered calls
    go to the replicas left, in turn; the stage fails only when every replica has left. Every replica computes
    a call alike, so which one answers changes nothing."""
    sizes = list(sizes) if sizes is not None else [1] * len(calls)
    queued: dict[int, deque[int]] = {r: deque() for r in range(len(replicas))}  # the live replicas' calls
    pending: dict[Any, tuple[int, int]] = {}  # ref -> (call, replica)
    results: list = [None] * len(calls)
    answered = [False] * len(calls)
    oldest_since = {r: time.monotonic() for r in queued}
    per_item_s: deque[float] = deque(maxlen=RECENT)

    def send(i: int, r: int) -> None:
        method, args = calls[i]
        pending[getattr(replicas[r], method).remote(*args)] = (i, r)
        queued[r].append(i)

    def leave(r: int, why: str) -> None:
        calls_left = [i for i in queued.pop(r) if not answered[i]]
        if not queued:
            raise RuntimeError(f"every replica is gone ({why})")
        log.warning("replica %d left this stage's calls (%s); its %d unanswered calls go to the others", r, why,
                    len(calls_left))
        left = sorted(queued)
        for n, i in enumerate(calls_left):
            send(i, left[n % len(left)])

    for i in range(len(calls)):
        send(i, i % len(replicas))
    while not all(answered):
        now = time.monotonic()
        due = {r: oldest_since[r] + patience.deadline(per_item_s, sizes[q[0]], len(queued) == 1)
               for r, q in queued.items() if q}
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, min(due.values()) - now) if due else None)
        if not ready:
            late = min(due, key=due.__getitem__)
            leave(late, f"no answer in {due[late] - oldest_since[late]:.0f} s")
            continue
        i, r = pending.pop(ready[0])
        try:
            value = ray.get(ready[0])
        except ray.exceptions.RayActorError as err:
            if r in queued:
                leave(r, str(err).splitlines()[0])
            continue
        if r in queued:
            queued[r].remove(i)
            per_item_s.append((time.monotonic() - oldest_since[r]) / max(sizes[i], 1))
            oldest_since[r] = time.monotonic()
        if not answered[i]:  # a call sent twice counts once (its first answer)
            results[i], answered[i] = value, True
            if progress is not None:
                progress.update(sizes[i])
    return results


def num_layers(replicas: list) -> int:
    """The steered model's decoder layers, from whichever replica answers."""
    (layers,) = on_replicas(replicas, [("num_layers", ())])
    return layers


def steer_settings(cfg: SweepConfig, run: RunDir, vectors_file: str) -> SteerSettings:
    return SteerSettings(
        run_root=str(run.root), vectors_file=vectors_file, max_new_tokens=cfg.generation.max_new_tokens,
        chat_template=cfg.prompt.chat_template, exclude_sink=cfg.steering.mean == "exclude_sink",
        cached=cfg.steering.cache, include_prompt=cfg.scoring.include_prompt,
        perplexity_window=cfg.scoring.perplexity_window)
