"""The fusion hook against a naive one-at-a-time implementation of the paper's hook."""

from __future__ import annotations

import math

import pytest
import torch

from sweep.reference import paper_loop
from sweep.steering import Steer, fusion_hooks
from sweep.weights import layer_weights, segment_bounds

PROMPTS = [
    "Question: Who received the IEEE Frank Rosenblatt Award in 2010?\nAnswer and explanation:",
    "Question: In what year did Jan Verkolje die?\nAnswer and explanation:",
    "Question: What is the capital of France?\nAnswer and explanation:",
]
WEIGHTS = [(0.9, 0.8), (0.3, 0.5), (0.05, 0.95)]


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
        layers = tiny_engine.num_layers
        expected = paper_loop(tiny_engine, prompt, vectors, [alpha] * layers, [gamma] * layers, 24)
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


def hook_of(layer):
    return next(iter(layer._forward_hooks.values()))


def test_padding_never_enters_the_mean(tiny_engine):
    """A row's steered hidden states do not depend on how much left padding sits before it."""
    steer = steer_for([(reference_vectors(tiny_engine, 1), 0.7, 0.7)], tiny_engine.num_layers)
    layer = tiny_engine.layers[0]
    hidden = torch.randn(1, 5, 64)
    padded = torch.cat([torch.full((1, 3, 64), 1e4), hidden], dim=1)
    for cached in (False, True):
        steer.cached = cached
        with fusion_hooks(tiny_engine.layers, steer) as positions:
            positions.update(torch.ones(1, 5, dtype=torch.long), decoding=False, exclude_sink=False)
            plain = hook_of(layer)(layer, (), hidden)
            positions.update(torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]]), decoding=False, exclude_sink=False)
            shifted = hook_of(layer)(layer, (), padded)
        torch.testing.assert_close(plain, shifted[:, 3:])
        torch.testing.assert_close(shifted[:, :3], padded[:, :3])


@pytest.mark.parametrize("cached", [False, True])
def test_exclude_sink_leaves_first_position_alone_and_out_of_the_mean(tiny_engine, cached):
    steer = steer_for([(reference_vectors(tiny_engine, 2), 0.5, 0.5)], tiny_engine.num_layers)
    steer.cached = cached
    layer = tiny_engine.layers[1]
    hidden = torch.randn(1, 6, 64)
    sunk = hidden.clone()
    sunk[0, 0] = 2.4e4
    with fusion_hooks(tiny_engine.layers, steer) as positions:
        positions.update(torch.ones(1, 6, dtype=torch.long), decoding=False, exclude_sink=True)
        a, b = hook_of(layer)(layer, (), hidden), hook_of(layer)(layer, (), sunk)
    torch.testing.assert_close(a[:, 1:], b[:, 1:])
    assert b[0, 0, 0] == 2.4e4
    assert not torch.equal(a[:, 1:], hidden[:, 1:])


def test_cached_mode_keeps_a_running_mean_over_all_positions_so_far(tiny_engine):
    """After a prompt of 4 positions and one decoded token, mu is the mean of all 5 outputs."""
    steer = steer_for([(reference_vectors(tiny_engine, 3), 0.6, 0.4)], tiny_engine.num_layers)
    steer.cached = True
    layer = tiny_engine.layers[2]
    prompt, new = torch.randn(1, 4, 64), torch.randn(1, 1, 64)
    with fusion_hooks(tiny_engine.layers, steer) as positions:
        positions.update(torch.ones(1, 4, dtype=torch.long), decoding=False, exclude_sink=False)
        hook_of(layer)(layer, (), prompt)
        positions.update(torch.ones(1, 5, dtype=torch.long), decoding=True, exclude_sink=False)
        got = hook_of(layer)(layer, (), new)
    mu = torch.cat([prompt, new], dim=1).mean(dim=1, keepdim=True)
    h = steer.vectors[0, 2]
    torch.testing.assert_close(got, 0.6 * (new + 0.4 * (h - mu)) + 0.4 * new)


def test_unsteered_generation_equals_hf_generate(tiny_engine):
    enc = tiny_engine.tokenizer(PROMPTS[0], return_tensors="pt")
    with torch.no_grad():
        out = tiny_engine.model.generate(**enc, max_new_tokens=12, do_sample=False,
                                         pad_token_id=tiny_engine.tokenizer.pad_token_id)
    expected = tiny_engine.tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)
    assert tiny_engine.generate([PROMPTS[0]], 12) == [expected]


def test_cached_rows_batched_match_each_row_alone(tiny_engine):
    rows = [(reference_vectors(tiny_engine, i), a, g) for i, (a, g) in enumerate(WEIGHTS)]
    steer = steer_for(rows, tiny_engine.num_layers)
    steer.cached = True
    together = tiny_engine.generate(PROMPTS, 16, steer=steer)
    alone = []
    for prompt, row in zip(PROMPTS, rows):
        single = steer_for([row], tiny_engine.num_layers)
        single.cached = True
        alone += tiny_engine.generate([prompt], 16, steer=single)
    assert together == alone


def test_cached_first_token_equals_faithful_first_token(tiny_engine):
    """Both modes see the same first pass, so the first generated token agrees."""
    for i, (prompt, (alpha, gamma)) in enumerate(zip(PROMPTS, WEIGHTS)):
        steer = steer_for([(reference_vectors(tiny_engine, i), alpha, gamma)], tiny_engine.num_layers)
        faithful = tiny_engine.generate([prompt], 1, steer=steer)
        steer.cached = True
        assert tiny_engine.generate([prompt], 1, steer=steer) == faithful


def test_batched_perplexity_equals_one_text_at_a_time(tiny_engine):
    texts = ["Paris is the capital of France.", "A much longer text " * 20, "x"]
    got = tiny_engine.perplexity(texts, window=16)
    for text, value in zip(texts, got):
        ids = tiny_engine.tokenizer(text, return_tensors="pt").input_ids
        losses = [tiny_engine.model(input_ids=c, labels=c).loss.item() for c in ids.split(16, dim=1) if c.shape[1] > 1]
        expected = math.exp(sum(losses) / len(losses)) if losses else math.inf
        assert value == pytest.approx(expected, rel=1e-4)


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
    with pytest.raises(ValueError, match="has 3 segments"):
        segment_bounds(30, [0, 10])


def test_segmented_weights_cover_every_layer_once():
    params = {"alpha_early": 0.1, "alpha_middle": 0.2, "alpha_late": 0.3,
              "gamma_early": 0.4, "gamma_middle": 0.5, "gamma_late": 0.6}
    alpha, gamma = layer_weights(params, 26, segment_bounds(26, []))
    assert alpha == [0.1] * 9 + [0.2] * 9 + [0.3] * 8
    assert gamma == [0.4] * 9 + [0.5] * 9 + [0.6] * 8
    assert layer_weights({"alpha_all": 0.5, "gamma_all": 0.25}, 3, []) == ([0.5] * 3, [0.25] * 3)
