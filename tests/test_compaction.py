"""Finished rows leave the batch (sweep/engine.py): the token ids are bitwise those of the engine that keeps them
as padding, in every mode, and fewer positions are computed."""

from __future__ import annotations

import pytest
import torch

from sweep.engine import Engine
from sweep.models import load, locate, model_config
from sweep.steering import Steer, fusion_hooks

from conftest import CONF

PROMPTS = [
    "Question: Who received the IEEE Frank Rosenblatt Award in 2010?\nAnswer and explanation:",
    "Question: In what year did Jan Verkolje die?\nAnswer and explanation:",
    "Question: What is the capital of France?\nAnswer and explanation:",
    "Question: Who painted the Hay Wain?\nAnswer:",
    "Hello",
]
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def lively_engine(smollm2) -> Engine:
    """The tiny random model with its decoder matrices scaled 10x: each step's token then depends on the whole
    context (the plain tiny model repeats its first token forever, which would hide a row mixed up with another)."""
    cfg = model_config(CONF, "tiny-random")
    model, tokenizer = load(cfg, locate(cfg, CONF))
    with torch.no_grad():
        for parameter in model.model.layers.parameters():
            if parameter.dim() == 2:
                parameter.mul_(10)
    return Engine(model, tokenizer)


def generated_ids(engine: Engine, steer: Steer | None, compact_below: float) -> tuple[torch.Tensor, int, int]:
    """(new token ids [rows, steps], positions computed, positions real), as Engine.generate runs them."""
    engine.compact_below, engine.positions_computed, engine.positions_real = compact_below, 0, 0
    ids, mask = engine.encode(PROMPTS, False)
    if steer is None:
        new = engine._greedy(ids, mask, NEW_TOKENS, None, True, True)
    else:
        with fusion_hooks(engine.layers, steer) as positions:
            new = engine._greedy(ids, mask, NEW_TOKENS, positions, steer.cached, True, steer.exclude_sink)
    return new, engine.positions_computed, engine.positions_real


def finishing_tokens(engine: Engine, steer: Steer | None) -> torch.Tensor:
    """EOS ids that end rows 0, 2 and 3 at steps 3, 7 and 11 (or earlier, where the token came before), and
    leave the rest to run to the end."""
    new, _, _ = generated_ids(engine, steer, 0.0)
    return torch.tensor([int(new[0, 2]), int(new[2, 6]), int(new[3, 10])])


def steer_of(engine: Engine, cached: bool | None) -> Steer | None:
    if cached is None:
        return None
    generator = torch.Generator().manual_seed(0)
    rows, layers = len(PROMPTS), engine.num_layers
    return Steer(vectors=4 * torch.randn(rows, layers, engine.model.config.hidden_size, generator=generator),
                 alpha=torch.rand(rows, layers, generator=generator, dtype=torch.float64),
                 gamma=torch.rand(rows, layers, generator=generator, dtype=torch.float64),
                 exclude_sink=True, cached=cached)


@pytest.mark.parametrize("cached", [None, True, False], ids=["unsteered", "cached", "faithful"])
def test_compacted_rows_generate_bitwise_the_same_token_ids(lively_engine, monkeypatch, cached):
    steer = steer_of(lively_engine, cached)
    saved = lively_engine.compact_below
    monkeypatch.setattr(lively_engine, "eos", finishing_tokens(lively_engine, steer))
    try:
        kept, kept_computed, kept_real = generated_ids(lively_engine, steer, 0.0)
        finished = torch.isin(kept, lively_engine.eos).any(dim=1)
        assert 2 <= int(finished.sum()) < len(PROMPTS)  # rows end at different steps, some run to the end
        assert kept.shape[1] == NEW_TOKENS and kept_real < kept_computed
        for threshold in (1.0, 0.75, 0.5):
            got, computed, real = generated_ids(lively_engine, steer, threshold)
            assert torch.equal(got, kept), threshold
            assert real == kept_real and real <= computed < kept_computed, threshold
    finally:
        lively_engine.compact_below = saved
    # Every finished row is padded after its EOS, as before.
    pad = lively_engine.tokenizer.pad_token_id
    for row in finished.nonzero().flatten().tolist():
        end = int(torch.isin(kept[row], lively_engine.eos).nonzero()[0])
        assert (kept[row, end + 1:] == pad).all()


def test_compaction_off_and_without_eos_changes_nothing(lively_engine):
    """stop_at_eos=False never compacts: every position computed is real."""
    steer = steer_of(lively_engine, True)
    lively_engine.positions_computed = lively_engine.positions_real = 0
    lively_engine.generate(PROMPTS, 8, steer=steer, stop_at_eos=False)
    assert lively_engine.positions_computed == lively_engine.positions_real == 8 * len(PROMPTS)


def test_unsteered_faithful_baseline_equals_the_cached_texts(lively_engine):
    """The bench's unsteered baseline for faithful mode recomputes the sequence and must give the same texts;
    a cache setting that contradicts the steering mode is refused."""
    assert lively_engine.generate(PROMPTS, 8, use_cache=False) == lively_engine.generate(PROMPTS, 8)
    with pytest.raises(ValueError, match="contradicts"):
        lively_engine.generate(PROMPTS, 2, steer=steer_of(lively_engine, True), use_cache=False)
