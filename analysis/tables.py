"""Paper-style result tables (method.md §8).

`summarise` turns per-prompt overlap and judge scores into the paper's metrics, for our runs and the
paper's alike; `paper_notebook_table` recomputes the paper's table from the authors' released CSVs with
`sweep.scoring`, which tests our scoring against theirs; `markdown_table` prints the table.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sweep.judges import CORRECT, Item, exact_grade
from sweep.scoring import ACCURACY_THRESHOLD, composite, token_overlap

OVERLAP_BAR = 0.5  # the paper's "overlap >= 0.5" row
JUDGE_BAR = 4  # the paper's "judge score >= 4" row

_SUMMARY_COLUMNS = ("prompt_idx", "token_overlap", "generated_text", "ground_truth", "score")
_JUDGE_COLUMNS = ("prompt_id", "target", "predicted", "score")

# Which per-prompt rule reproduces each published number; see paper_notebook_table's docstring for why.
RULES = {
    "overlap": "recomputed token_overlap of the recorded text incl. the prompt vs the CSV's ground truth; "
    "equals the recorded token_overlap on every best trial, so either column gives the same numbers",
    "baseline": "baseline judge file: overlap of `predicted` vs `target`, with that row's score",
    "accuracy": "best trial per prompt (optuna summary): its overlap and its judge score (`score`)",
    "overlap_ge_05": "best trial's overlap",
    "judge_ge_4": "highest-composite graded row per prompt (mistral_grader_results)",
    "composite_median_mean": "best trial's composite, as accuracy",
    "overlap_mean": "best trial's overlap",
    "overlap_agreement": "share of full + segmented best trials whose recomputed overlap equals "
    "token_overlap at 4 dp",
}


@dataclass(frozen=True)
class MethodSummary:
    """One column of the paper's table; shares are fractions in [0, 1], counts out of n."""

    n: int
    accuracy: float
    accurate_count: int
    overlap_ge_05: float
    overlap_ge_05_count: int
    judge_ge_4: float
    judge_ge_4_count: int
    composite_mean: float
    composite_median: float
    overlap_mean: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain dict, for JSON reports and for `markdown_table`."""
        return asdict(self)


def summarise(overlap: Sequence[float], judge_score: Sequence[float]) -> MethodSummary:
    """Paper metrics over prompts, given each prompt's overlap and 1-5 judge score (method.md §7)."""
    if len(overlap) != len(judge_score) or len(overlap) == 0:
        raise ValueError(f"need equally many overlaps and scores (>0): {len(overlap)}, {len(judge_score)}")
    composites = [composite(o, s) for o, s in zip(overlap, judge_score)]
    n = len(composites)
    accurate = sum(c >= ACCURACY_THRESHOLD for c in composites)
    high_overlap = sum(o >= OVERLAP_BAR for o in overlap)
    high_judge = sum(s >= JUDGE_BAR for s in judge_score)
    return MethodSummary(
        n=n,
        accuracy=accurate / n,
        accurate_count=accurate,
        overlap_ge_05=high_overlap / n,
        overlap_ge_05_count=high_overlap,
        judge_ge_4=high_judge / n,
        judge_ge_4_count=high_judge,
        composite_mean=statistics.fmean(composites),
        composite_median=statistics.median(composites),
        overlap_mean=statistics.fmean(overlap),
    )


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read one of the authors' CSVs, failing with the file's name if it is absent or malformed."""
    if not path.is_file():
        raise ValueError(f"missing CSV: {path}")
    frame = pd.read_csv(path)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{path} lacks columns {absent}")
    return frame


def _overlaps(gold: pd.Series, text: pd.Series) -> list[float]:
    """Our token overlap of each recorded text against its gold answer (texts include the prompt)."""
    return [token_overlap(str(g), str(t)) for g, t in zip(gold, text)]


def _highest_composite_rows(graded: pd.DataFrame) -> pd.DataFrame:
    """Per prompt, the graded row with the highest composite: the authors' rule for repeated gradings."""
    graded = graded.assign(overlap=_overlaps(graded["target"], graded["predicted"]))
    graded = graded.assign(composite=[composite(o, s) for o, s in zip(graded["overlap"], graded["score"])])
    return graded.loc[graded.groupby("prompt_id")["composite"].idxmax()].sort_values("prompt_id")


