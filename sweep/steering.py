"""The fusion hook (method.md §4): per-row reference vectors and weights, the mean rule, and hook lifetime.

For each steered layer l and each row of the batch, with `a` the layer's output over the row's positions:
    mu    = mean of a over the row's positions in this forward pass      (pads never enter it)
    shift = alpha_l * gamma_l * (h_l - mu)
    a'    = a + shift
which is the paper's alpha_l * (a + gamma_l * (h_l - mu)) + (1 - alpha_l) * a rounded differently (greedy texts
still equal the paper's loop in float32). mu and the shift are float32 whatever the hidden dtype
(alpha_l * gamma_l formed in float64, rounded once), and the shift is added once: bf16/fp16 activations are
rounded once, not at each step of the formula. The mean adds each row's tokens in the same order as a mean
over that row alone, so a row's mu does not depend on the padding beside it (bitwise on CPU). Hooks run in
layer order, so layer l sees the already-steered residual stream of earlier layers. docs/steering-modes.md
has the measurements behind these choices.

Faithful mode (the paper's): every pass holds the whole sequence, so every position is re-steered with the
mean of the current pass. Cached mode (KV cache on): a pass after the first holds only the new token; past
positions keep the shift they got, and mu is a running mean of the layer's outputs over all positions so far
(float32 sums and counts).

The layer's output is steered in place, and each row's vectors and weights are laid out per layer once per
generate call; the engine drops finished rows from the hook's per-row state with `Positions.select`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    """Which positions of the current forward pass are real tokens, and each row's steering, per layer; the engine
    updates it before each pass and drops finished rows from it (`select`).

    The masks are float32 0/1 weights, so that masking is one multiplication (the engine's pads hold finite
    values, which a 0 weight removes; the packed entries are all real tokens)."""

    vectors: list[Tensor]  # per layer: [batch, d] float32 reference vectors h_l, contiguous
    strength: list[Tensor]  # per layer: [batch, 1] float32 alpha_l * gamma_l
    valid: Tensor | None = None  # [batch, positions, 1]: 1 at the real tokens of this pass (sink excluded if asked)
    # A full pass, each row's real tokens moved to the front (then its last real token repeated), for the mean:
    packed: Tensor | None = None  # [batch * positions] int64: index into the pass's positions, rows flattened
    packed_valid: Tensor | None = None  # [batch, positions, 1]: 1 at the packed entries that are real tokens
    decoding: bool = False  # cached mode: this pass holds only each row's newest token
    sums: dict[int, Tensor] = field(default_factory=dict)  # cached: layer -> [batch, d] float32 running sum
    counts: dict[int, Tensor] = field(default_factory=dict)  # cached: layer -> [batch] float32 positions summed

    def update(self, mask: Tensor, decoding: bool, exclude_sink: bool) -> None:
        """mask: [batch, sequence] attention mask of everything so far (left pads, then tokens, then pads
        after a finished row's end)."""
        self.decoding = decoding
        if decoding:
            self.valid = mask[:, -1:, None].float()
            return
        batch, width = mask.shape
        starts = (mask.cumsum(-1) == 0).sum(-1) + int(exclude_sink)  # [batch] first position steered
        lengths = mask.sum(-1) - int(exclude_sink)  # [batch] positions steered (0 for a lone excluded sink)
        offsets = torch.arange(width, device=mask.device)
        self.valid = ((offsets >= starts[:, None]) & (offsets < (starts + lengths)[:, None]))[..., None].float()
        # min(offset, length - 1) keeps every entry on a real token: the sink itself when nothing else is steered.
        packed = starts[:, None] + torch.minimum(offsets, (lengths - 1)[:, None])
        self.packed = (packed + width * torch.arange(batch, device=mask.device)[:, None]).flatten()
        self.packed_valid = (offsets < lengths[:, None])[..., None].float()

    def select(self, rows: Tensor) -> None:
        """Keep only `rows` (indices into the batch, in order) of every per-row tensor; the engine calls
        `update` before the next pass, which rebuilds the masks."""
        self.vectors = [v.index_select(0, rows) for v in self.vectors]
        self.strength = [s.index_select(0, rows) for s in self.strength]
        self.sums = {layer: t.index_select(0, rows) for layer, t in self.sums.items()}
        self.counts = {layer: t.index_select(0, rows) for layer, t in self.counts.items()}


def _pass_sum(hidden: Tensor, positions: Positions) -> tuple[Tensor, Tensor]:
    """hidden: [batch, positions, d], a full pass -> the float32 sum [batch, d] and count [batch] of each row's
    real tokens, summed with each row's tokens first and zeros after them: the float additions are then those
    of a mean over the row alone, whatever padding sits before it."""
    weights = positions.packed_valid
    tokens = hidden.flatten(0, 1).index_select(0, positions.packed).view(hidden.shape).mul_(weights)
    return tokens.sum(dim=1, dtype=torch.float32), weights.sum(dim=(1, 2))


def _faithful_mean(layer: int, positions: Positions, hidden: Tensor) -> Tensor:
    """hidden: [batch, positions, d], the whole sequence -> mu: [batch, d] float32, the mean of this pass."""
    total, count = _pass_sum(hidden, positions)
    return total / count.clamp(min=1)[:, None]


def _cached_mean(layer: int, positions: Positions, hidden: Tensor) -> Tensor:
    """hidden: [batch, positions, d], the prompt (first pass) or each row's newest token -> mu: [batch, d]
    float32, the running mean over every position so far; updates the layer's running sum and count in place.
    A decode step adds each row's one new output (0 weight: a finished row's pad), which is exactly what
    summing the one position would give."""
    if positions.decoding:
        valid = positions.valid[:, 0]  # [batch, 1]
        positions.sums[layer].addcmul_(hidden[:, 0], valid)
        positions.counts[layer].add_(valid[:, 0])
    else:
        positions.sums[layer], positions.counts[layer] = _pass_sum(hidden, positions)
    return positions.sums[layer] / positions.counts[layer].clamp(min=1)[:, None]


@contextmanager
def fusion_hooks(layers: nn.ModuleList, steer: Steer) -> Iterator[Positions]:
    """Hook every decoder layer for the duration of the block; the hooks are removed on every exit path.
    Each row's vector and alpha*gamma are laid out per layer once here, not at every pass."""
    mean: Callable[[int, Positions, Tensor], Tensor] = _cached_mean if steer.cached else _faithful_mean
    device = next(layers.parameters()).device
    vectors = steer.vectors.to(device=device, dtype=torch.float32)  # [batch, layers, d]
    strength = (steer.alpha * steer.gamma).to(device=device, dtype=torch.float32)  # [batch, layers]
    positions = Positions(vectors=[vectors[:, i].contiguous() for i in range(len(layers))],
                          strength=[strength[:, i, None].contiguous() for i in range(len(layers))])

    def fuse(index: int, hidden: Tensor) -> Tensor:
        """hidden: [batch, positions, d] -> hidden steered in place (a layer's output is a fresh tensor that
        only the next layer reads): hidden + valid * shift, so pads and the excluded sink are unchanged."""
        mu = mean(index, positions, hidden)
        # shift = strength * (h - mu), formed in mu's buffer: -mu + h is h - mu bit for bit.
        shift = mu.neg_().add_(positions.vectors[index]).mul_(positions.strength[index])  # [batch, d] float32
        # In float32, rounded once to hidden's dtype.
        return hidden.addcmul_(positions.valid, shift[:, None, :])

    def make_hook(index: int):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple:
            # Decoder layers return a tensor in recent transformers releases and a tuple in older ones.
            if isinstance(output, tuple):
                return (fuse(index, output[0]), *output[1:])
            return fuse(index, output)
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
