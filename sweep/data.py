"""SimpleQA: find the CSV, validate it, and return its rows as records."""

from __future__ import annotations

import ast
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from .config import DataConfig
from .paths import cache_dir
from .rundir import write_text_atomic

REQUIRED_COLUMNS = ("metadata", "problem", "answer")


class DataError(ValueError):
    """The SimpleQA file is missing, unreadable or not in SimpleQA's format."""


@dataclass(frozen=True)
class Question:
    prompt_id: int  # the row index in the SimpleQA CSV
    question: str
    answer: str
    topic: str
    answer_type: str


def locate_csv(cfg: DataConfig) -> Path:
    """The configured CSV, else $SIMPLEQA_CSV, else the official file downloaded once into the cache."""
    configured = cfg.csv or os.environ.get("SIMPLEQA_CSV")
    if configured:
        return Path(configured)
    cached = cache_dir() / "simpleqa" / "simple_qa_test_set.csv"
    if not cached.exists():
        try:
            response = requests.get(cfg.url, timeout=60)
            response.raise_for_status()
        except requests.RequestException as err:
            raise DataError(f"no SimpleQA CSV configured (data.csv or SIMPLEQA_CSV) and downloading "
                            f"{cfg.url} failed: {err}") from err
        write_text_atomic(cached, response.text)
    return cached


def load_questions(path: Path, rows: int) -> list[Question]:
    """The first `rows` rows of a SimpleQA-format CSV, validated."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path} lacks SimpleQA column(s) {', '.join(missing)}; "
                                f"found: {', '.join(reader.fieldnames or []) or 'no header'}")
            records = []
            for index, row in enumerate(reader):
                if index >= rows:
                    break
                records.append(_question(path, index, row))
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
