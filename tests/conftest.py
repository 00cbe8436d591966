"""Shared fixtures: a tiny random-weight model for fast tests, the real SmolLM2 for integration tests,
and small SimpleQA-format CSVs made here."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1, with a SQLite backend unless given another backend store URI, which
    tests can stop and start again. With `log`, the server's output goes to that file."""

    def __init__(self, root: Path, backend_store_uri: str | None = None, log: Path | None = None) -> None:
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        output = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", self.backend_store_uri,
                 "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"],
                stdout=output, stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL, start_new_session=True)
        finally:
            if self.log:
                output.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine can be slow to answer
                if self.process.poll() is not None:
                    raise RuntimeError(f"mlflow server exited with {self.process.returncode}"
                                       + (f"; see {self.log}" if self.log else "")) from None
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start within 90 s")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def sweep_command(out: Path, csv: Path, *overrides: str) -> list[str]:
    """The smoke sweep on the tiny random model: orchestration tests need no real weights."""
    return [sys.executable, "-m", "sweep.cli", "run", "--config", str(CONF / "smoke.yaml"), "--out", str(out),
            "model.name=tiny-random", "model.quantization=none", f"data.csv={csv}",
            "generation.max_new_tokens=24", *overrides]


def start_sweep(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finished_trials(out: Path) -> int:
    """Optuna trials recorded in the shards' state files."""
    from sweep.tuning import read_state_dir

    return sum(len(rows) for rows in read_state_dir(out / "tune" / "state")[0].values())


def finished_studies(out: Path, budget: int) -> int:
    """Studies whose state files hold all `budget` trials."""
    from sweep.tuning import read_state_dir

    return sum(len(rows) >= budget for rows in read_state_dir(out / "tune" / "state")[0].values())


def wait_for_trials(proc: subprocess.Popen, out: Path, trials: int, timeout: float = 300,
                    count: Callable[[Path], int] = finished_trials) -> None:
    """Until `count(out)` (finished trials by default) reaches `trials`; fails if the sweep ends first."""
    deadline = time.monotonic() + timeout
    while count(out) < trials:
        assert proc.poll() is None, f"the sweep ended before {trials} trials: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"fewer than {trials} trials after {timeout} s"
        time.sleep(0.2)


def kill_processes(procs: list[psutil.Process]) -> None:
    """SIGKILL each process that is still there and wait for them all."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def kill_process_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a driver, then the Ray processes it started (recorded by PID first: they outlive it)."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kill_processes(children)


def finish_sweep(proc: subprocess.Popen, timeout: float = 600) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return err
