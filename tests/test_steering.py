"""The fusion hook against a naive one-at-a-time implementation of the paper's hook."""

from __future__ import annotations

import math

import pytest
import torch

from sweep.models import _quantization, compute_dtype, model_config
from sweep.reference import paper_loop
from sweep.steering import Positions, Steer, _faithful_mean, fusion_hooks
from sweep.weights import layer_weights, segment_bounds

from conftest import CONF

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


def per_row_fuse_oracle(hidden: torch.Tensor, spans: list[tuple[int, int]], alpha: list[float],
                        gamma: list[float], vectors: torch.Tensor) -> torch.Tensor:
    """The hook as it was before it was vectorised: one row at a time, the paper's arithmetic with Python-float
    weights, in hidden's dtype. hidden: [batch, positions, d]; spans: per row, [start, end) of the positions
    steered and averaged; alpha, gamma: [batch]; vectors: [batch, d] -> the steered copy."""
    out = hidden.clone()
    for row, (start, end) in enumerate(spans):
        if end <= start:
            continue
        a = hidden[row:row + 1, start:end]
        mu = a.mean(dim=1, keepdim=True)
        out[row:row + 1, start:end] = alpha[row] * (a + gamma[row] * (vectors[row] - mu)) + (1 - alpha[row]) * a
    return out


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
    """The layer's fusion hook, called on a copy: the hook steers a layer's output in place."""
    hook = next(iter(layer._forward_hooks.values()))
    return lambda module, args, output: hook(module, args, output.clone())


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


