"""Shared fixtures: a tiny random-weight model for fast tests, the real SmolLM2 for integration tests,
and small SimpleQA-format CSVs made here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED = REPO.parent / "shared"

# Questions the SmolLM2 model gets wrong, with their official SimpleQA answers.
QUESTIONS = [
    ("Who received the IEEE Frank Rosenblatt Award in 2010?", "Michio Sugeno", "Science and technology", "Person"),
    ("Who was awarded the Oceanography Society's Jerlov Award in 2018?", "Annick Bricaud", "Science and technology", "Person"),
    ("In whose honor was the Leipzig 1877 tournament organized?", "Adolf Anderssen", "Sports", "Person"),
    ("In what year did the Dutch painter Jan Verkolje die?", "1693", "Art", "Date"),
    ("What is the capital of France?", "Paris", "Geography", "Place"),
    ("What was the name of the first ship of the Dutch East India Company to reach Japan?", "De Liefde", "History", "Other"),
]


def write_simpleqa_csv(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["metadata", "problem", "answer"])
        for question, answer, topic, answer_type in rows:
            writer.writerow([repr({"topic": topic, "answer_type": answer_type, "urls": []}), question, answer])
    return path


@pytest.fixture
def simpleqa_csv(tmp_path: Path) -> Path:
    return write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, unquantized, as (ModelConfig, Location)."""
    from sweep.models import locate, model_config
    cfg = model_config(CONF, "smollm2-135m", quantization="none")
    return cfg, locate(cfg, CONF)


@pytest.fixture(scope="session")
def tiny_engine(smollm2):
    """A 6-layer random-weight Llama with SmolLM2's tokenizer: fast, and exact in fp32."""
    from sweep.engine import Engine
    from sweep.models import load, locate, model_config
    cfg = model_config(CONF, "tiny-random")
    return Engine(*load(cfg, locate(cfg, CONF)))
