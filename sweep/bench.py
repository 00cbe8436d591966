"""`fusion-steering bench`: the paper's loop vs the engine (faithful and cached) on the same prompts and
weights, in one process; and the sweep's orchestration overhead (Ray, Tune, Optuna, MLflow) over the engine."""

from __future__ import annotations

import random
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import prompts
from .config import SweepConfig
from .engine import Engine
from .models import compute_dtype, load, locate
from .overhead import compaction, demo_workload, overhead_table
from .reference import paper_loop
from .steering import steer_rows

# Short factual questions and answers in SimpleQA's style, written for the benchmark (no data file needed).
QUESTIONS = [
    ("Who composed the opera 'The Bartered Bride'?", "Bedřich Smetana"),
    ("In which year did the Tay Bridge disaster happen?", "1879"),
    ("What is the chemical symbol of tungsten?", "W"),
    ("Which city hosted the 1908 Summer Olympics?", "London"),
    ("Who painted 'The Hay Wain'?", "John Constable"),
    ("What is the capital of Burkina Faso?", "Ouagadougou"),
    ("Which river flows through Kraków?", "Vistula"),
    ("Who wrote the novel 'Kristin Lavransdatter'?", "Sigrid Undset"),
]


@dataclass(frozen=True)
class Trial:
    prompt: str
    vectors: torch.Tensor  # [layers, hidden]
    alpha: list[float]  # [layers]
    gamma: list[float]  # [layers]


def make_trials(engine: Engine, count: int, seed: int) -> list[Trial]:
    """`count` trials cycling over the questions, with real reference vectors and seeded random weights."""
    rng = random.Random(seed)
    vectors = []
    for question, answer in QUESTIONS:
        vectors.append(engine.span_means(*prompts.vector_span(engine.tokenizer, question, answer, False)))
    trials = []
    for i in range(count):
        question = QUESTIONS[i % len(QUESTIONS)][0]
        a, g = rng.uniform(0.01, 1.0), rng.uniform(0.01, 1.0)
        trials.append(Trial(prompts.steered(question), vectors[i % len(QUESTIONS)],
                            [a] * engine.num_layers, [g] * engine.num_layers))
    return trials


def matmul_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Best of several large matmuls, in FLOP/s: the ceiling the model FLOP utilisation is measured against."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        started = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_token(engine: Engine) -> float:
    """2 FLOPs per weight used for one token: the decoder layers and the LM head (embedding lookups are free).
    Attention over the context is left out: at these lengths it is a few percent."""
    layers = sum(p.numel() for p in engine.layers.parameters())
    head = engine.model.get_output_embeddings().weight.numel()
    return 2.0 * (layers + head)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's high-water mark


def _timed(fn, device: torch.device) -> float:  # noqa: ANN001 - a thunk
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def time_paper_loop(engine: Engine, trials: list[Trial], new_tokens: int) -> dict[str, float]:
    seconds = _timed(lambda: [paper_loop(engine, t.prompt, t.vectors, t.alpha, t.gamma, new_tokens,
                                         force_length=True) for t in trials], engine.device)
    return _rates(len(trials), new_tokens, seconds, engine.device)


def time_engine(engine: Engine, trials: list[Trial], new_tokens: int, batch: int, cached: bool) -> dict[str, float]:
    def run() -> None:
        for i in range(0, len(trials), batch):
            chunk = trials[i:i + batch]
            steer = steer_rows(torch.stack([t.vectors for t in chunk]), [(t.alpha, t.gamma) for t in chunk],
                               exclude_sink=False, cached=cached)
            engine.generate([t.prompt for t in chunk], new_tokens, steer=steer, stop_at_eos=False)
    return {**_rates(len(trials), new_tokens, _timed(run, engine.device), engine.device), "batch": batch}


