"""The report from synthetic run directories (Parquet files with the schemas of sweep/rundir.py, written here
rather than by a sweep, so these tests take seconds): the declared family and its Holm correction, the power
line, steerability, strengths, matched shift norms, grade-derived labels, with and without the in_context and
sampled arms."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.family import declared_family, min_detectable_gain, power_line, steerability
from analysis.report import by_arm, headline, summary_metrics, write_report
from analysis.stats import holm
from sweep.config import compose, to_yaml
from sweep.rundir import SCHEMAS, RunDir, write_table

from conftest import CONF

N = 12
HELD = [3, 7]
CORRECT_BY_ARM = {"full": [0, 1, 2, 5], "segmented": [0], "in_context": [0, 1, 2, 3, 4, 5], "sampled": [1]}
DEGENERATE = {("full", 5)}  # a CORRECT loop: counted raw, not in the headline's CORRECT
OVERLAP_SHIFT = {"full": 0.2, "segmented": 0.05, "full-random": -0.02, "in_context": 0.4, "sampled": 0.01}
ARMS = ["prompt_only", "full", "full-random", "full-mismatched", "segmented", "segmented-random",
        "segmented-mismatched"]


def _grade_row(prompt_id: int, method: str) -> dict:
    correct = prompt_id in CORRECT_BY_ARM.get(method, [])
    # prompt_only's overlap varies by prompt; the others shift it (full worsens prompt 11 against prompt_only).
    overlap = round(0.1 + 0.02 * prompt_id + OVERLAP_SHIFT.get(method, 0.0) * (-1 if prompt_id == 11 else 1), 4)
    score = 5 if correct else 1
    composite = 0.5 * overlap + 0.5 * score / 5
    degenerate = (method, prompt_id) in DEGENERATE
    return {"prompt_id": prompt_id, "method": method, "text": f"{method} answer {prompt_id}", "overlap": overlap,
            "overlap_continuation": overlap, "overlap_with_prompt": overlap + 0.05,
            "repetition": 0.8 if degenerate else 0.1, "distinct_2": 0.9, "degenerate": degenerate,
            "judge_score": score, "judge_parsed": True, "grade": "CORRECT" if correct else "INCORRECT",
            "exact_grade": "CORRECT" if correct else "INCORRECT", "composite": composite,
            "accurate_paper": composite >= 0.6, "accurate": composite >= 0.6 and not degenerate}


def _trial_row(prompt_id: int, method: str, trial: int) -> dict:
    row = {c: None for c in SCHEMAS["trials"].names}
    strength = {"alpha": 0.5 + 0.01 * prompt_id, "gamma": 0.1 * (trial + 1)}
    if method.startswith("full"):
        row |= {"alpha_all": strength["alpha"], "gamma_all": strength["gamma"]}
    elif method.startswith("segmented"):
        for segment, factor in (("early", 1.0), ("middle", 2.0), ("late", 4.0)):
            row |= {f"alpha_{segment}": strength["alpha"], f"gamma_{segment}": factor * strength["gamma"]}
    return row | {"prompt_id": prompt_id, "method": method, "trial": trial, "vector": f"gold/{prompt_id}",
                  "text": f"{method} answer {prompt_id}", "overlap": 0.2, "perplexity": 20.0, "repetition": 0.1,
                  "distinct_2": 0.9, "objective": 0.1 * trial}


def make_run(root: Path, arms: list[str], shift_norms: bool = False) -> tuple[RunDir, object]:
    cfg = compose(CONF / "demo.yaml", [])
    run = RunDir(root)
    root.mkdir(parents=True)
    run.config.write_text(to_yaml(cfg))
    run.dataset.write_text(json.dumps({"file": "simpleqa.csv", "sha256": "ab" * 32, "bundled": False,
                                       "rows_read": 20}))
    write_table(run.table("prompts"), [{"prompt_id": p, "question": f"Question {p}?", "answer": f"Gold {p}",
                                        "topic": "t", "answer_type": "Person", "baseline_text": f"Wrong {p}",
                                        "baseline_grade": "INCORRECT"} for p in range(N)], SCHEMAS["prompts"])
    write_table(run.table("grades"), [_grade_row(p, m) for p in range(N) for m in ["baseline", *arms]],
                SCHEMAS["grades"])
    tuned = [a for a in arms if a != "in_context"]
    trials = [_trial_row(p, m, t) for p in range(N) for m in tuned for t in range(1 if m == "prompt_only" else 3)]
    write_table(run.table("trials"), trials, SCHEMAS["trials"])
    write_table(run.table("best"), [r for r in trials if r["trial"] == (0 if r["method"] == "prompt_only" else 2)],
                SCHEMAS["best"])
    write_table(run.table("timings"), [{"prompt_id": r["prompt_id"], "method": r["method"], "trial": r["trial"],
                                        "seconds": 1.0} for r in trials], SCHEMAS["timings"])
    transfer = [_grade_row(p, m) | {"setting": s} for p in HELD for m in ("full", "segmented")
                for s in ("transfer", "question-only", "self")]
    write_table(run.table("transfer"), transfer, SCHEMAS["transfer"])
    if shift_norms:
        rows = [{"prompt_id": p, "method": m, "segment": s, "norm": (2.0 if m == "full" else 2.1) * (1 + p % 3)}
                for p in range(N) for m in ("full", "full-random") for s in ("early", "middle", "late")]
        pd.DataFrame(rows).to_parquet(root / "shift_norms.parquet")
    return run, cfg


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> tuple[RunDir, str]:
    run, cfg = make_run(tmp_path_factory.mktemp("report") / "old", ARMS)
    write_report(run, cfg)
    return run, run.report.read_text()


@pytest.fixture(scope="module")
def new_run(tmp_path_factory) -> tuple[RunDir, str]:
    run, cfg = make_run(tmp_path_factory.mktemp("report") / "new", [*ARMS, "in_context", "sampled"], shift_norms=True)
    write_report(run, cfg)
    return run, run.report.read_text()


def test_min_detectable_gain_hand_values() -> None:
    # p = 2^(1-G) for G prompts gained, none lost; Holm's first step multiplies by m.
    # m = 10: 2^(1-G) < 0.005 first at G = 9 (2^-8 = 0.0039; 2^-7 = 0.0078). m = 27: < 0.00185 at G = 11.
    assert min_detectable_gain(50, 10) == 9 and min_detectable_gain(50, 27) == 11
    assert min_detectable_gain(50, 1) == 6  # 2^-5 = 0.031 < 0.05; 2^-4 = 0.0625 is not
    assert min_detectable_gain(8, 10) is None  # 8 prompts cannot reach it
    assert "must gain at least 9 prompts with none lost" in power_line(50, 10)
    assert "no CORRECT change can reach" in power_line(8, 10)
    with pytest.raises(ValueError, match="at least one test"):
        min_detectable_gain(50, 0)


def test_family_is_declared_holm_over_it_and_counts_non_degenerate_correct(old_run) -> None:
    run, _ = old_run
    arms = by_arm(run)
    family = declared_family(arms, seed=0)
    pairs = [(t.method, t.reference, t.outcome) for t in family]
    references = ["prompt_only", "METHOD-random", "METHOD-mismatched"]
    assert pairs == [(m, r.replace("METHOD", m), o) for m in ("full", "segmented") for r in references
                     for o in ("correct", "overlap")]  # no baseline, no composite
    assert [t.p_holm for t in family] == pytest.approx(holm([t.p_value for t in family]))
    full_vs_prompt = family[0]
    # full is CORRECT on prompts 0, 1, 2, 5 but 5 is a loop: 3 gained, none lost, p = 2^(1-3) = 0.25.
    assert full_vs_prompt.detail == "3 / 0" and full_vs_prompt.p_value == pytest.approx(0.25)
    assert full_vs_prompt.resolution == pytest.approx(0.25)
    overlap = family[1]  # +0.2 on 11 prompts, -0.2 on one: exact enumeration over 2^12 patterns
    assert overlap.difference == pytest.approx((11 * 0.2 - 0.2) / N)
    assert overlap.resolution == pytest.approx(2 / 2**12) and overlap.p_value < 0.01


def test_steerability_split() -> None:
    arms = {"prompt_only": pd.DataFrame({"prompt_id": [0, 1, 2, 3], "overlap": [0.1, 0.5, 0.3, 0.0]}),
            "full": pd.DataFrame({"prompt_id": [3, 2, 1, 0], "overlap": [0.2, 0.3, 0.4, 0.1]})}
    split = steerability(arms, "full")  # paired by prompt id, not row order: +0.2, 0, -0.1, 0
    assert (split.better, split.equal, split.worse) == (1, 2, 1)
    assert split.changes == pytest.approx([0.0, -0.1, 0.0, 0.2])


def _sections(report: str) -> list[str]:
    return re.findall(r"^## (.+)$", report, flags=re.M)


def test_report_without_new_arms_opens_with_the_figure(old_run) -> None:
    run, report = old_run
    first_image, first_table = report.index("![The declared family at a glance](plots/family.png)"), report.index("\n|")
    assert first_image < first_table  # one figure before any table
    assert report.count("![") == 7 and (run.plots / "family.png").stat().st_size > 10_000
    assert _sections(report)[:4] == ["Headline: each arm", "The declared family: each method against each reference",
                                     "Per-prompt steerability", "Best trials' strengths"]
    assert "Matched shift norms" not in report and "| sampled" not in report and "vs sampled" not in report
    # The headline leads with CORRECT among non-degenerate outputs, the raw count beside it, and overlap.
    assert "| full (oracle) | 25.0% [8.9, 53.2] (3 of 12) | 4 |" in report
    # 2^(1-G) * 12 < 0.05 first at G = 9 (2^-8 * 12 = 0.047).
    assert "With n = 12 and m = 12 tests, a method must gain at least 9 prompts with none lost" in report
    assert "| full (oracle) vs prompt_only | CORRECT, non-degenerate | +25.0 [" in report
    assert "no detectable effect (needs >= 9 gained, none lost)" in report
    assert "Descriptive only, no test: prompts were kept because the baseline was graded INCORRECT, so" in report
    assert "| baseline → full (oracle) | 3 / 0 |" in report
    # Steerability: full's overlap is above prompt_only's on 11 prompts and below on one.
    assert "| full (oracle) | 92% (11) | 0% (0) | 8% (1) |" in report
    # Strengths: full's best trials are trial 2, alpha 0.5 + 0.01 p, gamma 0.3: median alpha*gamma 0.1665.
    assert "| full (oracle) | 0.167 [" in report
    # Grade-derived labels under the exact judge.
    assert "composite mean† [95% CI]" in report and "| judge score >= 4† |" in report and "| accurate†, paper's rule" in report
    assert "† grade-derived: with the rule-based `exact` judge" in report
    assert "overlap: change vs prompt_only [95% CI]" in report
    html = run.report_html.read_text()
    assert html.count("data:image/png;base64,") == 7 and 'src="plots/' not in html


def test_report_with_new_arms_and_shift_norms(new_run) -> None:
    run, report = new_run
    family = declared_family(by_arm(run), seed=0)
    assert {(t.method, t.reference) for t in family} >= {("full", "sampled"), ("full", "in_context"),
                                                          ("segmented", "in_context")}
    assert len(family) == 2 * 2 * 5
    assert "With n = 12 and m = 20 tests, a method must gain at least 10 prompts" in report
    assert "| full (oracle) vs in_context (oracle) | CORRECT, non-degenerate | -25.0 [" in report
    assert "| in_context (oracle) | 50.0% [" in report and "| sampled (oracle) | 8.3% [" in report
    # Matched shift norms: medians of 2 * (1, 2, 3) and 2.1 * (1, 2, 3) over prompts.
    assert "## Matched shift norms" in report
    assert "| full (oracle) | 4 | 4 | 4 |" in report and "| full-random (oracle) | 4.2 | 4.2 | 4.2 |" in report
    lines = headline(run)
    assert lines[0].startswith("SimpleQA CORRECT on 12 prompts, non-degenerate outputs (raw): baseline 0% (0%)")
    assert "full (oracle) 25% (33%)" in lines[0] and "in_context (oracle) 50% (50%)" in lines[0]
    assert lines[1].startswith("mean gold overlap: baseline 0.21")
    assert "of 20 tests Holm-significant" in lines[2]
    metrics = summary_metrics(run)
    assert metrics["oracle.full.correct_non_degenerate"] == pytest.approx(3 / N)
    assert metrics["oracle.full.simpleqa_correct"] == pytest.approx(4 / N) and "oracle.sampled.overlap_mean" in metrics


def test_http_judge_scores_are_not_labelled_grade_derived(tmp_path) -> None:
    run, cfg = make_run(tmp_path / "http", ARMS)
    cfg.judge.kind, cfg.judge.model = "http", "gpt-judge"
    write_report(run, cfg)
    report = run.report.read_text()
    assert "†" not in report and "Its 1-5 score is the judge's own, on the paper's rubric" in report


def test_compare_notes_grade_derived_accuracy(tmp_path) -> None:
    from analysis.compare import compare_table

    dirs = [make_run(tmp_path / name, ARMS)[0].root for name in ("a", "b")]
    table = compare_table(dirs)
    assert table.count("\n| a |") + table.count("\n| b |") == 2
    assert "accuracy and the composite are grade-derived" in table


def test_report_without_references_or_held_out_prompts(tmp_path) -> None:
    run, cfg = make_run(tmp_path / "bare", ["full"])  # controls=[]: nothing to pair the method with
    write_table(run.table("transfer"), [], SCHEMAS["transfer"])
    write_report(run, cfg)
    report = run.report.read_text()
    assert "No method and reference pair in this run." in report and "No `prompt_only` arm in this run" in report
    assert "Too few prompts to hold any out." in report and (run.plots / "family.png").exists()
    assert headline(run)[2].startswith("no method and reference were run together")
