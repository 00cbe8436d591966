"""enrich -> references.parquet: the model continues 'Question: q\\nAnswer: gold'; the text it adds is the
explanation that joins the gold answer in the reference text (method.md §2)."""

from __future__ import annotations

from .. import prompts
from ..progress import Progress
from ..rundir import SCHEMAS, read_rows, write_table
from ..session import Session, fan_out


def enrich(session: Session) -> None:
    run, cfg = session.run, session.cfg
    selected = read_rows(run.table("prompts"))
    with Progress("enrich", len(selected), "explanations") as progress:
        continuations = fan_out(session.replicas, "generate",
                                [prompts.enrichment(r["question"], r["answer"]) for r in selected], progress,
                                cfg.generation.max_new_tokens, cfg.prompt.chat_template, patience=session.patience)
    rows = []
    for r, continuation in zip(selected, continuations):
        explanation, source = prompts.split_explanation(continuation)
        rows.append({"prompt_id": r["prompt_id"], "question": r["question"], "answer": r["answer"],
                     "explanation": explanation, "explanation_source": source,
                     "reference_text": prompts.reference_answer(r["answer"], explanation)})
    write_table(run.table("references"), rows, SCHEMAS["references"])
