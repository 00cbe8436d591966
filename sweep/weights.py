"""How a trial's parameters become per-layer weights: the three layer segments, and one (alpha, gamma)
per layer. Pure Python, so that Tune's trial workers need no torch."""

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
