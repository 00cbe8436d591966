"""The fusion hook (method.md §4): per-row reference vectors and weights, the mean rule, and hook lifetime.

For each steered layer l and each row of the batch, with `a` the layer's output over the row's positions:
    mu = mean of a over the row's positions in this forward pass      (pads never enter it)
    a' = alpha_l * (a + gamma_l * (h_l - mu)) + (1 - alpha_l) * a     (the paper's form, kept for fidelity)
Hooks run in layer order, so layer l sees the already-steered residual stream of earlier layers.

Faithful mode (the paper's): every pass holds the whole sequence, so every position is re-steered with the
mean of the current pass. Cached mode (KV cache on): a pass after the first holds only the new token; past
positions keep the shift they got, and mu is a running mean of the layer's outputs over all positions so far.
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
    cached: bool = False  # running mean over past passes (KV cache on) instead of the mean of this pass

    def __post_init__(self) -> None:
        batch, layers, _ = self.vectors.shape
        if self.alpha.shape != (batch, layers) or self.gamma.shape != (batch, layers):
            raise ValueError(f"alpha {tuple(self.alpha.shape)} and gamma {tuple(self.gamma.shape)} "
                             f"must both be [batch={batch}, layers={layers}]")


@dataclass
class Positions:
    """Which positions of the current forward pass are real tokens; the engine updates it before each pass."""

    spans: list[tuple[int, int]] = field(default_factory=list)  # per row, [start, end) of real tokens
    valid: Tensor | None = None  # [batch, positions] bool: real tokens of this pass (sink excluded if asked)
    decoding: bool = False  # cached mode: this pass holds only each row's newest token
    sums: dict[int, Tensor] = field(default_factory=dict)  # cached: layer -> [batch, d] running sum of outputs
    counts: dict[int, Tensor] = field(default_factory=dict)  # cached: layer -> [batch] positions summed

    def update(self, mask: Tensor, decoding: bool, exclude_sink: bool) -> None:
        """mask: [batch, sequence] attention mask of everything so far (left pads, then tokens, then pads
        after a finished row's end)."""
        starts = (mask.cumsum(-1) == 0).sum(-1)
        lengths = mask.sum(-1)
        self.spans = [(s + int(exclude_sink), s + n) for s, n in zip(starts.tolist(), lengths.tolist())]
        self.decoding = decoding
        if decoding:
            self.valid = mask[:, -1:].bool()
        else:
            valid = mask.bool()
            if exclude_sink:
                valid = valid & (torch.arange(mask.shape[1], device=mask.device) != starts[:, None])
            self.valid = valid


def _weights(steer: Steer, layer: int, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """alpha, 1-alpha, gamma: [batch]; vectors: [batch, d]; in the hidden states' dtype and device.
    alpha and 1-alpha are formed in float64 and rounded once, as a Python-float hook would do."""
    def cast(t: Tensor) -> Tensor:
        return t.to(device=hidden.device, dtype=hidden.dtype)
    alpha = steer.alpha[:, layer]
    return cast(alpha), cast(1.0 - alpha), cast(steer.gamma[:, layer]), cast(steer.vectors[:, layer])


def _fuse_faithful(layer: int, steer: Steer, positions: Positions, hidden: Tensor) -> Tensor:
    """hidden: [batch, positions, d], the whole sequence -> the steered copy."""
    out = hidden.clone()
    alpha, keep, gamma, vectors = _weights(steer, layer, hidden)
    for row, (start, end) in enumerate(positions.spans):
        if end <= start:
            continue
        # A per-row slice keeps the mean the same float op as an unbatched hook, so batch-1 runs match bitwise.
        a = hidden[row:row + 1, start:end]
        mu = a.mean(dim=1, keepdim=True)
        out[row:row + 1, start:end] = alpha[row] * (a + gamma[row] * (vectors[row] - mu)) + keep[row] * a
    return out


def _fuse_cached(layer: int, steer: Steer, positions: Positions, hidden: Tensor) -> Tensor:
    """hidden: [batch, positions, d], the prompt (first pass) or each row's newest token -> steered copy."""
    valid = positions.valid[..., None]  # [batch, positions, 1]
    added = (hidden * valid).sum(dim=1)
    counted = valid.sum(dim=1)[:, 0]
    if positions.decoding:
        positions.sums[layer] = positions.sums[layer] + added
        positions.counts[layer] = positions.counts[layer] + counted
    else:
        positions.sums[layer], positions.counts[layer] = added, counted
    mu = positions.sums[layer] / positions.counts[layer].clamp(min=1)[:, None].to(hidden.dtype)
    alpha, keep, gamma, vectors = (t[:, None, None] if t.dim() == 1 else t[:, None, :]
                                   for t in _weights(steer, layer, hidden))
    steered = alpha * (hidden + gamma * (vectors - mu[:, None, :])) + keep * hidden
    return torch.where(valid, steered, hidden)


@contextmanager
def fusion_hooks(layers: nn.ModuleList, steer: Steer) -> Iterator[Positions]:
    """Hook every decoder layer for the duration of the block; the hooks are removed on every exit path."""
    positions = Positions()
    fuse = _fuse_cached if steer.cached else _fuse_faithful

    def make_hook(index: int):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple:
            # Decoder layers return a tensor in recent transformers releases and a tuple in older ones.
            if isinstance(output, tuple):
                return (fuse(index, steer, positions, output[0]), *output[1:])
            return fuse(index, steer, positions, output)
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    try:
        yield positions
    finally:
        for handle in handles:
            handle.remove()


def steer_rows(vectors: Tensor, weights: list[tuple[list[float], list[float]]], exclude_sink: bool,
               cached: bool) -> Steer:
    """A Steer from per-row vectors [batch, layers, hidden] and per-row (alpha, gamma) lists."""
    return Steer(vectors=vectors,
                 alpha=torch.tensor([a for a, _ in weights], dtype=torch.float64),
                 gamma=torch.tensor([g for _, g in weights], dtype=torch.float64),
                 exclude_sink=exclude_sink, cached=cached)
