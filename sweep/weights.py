"""How a trial's parameters become per-layer weights: the three layer segments, the two search spaces, and
one (alpha, gamma) per layer. Pure Python, so that Tune's trial workers need no torch.

The hook's alpha * (x + gamma * (v - mu)) + (1 - alpha) * x is x + alpha * gamma * (v - mu): only the product
matters (docs/steering-modes.md). The `product` space searches that strength, log-uniform, one per group; its
trials are stored in the paper's columns as alpha = strength, gamma = 1, so every reader of trials.parquet
handles both spaces alike."""

from __future__ import annotations

SEGMENT_NAMES = ("early", "middle", "late")


def segment_bounds(num_layers: int, starts: list[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) layer segments: `starts` if given, else thirds with ceil for the first two."""
    if not starts:
        size = -(-num_layers // 3)
        starts = [0, size, 2 * size]
    if len(starts) != len(SEGMENT_NAMES):
        raise ValueError(f"segment starts {starts}: segmented steering has {len(SEGMENT_NAMES)} segments "
                         f"({', '.join(SEGMENT_NAMES)})")
    if starts[0] != 0 or sorted(set(starts)) != starts or starts[-1] >= num_layers:
        raise ValueError(f"segment starts {starts} must begin at 0, increase, and stay below {num_layers} layers")
    ends = [*starts[1:], num_layers]
    return list(zip(starts, ends))


def group_names(method: str | None) -> list[str]:
    """The parameter groups of a method: one for all layers (full), one per segment, none when not tuned."""
    return {"full": ["all"], "segmented": list(SEGMENT_NAMES), None: []}[method]


def stored_params(params: dict[str, float], space: str) -> dict[str, float]:
    """A trial's parameters as trials.parquet stores them: the product space's strength `alpha_G` with its
    `gamma_G` = 1; the paper's space as sampled."""
    if space == "paper":
        return dict(params)
    return {**params, **{f"gamma_{k.removeprefix('alpha_')}": 1.0 for k in params}}


def layer_weights(params: dict[str, float], num_layers: int,
                  segments: list[tuple[int, int]]) -> tuple[list[float], list[float]]:
    """Per-layer (alpha, gamma) from a trial's parameters: `*_all` for full-layer, `*_early/middle/late` per segment."""
    if "alpha_all" in params:
        return [params["alpha_all"]] * num_layers, [params["gamma_all"]] * num_layers
    alpha, gamma = [0.0] * num_layers, [0.0] * num_layers
    for name, (start, end) in zip(SEGMENT_NAMES, segments):
        alpha[start:end] = [params[f"alpha_{name}"]] * (end - start)
        gamma[start:end] = [params[f"gamma_{name}"]] * (end - start)
    return alpha, gamma
