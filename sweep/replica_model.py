"""The model work of one replica: the loaded model (and perplexity scorer), the run's vectors and questions,
and one batch of steered trials at a time. Runs on the replica's worker thread, never on its event loop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from . import prompts
from .config import ModelConfig
from .cpus import usable_cpus
from .engine import Engine
from .messages import SteeredOutput, SteerRequest, SteerSettings
from .errors import ModelError
from .models import Location, decoder_layers, load
from .rundir import RunDir, read_rows
from .scoring import distinct_2, repetition, scored_text, token_overlap
from .steering import steer_rows


def set_replica_threads(threads: int) -> int:
    """Torch's intra-op threads for this replica: `threads`, or with 0 every CPU this process may use (its
    affinity mask and cgroup quota: a pod's CPU limit, not its node's core count). Returns the count set."""
    torch.set_num_threads(threads or usable_cpus())
    return torch.get_num_threads()


class ReplicaModel:
    def __init__(self, model_cfg: ModelConfig, location: Location, threads: int,  # 0: every usable CPU
                 scorer: tuple[ModelConfig, Location] | None = None) -> None:
        set_replica_threads(threads)
        if model_cfg.device == "cuda" and not torch.cuda.is_available():
            raise ModelError(
                f"this replica reserved a GPU but torch finds no CUDA device (torch {torch.__version__}, built for "
                f"CUDA {torch.version.cuda or 'none'}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}). "
                "Install torch's CUDA build on the GPU nodes and check the driver with nvidia-smi, or run on CPUs "
                "with model.device=cpu")
        self.engine = Engine(*load(model_cfg, location))
        decoder_layers(self.engine.model, model_cfg.name)  # refuse a model that cannot be steered at start
        self.scorer = Engine(*load(*scorer)) if scorer else self.engine
        self.settings: SteerSettings | None = None
        self._vectors: dict[str, Tensor] = {}
        self._questions: dict[int, str] = {}
        self._answers: dict[int, str] = {}
        self._references: dict[int, str] = {}
        self.busy_s = 0.0
        self.batch_sizes: list[int] = []
        self.vector_loads = 0

    @property
    def num_layers(self) -> int:
        return self.engine.num_layers

    def generate(self, texts: list[str], max_new_tokens: int, chat_template: bool | None) -> list[str]:
        """Unsteered greedy continuations; chat_template=None uses the template where the tokenizer has one."""
        if chat_template is None:
            chat_template = self.engine.tokenizer.chat_template is not None
        rendered = [prompts.render(self.engine.tokenizer, t, chat_template) for t in texts]
        return self.engine.generate(rendered, max_new_tokens, chat_template)

    def reference_vectors(self, items: list[tuple[str, str | None]], chat_template: bool,
                          exclude_sink: bool) -> list[Tensor]:
        """(question, answer text or None) -> [layers, hidden] per item, over the layout of prompts.vector_span."""
        out = []
        for question, answer in items:
            text, start = prompts.vector_span(self.engine.tokenizer, question, answer, chat_template)
            out.append(self.engine.span_means(text, start, chat_template, exclude_sink and answer is None))
        return out

    def _configure(self, settings: SteerSettings) -> None:
        """Load the run's vectors, questions and gold answers once per run (again after an actor restart)."""
        run = RunDir(Path(settings.run_root))
        self._vectors = load_file(run.root / settings.vectors_file)
        references = read_rows(run.table("references"))
        self._questions = {r["prompt_id"]: r["question"] for r in references}
        self._answers = {r["prompt_id"]: r["answer"] for r in references}
        self._references = {r["prompt_id"]: r["reference_text"] for r in references}
        self.settings = settings
        self.vector_loads += 1

    def steer(self, settings: SteerSettings, requests: list[SteerRequest]) -> list[SteeredOutput]:
        """Steered generation and scores for one batch of trials, exactly as given: [batch] -> [batch]."""
        if settings != self.settings:
            self._configure(settings)
        missing = sorted({r.vector for r in requests} - set(self._vectors))
        if missing:
            raise KeyError(f"no steering vector {', '.join(missing[:5])} in {settings.vectors_file}")
        started = time.perf_counter()
        # Every arm is scored on the steered prompt: in_context's reference text would give its overlap away.
        questions = [prompts.steered(self._questions[r.prompt_id]) for r in requests]
        shown = [prompts.in_context(self._questions[r.prompt_id], self._references[r.prompt_id]) if r.in_context
                 else q for r, q in zip(requests, questions)]
        rendered = [prompts.render(self.engine.tokenizer, q, settings.chat_template) for q in shown]
        steer = steer_rows(torch.stack([self._vectors[r.vector] for r in requests]),
                           [(r.alpha, r.gamma) for r in requests], settings.exclude_sink, settings.cached)
        texts = self.engine.generate(rendered, settings.max_new_tokens, settings.chat_template, steer,
                                     sampling=[r.sampling for r in requests])
        scored = [scored_text(q, t, settings.include_prompt) for q, t in zip(questions, texts)]
        perplexities = self.scorer.perplexity(scored, settings.perplexity_window)
        overlaps = [token_overlap(self._answers[r.prompt_id], s) for r, s in zip(requests, scored)]
        seconds = time.perf_counter() - started
        self.busy_s += seconds
        self.batch_sizes.append(len(requests))
        share = seconds / len(requests)
        return [SteeredOutput(t, p, o, repetition(t), distinct_2(t), share)
                for t, p, o in zip(texts, perplexities, overlaps)]