def _steered_summary(csv_dir: Path, method: str) -> tuple[MethodSummary, int]:
    """One steered column of the table and how many best trials' overlaps match the recorded ones."""
    summary_path = csv_dir / f"per_prompt_optuna_summary_{method}.csv"
    judge_path = csv_dir / f"mistral_grader_results_{method}.csv"
    best = _read_csv(summary_path, _SUMMARY_COLUMNS).sort_values("prompt_idx")
    top_graded = _highest_composite_rows(_read_csv(judge_path, _JUDGE_COLUMNS))
    if list(best["prompt_idx"]) != list(top_graded["prompt_id"]):
        raise ValueError(f"{summary_path} and {judge_path} cover different prompts")
    overlap = _overlaps(best["ground_truth"], best["generated_text"])
    matches = sum(round(o, 4) == round(r, 4) for o, r in zip(overlap, best["token_overlap"]))
    by_graded = summarise(list(top_graded["overlap"]), list(top_graded["score"]))
    by_best_trial = summarise(overlap, list(best["score"]))
    judge = {"judge_ge_4": by_graded.judge_ge_4, "judge_ge_4_count": by_graded.judge_ge_4_count}
    return replace(by_best_trial, **judge), matches


def paper_notebook_table(csv_dir: Path) -> dict[str, Any]:
    """Recompute the paper's table (method.md §8) from the authors' CSVs in `csv_dir`.

    The published numbers do not all follow one per-prompt rule (`RULES`, returned as `rules`):
    - composite >= 0.6, composite median / mean, overlap >= 0.5 and overlap mean: each prompt's best trial
      (per_prompt_optuna_summary_*), overlap recomputed here, judge score its `score` column (the judge
      file's grade of that same text, for the 259 of 260 segmented texts found there). Taking the
      highest-composite graded row instead gives segmented 26.2% (68) and 0.325 / 0.412, not the
      published 25.4% (66) and 0.30 / 0.40; the overlap rows come out the same either way.
    - judge score >= 4: per prompt, the graded row (mistral_grader_results_*) with the highest composite.
      Segmented has several graded trials for 65 prompts; the best trial's own score gives 8.1% (21), not
      the published 11.2% (29). Full has one graded row per prompt, so both rules agree there.
    - baseline: the baseline judge file, overlap of its `predicted` (the baseline response, prompt
      included) against `target`, one row per prompt.
    Ground truths are the CSVs' own, 33 of them spreadsheet-mangled, as the authors scored them.
    Returns baseline/full/segmented summaries as dicts, overlap_agreement (share of the 520 best trials
    whose recomputed overlap matches the recorded token_overlap at 4 dp) and rules.
    """
    csv_dir = Path(csv_dir)
    baseline = _read_csv(csv_dir / "mistral_grader_results_baseline.csv", _JUDGE_COLUMNS)
    baseline_overlap = _overlaps(baseline["target"], baseline["predicted"])
    table: dict[str, Any] = {"baseline": summarise(baseline_overlap, list(baseline["score"])).as_dict()}
    matches = trials = 0
    for method in ("full", "segmented"):
        summary, method_matches = _steered_summary(csv_dir, method)
        table[method] = summary.as_dict()
        matches += method_matches
        trials += summary.n
    table["overlap_agreement"] = matches / trials
    table["rules"] = dict(RULES)
    table["simpleqa_correct"] = _simpleqa_correct(csv_dir)
    return table


