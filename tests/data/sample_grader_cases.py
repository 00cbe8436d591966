"""Draw the seeded, unlabelled candidates for the grader's labelled set (tests/data/grader_labels.csv).

Sources:
- paper_baseline: the authors' 500 Gemma-2-2B baseline outputs (simpleqa_initial_outputs.csv)
- paper_full / paper_segmented: their steered outputs (mistral_grader_results_{full,segmented}.csv)
- smollm2: this project's SmolLM2 outputs from run directories (trials.parquet: every arm, loops included;
  prompts.parquet: the baseline arm)
Each source is a uniform seeded draw, plus a small seeded stratum of likely-right rows (see PAPER_ENRICHED).

The paper CSVs' gold answers were mangled by a spreadsheet ("5-Feb-11", "8-Jan" for "January 2008"), so the
gold of every paper row is the official SimpleQA answer, joined on the question text; the paper's own string is
kept in `paper_gold` where the two differ so the labeller can say so.

    python tests/data/sample_grader_cases.py --run /work/runs/heldout --out /tmp/grader_candidates.csv

The output has the labelled file's columns with label/hedged/labelled_by/why/disputed empty, plus paper_gold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SEED = 14
PAPER_DIR = Path("/work/shared/reference/paper-notebook")
SIMPLEQA_CSV = Path("/work/shared/data/simpleqa/simple_qa_test_set.csv")
PAPER_COUNTS = {"paper_baseline": 70, "paper_full": 45, "paper_segmented": 45}
SMOLLM2_PER_ARM = 11
SMOLLM2_LOOPS_PER_ARM = 3  # degenerate (repetition >= 0.5) rows wanted in each arm's share, where it has them
# Uniform draws hold few right answers (Gemma-2-2B and SmolLM2 rarely know these facts), so a second, seeded
# stratum adds rows likely to hold the gold: steered paper rows the paper's judge scored >= 4, and SmolLM2
# trials whose gold-token overlap is >= 0.5 (also where a grader is most tempted to say CORRECT wrongly).
PAPER_ENRICHED = {"paper_full": 10, "paper_segmented": 10}
SMOLLM2_ENRICHED = 12
COLUMNS = ["case_id", "source", "arm", "question", "gold", "response", "label", "hedged", "labelled_by", "why",
           "disputed", "paper_gold"]


def official_answers(simpleqa_csv: Path) -> dict[str, str]:
    table = pd.read_csv(simpleqa_csv)
    return dict(zip(table["problem"], table["answer"].str.strip()))


def paper_frame(source: str, paper_dir: Path) -> pd.DataFrame:
    """One source's rows as (row, arm, question, paper_gold, response)."""
    if source == "paper_baseline":
        raw = pd.read_csv(paper_dir / "simpleqa_initial_outputs.csv")
        frame = raw.rename(columns={"prompt": "question", "ground_truth": "paper_gold"})
        frame["arm"] = "baseline"
    else:
        arm = source.removeprefix("paper_")
        raw = pd.read_csv(paper_dir / f"mistral_grader_results_{arm}.csv")
        frame = raw.rename(columns={"target": "paper_gold", "predicted": "response", "score": "judge_score"})
        frame["arm"] = arm
    frame["row"] = range(len(frame))
    return frame.reindex(columns=["row", "arm", "question", "paper_gold", "response", "judge_score"])


def paper_cases(paper_dir: Path, answers: dict[str, str], seed: int) -> pd.DataFrame:
    parts = []
    for offset, (source, count) in enumerate(PAPER_COUNTS.items()):
        frame = paper_frame(source, paper_dir).dropna(subset=["response"])
        drawn = frame.sample(n=count, random_state=seed + offset)
        if source in PAPER_ENRICHED:
            likely_right = frame[(frame["judge_score"] >= 4) & ~frame.index.isin(drawn.index)]
            drawn = pd.concat([drawn, likely_right.sample(n=PAPER_ENRICHED[source], random_state=seed + offset)])
        drawn = drawn.sort_values("row")
        missing = set(drawn["question"]) - set(answers)
        if missing:
            raise ValueError(f"{source}: questions not in the SimpleQA CSV: {sorted(missing)[:3]}")
        drawn["gold"] = drawn["question"].map(answers)
        drawn["paper_gold"] = drawn["paper_gold"].astype(str).str.strip()
        drawn.loc[drawn["paper_gold"] == drawn["gold"], "paper_gold"] = ""
        drawn["source"] = source
        drawn["case_id"] = [f"{source}-{row:03d}" for row in drawn["row"]]
        parts.append(drawn)
    return pd.concat(parts, ignore_index=True)


def smollm2_arm_sample(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """SMOLLM2_PER_ARM rows of one arm, up to SMOLLM2_LOOPS_PER_ARM of them degenerate loops."""
    loops = rows[rows["repetition"] >= 0.5]
    taken_loops = loops.sample(n=min(SMOLLM2_LOOPS_PER_ARM, len(loops)), random_state=seed)
    rest = rows.drop(taken_loops.index)
    taken_rest = rest.sample(n=min(SMOLLM2_PER_ARM - len(taken_loops), len(rest)), random_state=seed)
    return pd.concat([taken_loops, taken_rest])


def smollm2_cases(run_dir: Path, seed: int) -> pd.DataFrame:
    prompts = pd.read_parquet(run_dir / "prompts.parquet")
    trials = pd.read_parquet(run_dir / "trials.parquet")
    baseline = prompts.assign(method="baseline", trial=0, text=prompts["baseline_text"], repetition=0.0)
    pool = pd.concat([baseline, trials.merge(prompts[["prompt_id", "question", "answer"]], on="prompt_id")])
    pool = pool.dropna(subset=["text"]).reset_index(drop=True)
    drawn = pd.concat(smollm2_arm_sample(rows, seed) for _, rows in pool.groupby("method", sort=True))
    high_overlap = pool[(pool["overlap"] >= 0.5) & ~pool.index.isin(drawn.index)]
    drawn = pd.concat([drawn, high_overlap.sample(n=min(SMOLLM2_ENRICHED, len(high_overlap)), random_state=seed)])
    drawn = drawn.sort_values(["method", "prompt_id", "trial"])
    run = run_dir.name
    return pd.DataFrame({
        "case_id": [f"smollm2-{run}-{m}-{p}-{t}" for m, p, t in zip(drawn["method"], drawn["prompt_id"],
                                                                      drawn["trial"])],
        "source": "smollm2", "arm": drawn["method"], "question": drawn["question"],
        "gold": drawn["answer"].str.strip(), "response": drawn["text"], "paper_gold": "",
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a fusion-steering run directory with trials.parquet and prompts.parquet (repeatable)")
    parser.add_argument("--paper-dir", type=Path, default=PAPER_DIR)
    parser.add_argument("--simpleqa", type=Path, default=SIMPLEQA_CSV)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    parts = [paper_cases(args.paper_dir, official_answers(args.simpleqa), args.seed)]
    parts += [smollm2_cases(run_dir, args.seed) for run_dir in args.run]
    cases = pd.concat(parts, ignore_index=True).reindex(columns=COLUMNS).astype(object).fillna("")
    if cases["case_id"].duplicated().any():
        raise ValueError(f"duplicate case ids: {cases.loc[cases['case_id'].duplicated(), 'case_id'].tolist()}")
    cases.to_csv(args.out, index=False, encoding="utf-8")
    print(f"{len(cases)} candidates -> {args.out}")
    print(cases.groupby(["source", "arm"]).size().to_string())


if __name__ == "__main__":
    main()
