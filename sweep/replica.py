"""The Ray actor holding one model replica: unsteered generation, reference vectors, and batches of steered
trials, each call one batch exactly as the caller composed it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import ray

from .messages import SteeredOutput, SteerRequest, SteerSettings

if TYPE_CHECKING:
    from torch import Tensor


class Replica:
    """One model copy, built in the actor by `build()` (a `ReplicaModel`, or the orchestration benchmark's
    zero-cost stand-in). Model work runs on one worker thread, in the order calls arrive, off the actor's
    event loop, so the next batch is already queued while one runs and light calls answer at once.

    Batches are never merged or split here: the caller (a shard of studies, the transfer stage) decides their
    composition, so a run's results do not depend on timing, even where kernels are not batch-invariant."""

    def __init__(self, build: Callable[[], Any]) -> None:
        # `build` refers to the model stack, which is imported here, in the actor, only: Ray imports an actor's
        # module in every process that receives a handle to it (every Tune trial does).
        self.model = build()
        self._worker = ThreadPoolExecutor(max_workers=1)

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def num_layers(self) -> int:
        return self.model.num_layers

    async def node_id(self) -> str:
        """The Ray node this replica runs on (for operators, and fault tests that remove its node)."""
        return ray.get_runtime_context().get_node_id()

    async def generate(self, texts: list[str], max_new_tokens: int, chat_template: bool | None) -> list[str]:
        """Unsteered greedy continuations; chat_template=None uses the template where the tokenizer has one."""
        return await self._on_worker(self.model.generate, texts, max_new_tokens, chat_template)

    async def reference_vectors(self, items: list[tuple[str, str | None]], chat_template: bool,
                                exclude_sink: bool) -> list[Tensor]:
        """(question, answer text or None) -> [layers, hidden] per item (prompts.vector_span's layout)."""
        return await self._on_worker(self.model.reference_vectors, items, chat_template, exclude_sink)

    async def steer(self, settings: SteerSettings, requests: list[SteerRequest]) -> list[SteeredOutput]:
        """One batch of steered trials. The (small) settings come with every call so that a restarted replica
        can serve a retried call; it loads the run's vectors on its worker thread, once per run."""
        return await self._on_worker(self.model.steer, settings, requests)

    async def stats(self) -> dict[str, float]:
        """Seconds spent in steered batches, how many batches and trials (for the sweep-overhead figure), and
        how often the run's vectors were loaded, and the process's CPU seconds (the orchestration bench's cost
        of a replica call)."""
        sizes = self.model.batch_sizes
        return {"busy_s": self.model.busy_s, "batches": len(sizes), "trials": sum(sizes),
                "vector_loads": getattr(self.model, "vector_loads", 0), "process_cpu_s": time.process_time()}

    async def read_probe(self, path: str) -> tuple[str, str | None]:
        """Whether this replica's node sees the run directory (health.check_shared_storage)."""
        from .health import read_probe

        return read_probe(path)
