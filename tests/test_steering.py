"""The fusion hook against a naive one-at-a-time implementation of the paper's hook."""

from __future__ import annotations

import pytest
import torch

from sweep.steering import Steer, fusion_hooks, layer_weights, segment_bounds

PROMPTS = [
    "Question: Who received the IEEE Frank Rosenblatt Award in 2010?\nAnswer and explanation:",
    "Question: In what year did Jan Verkolje die?\nAnswer and explanation:",
    "Question: What is the capital of France?\nAnswer and explanation:",
]
WEIGHTS = [(0.9, 0.8), (0.3, 0.5), (0.05, 0.95)]


def naive_generate(engine, prompt: str, vectors: torch.Tensor, alpha: float, gamma: float, max_new: int) -> str:
    """The paper's loop: batch 1, HF generate with the KV cache off, one hook per layer, Python-float weights."""
    def make_hook(layer: int):
        def hook(module, args, output):
            a = output[0] if isinstance(output, tuple) else output
            mu = a.mean(dim=1, keepdim=True)
            fused = alpha * (a + gamma * (vectors[layer] - mu)) + (1 - alpha) * a
            return (fused, *output[1:]) if isinstance(output, tuple) else fused
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(engine.layers)]
    try:
        enc = engine.tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = engine.model.generate(**enc, max_new_tokens=max_new, do_sample=False, use_cache=False,
                                        pad_token_id=engine.tokenizer.pad_token_id)
    finally:
        for handle in handles:
            handle.remove()
    return engine.tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


def reference_vectors(engine, seed: int) -> torch.Tensor:
    """[layers, hidden] vectors at the scale of real residual streams, so steering changes the output."""
    generator = torch.Generator().manual_seed(seed)
    return 4 * torch.randn(engine.num_layers, engine.model.config.hidden_size, generator=generator)


def steer_for(rows: list[tuple[torch.Tensor, float, float]], layers: int) -> Steer:
    return Steer(vectors=torch.stack([v for v, _, _ in rows]),
                 alpha=torch.tensor([[a] * layers for _, a, _ in rows], dtype=torch.float64),
                 gamma=torch.tensor([[g] * layers for _, _, g in rows], dtype=torch.float64))


def test_single_row_matches_naive_paper_loop(tiny_engine):
    for i, (prompt, (alpha, gamma)) in enumerate(zip(PROMPTS, WEIGHTS)):
        vectors = reference_vectors(tiny_engine, i)
        expected = naive_generate(tiny_engine, prompt, vectors, alpha, gamma, 24)
        (got,) = tiny_engine.generate([prompt], 24, steer=steer_for([(vectors, alpha, gamma)], tiny_engine.num_layers))
        assert got == expected


def test_steering_changes_the_output(tiny_engine):
    vectors = reference_vectors(tiny_engine, 0)
    (plain,) = tiny_engine.generate([PROMPTS[0]], 16)
    (steered,) = tiny_engine.generate([PROMPTS[0]], 16, steer=steer_for([(vectors, 0.9, 0.9)], tiny_engine.num_layers))
    assert plain != steered


def test_batched_rows_of_different_lengths_match_each_row_alone(tiny_engine):
    rows = [(reference_vectors(tiny_engine, i), a, g) for i, (a, g) in enumerate(WEIGHTS)]
    together = tiny_engine.generate(PROMPTS, 20, steer=steer_for(rows, tiny_engine.num_layers))
    alone = [tiny_engine.generate([p], 20, steer=steer_for([r], tiny_engine.num_layers))[0] for p, r in zip(PROMPTS, rows)]
    assert together == alone
    assert len(set(together)) > 1


def test_padding_never_enters_the_mean(tiny_engine):
    """A row's steered hidden states do not depend on how much left padding sits before it."""
    vectors = reference_vectors(tiny_engine, 1)
    steer = steer_for([(vectors, 0.7, 0.7)], tiny_engine.num_layers)
    layer = tiny_engine.layers[0]
    hidden = torch.randn(1, 5, 64)
    padded = torch.cat([torch.full((1, 3, 64), 1e4), hidden], dim=1)
    with fusion_hooks(tiny_engine.layers, steer) as positions:
        positions.spans = [(0, 5)]
        plain = layer._forward_hooks[next(iter(layer._forward_hooks))](layer, (), hidden)
        positions.spans = [(3, 8)]
        shifted = layer._forward_hooks[next(iter(layer._forward_hooks))](layer, (), padded)
    torch.testing.assert_close(plain, shifted[:, 3:])
    torch.testing.assert_close(shifted[:, :3], padded[:, :3])


def test_exclude_sink_leaves_first_position_alone_and_out_of_the_mean(tiny_engine):
    steer = steer_for([(reference_vectors(tiny_engine, 2), 0.5, 0.5)], tiny_engine.num_layers)
    steer.exclude_sink = True
    layer = tiny_engine.layers[1]
    hidden = torch.randn(1, 6, 64)
    sunk = hidden.clone()
    sunk[0, 0] = 2.4e4
    with fusion_hooks(tiny_engine.layers, steer) as positions:
        positions.spans = [(0, 6)]
        hook = layer._forward_hooks[next(iter(layer._forward_hooks))]
        a, b = hook(layer, (), hidden), hook(layer, (), sunk)
    torch.testing.assert_close(a[:, 1:], b[:, 1:])
    assert b[0, 0, 0] == 2.4e4


def test_hooks_are_removed_when_generation_raises(tiny_engine):
    steer = steer_for([(reference_vectors(tiny_engine, 0), 0.5, 0.5)], tiny_engine.num_layers)
    with pytest.raises(RuntimeError):
        with fusion_hooks(tiny_engine.layers, steer):
            raise RuntimeError("boom")
    assert all(not layer._forward_hooks for layer in tiny_engine.layers)


def test_steer_rejects_weights_of_the_wrong_shape():
    with pytest.raises(ValueError, match="layers=3"):
        Steer(torch.zeros(1, 3, 8), torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))


@pytest.mark.parametrize(("layers", "expected"), [
    (26, [(0, 9), (9, 18), (18, 26)]),  # Gemma-2-2B: 0-8, 9-17, 18-25 as in the paper
    (30, [(0, 10), (10, 20), (20, 30)]),
    (6, [(0, 2), (2, 4), (4, 6)]),
])
def test_segments_are_thirds_with_ceil(layers, expected):
    assert segment_bounds(layers, []) == expected


def test_segments_that_leave_a_segment_empty_are_refused():
    with pytest.raises(ValueError, match="stay below 4 layers"):
        segment_bounds(4, [])
    assert segment_bounds(4, [0, 1, 3]) == [(0, 1), (1, 3), (3, 4)]


def test_segmented_weights_cover_every_layer_once():
    params = {"alpha_early": 0.1, "alpha_middle": 0.2, "alpha_late": 0.3,
              "gamma_early": 0.4, "gamma_middle": 0.5, "gamma_late": 0.6}
    alpha, gamma = layer_weights(params, 26, segment_bounds(26, []))
    assert alpha == [0.1] * 9 + [0.2] * 9 + [0.3] * 8
    assert gamma == [0.4] * 9 + [0.5] * 9 + [0.6] * 8
    assert layer_weights({"alpha_all": 0.5, "gamma_all": 0.25}, 3, []) == ([0.5] * 3, [0.25] * 3)
