"""evaluate -> grades.parquet: the judge grades the baseline and every arm's best answer (SimpleQA grade, 1-5
score), with overlap, repetition and the composite."""

from __future__ import annotations

from ..evaluate import answers, grade_answers
from ..progress import Progress
from ..rundir import SCHEMAS, read_rows, write_table
from ..session import Session


def evaluate(session: Session) -> None:
    cfg, run = session.cfg, session.run
    items = answers(read_rows(run.table("prompts")), read_rows(run.table("best")))
    judge = session.judge()
    with Progress("evaluate", len(items), "answers judged") as progress:
        rows = grade_answers(items, judge, cfg.scoring.include_prompt, progress)
    write_table(run.table("grades"), rows, SCHEMAS["grades"])
