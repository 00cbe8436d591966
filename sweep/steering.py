"""The fusion hook (method.md §4): per-row reference vectors and weights, the mean rule, and hook lifetime.

For each steered layer l and each row of the batch, with `a` the layer's output over the row's positions:
    mu = mean of a over the row's positions in this forward pass      (pads never enter it)
    a' = alpha_l * (a + gamma_l * (h_l - mu)) + (1 - alpha_l) * a     (the paper's form, kept for fidelity)
Hooks run in layer order, so layer l sees the already-steered residual stream of earlier layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class Steer:
    """What to inject, one row per sequence of the batch."""

    vectors: Tensor  # [batch, layers, hidden] reference vectors h_l, float32
    alpha: Tensor  # [batch, layers] float64
    gamma: Tensor  # [batch, layers] float64
    exclude_sink: bool = False  # leave each row's first position out of the mean and unsteered

    def __post_init__(self) -> None:
        batch, layers, _ = self.vectors.shape
        if self.alpha.shape != (batch, layers) or self.gamma.shape != (batch, layers):
            raise ValueError(f"alpha {tuple(self.alpha.shape)} and gamma {tuple(self.gamma.shape)} "
                             f"must both be [batch={batch}, layers={layers}]")


@dataclass
class Positions:
    """Per row, the [start, end) range of real tokens in the current forward pass; the engine sets it."""

    spans: list[tuple[int, int]] = field(default_factory=list)


def _fuse(layer: int, steer: Steer, positions: Positions, hidden: Tensor) -> Tensor:
    """hidden: [batch, positions, d] -> the steered copy."""
    out = hidden.clone()
    # alpha and 1-alpha are formed in float64 and rounded once, as a Python-float hook would do.
    alpha = steer.alpha[:, layer].to(hidden.dtype)
    keep = (1.0 - steer.alpha[:, layer]).to(hidden.dtype)
    gamma = steer.gamma[:, layer].to(hidden.dtype)
    vectors = steer.vectors[:, layer].to(device=hidden.device, dtype=hidden.dtype)
    for row, (start, end) in enumerate(positions.spans):
        if steer.exclude_sink:
            start += 1
        if end <= start:
            continue
        # A per-row slice keeps the mean the same float op as an unbatched hook, so batch-1 runs match bitwise.
        a = hidden[row:row + 1, start:end]
        mu = a.mean(dim=1, keepdim=True)
        out[row:row + 1, start:end] = alpha[row] * (a + gamma[row] * (vectors[row] - mu)) + keep[row] * a
    return out


@contextmanager
def fusion_hooks(layers: nn.ModuleList, steer: Steer) -> Iterator[Positions]:
    """Hook every decoder layer for the duration of the block; the hooks are removed on every exit path."""
    positions = Positions()

    def make_hook(index: int):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple:
            # Decoder layers return a tensor in recent transformers releases and a tuple in older ones.
            if isinstance(output, tuple):
                return (_fuse(index, steer, positions, output[0]), *output[1:])
            return _fuse(index, steer, positions, output)
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    try:
        yield positions
    finally:
        for handle in handles:
            handle.remove()


def segment_bounds(num_layers: int, starts: list[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) layer segments: `starts` if given, else thirds with ceil for the first two."""
    if not starts:
        size = -(-num_layers // 3)
        starts = [0, size, 2 * size]
    if starts[0] != 0 or sorted(set(starts)) != starts or starts[-1] >= num_layers:
        raise ValueError(f"segment starts {starts} must begin at 0, increase, and stay below {num_layers} layers")
    ends = [*starts[1:], num_layers]
    return list(zip(starts, ends))


def layer_weights(params: dict[str, float], num_layers: int, segments: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
    """Per-layer (alpha, gamma) from a trial's parameters: `*_all` for full-layer, `*_early/middle/late` per segment."""
    if "alpha_all" in params:
        return [params["alpha_all"]] * num_layers, [params["gamma_all"]] * num_layers
    alpha, gamma = [0.0] * num_layers, [0.0] * num_layers
    for name, (start, end) in zip(SEGMENT_NAMES, segments):
        alpha[start:end] = [params[f"alpha_{name}"]] * (end - start)
        gamma[start:end] = [params[f"gamma_{name}"]] * (end - start)
    return alpha, gamma


SEGMENT_NAMES = ("early", "middle", "late")


def steer_rows(vectors: Tensor, weights: list[tuple[list[float], list[float]]], exclude_sink: bool) -> Steer:
    """A Steer from per-row vectors [batch, layers, hidden] and per-row (alpha, gamma) lists."""
    return Steer(vectors=vectors,
                 alpha=torch.tensor([a for a, _ in weights], dtype=torch.float64),
                 gamma=torch.tensor([g for _, g in weights], dtype=torch.float64),
                 exclude_sink=exclude_sink)
