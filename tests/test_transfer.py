"""Oracle accounting: the split of prompts and the transferred weights."""

from __future__ import annotations

from sweep.stages.transfer import median_weights, split_prompts


def test_split_is_seeded_disjoint_and_complete():
    tuned, held = split_prompts(list(range(10)), 0.3, seed=0)
    assert len(held) == 3 and len(tuned) == 7
    assert sorted(tuned + held) == list(range(10))
    assert split_prompts(list(range(10)), 0.3, seed=0) == (tuned, held)
    assert split_prompts(list(range(10)), 0.3, seed=1) != (tuned, held)


def test_each_split_keeps_a_prompt_and_one_prompt_cannot_be_split():
    assert [len(s) for s in split_prompts([4, 7], 0.9, seed=0)] == [1, 1]
    assert [len(s) for s in split_prompts([4, 7], 0.01, seed=0)] == [1, 1]
    assert split_prompts([4], 0.5, seed=0) == ([4], [])


def test_median_weights_per_parameter_ignoring_the_other_methods_columns():
    best = [{"alpha_all": 0.1, "gamma_all": 0.9, "alpha_early": None},
            {"alpha_all": 0.5, "gamma_all": 0.2, "alpha_early": None},
            {"alpha_all": 0.3, "gamma_all": 0.4, "alpha_early": None}]
    assert median_weights(best) == {"alpha_all": 0.3, "gamma_all": 0.4}
