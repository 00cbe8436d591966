"""The report's tables that carry its conclusions: the arms, the declared family with its power, the
descriptive baseline rows, per-prompt steerability, the best trials' strengths, the matched shift norms and
the transfer rows. Each returns Markdown."""

from __future__ import annotations

import pandas as pd

from sweep.arms import BASELINE, PROMPT_ONLY, label

from .family import (ALPHA, METHODS, OUTCOMES, FamilyTest, Steerability, correct_flags, min_detectable_gain,
                     paired_frames, power_line, steerability)
from .stats import Interval, bootstrap_interval, paired_scores, wilson_interval

SEGMENTS = ("early", "middle", "late")
GRADE_DERIVED = ("† grade-derived: with the rule-based `exact` judge the 1-5 judge score is a function of the "
                 "SimpleQA grade (CORRECT 5, hedged 4, NOT_ATTEMPTED 2, INCORRECT 1), so the composite counts "
                 "CORRECT twice and rewards NOT_ATTEMPTED, and \"judge score >= 4\" is CORRECT again.")


def dagger(grade_derived: bool) -> str:
    return "†" if grade_derived else ""


def arm_figures(arms: dict[str, pd.DataFrame], intervals: dict[str, dict[str, Interval]]) -> dict[str, tuple[Interval, Interval]]:
    """Per arm: CORRECT among non-degenerate outputs (Wilson) and mean gold overlap (its `method_intervals` entry)."""
    return {a: (wilson_interval(sum(correct_flags(g)), len(g)), intervals[a]["overlap_mean"]) for a, g in arms.items()}


def arm_table(arms: dict[str, pd.DataFrame], figures: dict[str, tuple[Interval, Interval]],
              composite: dict[str, Interval], grade_derived: bool) -> str:
    mark = dagger(grade_derived)
    lines = [f"| arm | SimpleQA CORRECT, non-degenerate [95% CI] | CORRECT, raw count | mean gold overlap [95% CI] "
             f"| degenerate | composite mean{mark} [95% CI] |", "|---|---|---|---|---|---|"]
    for arm, g in arms.items():
        correct, overlap = figures[arm]
        lines.append(f"| {label(arm)} | {correct.fmt(True)} ({sum(correct_flags(g))} of {len(g)}) | "
                     f"{int((g['grade'] == 'CORRECT').sum())} | {overlap.fmt(False)} | "
                     f"{int(g['degenerate'].sum())} of {len(g)} | {composite[arm].fmt(False)} |")
    return "\n".join(lines)


def _change(t: FamilyTest) -> str:
    if t.outcome == "correct":
        i = t.interval
        return f"{100 * i.estimate:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}] points"
    return f"{t.difference:+.3f} [{t.interval.low:+.3f}, {t.interval.high:+.3f}]"


def family_table(tests: list[FamilyTest], n: int) -> str:
    """The family, one row per test, with the power line; 'no detectable effect' where Holm does not reject."""
    m = len(tests)
    gained = min_detectable_gain(n, m)
    power = f"needs >= {gained} gained, none lost" if gained else f"undetectable with n = {n}"
    lines = ["| method vs reference | outcome | change [95% CI] | gained / lost, or d_z | p | resolution | "
             "p (Holm) | reading |", "|---|---|---|---|---|---|---|---|"]
    for t in tests:
        reading = (f"significant at {ALPHA}" if t.significant else "no detectable effect"
                   + (f" ({power})" if t.outcome == "correct" else ""))
        lines.append(f"| {label(t.method)} vs {label(t.reference)} | {OUTCOMES[t.outcome]} | {_change(t)} | "
                     f"{t.detail} | {t.p_value:.3g} | {t.resolution:.2g} | {t.p_holm:.3g} | {reading} |")
    return "\n".join(lines + ["", f"**Power.** {power_line(n, m)}"])


def baseline_rows(arms: dict[str, pd.DataFrame], keep_grades: list[str]) -> str:
    """Each arm against the baseline, descriptive, with the selection caveat beside it."""
    caveat = (f"Descriptive only, no test: prompts were kept because the baseline was graded {' or '.join(keep_grades)}, "
              "so every arm gains on the baseline by construction (regression to the mean).")
    lines = [caveat, "", "| baseline → arm | CORRECT, non-degenerate: gained / lost | mean gold overlap change |",
             "|---|---|---|"]
    for arm in (a for a in arms if a != BASELINE):
        base, other = paired_frames(arms, BASELINE, arm)
        gained = sum(not b and o for b, o in zip(correct_flags(base), correct_flags(other)))
        lost = sum(b and not o for b, o in zip(correct_flags(base), correct_flags(other)))
        change = (other["overlap"] - base["overlap"]).mean()
        lines.append(f"| baseline → {label(arm)} | {gained} / {lost} | {change:+.3f} |")
    return "\n".join(lines)


