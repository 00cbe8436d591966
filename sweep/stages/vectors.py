"""vectors -> vectors.safetensors: per prompt, the reference vector `gold/ID` (float32 [layers, hidden]: every
layer's mean output over the gold answer and explanation, after the steered prompt as steering renders it), and
with the random control `random/ID`, a seeded random direction per layer with the gold vector's layer norms."""

from __future__ import annotations

import os
import zlib

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..errors import SweepError
from ..progress import Progress
from ..rundir import RunDir, read_rows
from ..session import Session, fan_out


def vectors(session: Session) -> None:
    cfg, run = session.cfg, session.run
    refs = read_rows(run.table("references"))
    items = [(r["question"], r["reference_text"]) for r in refs]
    with Progress("vectors", len(items), "vectors") as progress:
        means = fan_out(session.replicas, "reference_vectors", items, progress, cfg.prompt.chat_template,
                        cfg.steering.mean == "exclude_sink")
    named = {f"gold/{r['prompt_id']}": m.contiguous() for r, m in zip(refs, means)}
    if "random" in cfg.controls:
        named |= {f"random/{r['prompt_id']}": random_like(m, cfg.seed, r["prompt_id"]) for r, m in zip(refs, means)}
    save_tensors(run.vectors, named)


def random_like(reference: Tensor, seed: int, prompt_id: int) -> Tensor:
    """[layers, hidden]: a seeded Gaussian direction per layer, scaled to that layer's norm in `reference`."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}/random/{prompt_id}".encode()))
    direction = torch.randn(reference.shape, generator=generator, dtype=torch.float32)
    return (direction / direction.norm(dim=-1, keepdim=True) * reference.norm(dim=-1, keepdim=True)).contiguous()


def save_tensors(path, named: dict[str, Tensor]) -> None:  # noqa: ANN001 - a Path
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(named, str(tmp))
    os.replace(tmp, path)


def check_vectors(run: RunDir, names: list[str]) -> None:
    """vectors.safetensors must load and hold one [layers, hidden] tensor per name, before any trial runs."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        loaded = load_file(str(run.vectors))
    except (SafetensorError, OSError, ValueError) as err:
        raise SweepError(f"{run.vectors} is unreadable ({err}); delete it and rerun the vectors stage") from err
    missing = [n for n in names if n not in loaded]
    shapes = {tuple(v.shape) for v in loaded.values()}
    if missing or len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise SweepError(f"{run.vectors} does not match prompts.parquet and the controls (missing {missing[:10]}, "
                         f"shapes {sorted(shapes)[:3]}); delete it and rerun the vectors stage")
