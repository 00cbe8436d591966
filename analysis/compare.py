"""Compare run directories (models, presets, steering modes) from their Parquet files alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sweep.arms import BASELINE, PROMPT_ONLY, label
from sweep.config import flatten, from_yaml
from sweep.evaluate import simpleqa_metrics
from sweep.rundir import RunDir

from .tables import summarise

ARMS = (BASELINE, PROMPT_ONLY, "full", "segmented")  # the controls stay in each run's own report


def _label(runs: list[RunDir]) -> list[str]:
    """Each run named by the config keys in which the runs differ (or by its folder name)."""
    flat = [flatten(from_yaml(r.config.read_text())) for r in runs]
    differing = sorted(k for k in flat[0] if k != "conf_dir" and len({str(f.get(k)) for f in flat}) > 1)
    return [", ".join(f"{k}={f[k]}" for k in differing) or r.root.name for r, f in zip(runs, flat)]


def compare_table(dirs: list[Path]) -> str:
    """Markdown: per run, accuracy (composite >= 0.6, not degenerate), SimpleQA correct and mean composite per
    arm, mean best objective, and the tune stage's engine seconds."""
    runs = [RunDir(d) for d in dirs]
    arms = [a for a in ARMS if all(a in set(pd.read_parquet(r.table("grades"))["method"]) for r in runs)]
    header = ["run", "prompts", *(f"{label(a)} acc / correct / composite" for a in arms), "best objective", "trial s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, name in zip(runs, _label(runs)):
        grades = pd.read_parquet(run.table("grades"))
        best = pd.read_parquet(run.table("best"))
        timings = pd.read_parquet(run.table("timings"))
        cells = [name, str(grades["prompt_id"].nunique())]
        for arm in arms:
            g = grades[grades["method"] == arm]
            s = summarise(g["overlap"].tolist(), g["judge_score"].tolist())
            cells.append(f"{g['accurate'].mean():.0%} / {simpleqa_metrics(g['grade'].tolist()).correct:.0%} / "
                         f"{s.composite_mean:.2f}")
        cells += [f"{best['objective'].mean():.3f}", f"{timings['seconds'].sum():.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if any(from_yaml(r.config.read_text()).judge.kind == "exact" for r in runs):
        lines += ["", "With the rule-based `exact` judge, accuracy and the composite are grade-derived: its 1-5 score is "
                  "a function of the SimpleQA grade."]
    return "\n".join(lines)


def paired_trials(a: Path, b: Path) -> dict[str, float]:
    """Two runs with the same prompts, seeds and search: how often the same trial gave the same text, the
    mean change in objective (b - a) per trial and for the best trial, and the change in accuracy."""
    ta, tb = (pd.read_parquet(RunDir(d).table("trials")) for d in (a, b))
    keys = ["prompt_id", "method", "trial"]
    joined = ta.merge(tb, on=keys, suffixes=("_a", "_b"))
    if joined.empty:
        raise ValueError(f"{a} and {b} share no (prompt, method, trial)")
    ga, gb = (pd.read_parquet(RunDir(d).table("grades")) for d in (a, b))
    steered = [m for m in ("full", "segmented") if m in set(ga["method"])]
    ba, bb = (pd.read_parquet(RunDir(d).table("best")) for d in (a, b))
    return {
        "trials": float(len(joined)),
        "same_text": float((joined["text_a"] == joined["text_b"]).mean()),
        "objective_change": float((joined["objective_b"] - joined["objective_a"]).mean()),
        "best_objective_change": float(bb["objective"].mean() - ba["objective"].mean()),
        "accuracy_change": float(gb[gb["method"].isin(steered)]["accurate"].mean()
                                 - ga[ga["method"].isin(steered)]["accurate"].mean()),
    }
