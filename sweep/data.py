"""SimpleQA: find the CSV (bundled with the package unless configured), check it, and choose the rows to use."""

from __future__ import annotations

import ast
import csv
import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .config import DataConfig
from .errors import DataError

REQUIRED_COLUMNS = ("metadata", "problem", "answer")
# OpenAI's SimpleQA test set (MIT), shipped inside the package so that nothing is downloaded: sweep/simpleqa/.
BUNDLED_CSV = Path(__file__).parent / "simpleqa" / "simple_qa_test_set.csv"
BUNDLED_SHA256 = "feee3f7e7db3617e94e8fcf1977b756ec420ef8568f4e0fcbbe0e92e9d5fc032"


@dataclass(frozen=True)
class Question:
    prompt_id: int  # the row index in the SimpleQA CSV
    question: str
    answer: str
    topic: str
    answer_type: str


@dataclass(frozen=True)
class Dataset:
    """The CSV a run read, as the report and dataset.json record it."""

    path: Path
    sha256: str
    bundled: bool


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError as err:
        raise DataError(f"SimpleQA CSV not found: {path}") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}") from err


def locate_csv(cfg: DataConfig) -> Dataset:
    """data.csv if set (the CLI folds $SIMPLEQA_CSV into it), else the bundled file, whose hash is checked."""
    if cfg.csv:
        path = Path(cfg.csv)
        return Dataset(path, file_sha256(path), bundled=False)
    digest = file_sha256(BUNDLED_CSV)
    if digest != BUNDLED_SHA256:
        raise DataError(f"the bundled SimpleQA CSV {BUNDLED_CSV} has sha256 {digest}, not {BUNDLED_SHA256}: "
                        "the installation is damaged; reinstall the package")
    return Dataset(BUNDLED_CSV, digest, bundled=True)


def configured_csv(csv_value: str | None) -> str | None:
    """data.csv, else $SIMPLEQA_CSV; None means the bundled file."""
    return csv_value or os.environ.get("SIMPLEQA_CSV") or None


def load_questions(path: Path) -> list[Question]:
    """Every row of a SimpleQA-format CSV, validated."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path} lacks SimpleQA column(s) {', '.join(missing)}; "
                                f"found: {', '.join(reader.fieldnames or []) or 'no header'}")
            records = [_question(path, index, row) for index, row in enumerate(reader)]
    except FileNotFoundError as err:
        raise DataError(f"SimpleQA CSV not found: {path}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text: {err.reason} at byte {err.start}") from err
    except csv.Error as err:
        raise DataError(f"{path} is not valid CSV: {err}") from err
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}") from err
    if not records:
        raise DataError(f"{path} has no data rows")
    first_row: dict[str, int] = {}
    for q in records:
        if q.question in first_row:
            raise DataError(f"{path} rows {first_row[q.question]} and {q.prompt_id} hold the same question: "
                            f"{q.question[:80]!r}")
        first_row[q.question] = q.prompt_id
    return records


def choose_rows(questions: list[Question], cfg: DataConfig) -> list[Question]:
    """`data.rows` rows after the first `data.skip`: in file order, or a sample seeded by `data.sample_seed`."""
    pool = questions[cfg.skip:]
    if not pool:
        raise DataError(f"data.skip={cfg.skip} leaves no rows of {len(questions)}")
    if cfg.sample_seed is None:
        return pool[:cfg.rows]
    chosen = random.Random(cfg.sample_seed).sample(pool, min(cfg.rows, len(pool)))
    return sorted(chosen, key=lambda q: q.prompt_id)


def _question(path: Path, index: int, row: dict[str, str]) -> Question:
    question, answer = (row.get("problem") or "").strip(), (row.get("answer") or "").strip()
    if not question or not answer:
        raise DataError(f"{path} row {index}: empty {'problem' if not question else 'answer'}")
    try:
        metadata = ast.literal_eval(row.get("metadata") or "{}")
    except (ValueError, SyntaxError) as err:
        raise DataError(f"{path} row {index}: metadata is not a dict literal: {err}") from err
    if not isinstance(metadata, dict):
        raise DataError(f"{path} row {index}: metadata is not a dict")
    return Question(index, question, answer, str(metadata.get("topic", "")), str(metadata.get("answer_type", "")))
