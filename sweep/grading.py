"""`fusion-steering grade`: any system's answers on this project's scale. Reads CSV or Parquet with columns
`question`, `answer` (gold) and `response`; writes the same rows plus `grade`, `judge_score` and `judge_parsed`
in the output's format; returns SimpleQA's metrics as text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import SweepConfig
from .errors import DataError
from .evaluate import judge_all, simpleqa_metrics
from .judges import Item, exact_judge
from .progress import Progress
from .rundir import RunDir, write_bytes_atomic

COLUMNS = ("question", "answer", "response")
FORMATS = (".csv", ".parquet")


def read_answers(path: Path) -> pd.DataFrame:
    if path.suffix not in FORMATS:
        raise DataError(f"{path}: the input must be .csv or .parquet")
    try:
        frame = pd.read_csv(path, keep_default_na=False) if path.suffix == ".csv" else pd.read_parquet(path)
    except FileNotFoundError as err:
        raise DataError(f"no such file: {path}") from err
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; found: {', '.join(map(str, frame.columns))}")
    return frame


def grade_file(cfg: SweepConfig, source: Path, target: Path) -> str:
    """Grade every row with the configured judge (`judge.*`), write `target`, return the metrics' lines."""
    if target.suffix not in FORMATS:
        raise DataError(f"{target}: the output must be .csv or .parquet")
    frame = read_answers(source)
    items = [Item(str(q), str(a), str(r)) for q, a, r in zip(frame["question"], frame["answer"], frame["response"])]
    if cfg.judge.kind == "exact":
        with Progress("grade", len(items), "answers judged") as progress:
            grades, scores = judge_all(exact_judge(), items, progress)
    else:  # a model judge: on a Ray replica (local) or a server (http, its reply cache beside the output)
        from .session import Session

        session = Session(cfg, RunDir(target.parent))
        try:
            with Progress("grade", len(items), "answers judged") as progress:
                grades, scores = judge_all(session.judge(), items, progress)
        finally:
            session.close(True)
    graded = frame.assign(grade=grades, judge_score=[s.value for s in scores], judge_parsed=[s.parsed for s in scores])
    data = graded.to_csv(index=False).encode() if target.suffix == ".csv" else graded.to_parquet(index=False)
    write_bytes_atomic(target, data)
    m = simpleqa_metrics(grades)
    return (f"{m.n} answers graded by the `{cfg.judge.kind}` judge -> {target}\n"
            f"correct {m.correct:.1%}, incorrect {m.incorrect:.1%}, not attempted {m.not_attempted:.1%}, "
            f"accuracy given attempted {m.accuracy_given_attempted:.1%}, F1 {m.f1:.3f}")
