"""What steering and finished rows cost the engine: `fusion-steering bench` (and `doctor`) figures.

steer_overhead: the same engine, batch and tokens, steered (every row its own vector and weights) vs unsteered;
compaction: the share of computed token positions that are real on the demo's workload, and the time with
finished rows left in the batch vs compacted out of it."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from . import prompts
from .engine import Engine
from .steering import Steer, steer_rows


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def steer_overhead(engine: Engine, texts: list[str], steer: Steer, new_tokens: int, repeats: int) -> dict[str, Any]:
    """One batch of `texts`, every row generating exactly `new_tokens` tokens, unsteered and steered in turn
    `repeats` times (alternating, so a change in the machine's load falls on both). steer_overhead =
    1 - steered tokens/s / unsteered tokens/s, the median over the adjacent pairs; tokens/s are medians too.
    Faithful steering is compared with unsteered generation that also recomputes the whole sequence."""
    unsteered, steered = [], []
    for _ in range(repeats):
        unsteered.append(_seconds(lambda: engine.generate(texts, new_tokens, stop_at_eos=False,
                                                          use_cache=steer.cached), engine.device))
        steered.append(_seconds(lambda: engine.generate(texts, new_tokens, steer=steer, stop_at_eos=False),
                                engine.device))
    tokens = len(texts) * new_tokens
    return {"batch": len(texts), "mode": "cached" if steer.cached else "faithful", "new_tokens": new_tokens,
            "repeats": repeats,
            "unsteered_tokens_per_s": tokens / statistics.median(unsteered),
            "steered_tokens_per_s": tokens / statistics.median(steered),
            "steer_overhead": statistics.median(1 - u / s for u, s in zip(unsteered, steered)),
            "unsteered_s": unsteered, "steered_s": steered}


def overhead_table(engine: Engine, texts: list[str], steer: Steer, batch_sizes: list[int], faithful_rows: int,
                   cached_tokens: int, faithful_tokens: int, repeats: int) -> list[dict[str, Any]]:
    """steer_overhead at each batch size (the first `batch` rows of texts and steer), cached, and faithful at
    the sizes up to `faithful_rows` (its cost is quadratic in length: the bench's --faithful-trials cap)."""
    rows = []
    faithful_sizes = sorted({min(b, faithful_rows) for b in batch_sizes})
    for cached, tokens, sizes in ((True, cached_tokens, batch_sizes), (False, faithful_tokens, faithful_sizes)):
        for batch in sizes:
            part = Steer(steer.vectors[:batch], steer.alpha[:batch], steer.gamma[:batch], steer.exclude_sink, cached)
            rows.append(steer_overhead(engine, texts[:batch], part, tokens, repeats))
    return rows


def demo_workload(engine: Engine, questions: list[tuple[str, str]], rows: int, seed: int) -> tuple[list[str], Steer]:
    """The demo's generation (conf/demo.yaml: chat template, the sink left out, cached mode): `rows` trials
    cycling over `questions`, each with its gold reference vectors and seeded random weights."""
    chat = engine.tokenizer.chat_template is not None
    vectors = [engine.span_means(*prompts.vector_span(engine.tokenizer, q, a, chat), templated=chat)
               for q, a in questions]
    rng = random.Random(seed)
    weights = []
    for _ in range(rows):
        a, g = rng.uniform(0.01, 1.0), rng.uniform(0.01, 1.0)
        weights.append(([a] * engine.num_layers, [g] * engine.num_layers))
    texts = [prompts.render(engine.tokenizer, prompts.steered(questions[i % len(questions)][0]), chat)
             for i in range(rows)]
    steer = steer_rows(torch.stack([vectors[i % len(questions)] for i in range(rows)]), weights,
                       exclude_sink=True, cached=True)
    return texts, steer


def compaction(engine: Engine, texts: list[str], steer: Steer, new_tokens: int, thresholds: list[float],
               repeats: int) -> dict[str, Any]:
    """One batch generated to EOS with finished rows kept as padding (compact_below=0) and compacted out at each
    threshold, in turn `repeats` times: the share of computed positions that are real, the median seconds,
    the speed-up over keeping them, and whether every threshold gave the same token ids as keeping them."""
    saved = engine.compact_below
    templated = engine.tokenizer.chat_template is not None  # as demo_workload rendered the texts
    seconds: dict[float, list[float]] = {t: [] for t in [0.0, *thresholds]}
    shares: dict[float, float] = {}
    outputs: dict[float, list[str]] = {}
    try:
        for _ in range(repeats):
            for threshold in seconds:
                engine.compact_below = threshold
                engine.positions_computed = engine.positions_real = 0
                seconds[threshold].append(_seconds(
                    lambda: outputs.__setitem__(threshold, engine.generate(texts, new_tokens, templated, steer)),
                    engine.device))
                shares[threshold] = engine.positions_real / engine.positions_computed
    finally:
        engine.compact_below = saved
    kept = statistics.median(seconds[0.0])
    return {"rows": len(texts), "new_tokens": new_tokens, "repeats": repeats, "real_share": shares[0.0],
            "kept_s": kept,
            "compacted": [{"compact_below": t, "real_share": shares[t], "seconds": statistics.median(seconds[t]),
                           "speedup": kept / statistics.median(seconds[t]), "same_texts": outputs[t] == outputs[0.0]}
                          for t in thresholds]}
