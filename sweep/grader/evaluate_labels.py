"""The grader against a labelled set (tests/data/grader_labels.csv, or the held-out
tests/data/grader_labels_holdout.csv): agreement with its 95% Wilson interval, confusion matrices overall, on
real outputs and per arm, and the false-CORRECT rate (non-CORRECT labels graded CORRECT, the error that
flatters steering). With `--second FILE` (a second, blind labeller's labels of some of the cases:
tests/data/grader_labels_second.csv), also how often the two labellers agree (Cohen's kappa) and the grader's
agreement with each and on the cases where they agree.

    python -m sweep.grader.evaluate_labels tests/data/grader_labels.csv [--misses] [--second FILE]
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
    agreed: int
    non_correct: int
    graded_correct: int  # of the non-CORRECT labels: the false CORRECTs

    @property
    def agree(self) -> float:
        return self.agreed / self.n if self.n else 0.0

    @property
    def false_correct(self) -> float:
        return self.graded_correct / self.non_correct if self.non_correct else 0.0


def read_labels(path: Path, columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    labels = pd.read_csv(path, keep_default_na=False, dtype=str)
    missing = [c for c in columns if c not in labels.columns]
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
    return Agreement(len(frame), int((frame["label"] == frame["grade"]).sum()), len(non_correct),
                     int((non_correct["grade"] == CORRECT).sum()))


def confusion(frame: pd.DataFrame, against: str = "grade") -> pd.DataFrame:
    """Rows: the label; columns: the grader's grade (or another column of grades, e.g. a second labeller's)."""
    table = pd.crosstab(pd.Categorical(frame["label"], GRADES), pd.Categorical(frame[against], GRADES),
                        rownames=["label"], colnames=["grader"], dropna=False)
    return table.reindex(index=GRADES, columns=GRADES, fill_value=0)


def second_labels(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The cases of `frame` a second labeller labelled, with their label as `second`."""
    second = read_labels(path, ("case_id", "label"))
    return frame.merge(second[["case_id", "label"]].rename(columns={"label": "second"}), on="case_id")


def cohen_kappa(first: pd.Series, second: pd.Series) -> float:
    """Agreement of two labellers beyond what their label shares alone would give (1: always agree, 0: chance)."""
    observed = float((first.values == second.values).mean())
    chance = sum(float((first == g).mean()) * float((second == g).mean()) for g in GRADES)
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def labeller_report(frame: pd.DataFrame) -> str:
    """Two labellers against each other, and the grader against each and against the cases they agree on."""
    from analysis.stats import wilson_interval

    lines = ["### Two labellers", ""]
    for title, part in (("all", frame), *(((f"disputed={d}"), g) for d, g in frame.groupby("disputed"))):
        on_agreed = agreement(part[part["label"] == part["second"]])
        ci = wilson_interval(on_agreed.agreed, on_agreed.n) if on_agreed.n else None
        on_both = f"{on_agreed.agree:.1%} ({ci.low:.1%}-{ci.high:.1%})" if ci else "-"
        lines.append(f"- {title}: {len(part)} cases; labellers agree on {on_agreed.n} "
                     f"({on_agreed.n / len(part):.1%}, kappa {cohen_kappa(part['label'], part['second']):.2f}); "
                     f"grader agrees with the first {(part['grade'] == part['label']).mean():.1%}, with the second "
                     f"{(part['grade'] == part['second']).mean():.1%}, on the {on_agreed.n} agreed {on_both}")
    on_agreed = agreement(frame[frame["label"] == frame["second"]])
    lines += ["", "first labeller (rows) against the second (columns):", "",
              _markdown(confusion(frame, "second")).replace("label \\ grader", "first \\ second"), "",
              f"false CORRECT on agreed cases: {on_agreed.graded_correct} of {on_agreed.non_correct}"]
    return "\n".join(lines)


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| label \\ grader | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(str(v) for v in row) + " |" for label, row in table.iterrows()]
    return "\n".join(lines)


def _section(title: str, frame: pd.DataFrame) -> list[str]:
    from analysis.stats import wilson_interval  # the project's one interval for shares

    a = agreement(frame)
    agree = wilson_interval(a.agreed, a.n)
    bound = f", 95% CI up to {wilson_interval(a.graded_correct, a.non_correct).high:.1%}" if a.non_correct else ""
    return [f"### {title}", "", f"{a.n} cases, agreement {a.agree:.1%} (95% CI {agree.low:.1%}-{agree.high:.1%}), "
            f"false CORRECT {a.false_correct:.1%} ({a.graded_correct} of {a.non_correct} non-CORRECT labels"
            f"{bound})", "",
            _markdown(confusion(frame)), ""]


def report(frame: pd.DataFrame) -> str:
    real = frame[frame["source"] != WRITTEN]
    lines = _section("All cases", frame) + _section("Real model outputs", real)
    for labeller, group in frame.groupby("labelled_by", sort=True):  # one labelling round each
        lines += _section(f"labelled by {labeller}", group)
    for (source, arm), group in frame.groupby(["source", "arm"], sort=True):
        lines += _section(f"{source} / {arm}", group)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("--misses", action="store_true", help="also list every case where grader and label differ")
    parser.add_argument("--second", type=Path, help="a second labeller's labels (case_id, label) of some cases")
    args = parser.parse_args(argv)
    frame = graded(read_labels(args.labels))
    print(report(frame))
    if args.second:
        print(labeller_report(second_labels(args.second, frame)))
    if args.misses:
        for row in frame[frame["label"] != frame["grade"]].itertuples():
            print(f"- {row.case_id} [{row.source}/{row.arm}] label {row.label}, grader {row.grade} ({row.reason}): "
                  f"gold {row.gold!r}; {row.response[:160]!r}")


if __name__ == "__main__":
    main()
