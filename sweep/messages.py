"""What Tune trials and replicas send each other. Plain dataclasses with no torch or transformers import:
a trial worker unpickles these, and importing the model stack would cost every worker seconds at start."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SteerSettings:
    """What a replica needs to run steered trials from prompt ids, vector names and weights alone."""

    run_root: str
    vectors_file: str  # in run_root: vectors.safetensors, or the transfer stage's vectors
    max_new_tokens: int
    chat_template: bool
    exclude_sink: bool
    cached: bool
    include_prompt: bool
    perplexity_window: int


@dataclass(frozen=True)
class SteerRequest:
    prompt_id: int  # whose question is asked and whose gold answer scores the overlap
    vector: str  # the steering vector's name in the vectors file (another prompt's for the mismatched control)
    alpha: list[float]  # [layers]
    gamma: list[float]  # [layers]
    in_context: bool = False  # the prompt's reference text (gold answer and explanation) before its question
    sampling: tuple[float, int] | None = None  # (temperature, seed): sampled decoding; None: greedy


@dataclass(frozen=True)
class SteeredOutput:
    text: str  # the continuation
    # Both scored on the continuation, or (scoring.include_prompt, the paper's variant) the plain prompt + it.
    perplexity: float
    overlap: float  # token overlap with the prompt's gold answer
    repetition: float  # scoring.repetition of the continuation
    distinct_2: float
    seconds: float  # the batch's wall time divided by its size: this trial's share of the replica