def steerability_table(arms: dict[str, pd.DataFrame]) -> tuple[str, dict[str, Steerability]]:
    """Per tuned arm, how many prompts' overlap rose, stayed or fell against prompt_only's."""
    tuned = [a for a in arms if a not in (BASELINE, PROMPT_ONLY)]
    if PROMPT_ONLY not in arms or not tuned:
        return "No `prompt_only` arm in this run: nothing to compare each prompt with.", {}
    splits = {a: steerability(arms, a) for a in tuned}
    lines = ["| arm | better | equal | worse | median change |", "|---|---|---|---|---|"]
    for arm, s in splits.items():
        lines.append(f"| {label(arm)} | {s.better / s.n:.0%} ({s.better}) | {s.equal / s.n:.0%} ({s.equal}) | "
                     f"{s.worse / s.n:.0%} ({s.worse}) | {pd.Series(s.changes).median():+.3f} |")
    return "\n".join(lines), {a: s for a, s in splits.items() if a in METHODS}


def strengths_table(best: pd.DataFrame, order: list[str]) -> str:
    """Median [quartiles] of the best trials' alpha*gamma per segment (the shift added is alpha*gamma*(v - mu)),
    per arm in the report's `order`."""
    columns = ("all", *SEGMENTS)
    lines = ["| arm | " + " | ".join(f"alpha*gamma, {c}" for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for arm in (a for a in order if a in set(best["method"])):
        rows, cells = best[best["method"] == arm], []
        for column in columns:
            strength = (rows[f"alpha_{column}"] * rows[f"gamma_{column}"]).dropna()
            q1, median, q3 = strength.quantile([0.25, 0.5, 0.75]) if len(strength) else (None,) * 3
            cells.append("" if median is None else f"{median:.3g} [{q1:.3g}, {q3:.3g}]")
        if any(cells):
            lines.append(f"| {label(arm)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shift_norms_table(norms: pd.DataFrame) -> str:
    """Median injected shift norm ||v - mu|| per arm and layer segment: matched arms show like values."""
    table = norms.groupby(["method", "segment"])["norm"].median().unstack("segment")
    present = [s for s in SEGMENTS if s in table.columns]
    lines = ["| arm | " + " | ".join(f"median ‖v - mu‖, {s}" for s in present) + " |", "|---" * (len(present) + 1) + "|"]
    for arm, row in table.iterrows():
        lines.append(f"| {label(str(arm))} | " + " | ".join(f"{row[s]:.3g}" for s in present) + " |")
    return "\n".join(lines)


def transfer_table(transfer: pd.DataFrame, arms: dict[str, pd.DataFrame], seed: int, grade_derived: bool) -> str:
    """Per method on the held-out prompts: the oracle beside weights transferred from the other prompts, with
    gold-answer, question-only and self vectors, each compared with prompt_only on the same prompts."""
    if transfer.empty:
        return "Too few prompts to hold any out."
    held = sorted(transfer["prompt_id"].unique())
    reference = PROMPT_ONLY if PROMPT_ONLY in arms else BASELINE
    rows: dict[str, pd.DataFrame] = {label(a): arms[a] for a in (BASELINE, PROMPT_ONLY) if a in arms}
    names = {"transfer": "transferred weights, gold-answer vectors",
             "question-only": "transferred weights, question-only vectors (no gold)",
             "self": "transferred weights, the model's own answer as vector (no gold)"}
    for method in (m for m in METHODS if m in arms):
        rows[label(method)] = arms[method]
        for setting, name in names.items():
            rows[f"{method}: {name}"] = transfer[(transfer["method"] == method) & (transfer["setting"] == setting)]
    base = _on(arms[reference], held)["overlap"].tolist()
    lines = [f"{len(held)} held-out prompts; the transferred weights are the per-parameter medians of the other "
             "prompts' best trials, applied unchanged (no selection against the gold answer). Changes are paired "
             f"against `{reference}` on the same prompts (BCa interval, sign-flip p, not adjusted: these rows are "
             "outside the declared family).", "",
             f"| setting | SimpleQA CORRECT, non-degenerate [95% CI] | mean gold overlap [95% CI] | overlap: change vs "
             f"{reference} [95% CI] | p | composite mean{dagger(grade_derived)} |", "|---|---|---|---|---|---|"]
    for name, frame in rows.items():
        g = _on(frame, held)
        correct = wilson_interval(sum(correct_flags(g)), len(g))
        cells = ["", ""]
        if name != label(reference):
            change = paired_scores(base, g["overlap"].tolist(), seed=seed)
            cells = [f"{change.difference:+.3f} [{change.interval.low:+.3f}, {change.interval.high:+.3f}]",
                     f"{change.p_value:.3g} (resolution {change.test.resolution:.2g})"]
        lines.append(f"| {name} | {correct.fmt(True)} | {bootstrap_interval(g['overlap'].tolist(), seed=seed).fmt(False)} "
                     f"| {cells[0]} | {cells[1]} | {g['composite'].mean():.2f} |")
    return "\n".join(lines)


def _on(frame: pd.DataFrame, prompt_ids: list[int]) -> pd.DataFrame:
    """`frame`'s rows for `prompt_ids`, one per prompt, in that order (so two arms pair up row by row)."""
    return frame.set_index("prompt_id").loc[prompt_ids].reset_index()