def padded_batch(dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [4, 14, 64] at residual-stream scale (a large per-dimension offset plus noise) and its attention
    mask: rows left-padded by 0, 2, 5 and 9 positions, the third ending in 3 pads as a finished row does.
    Pads hold 1e4, so any that leaked into a mean would show."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(4, 14, dtype=torch.long)
    for row, (start, end) in enumerate([(0, 14), (2, 14), (5, 11), (9, 14)]):
        mask[row, start:end] = 1
    offset = 8 * torch.randn(64, generator=generator)
    hidden = offset + 2 * torch.randn(4, 14, 64, generator=generator)
    return torch.where(mask.bool()[..., None], hidden, torch.tensor(1e4)).to(dtype), mask


def spans_of(mask: torch.Tensor, exclude_sink: bool) -> list[tuple[int, int]]:
    """Per row, [start, end) of the positions the hook steers: the row's tokens, less the sink if excluded."""
    starts, lengths = (mask.cumsum(-1) == 0).sum(-1).tolist(), mask.sum(-1).tolist()
    return [(s + int(exclude_sink), s + n) for s, n in zip(starts, lengths)]


def random_steer(engine, rows: int, seed: int) -> Steer:
    generator = torch.Generator().manual_seed(seed)
    layers = engine.num_layers
    return Steer(vectors=4 * torch.randn(rows, layers, engine.model.config.hidden_size, generator=generator),
                 alpha=torch.rand(rows, layers, generator=generator, dtype=torch.float64),
                 gamma=torch.rand(rows, layers, generator=generator, dtype=torch.float64))


def hook_output(engine, steer: Steer, layer: int, mask: torch.Tensor, hidden: torch.Tensor,
                exclude_sink: bool) -> torch.Tensor:
    """One layer's hook applied to `hidden` [batch, positions, d] as the first pass of a generation."""
    module = engine.layers[layer]
    with fusion_hooks(engine.layers, steer) as positions:
        positions.update(mask, decoding=False, exclude_sink=exclude_sink)
        return hook_of(module)(module, (), hidden)


def oracle_for(steer: Steer, layer: int, hidden: torch.Tensor, spans: list[tuple[int, int]],
               dtype: torch.dtype) -> torch.Tensor:
    """per_row_fuse_oracle on hidden and the layer's vectors, both in `dtype`."""
    return per_row_fuse_oracle(hidden.to(dtype), spans, steer.alpha[:, layer].tolist(),
                               steer.gamma[:, layer].tolist(), steer.vectors[:, layer].to(dtype))


def steered_mask(spans: list[tuple[int, int]], width: int) -> torch.Tensor:
    offsets = torch.arange(width)
    return torch.stack([(offsets >= s) & (offsets < e) for s, e in spans])  # [batch, positions] bool


# The hook adds alpha*gamma*(h - mu) once; the oracle (the paper's arithmetic) rounds gamma*(h - mu), a + that,
# alpha*(...), (1-alpha)*a and their sum. Measured over 200 random batches (docs/steering-modes.md): at most
# 4.2 float32 eps times the larger of |a| and |gamma*(h - mu)| apart; the tolerance allows 8.
FP32_EPS_TOLERANCE = 8


@pytest.mark.parametrize("exclude_sink", [False, True])
def test_vectorised_hook_matches_the_per_row_oracle(tiny_engine, exclude_sink):
    layer = 2
    for seed in range(5):
        hidden, mask = padded_batch(torch.float32, seed)
        steer = random_steer(tiny_engine, 4, seed)
        spans = spans_of(mask, exclude_sink)
        inside = steered_mask(spans, hidden.shape[1])
        got = hook_output(tiny_engine, steer, layer, mask, hidden, exclude_sink)
        expected = oracle_for(steer, layer, hidden, spans, torch.float32)
        # Pads and the excluded sink pass through bitwise.
        assert torch.equal(got[~inside], hidden[~inside])
        # The batched mean is bitwise the per-row one.
        positions = Positions(vectors=[], strength=[])
        positions.update(mask, decoding=False, exclude_sink=exclude_sink)
        means = _faithful_mean(layer, positions, hidden)
        for row, (start, end) in enumerate(spans):
            assert torch.equal(means[row], hidden[row, start:end].mean(dim=0))
        # Steered positions: within FP32_EPS_TOLERANCE of the oracle.
        scaled = steer.gamma[:, layer, None] * (steer.vectors[:, layer] - means)  # [batch, d] gamma*(h - mu)
        scale = torch.maximum(hidden.double().abs(), scaled[:, None, :].abs())
        bound = FP32_EPS_TOLERANCE * torch.finfo(torch.float32).eps * scale
        assert ((got.double() - expected.double()).abs() <= bound)[inside].all()
        # Each row equals the same row run alone, without padding, bitwise.
        for row, (start, end) in enumerate(spans_of(mask, False)):
            alone = Steer(steer.vectors[row:row + 1], steer.alpha[row:row + 1], steer.gamma[row:row + 1])
            by_itself = hook_output(tiny_engine, alone, layer, torch.ones(1, end - start, dtype=torch.long),
                                    hidden[row:row + 1, start:end], exclude_sink)
            assert torch.equal(got[row:row + 1, start:end], by_itself)


def test_bf16_hook_stays_closer_to_float64_than_the_paper_arithmetic_in_bf16(tiny_engine):
    """In bf16 the hook rounds once (float32 mu and shift, added once); the paper's hook run in bf16 rounds mu
    and each of its operations. Against the float64 result the first is within half a bf16 ulp (plus float32
    noise where a and the shift cancel), and closer."""
    layer = 4
    errors, paper_errors = [], []
    for seed in range(5):
        hidden, mask = padded_batch(torch.bfloat16, seed)
        steer = random_steer(tiny_engine, 4, seed)
        spans = spans_of(mask, False)
        inside = steered_mask(spans, hidden.shape[1])
        got = hook_output(tiny_engine, steer, layer, mask, hidden, False)
        assert got.dtype == torch.bfloat16
        exact = oracle_for(steer, layer, hidden, spans, torch.float64)[inside]
        error = (got.double()[inside] - exact).abs()
        a = hidden.double()[inside]
        noise = 4 * torch.finfo(torch.float32).eps * (a.abs() + (exact - a).abs())  # float32 shift and sum
        assert (error <= 2 ** -8 * exact.abs() + noise).all()  # half an ulp: bf16 keeps 8 significant bits
        errors.append(error)
        paper_errors.append((oracle_for(steer, layer, hidden, spans, torch.bfloat16).double()[inside] - exact).abs())
    error, paper_error = torch.cat(errors), torch.cat(paper_errors)
    assert error.mean() < paper_error.mean() and error.max() <= paper_error.max()


def test_cached_running_mean_in_bf16_keeps_float32_sums_and_exact_counts(tiny_engine):
    """301 positions of bf16 outputs (bf16 cannot hold 301: it rounds to 300) give the float64 mean within 1e-3."""
    steer = random_steer(tiny_engine, 2, 0)
    steer.cached = True
    layer = 3
    module = tiny_engine.layers[layer]
    generator = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1] * 21, [0] * 5 + [1] * 16])

    def outputs(positions: int) -> torch.Tensor:
        return (3 + torch.randn(2, positions, 64, generator=generator)).to(torch.bfloat16)
    seen = [outputs(21)]
    with fusion_hooks(tiny_engine.layers, steer) as positions:
        positions.update(mask, decoding=False, exclude_sink=False)
        hook_of(module)(module, (), seen[0])
        for _ in range(280):
            seen.append(outputs(1))
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
            positions.update(mask, decoding=True, exclude_sink=False)
            hook_of(module)(module, (), seen[-1])
        sums, counts = positions.sums[layer], positions.counts[layer]
    assert sums.dtype == torch.float32 and counts.dtype in (torch.float32, torch.int64)
    assert counts.tolist() == [301, 296]
    every = torch.cat(seen, dim=1).double()
    expected = torch.stack([every[0].mean(dim=0), every[1, 5:].mean(dim=0)])
    assert ((sums / counts[:, None] - expected).abs() / expected.abs()).max() < 1e-3


@pytest.mark.parametrize(("cuda", "bf16", "expected"), [
    (False, False, torch.float32), (True, True, torch.bfloat16), (True, False, torch.float16)])
def test_compute_dtype_follows_the_device_and_4bit_computes_in_it(monkeypatch, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    cfg = model_config(CONF, "smollm2-135m", quantization="4bit")
    assert compute_dtype(cfg) == expected
    assert _quantization(cfg, compute_dtype(cfg)).bnb_4bit_compute_dtype == expected


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