PUBLISHED_CORRECT = {"baseline": 0.0, "full": 0.092, "segmented": 0.131}  # method.md §8, their Mistral grader


def _simpleqa_correct(csv_dir: Path) -> dict[str, float]:
    """Share graded CORRECT by this project's strict deterministic grader, on the authors' own texts with their
    prompt stripped: the baseline responses and each method's best trial. The authors' CSVs hold no SimpleQA
    grades for steered texts, so this is the cross-check the published row allows."""
    baseline = _read_csv(csv_dir / "mistral_grader_results_baseline.csv", _JUDGE_COLUMNS)
    texts = {"baseline": list(zip(baseline["question"], baseline["target"], baseline["predicted"]))}
    for method in ("full", "segmented"):
        best = _read_csv(csv_dir / f"per_prompt_optuna_summary_{method}.csv", _SUMMARY_COLUMNS)
        texts[method] = list(zip(best["prompt"], best["ground_truth"], best["generated_text"]))
    return {method: sum(exact_grade(Item(q, str(g), _continuation(str(q), str(t)))) == CORRECT for q, g, t in rows)
            / len(rows) for method, rows in texts.items()}


def _continuation(question: str, text: str) -> str:
    """The authors' decoded texts begin with their prompt (the bare question, or the steered template)."""
    for prompt in (f"Question: {question}\nAnswer and explanation:", question):
        if text.startswith(prompt):
            return text[len(prompt):]
    return text


def paper_table_notes(table: dict[str, Any]) -> str:
    """What `paper-table` prints under the table: the SimpleQA CORRECT cross-check and the rules it follows."""
    correct = table["simpleqa_correct"]
    lines = [
        "| SimpleQA CORRECT, this project's strict grader on the authors' texts | "
        + " | ".join(f"{100 * correct[m]:.1f}%" for m in ("baseline", "full", "segmented")) + " |",
        "| SimpleQA CORRECT as published (the authors' Mistral grader) | "
        + " | ".join(f"{100 * PUBLISHED_CORRECT[m]:.1f}%" for m in ("baseline", "full", "segmented")) + " |",
        "",
        "The published table mixes two per-prompt rules: composite >= 0.6, the composite median/mean and the "
        "overlap rows follow each prompt's best trial; judge score >= 4 follows the highest-composite graded row "
        "(segmented: 11.2% that way, 8.1% by the best trial's own grade).",
        f"Overlap recomputed = authors' recorded token_overlap (4 dp) on {table['overlap_agreement']:.1%} of best "
        "trials.",
    ]
    return "\n".join(lines)


def _percent(share: float, count: int) -> str:
    """The paper's cell format: percent to 1 dp, count in parentheses."""
    return f"{100 * share:.1f}% ({count})"


def _as_summary(summary: MethodSummary | dict) -> MethodSummary:
    """Accept `MethodSummary.as_dict()` output too, as stored in JSON reports."""
    return summary if isinstance(summary, MethodSummary) else MethodSummary(**summary)


def markdown_table(summaries: Mapping[str, MethodSummary | dict]) -> str:
    """The paper-style table of method.md §8, one column per mapping key, in the mapping's order."""
    columns = {name: _as_summary(s) for name, s in summaries.items()}
    rows = {
        f"composite >= {ACCURACY_THRESHOLD}": lambda s: _percent(s.accuracy, s.accurate_count),
        f"overlap >= {OVERLAP_BAR}": lambda s: _percent(s.overlap_ge_05, s.overlap_ge_05_count),
        f"judge score >= {JUDGE_BAR}": lambda s: _percent(s.judge_ge_4, s.judge_ge_4_count),
        "composite median / mean": lambda s: f"{s.composite_median:.2f} / {s.composite_mean:.2f}",
        "overlap mean": lambda s: f"{s.overlap_mean:.2f}",
    }
    lines = ["| metric | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, cell in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in columns.values()) + " |")
    return "\n".join(lines) + "\n"
