"""The paper's own loop, kept as the yardstick: batch 1, `generate` with the KV cache off, one forward hook
per layer with Python-float weights. The tests check the engine against it; the benchmark times it."""

from __future__ import annotations

import torch
from torch import Tensor

from .engine import Engine


def paper_loop(engine: Engine, prompt: str, vectors: Tensor, alpha: list[float], gamma: list[float],
               max_new_tokens: int, force_length: bool = False) -> str:
    """One steered trial. vectors: [layers, hidden]; alpha, gamma: [layers]. `force_length` suppresses EOS
    until max_new_tokens (for timing)."""
    def make_hook(layer: int):  # noqa: ANN202 - a forward hook
        def hook(module, args, output):  # noqa: ANN001, ANN202
            a = output[0] if isinstance(output, tuple) else output
            mu = a.mean(dim=1, keepdim=True)
            h = vectors[layer].to(a.dtype)  # a bf16/fp16 model computes the paper's formula in its own dtype
            fused = alpha[layer] * (a + gamma[layer] * (h - mu)) + (1 - alpha[layer]) * a
            return (fused, *output[1:]) if isinstance(output, tuple) else fused
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(engine.layers)]
    try:
        enc = engine.tokenizer(prompt, return_tensors="pt").to(engine.device)
        with torch.no_grad():
            out = engine.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, use_cache=False,
                                        min_new_tokens=max_new_tokens if force_length else 0,
                                        pad_token_id=engine.tokenizer.pad_token_id)
    finally:
        for handle in handles:
            handle.remove()
    return engine.tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
