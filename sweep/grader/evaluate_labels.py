"""The grader against a labelled set (tests/data/grader_labels.csv, or the held-out
tests/data/grader_labels_holdout.csv): agreement with its 95% Wilson interval, confusion matrices overall, on
real outputs and per arm, and the false-CORRECT rate (non-CORRECT labels graded CORRECT, the error that
flatters steering).

    python -m sweep.grader.evaluate_labels tests/data/grader_labels.csv [--misses]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import grade
from .verdict import CORRECT, INCORRECT, NOT_ATTEMPTED

GRADES = [CORRECT, INCORRECT, NOT_ATTEMPTED]
WRITTEN = "written"  # the source of hand-written cases; every other source is a real model output
COLUMNS = ("case_id", "source", "arm", "question", "gold", "response", "label")


@dataclass(frozen=True)
class Agreement:
    n: int
    agree: float
    false_correct: float  # share of non-CORRECT labels graded CORRECT
    non_correct: int


def read_labels(path: Path) -> pd.DataFrame:
    labels = pd.read_csv(path, keep_default_na=False, dtype=str)
    missing = [c for c in COLUMNS if c not in labels.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}")
    bad = sorted(set(labels["label"]) - set(GRADES))
    if bad:
        raise ValueError(f"{path}: labels must be one of {', '.join(GRADES)}; found {', '.join(bad)}")
    return labels


def graded(labels: pd.DataFrame) -> pd.DataFrame:
    """The labels with the grader's grade and reason beside them."""
    verdicts = [grade(q, g, r) for q, g, r in zip(labels["question"], labels["gold"], labels["response"])]
    return labels.assign(grade=[v.grade for v in verdicts], reason=[v.reason for v in verdicts])


def agreement(frame: pd.DataFrame) -> Agreement:
    non_correct = frame[frame["label"] != CORRECT]
    false_correct = (non_correct["grade"] == CORRECT).mean() if len(non_correct) else 0.0
    return Agreement(len(frame), float((frame["label"] == frame["grade"]).mean()), float(false_correct),
                     len(non_correct))


def confusion(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows: the label; columns: the grader's grade."""
    table = pd.crosstab(pd.Categorical(frame["label"], GRADES), pd.Categorical(frame["grade"], GRADES),
                        rownames=["label"], colnames=["grader"], dropna=False)
    return table.reindex(index=GRADES, columns=GRADES, fill_value=0)


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| label \\ grader | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(v) for v in row) + " |" for label, row in table.iterrows()]
    return "\n".join(lines)


def _section(title: str, frame: pd.DataFrame) -> list[str]:
    from analysis.stats import wilson_interval  # the project's one interval for shares

    a = agreement(frame)
    agree = wilson_interval(round(a.agree * a.n), a.n)
    false_correct = round(a.false_correct * a.non_correct)
    bound = f", 95% CI up to {wilson_interval(false_correct, a.non_correct).high:.1%}" if a.non_correct else ""
    return [f"### {title}", "", f"{a.n} cases, agreement {a.agree:.1%} (95% CI {agree.low:.1%}-{agree.high:.1%}), "
            f"false CORRECT {a.false_correct:.1%} ({false_correct} of {a.non_correct} non-CORRECT labels{bound})", "",
            _markdown(confusion(frame)), ""]


def report(frame: pd.DataFrame) -> str:
    real = frame[frame["source"] != WRITTEN]
    lines = _section("All cases", frame) + _section("Real model outputs", real)
    for (source, arm), group in frame.groupby(["source", "arm"], sort=True):
        lines += _section(f"{source} / {arm}", group)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("--misses", action="store_true", help="also list every case where grader and label differ")
    args = parser.parse_args(argv)
    frame = graded(read_labels(args.labels))
    print(report(frame))
    if args.misses:
        for row in frame[frame["label"] != frame["grade"]].itertuples():
            print(f"- {row.case_id} [{row.source}/{row.arm}] label {row.label}, grader {row.grade} ({row.reason}): "
                  f"gold {row.gold!r}; {row.response[:160]!r}")


if __name__ == "__main__":
    main()
