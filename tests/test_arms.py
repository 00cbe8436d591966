"""The arms on the tiny random model (fp32, exact): the random control matched on the injected shift, the
in_context and sampled references through a real ReplicaModel, and the product search space's identity with
the paper's hook."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sweep import prompts
from sweep.arms import arm_by_name, label, sweep_arms
from sweep.messages import SteerRequest, SteerSettings
from sweep.models import locate, model_config
from sweep.reference import paper_loop
from sweep.replica_model import ReplicaModel
from sweep.rundir import SCHEMAS, RunDir, write_table
from sweep.stages.vectors import matched_random, shift_norm_rows
from sweep.tuning import budget, sample_seed
from sweep.weights import layer_weights, segment_bounds, stored_params

from conftest import CONF, QUESTIONS

REFERENCE = "{answer}\nThe record books name {answer} for this, as the sources of the time agree."


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> ReplicaModel:
    """A real ReplicaModel on the tiny random model (seeded weights: the same as tiny_engine's)."""
    cfg = model_config(CONF, "tiny-random")
    return ReplicaModel(cfg, locate(cfg, CONF), threads=torch.get_num_threads())


def prompt_mean_by_hand(engine, question: str, exclude_sink: bool) -> torch.Tensor:  # noqa: ANN001
    """[layers, hidden]: each decoder layer's mean output over the steered prompt's tokens, from a forward pass
    of its own, as the hook averages them on its first pass (the sink left out when asked)."""
    ids = engine.tokenizer(prompts.steered(question), return_tensors="pt").input_ids
    outputs: list[torch.Tensor] = []
    handles = [layer.register_forward_hook(lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
               for layer in engine.layers]
    try:
        with torch.no_grad():
            engine.model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([out[0, int(exclude_sink):].float().mean(dim=0) for out in outputs])


@pytest.mark.parametrize("exclude_sink", [False, True])
def test_the_random_control_injects_the_gold_vectors_shift_norm_per_layer(replica, exclude_sink):
    question, answer, _, _ = QUESTIONS[0]
    # What the vectors stage fans out to the replicas: the gold vector and the prompt's own mean mu_q.
    gold, prompt_mean = replica.reference_vectors([(question, REFERENCE.format(answer=answer)), (question, None)],
                                                  False, exclude_sink)
    by_hand = prompt_mean_by_hand(replica.engine, question, exclude_sink)
    torch.testing.assert_close(prompt_mean, by_hand)
    random = matched_random(gold, prompt_mean, seed=0, prompt_id=0)
    gold_shift, random_shift = (gold - by_hand).norm(dim=-1), (random - by_hand).norm(dim=-1)
    torch.testing.assert_close(random_shift, gold_shift, rtol=1e-5, atol=1e-6)
    assert bool((gold_shift > 0).all())
    # ... in a direction of its own: not the gold shift's, nor the old control's ||random|| = ||gold||.
    cosine = torch.nn.functional.cosine_similarity(random - by_hand, gold - by_hand, dim=-1)
    assert bool((cosine.abs() < 0.5).all())
    assert not torch.allclose(random.norm(dim=-1), gold.norm(dim=-1), rtol=1e-3)
    torch.testing.assert_close(matched_random(gold, prompt_mean, 0, 0), random, rtol=0, atol=0)  # seeded
    assert not torch.equal(matched_random(gold, prompt_mean, 0, 1), random)


def test_shift_norms_are_per_arm_segment_means_of_the_injected_norm():
    generator = torch.Generator().manual_seed(0)
    layers, hidden = 7, 16
    gold = {p: torch.randn(layers, hidden, generator=generator) for p in (3, 9)}
    means = {p: torch.randn(layers, hidden, generator=generator) for p in (3, 9)}
    named = {f"gold/{p}": v for p, v in gold.items()} | {f"random/{p}": matched_random(gold[p], means[p], 0, p)
                                                         for p in gold}
    arms = [a for a in sweep_arms(["full", "segmented"], ["prompt_only", "random", "mismatched", "in_context"])
            if a.vectors != "none"]
    segments = segment_bounds(layers, [])
    rows = shift_norm_rows(arms, named, means, {3: 9, 9: 3}, segments)
    norms = {(r["prompt_id"], r["method"], r["segment"]): r["norm"] for r in rows}
    assert len(rows) == 2 * 6 * 3 and {r["method"] for r in rows} == {a.name for a in arms}
    start, end = segments[1]
    assert norms[(3, "full", "middle")] == pytest.approx(float((gold[3] - means[3]).norm(dim=-1)[start:end].mean()))
    # The mismatched arm steers prompt 3 with prompt 9's gold vector, against prompt 3's own mean.
    assert norms[(3, "segmented-mismatched", "late")] == pytest.approx(
        float((gold[9] - means[3]).norm(dim=-1)[segments[2][0]:].mean()))
    for key, value in norms.items():
        if key[1].endswith("-random"):
            assert value == pytest.approx(norms[(key[0], key[1].removesuffix("-random"), key[2])], rel=1e-5)


def tiny_run(root: Path, replica: ReplicaModel) -> SteerSettings:
    root.mkdir(parents=True, exist_ok=True)
    run = RunDir(root)
    refs = [{"prompt_id": i, "question": q, "answer": a, "explanation": "", "explanation_source": "empty",
             "reference_text": REFERENCE.format(answer=a)} for i, (q, a, _, _) in enumerate(QUESTIONS)]
    write_table(run.table("references"), refs, SCHEMAS["references"])
    hidden = replica.engine.model.config.hidden_size
    save_file({f"gold/{i}": torch.zeros(replica.num_layers, hidden) for i in range(len(QUESTIONS))}, str(run.vectors))
    return SteerSettings(run_root=str(root), vectors_file=run.vectors.name, max_new_tokens=12, chat_template=False,
                         exclude_sink=False, cached=True, include_prompt=False, perplexity_window=512)


def unsteered(replica: ReplicaModel, prompt_id: int, arm: str, trial: int = 0) -> SteerRequest:
    """The request the tune stage sends for an unsteered arm's trial (seed 0, temperature 0.7)."""
    zeros = [0.0] * replica.num_layers
    sampling = (0.7, sample_seed(0, prompt_id, trial)) if arm_by_name(arm).sampled else None
    return SteerRequest(prompt_id, f"gold/{prompt_id}", zeros, zeros, arm_by_name(arm).in_context, sampling)


def test_sampled_is_seeded_per_trial_whatever_the_batch_and_differs_across_trials(tmp_path, replica):
    settings = tiny_run(tmp_path / "run", replica)
    batch = [unsteered(replica, 1, "sampled", t) for t in range(3)] + [unsteered(replica, 2, "prompt_only")]
    first = [out.text for out in replica.steer(settings, batch)]
    again = [out.text for out in replica.steer(settings, batch)]
    assert first == again
    assert len(set(first[:3])) == 3  # each trial samples its own text
    # Trial 1 alone, and beside other prompts' rows of another length, gives the same text.
    (alone,) = replica.steer(settings, [batch[1]])
    mixed = replica.steer(settings, [unsteered(replica, 5, "in_context"), batch[2], unsteered(replica, 3, "sampled")])
    assert (alone.text, mixed[1].text) == (first[1], first[2])
    # The greedy row beside them is the plain greedy continuation.
    (greedy,) = replica.engine.generate([prompts.steered(QUESTIONS[2][0])], 12)
    assert first[3] == greedy


def test_in_context_puts_the_reference_text_before_the_question(tmp_path, replica):
    question, answer, _, _ = QUESTIONS[3]
    reference = REFERENCE.format(answer=answer)
    shown = prompts.in_context(question, reference)
    assert shown.index(reference) < shown.index(question) and shown.endswith(prompts.steered(question))
    settings = tiny_run(tmp_path / "run", replica)
    (out,) = replica.steer(settings, [unsteered(replica, 3, "in_context")])
    (expected,) = replica.engine.generate([shown], 12)
    (without,) = replica.engine.generate([prompts.steered(question)], 12)
    assert out.text == expected and expected != without


def test_the_new_arms_are_oracles_with_their_budgets():
    arms = {a.name: a for a in sweep_arms(["full"], ["prompt_only", "in_context", "sampled"])}
    assert list(arms) == ["prompt_only", "in_context", "sampled", "full"]
    assert [label(n) for n in arms] == ["prompt_only", "in_context (oracle)", "sampled (oracle)", "full (oracle)"]
    assert [budget(a, 5) for a in arms.values()] == [1, 1, 5, 5]
    assert sweep_arms(["full"], []) == [arms["full"]]


def paper_hooked_logits(engine, ids: torch.Tensor, vectors: torch.Tensor, alpha: list[float],  # noqa: ANN001
                        gamma: list[float]) -> torch.Tensor:
    """One forward pass with the paper's hook, alpha * (a + gamma * (h - mu)) + (1 - alpha) * a, mu the mean
    over the pass (method.md §4; sweep/reference.py's formula)."""
    def make_hook(layer: int):  # noqa: ANN202
        def hook(module, args, output):  # noqa: ANN001, ANN202
            a = output[0] if isinstance(output, tuple) else output
            fused = alpha[layer] * (a + gamma[layer] * (vectors[layer] - a.mean(dim=1, keepdim=True))) \
                + (1 - alpha[layer]) * a
            return (fused, *output[1:]) if isinstance(output, tuple) else fused
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(engine.layers)]
    try:
        with torch.no_grad():
            return engine.model(input_ids=ids, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()


def test_the_product_space_is_the_paper_hook_with_gamma_one(tiny_engine):
    question, answer, _, _ = QUESTIONS[1]
    vectors = tiny_engine.span_means(*prompts.vector_span(tiny_engine.tokenizer, question, answer, False))
    layers, segments = tiny_engine.num_layers, segment_bounds(tiny_engine.num_layers, [])
    ids = tiny_engine.tokenizer(prompts.steered(question), return_tensors="pt").input_ids
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):
        factors = torch.rand(2, 3, generator=rng, dtype=torch.float64) * 0.99 + 0.01  # the paper's [0.01, 1]
        paper = {f"{f}_{s}": float(factors[i, j]) for i, f in enumerate(("alpha", "gamma"))
                 for j, s in enumerate(("early", "middle", "late"))}
        product = stored_params({f"alpha_{s}": paper[f"alpha_{s}"] * paper[f"gamma_{s}"]
                                 for s in ("early", "middle", "late")}, "product")
        alpha, gamma = layer_weights(paper, layers, segments)
        strength, ones = layer_weights(product, layers, segments)
        assert ones == [1.0] * layers
        torch.testing.assert_close(paper_hooked_logits(tiny_engine, ids, vectors, strength, ones),
                                   paper_hooked_logits(tiny_engine, ids, vectors, alpha, gamma), rtol=1e-5, atol=1e-5)
        assert paper_loop(tiny_engine, prompts.steered(question), vectors, strength, ones, 12) == \
            paper_loop(tiny_engine, prompts.steered(question), vectors, alpha, gamma, 12)
