"""The Ray actor holding one model replica: unsteered generation, reference vectors, and steered trials
gathered from concurrent Tune trials into batches (dynamic batching)."""

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

    from .config import ModelConfig
    from .models import Location


class Replica:
    """One model copy. Model work runs on a single worker thread, off the actor's event loop, so requests
    keep arriving (and batching) while a forward pass runs. Reference vectors and questions are loaded
    from the run directory once, so trials send only a prompt id and weights."""

    def __init__(self, model_cfg: ModelConfig, location: Location, threads: int,  # 0: every core
                 scorer: tuple[ModelConfig, Location] | None = None) -> None:
        # Imported here, not at the top: Ray imports an actor's module in every process that receives a
        # handle to it (every Tune trial does), and the model stack there cost ~10 s of CPU and ~500 MB each.
        from .replica_model import ReplicaModel

        self.model = ReplicaModel(model_cfg, location, threads, scorer)
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._queue: list[tuple[SteerRequest, asyncio.Future]] = []
        self._arrived: asyncio.Event | None = None
        self._batcher: asyncio.Task | None = None

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def num_layers(self) -> int:
        return self.model.engine.num_layers

    async def node_id(self) -> str:
        """The Ray node this replica runs on (for operators, and fault tests that remove its node)."""
        return ray.get_runtime_context().get_node_id()

    async def generate(self, texts: list[str], max_new_tokens: int, chat_template: bool | None) -> list[str]:
        """Unsteered greedy continuations; chat_template=None uses the template where the tokenizer has one."""
        return await self._on_worker(self.model.generate, texts, max_new_tokens, chat_template)

    async def reference_vectors(self, items: list[tuple[str, int]]) -> list[Tensor]:
        """(reference text, character where the gold answer starts) -> [layers, hidden] per item."""
        return await self._on_worker(self.model.reference_vectors, items)

    async def steer(self, settings: SteerSettings, prompt_id: int, alpha: list[float],
                    gamma: list[float]) -> SteeredOutput:
        """One steered trial; it waits for a batch of trials to run together. The (small) settings come
        with every call so that a restarted replica can serve a retried call; the vectors do not."""
        if settings != self.model.settings:
            if self._batcher is not None and self._queue:
                raise RuntimeError("a replica serves one sweep at a time")
            await self._on_worker(self.model.configure, settings)
        if not self.model.has_vector(prompt_id):
            raise KeyError(f"no reference vector for prompt {prompt_id}")
        if self._batcher is None:
            self._arrived = asyncio.Event()
            self._batcher = asyncio.get_running_loop().create_task(self._batch_loop())
        future = asyncio.get_running_loop().create_future()
        self._queue.append((SteerRequest(prompt_id, alpha, gamma), future))
        self._arrived.set()
        return await future

    async def stats(self) -> dict[str, float]:
        """Seconds spent in steered batches, and how many batches and trials (for the sweep-overhead figure)."""
        sizes = self.model.batch_sizes
        return {"busy_s": self.model.busy_s, "batches": len(sizes), "trials": sum(sizes)}

    async def _batch_loop(self) -> None:
        settings = self.model.settings
        while True:
            await self._arrived.wait()
            deadline = time.monotonic() + settings.batch_wait_s
            while len(self._queue) < settings.max_batch and time.monotonic() < deadline:
                await asyncio.sleep(min(0.005, settings.batch_wait_s))
            batch, self._queue = self._queue[:settings.max_batch], self._queue[settings.max_batch:]
            if not self._queue:
                self._arrived.clear()
            try:
                outputs = await self._on_worker(self.model.run_batch, [request for request, _ in batch])
            except Exception as err:  # noqa: BLE001 - the error belongs to the trials that asked
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), output in zip(batch, outputs):
                future.set_result(output)
