"""The Ray actor holding one model replica: unsteered generation, reference vectors, and steered trials
gathered from concurrent Tune trials into batches (dynamic batching)."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import ray
import torch
from safetensors.torch import load_file
from torch import Tensor

from . import prompts
from .config import ModelConfig
from .engine import Engine
from .models import Location, decoder_layers, load
from .rundir import RunDir, read_rows
from .scoring import scored_text
from .steering import steer_rows


@dataclass(frozen=True)
class SteerSettings:
    """What a replica needs to run a steered trial from a prompt id and weights alone."""

    run_root: str
    vectors_file: str  # in run_root: the tuned reference vectors, or the question-only ones of `transfer`
    max_new_tokens: int
    chat_template: bool
    exclude_sink: bool
    cached: bool
    include_prompt: bool
    perplexity_window: int
    max_batch: int
    batch_wait_s: float


@dataclass(frozen=True)
class SteeredOutput:
    text: str  # the continuation
    scored_text: str  # what overlap and perplexity see (continuation, or plain prompt + continuation)
    perplexity: float
    seconds: float  # the batch's wall time divided by its size: this trial's share of the replica
    batch_size: int


@dataclass(frozen=True)
class SteerRequest:
    prompt_id: int
    alpha: list[float]  # [layers]
    gamma: list[float]  # [layers]


class Replica:
    """One model copy. Model work runs on a single worker thread, off the actor's event loop, so requests
    keep arriving (and batching) while a forward pass runs. Reference vectors and questions are loaded
    from the run directory once, so trials send only a prompt id and weights."""

    def __init__(self, model_cfg: ModelConfig, location: Location, threads: int,  # 0: every core
                 scorer: tuple[ModelConfig, Location] | None = None) -> None:
        torch.set_num_threads(threads or os.cpu_count() or 1)
        self.engine = Engine(*load(model_cfg, location))
        decoder_layers(self.engine.model, model_cfg.name)  # refuse a model that cannot be steered at start
        self.scorer = Engine(*load(*scorer)) if scorer else self.engine
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._settings: SteerSettings | None = None
        self._vectors: dict[str, Tensor] = {}
        self._questions: dict[int, str] = {}
        self._queue: list[tuple[SteerRequest, asyncio.Future]] = []
        self._arrived: asyncio.Event | None = None
        self._batcher: asyncio.Task | None = None
        self._busy_s = 0.0
        self._batch_sizes: list[int] = []

    async def _on_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def num_layers(self) -> int:
        return self.engine.num_layers

    async def node_id(self) -> str:
        """The Ray node this replica runs on (for operators, and fault tests that remove its node)."""
        return ray.get_runtime_context().get_node_id()

    async def generate(self, texts: list[str], max_new_tokens: int, chat_template: bool | None) -> list[str]:
        """Unsteered greedy continuations; chat_template=None uses the template where the tokenizer has one."""
        if chat_template is None:
            chat_template = self.engine.tokenizer.chat_template is not None
        rendered = [prompts.render(self.engine.tokenizer, t, chat_template) for t in texts]
        return await self._on_worker(self.engine.generate, rendered, max_new_tokens, chat_template)

    async def reference_vectors(self, items: list[tuple[str, int]]) -> list[Tensor]:
        """(reference text, character where the gold answer starts) -> [layers, hidden] per item."""
        return await self._on_worker(lambda: [self.engine.span_means(text, start) for text, start in items])

    def _configure(self, settings: SteerSettings) -> None:
        """Load the run's vectors and questions once (again after an actor restart, which loses them)."""
        run = RunDir(Path(settings.run_root))
        self._vectors = load_file(run.root / settings.vectors_file)
        self._questions = {r["prompt_id"]: r["question"] for r in read_rows(run.table("references"))}
        self._settings = settings

    async def steer(self, settings: SteerSettings, prompt_id: int, alpha: list[float],
                    gamma: list[float]) -> SteeredOutput:
        """One steered trial; it waits for a batch of trials to run together. The (small) settings come
        with every call so that a restarted replica can serve a retried call; the vectors do not."""
        if settings != self._settings:
            if self._batcher is not None and self._queue:
                raise RuntimeError("a replica serves one sweep at a time")
            await self._on_worker(self._configure, settings)
        if str(prompt_id) not in self._vectors:
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
        return {"busy_s": self._busy_s, "batches": len(self._batch_sizes), "trials": sum(self._batch_sizes)}

    async def _batch_loop(self) -> None:
        settings = self._settings
        while True:
            await self._arrived.wait()
            deadline = time.monotonic() + settings.batch_wait_s
            while len(self._queue) < settings.max_batch and time.monotonic() < deadline:
                await asyncio.sleep(min(0.005, settings.batch_wait_s))
            batch, self._queue = self._queue[:settings.max_batch], self._queue[settings.max_batch:]
            if not self._queue:
                self._arrived.clear()
            try:
                outputs = await self._on_worker(self._run_batch, [request for request, _ in batch])
            except Exception as err:  # noqa: BLE001 - the error belongs to the trials that asked
                for _, future in batch:
                    future.set_exception(err)
                continue
            for (_, future), output in zip(batch, outputs):
                future.set_result(output)

    def _run_batch(self, requests: list[SteerRequest]) -> list[SteeredOutput]:
        """Steered generation and perplexity for a batch of trials: [batch] requests -> [batch] outputs."""
        settings = self._settings
        started = time.perf_counter()
        questions = [prompts.steered(self._questions[r.prompt_id]) for r in requests]
        rendered = [prompts.render(self.engine.tokenizer, q, settings.chat_template) for q in questions]
        steer = steer_rows(torch.stack([self._vectors[str(r.prompt_id)] for r in requests]),
                           [(r.alpha, r.gamma) for r in requests], settings.exclude_sink, settings.cached)
        texts = self.engine.generate(rendered, settings.max_new_tokens, settings.chat_template, steer)
        scored = [scored_text(q, t, settings.include_prompt) for q, t in zip(questions, texts)]
        perplexities = self.scorer.perplexity(scored, settings.perplexity_window)
        seconds = time.perf_counter() - started
        self._busy_s += seconds
        self._batch_sizes.append(len(requests))
        share = seconds / len(requests)
        return [SteeredOutput(t, s, p, share, len(requests)) for t, s, p in zip(texts, scored, perplexities)]
