"""vectors -> vectors.safetensors, shift_norms.parquet: per prompt, the reference vector `gold/ID` (float32
[layers, hidden]: every layer's mean output over the gold answer and explanation, after the steered prompt as
steering renders it), and with the random control `random/ID`, matched to it on what the hook injects.

The hook adds strength * (v - mu), with mu the layer's mean over the steered row. `mu_q` is that mean on the
prompt itself: each layer's mean output over the steered prompt's tokens in an unsteered pass, under the run's
sink rule (steering.mean=exclude_sink leaves the first token out) - the question-only vector, and exactly the
hook's mu at its first pass, before any layer is steered and any token generated. Per layer,
random = mu_q + r * ||gold - mu_q|| with r a seeded unit direction, so ||random - mu_q|| = ||gold - mu_q||: a
method and its random control inject shifts of the same size at the same weights and differ in direction only.
shift_norms.parquet records, per arm that carries a vector, the mean over each segment's layers of
||v - mu_q||, so a report can show the arms are matched.
"""

from __future__ import annotations

import os
import zlib

import torch
from safetensors.torch import save_file
from torch import Tensor

from ..arms import Arm, sweep_arms, vector_key
from ..errors import SweepError
from ..progress import Progress
from ..rundir import SCHEMAS, RunDir, read_rows, write_table
from ..session import Session, fan_out
from ..weights import SEGMENT_NAMES, segment_bounds


def vectors(session: Session) -> None:
    from .tune import mismatch_map  # tune imports this module (check_vectors)

    cfg, run = session.cfg, session.run
    refs = read_rows(run.table("references"))
    ids = [r["prompt_id"] for r in refs]
    items = [(r["question"], r["reference_text"]) for r in refs] + [(r["question"], None) for r in refs]
    with Progress("vectors", len(items), "vectors") as progress:
        means = fan_out(session.replicas, "reference_vectors", items, progress, cfg.prompt.chat_template,
                        cfg.steering.mean == "exclude_sink", patience=session.patience)
    gold, prompt_means = dict(zip(ids, means[:len(ids)])), dict(zip(ids, means[len(ids):]))
    named = {f"gold/{p}": v.contiguous() for p, v in gold.items()}
    if "random" in cfg.controls:
        named |= {f"random/{p}": matched_random(gold[p], prompt_means[p], cfg.seed, p) for p in ids}
    arms = [a for a in sweep_arms(list(cfg.search.methods), list(cfg.controls)) if a.vectors != "none"]
    segments = segment_bounds(len(means[0]), list(cfg.steering.segment_starts))
    rows = shift_norm_rows(arms, named, prompt_means, mismatch_map(cfg, ids), segments)
    write_table(run.table("shift_norms"), rows, SCHEMAS["shift_norms"])
    save_tensors(run.vectors, named)


def matched_random(gold: Tensor, prompt_mean: Tensor, seed: int, prompt_id: int) -> Tensor:
    """[layers, hidden]: prompt_mean plus a seeded Gaussian direction per layer, scaled to that layer's
    ||gold - prompt_mean||: the shift the hook injects has the gold vector's size and a random direction."""
    generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}/random/{prompt_id}".encode()))
    direction = torch.randn(gold.shape, generator=generator, dtype=torch.float32)
    size = (gold - prompt_mean).norm(dim=-1, keepdim=True)
    return (prompt_mean + direction / direction.norm(dim=-1, keepdim=True) * size).contiguous()


def shift_norm_rows(arms: list[Arm], named: dict[str, Tensor], prompt_means: dict[int, Tensor],
                    mismatch: dict[int, int], segments: list[tuple[int, int]]) -> list[dict]:
    """Per (prompt, arm with a vector, segment): the mean over the segment's layers of ||v - mu_q||, v the
    arm's vector on that prompt (another prompt's gold vector for the mismatched arms) and mu_q the prompt's
    own mean. The injected shift is this times the trial's strength alpha*gamma."""
    rows = []
    for prompt_id, prompt_mean in prompt_means.items():
        for arm in arms:
            per_layer = (named[vector_key(arm, prompt_id, mismatch)] - prompt_mean).norm(dim=-1)
            rows += [{"prompt_id": prompt_id, "method": arm.name, "segment": name,
                      "norm": float(per_layer[start:end].mean())}
                     for name, (start, end) in zip(SEGMENT_NAMES, segments)]
    return rows


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