def batch_agreement(engine: Engine, trials: list[Trial], new_tokens: int) -> float:
    """Share of trials whose faithful greedy text is the same batched together as run alone. 1.0 for
    unquantized weights; bitsandbytes kernels are not batch-invariant, so 8-bit and 4-bit runs fall below."""
    def steer(chunk: list[Trial]):  # noqa: ANN202 - a Steer
        return steer_rows(torch.stack([t.vectors for t in chunk]), [(t.alpha, t.gamma) for t in chunk],
                          exclude_sink=True, cached=False)
    together = engine.generate([t.prompt for t in trials], new_tokens, steer=steer(trials))
    alone = [engine.generate([t.prompt], new_tokens, steer=steer([t]))[0] for t in trials]
    return sum(a == b for a, b in zip(together, alone)) / len(trials)


def _rates(trials: int, new_tokens: int, seconds: float, device: torch.device) -> dict[str, float]:
    return {"trials_per_s": trials / seconds, "tokens_per_s": trials * new_tokens / seconds, "seconds": seconds,
            "peak_memory_mb": peak_memory_mb(device)}


def sweep_overhead(cfg: SweepConfig, prompts_count: int) -> dict[str, float]:
    """The tune stage on a temporary run directory of `prompts_count` prompts (methods only, no controls) vs the
    time its replicas spent in the engine. Overhead = (stage wall time - engine time) / engine time."""
    import ray

    from .orchestration import write_synthetic_run
    from .rundir import RunDir
    from .session import Session
    from .stages.tune import tune_stage
    from .stages.vectors import save_tensors

    cfg.controls = []
    root = Path(tempfile.mkdtemp(prefix="fusion-bench-"))
    try:
        run = RunDir(root)
        run.prepare(cfg)
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(prompts_count)]
        write_synthetic_run(run, questions)
        session = Session(cfg, run)
        try:
            replicas = session.replicas
            vectors = ray.get(replicas[0].reference_vectors.remote(questions, cfg.prompt.chat_template, False))
            save_tensors(run.vectors, {f"gold/{i}": v for i, v in enumerate(vectors)})
            started = time.perf_counter()
            tune_stage(session)
            wall = time.perf_counter() - started
            stats = [ray.get(r.stats.remote()) for r in replicas]
        finally:
            session.close(True)
        engine_s = sum(s["busy_s"] for s in stats)
        batches = sum(s["batches"] for s in stats)
        return {"tune_stage_s": wall, "engine_s": engine_s, "trials": sum(s["trials"] for s in stats),
                "mean_batch": sum(s["trials"] for s in stats) / max(batches, 1),
                "sweep_overhead": (wall - engine_s) / engine_s}
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class EngineCosts:
    """Sizes of the steer-overhead table and the compaction run (sweep/overhead.py); empty / 0 skips each."""

    overhead_batch_sizes: list[int]
    cached_tokens: int
    faithful_tokens: int
    repeats: int
    compaction_rows: int
    compaction_tokens: int
    compact_thresholds: list[float]


