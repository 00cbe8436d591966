"""The arms of a sweep: each steered method, and the controls that separate what steering does from what the
prompt change, the gold text in the prompt and best-of-k selection against the gold answer do by themselves.
Pure Python (trial workers import it).

| arm                 | prompt                   | steering vector                                  | trials        |
|---------------------|--------------------------|--------------------------------------------------|---------------|
| `baseline`          | bare q                   | none                                             | - (select)    |
| `prompt_only`       | steered                  | none (weights 0: the hook adds nothing)          | 1             |
| `in_context`        | reference text + steered | none                                             | 1             |
| `sampled`           | steered, sampled         | none                                             | search.trials |
| `full`, `segmented` | steered                  | the prompt's own reference vector (gold answer)  | search.trials |
| `METHOD-random`     | steered                  | seeded, with gold's ||v - mu_q|| on every layer  | as METHOD     |
| `METHOD-mismatched` | steered                  | another prompt's reference vector (derangement)  | as METHOD     |

Controls run for every method: each method is judged against its own controls, which share its search space,
budget, objective and Optuna seed (with fewer trials than TPE's start-up count, the very same weights), so a
method-vs-control difference is the vector's doing alone. Every arm that sees the gold answer is an oracle,
labelled so wherever it is shown: the tuned arms and `sampled` keep their best trial by the objective, which
scores overlap with the gold answer; `in_context` has the gold answer and explanation in its prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASELINE, PROMPT_ONLY, IN_CONTEXT, SAMPLED = "baseline", "prompt_only", "in_context", "sampled"
VECTOR_CONTROLS = ("random", "mismatched")


@dataclass(frozen=True)
class Arm:
    name: str  # the `method` column of trials/best/grades
    method: str | None  # the search space it tunes (full / segmented); None: not tuned
    vectors: str  # gold | random | mismatched | none
    in_context: bool = False  # the reference text (gold answer and explanation) before the question
    sampled: bool = False  # temperature sampling, seeded per trial, instead of greedy decoding

    @property
    def oracle(self) -> bool:
        """Sees the gold answer: best of k trials picked against it, or it in the prompt."""
        return self.method is not None or self.in_context or self.sampled


UNSTEERED = {PROMPT_ONLY: Arm(PROMPT_ONLY, None, "none"), IN_CONTEXT: Arm(IN_CONTEXT, None, "none", in_context=True),
             SAMPLED: Arm(SAMPLED, None, "none", sampled=True)}


def sweep_arms(methods: list[str], controls: list[str]) -> list[Arm]:
    """The tuned and control arms of a sweep, in report order: the unsteered references, then the methods,
    then each vector control."""
    arms = [arm for name, arm in UNSTEERED.items() if name in controls]
    arms += [Arm(m, m, "gold") for m in methods]
    for control in VECTOR_CONTROLS:
        if control in controls:
            arms += [Arm(f"{m}-{control}", m, control) for m in methods]
    return arms


def arm_by_name(name: str) -> Arm:
    if name in UNSTEERED:
        return UNSTEERED[name]
    method, _, control = name.partition("-")
    return Arm(name, method, control or "gold")


def label(name: str) -> str:
    """How reports, plots and MLflow name an arm: arms that see the gold answer say they are oracles."""
    return f"{name} (oracle)" if name != BASELINE and arm_by_name(name).oracle else name


def metric_prefix(name: str) -> str:
    """MLflow metric names allow no spaces or parentheses: `oracle.full`, `prompt_only`."""
    return f"oracle.{name}" if name != BASELINE and arm_by_name(name).oracle else name


def derangement(prompt_ids: list[int], seed: int) -> dict[int, int]:
    """prompt -> another prompt, no prompt mapped to itself (Sattolo's shuffle: one cycle), seeded."""
    if len(prompt_ids) < 2:
        raise ValueError(f"the mismatched control needs at least 2 prompts, got {len(prompt_ids)}")
    order = sorted(prompt_ids)
    rng = random.Random(seed)
    for i in range(len(order) - 1, 0, -1):
        j = rng.randrange(i)  # j < i: Sattolo's variant of Fisher-Yates
        order[i], order[j] = order[j], order[i]
    return dict(zip(sorted(prompt_ids), order))


def vector_key(arm: Arm, prompt_id: int, mismatch: dict[int, int]) -> str:
    """The name of the steering vector in vectors.safetensors for this arm and prompt (the unsteered arms'
    weights are 0, so their own gold vector is carried and adds nothing)."""
    if arm.vectors == "random":
        return f"random/{prompt_id}"
    if arm.vectors == "mismatched":
        return f"gold/{mismatch[prompt_id]}"
    return f"gold/{prompt_id}"
