"""select -> prompts.parquet, dataset.json: the chosen SimpleQA rows, their baseline answers (the bare question,
greedy), SimpleQA grades, and those to steer (data.keep_grades; the paper keeps INCORRECT)."""

from __future__ import annotations

import json
import logging

from .. import prompts
from ..data import choose_rows, load_questions, locate_csv
from ..errors import SweepError
from ..judges import Item
from ..progress import Progress
from ..rundir import SCHEMAS, write_table, write_text_atomic
from ..session import Session, fan_out

log = logging.getLogger(__name__)


def select(session: Session) -> None:
    cfg, run = session.cfg, session.run
    dataset = locate_csv(cfg.data)
    questions = choose_rows(load_questions(dataset.path), cfg.data)
    check_context(session, [prompts.steered(q.question) for q in questions])
    with Progress("select", len(questions), "answers") as progress:
        texts = fan_out(session.replicas, "generate", [prompts.baseline(q.question) for q in questions], progress,
                        cfg.generation.max_new_tokens, cfg.prompt.chat_template, patience=session.patience)
    grades = session.judge().grade([Item(q.question, q.answer, t) for q, t in zip(questions, texts)])
    rows = [{"prompt_id": q.prompt_id, "question": q.question, "answer": q.answer, "topic": q.topic,
             "answer_type": q.answer_type, "baseline_text": t, "baseline_grade": g}
            for q, t, g in zip(questions, texts, grades) if g in cfg.data.keep_grades]
    counts = {g: grades.count(g) for g in sorted(set(grades))}
    if not rows:
        raise SweepError(f"no baseline answer graded {' or '.join(cfg.data.keep_grades)} among the "
                         f"{len(questions)} rows read ({counts}): nothing to steer; raise data.rows")
    write_text_atomic(run.dataset, json.dumps({"file": dataset.path.name, "sha256": dataset.sha256,
                                               "bundled": dataset.bundled, "rows_read": len(questions),
                                               "row_ids": [q.prompt_id for q in questions]}, indent=1))
    write_table(run.table("prompts"), rows, SCHEMAS["prompts"])
    log.info("select: kept %d of %d rows (baseline grades %s)", len(rows), len(questions), counts)


def check_context(session: Session, texts: list[str]) -> None:
    """Refuse, before any generation, a prompt that with its new tokens would not fit the model's context."""
    from transformers import AutoConfig, AutoTokenizer

    from ..models import locate

    cfg = session.cfg
    location = locate(cfg.model, session.conf_dir)
    tokenizer = AutoTokenizer.from_pretrained(location.tokenizer)
    if cfg.model.source == "random":
        context = cfg.model.architecture.get("max_position_embeddings", 2048)
    else:
        context = getattr(AutoConfig.from_pretrained(location.weights), "max_position_embeddings", None)
    if not context:
        return
    for text in texts:
        length = len(tokenizer(text).input_ids) + cfg.generation.max_new_tokens + 32  # + chat template
        if length > context:
            raise SweepError(f"question too long for {cfg.model.name}: {length} tokens with the prompt template "
                             f"and {cfg.generation.max_new_tokens} new tokens, context {context}: {text[:80]!r}")