def engine_costs(engine: Engine, costs: EngineCosts, faithful_rows: int, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if costs.overhead_batch_sizes:
        work = make_trials(engine, max(costs.overhead_batch_sizes), seed)
        steer = steer_rows(torch.stack([t.vectors for t in work]), [(t.alpha, t.gamma) for t in work],
                           exclude_sink=False, cached=True)
        result["steer_overhead"] = overhead_table(
            engine, [t.prompt for t in work], steer, costs.overhead_batch_sizes, faithful_rows, costs.cached_tokens,
            costs.faithful_tokens, costs.repeats)
    if costs.compaction_rows:
        texts, steer = demo_workload(engine, QUESTIONS, costs.compaction_rows, seed)
        result["compaction"] = compaction(engine, texts, steer, costs.compaction_tokens, costs.compact_thresholds,
                                          costs.repeats)
    return result


def run_bench(cfg: SweepConfig, trials: int, paper_trials: int, faithful_trials: int, batch_sizes: list[int],
              new_tokens: int, sweep_studies: int, costs: EngineCosts) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    engine = Engine(*load(cfg.model, locate(cfg.model, Path(cfg.conf_dir))))
    work = make_trials(engine, trials, cfg.seed)
    dtype = compute_dtype(cfg.model)
    peak = matmul_peak_flops(engine.device, dtype)
    paper = time_paper_loop(engine, work[:paper_trials], new_tokens)
    faithful_sizes = sorted({min(b, faithful_trials) for b in batch_sizes})
    faithful = [time_engine(engine, work[:faithful_trials], new_tokens, b, cached=False) for b in faithful_sizes]
    cached = [time_engine(engine, work, new_tokens, b, cached=True) for b in batch_sizes]
    agreement = batch_agreement(engine, work[:8], min(new_tokens, 32))
    best_faithful = max(faithful, key=lambda r: r["trials_per_s"])
    best_cached = max(cached, key=lambda r: r["trials_per_s"])
    result: dict[str, Any] = {
        "model": cfg.model.name, "quantization": cfg.model.quantization, "device": str(engine.device),
        "dtype": str(dtype).removeprefix("torch."),
        "device_name": torch.cuda.get_device_name() if engine.device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "new_tokens": new_tokens, "trials": trials,
        "paper_trials": paper_trials, "faithful_trials": faithful_trials, "matmul_peak_gflops": peak / 1e9,
        "paper_loop": paper, "faithful": best_faithful, "cached": best_cached,
        "faithful_by_batch": faithful, "cached_by_batch": cached,
        "speedup_faithful": best_faithful["trials_per_s"] / paper["trials_per_s"],
        "speedup_cached": best_cached["trials_per_s"] / paper["trials_per_s"],
        "mfu_cached": best_cached["tokens_per_s"] * flops_per_token(engine) / peak,
        "batch_agreement": agreement,
        **engine_costs(engine, costs, faithful_trials, cfg.seed),
    }
    if sweep_studies:
        del engine
        result["sweep"] = sweep_overhead(cfg, sweep_studies)
        result["sweep_overhead"] = result["sweep"]["sweep_overhead"]
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"{result['model']} ({result['quantization']}, {result['dtype']}) on {result['device_name']}, "
             f"{result['threads']} threads, "
             f"{result['new_tokens']} new tokens; matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s"]
    for name in ("paper_loop", "faithful", "cached"):
        r = result[name]
        batch = f" (batch {r['batch']})" if "batch" in r else ""
        lines.append(f"  {name:<10} {r['trials_per_s']:8.3f} trials/s {r['tokens_per_s']:9.1f} tokens/s"
                     f"  peak memory {r['peak_memory_mb']:.0f} MB{batch}")
    lines.append(f"  speedup faithful {result['speedup_faithful']:.1f}x, cached {result['speedup_cached']:.1f}x; "
                 f"cached MFU {result['mfu_cached']:.1%}; batched = alone for {result['batch_agreement']:.0%} of trials")
    lines += cost_lines(result)
    if "sweep" in result:
        s = result["sweep"]
        lines.append(f"  sweep: tune stage {s['tune_stage_s']:.1f} s vs engine {s['engine_s']:.1f} s for "
                     f"{s['trials']:.0f} trials (mean batch {s['mean_batch']:.1f}): overhead {s['sweep_overhead']:.0%}")
    return lines


def cost_lines(result: dict[str, Any]) -> list[str]:
    """The steer-overhead table and the compaction figures, where measured."""
    lines = [f"  steer overhead, {r['mode']:<8} batch {r['batch']:>3}: {r['steered_tokens_per_s']:8.1f} steered vs "
             f"{r['unsteered_tokens_per_s']:8.1f} unsteered tokens/s ({r['new_tokens']} tokens, median of "
             f"{r['repeats']}): steer_overhead {r['steer_overhead']:+.3f}" for r in result.get("steer_overhead", [])]
    if "compaction" in result:
        c = result["compaction"]
        lines.append(f"  finished rows: {c['real_share']:.0%} of computed positions real ({c['rows']} demo rows, "
                     f"{c['new_tokens']} tokens), {c['kept_s']:.2f} s kept in the batch")
        lines += [f"    compacted below {r['compact_below']:.2f} live: {r['real_share']:.0%} real, "
                  f"{r['seconds']:.2f} s, {r['speedup']:.2f}x, same texts: {r['same_texts']}" for r in c["compacted"]]
    return lines
