"""transfer -> transfer.parquet, vectors_transfer.safetensors: the oracle accounting.

The tuned arms pick each prompt's best trial against its own gold answer. Here a seeded `transfer.holdout`
share of the prompts is held out; the per-parameter medians of the other prompts' best weights are applied
unchanged to them, with three reference vectors:
- `transfer`: their gold-answer vectors (the gold answer still informs the vector, not the selection);
- `question-only`: the mean over the steered prompt itself, rendered and with the sink rule as steering uses;
- `self`: the mean over the model's own unsteered answer and explanation to the steered prompt — no gold
  anywhere: the variant a user could deploy. Where the model wrote nothing (it ended its turn at once), there
  is no answer to average over and its self vector is its question-only vector.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from .. import prompts
from ..evaluate import Answer, grade_answers
from ..messages import SteerRequest
from ..progress import Progress
from ..rundir import SCHEMAS, read_rows, write_table
from ..session import Session, fan_out, num_layers, on_replicas, steer_settings
from ..tuning import trial_params
from ..weights import layer_weights, segment_bounds
from .vectors import save_tensors

SETTINGS = {"transfer": "gold", "question-only": "question", "self": "self"}  # setting -> vector name prefix


def split_prompts(prompt_ids: list[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """(tuning split, held-out split), a seeded shuffle; each split empty only when there is one prompt."""
    shuffled = sorted(prompt_ids)
    random.Random(seed).shuffle(shuffled)
    held = min(max(1, round(holdout * len(shuffled))), len(shuffled) - 1) if len(shuffled) > 1 else 0
    return sorted(shuffled[held:]), sorted(shuffled[:held])


def median_weights(best: Sequence[dict]) -> dict[str, float]:
    """Per-parameter medians of the best trials' weights."""
    names = {k for row in best for k in trial_params(row)}
    return {k: statistics.median(row[k] for row in best) for k in sorted(names)}


def transfer(session: Session) -> None:
    cfg, run = session.cfg, session.run
    selected = {r["prompt_id"]: r for r in read_rows(run.table("prompts"))}
    tuned, held = split_prompts(list(selected), cfg.transfer.holdout, cfg.seed)
    rows: list[dict] = []
    if held:
        answers = _steer_held(session, selected, tuned, held)
        with Progress("transfer", len(answers), "answers judged") as progress:
            graded = grade_answers([a for _, a in answers], session.judge(), cfg.scoring.include_prompt, progress)
        rows = [{**g, "setting": setting} for (setting, _), g in zip(answers, graded)]
    write_table(run.table("transfer"), rows, SCHEMAS["transfer"])


def _steer_held(session: Session, selected: dict[int, dict], tuned: list[int],
                held: list[int]) -> list[tuple[str, Answer]]:
    """Every (setting, method, held-out prompt) as one steered trial, in fixed batches of cluster.max_batch."""
    cfg, run = session.cfg, session.run
    replicas = session.replicas
    chat, sink = cfg.prompt.chat_template, cfg.steering.mean == "exclude_sink"
    questions = [selected[p]["question"] for p in held]
    with Progress("transfer", 3 * len(held), "answers and vectors") as progress:
        patience = session.patience
        own = fan_out(replicas, "generate", [prompts.steered(q) for q in questions], progress,
                      cfg.generation.max_new_tokens, chat, patience=patience)
        question_vectors = fan_out(replicas, "reference_vectors", [(q, None) for q in questions], progress, chat,
                                   sink, patience=patience)
        answered = [a if a.strip() else None for a in own]
        self_vectors = fan_out(replicas, "reference_vectors", list(zip(questions, answered)), progress, chat, sink,
                               patience=patience)
    silent = answered.count(None)
    if silent:
        print(f"transfer: {silent} of {len(held)} held-out prompts got an empty answer of the model's own; "
              "their self vector is their question-only vector", flush=True)
    gold = _load(run.vectors, [f"gold/{p}" for p in held])
    named = {**gold, **{f"question/{p}": v for p, v in zip(held, question_vectors)},
             **{f"self/{p}": v for p, v in zip(held, self_vectors)}}
    save_tensors(run.root / "vectors_transfer.safetensors", named)
    layers = num_layers(replicas)
    segments = segment_bounds(layers, list(cfg.steering.segment_starts))
    best = read_rows(run.table("best"))
    jobs: list[tuple[str, str, int, SteerRequest]] = []
    for setting, prefix in SETTINGS.items():
        for method in cfg.search.methods:
            weights = median_weights([b for b in best if b["method"] == method and b["prompt_id"] in tuned])
            alpha, gamma = layer_weights(weights, layers, segments)
            jobs += [(setting, method, p, SteerRequest(p, f"{prefix}/{p}", alpha, gamma)) for p in held]
    settings = steer_settings(cfg, run, "vectors_transfer.safetensors")
    batches = [jobs[i:i + cfg.cluster.max_batch] for i in range(0, len(jobs), cfg.cluster.max_batch)]
    with Progress("transfer", len(jobs), "trials") as progress:
        results = on_replicas(replicas, [("steer", (settings, [r for *_, r in batch])) for batch in batches],
                              progress, [len(batch) for batch in batches], session.patience)
    outputs = [out for batch in results for out in batch]
    return [(setting, Answer(p, method, selected[p]["question"], selected[p]["answer"], out.text))
            for (setting, method, p, _), out in zip(jobs, outputs)]


def _load(path, names: list[str]) -> dict:  # noqa: ANN001 - a Path
    from safetensors.torch import load_file

    vectors = load_file(str(path))
    return {n: vectors[n] for n in names}
