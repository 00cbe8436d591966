"""The HTTP judge against a real `transformers serve` of SmolLM2 and against stdlib stub servers
(retries, failures, the API key)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from sweep.config import SweepConfig, flatten, to_yaml
from sweep.http_judge import ChatClient, JudgeError, ReplyCache, http_judge
from sweep.judges import CORRECT, INCORRECT, NOT_ATTEMPTED, RUBRIC_PROMPT, Item

from conftest import free_port

ITEMS = [
    Item("What is the capital of France?", "Paris", "The capital of France is Paris."),
    Item("Who received the IEEE Frank Rosenblatt Award in 2010?", "Michio Sugeno", "Geoffrey Hinton."),
    Item("In what year did the Dutch painter Jan Verkolje die?", "1693", "I don't know."),
]
KEY_ENV, KEY = "FS_TEST_JUDGE_KEY", "sk-secret-123"


# --- a real `transformers serve` ------------------------------------------------------------------

@pytest.fixture(scope="module")
def serve(smollm2, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """`transformers serve` on 127.0.0.1 with the local SmolLM2 checkpoint preloaded, as (base URL, model)."""
    checkpoint = smollm2[1].weights
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "transformers"), "serve", checkpoint, "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu", "--dtype", "float32", "--log-level", "info"],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"transformers serve exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"transformers serve not up in 180 s: {log_path.read_text()[-3000:]}"
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1", checkpoint
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.slow
def test_real_server_grades_and_a_repeat_sends_nothing(serve, tmp_path):
    base_url, model = serve
    cache_path = tmp_path / "judge_cache.sqlite"
    judge = http_judge(base_url, model, None, cache_path, RUBRIC_PROMPT, max_new_tokens=8, concurrency=2,
                       timeout_s=120, retries=1)
    grades, scores = judge.grade(ITEMS), judge.score(ITEMS)
    assert all(g in (CORRECT, INCORRECT, NOT_ATTEMPTED) for g in grades)
    assert all(1 <= s.value <= 5 for s in scores)
    assert len(ReplyCache(cache_path)) == 2 * len(ITEMS)

    # The same evaluation against a port nobody listens on, without retries: any request would fail.
    offline = http_judge(f"http://127.0.0.1:{free_port()}/v1", model, None, cache_path, RUBRIC_PROMPT,
                         max_new_tokens=8, concurrency=2, timeout_s=5, retries=0)
    assert (offline.grade(ITEMS), offline.score(ITEMS)) == (grades, scores)


# --- stub servers ---------------------------------------------------------------------------------

class Stub:
    """An OpenAI-shaped stub on 127.0.0.1: answers `statuses` in turn, then 200s; records what it received."""

    def __init__(self, statuses: list[int], retry_after: str | None = None) -> None:
        self.statuses, self.retry_after = list(statuses), retry_after
        self.received: list[tuple[dict[str, str], dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.received.append((dict(self.headers), body))
                status = stub.statuses.pop(0) if stub.statuses else 200
                prompt = body["messages"][0]["content"]
                reply = {"choices": [{"index": 0, "message": {"role": "assistant",
                                                              "content": "Score: 4" if "Score:" in prompt else "A"}}]}
                data = json.dumps(reply if status == 200 else {"error": "stub"}).encode()
                self.send_response(status)
                if status != 200 and stub.retry_after:
                    self.send_header("Retry-After", stub.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def stub_server() -> Iterator[type[Stub]]:
    started: list[Stub] = []

    def start(*args, **kwargs) -> Stub:
        started.append(Stub(*args, **kwargs))
        return started[-1]

    yield start  # type: ignore[misc]
    for stub in started:
        stub.server.shutdown()
        stub.server.server_close()


def stub_judge(stub: Stub, tmp_path: Path, retries: int = 3, api_key_env: str | None = None):
    return http_judge(stub.url, "stub-model", api_key_env, tmp_path / "cache.sqlite", RUBRIC_PROMPT,
                      max_new_tokens=8, concurrency=2, timeout_s=10, retries=retries, backoff_s=0.05)


def test_retries_503_honouring_retry_after_then_succeeds(stub_server, tmp_path):
    stub = stub_server([503, 503], retry_after="1")
    start = time.monotonic()
    assert stub_judge(stub, tmp_path).grade(ITEMS[:1]) == [CORRECT]
    assert len(stub.received) == 3
    assert time.monotonic() - start >= 2.0  # two Retry-After: 1 waits


def test_a_repeat_evaluation_sends_no_request(stub_server, tmp_path):
    stub = stub_server([])
    first = stub_judge(stub, tmp_path)
    assert [s.value for s in first.score(ITEMS)] == [4, 4, 4] and first.grade(ITEMS) == [CORRECT] * 3
    assert len(stub.received) == 6
    again = stub_judge(stub, tmp_path)  # a new judge on the same cache file: a resumed evaluation
    again.score(ITEMS), again.grade(ITEMS)
    assert len(stub.received) == 6
    assert all(body["temperature"] == 0 and body["max_tokens"] == 8 and body["model"] == "stub-model"
               for _, body in stub.received)


def test_persistent_500_ends_in_judge_error_after_bounded_retries(stub_server, tmp_path):
    stub = stub_server([500] * 100)
    start = time.monotonic()
    with pytest.raises(JudgeError, match=r"chat/completions returned HTTP 500"):
        stub_judge(stub, tmp_path, retries=2).grade(ITEMS[:1])
    assert len(stub.received) == 3  # one try and two retries
    assert time.monotonic() - start < 10


def test_a_client_error_is_not_retried(stub_server, tmp_path):
    stub = stub_server([401])
    with pytest.raises(JudgeError, match="HTTP 401"):
        stub_judge(stub, tmp_path).grade(ITEMS[:1])
    assert len(stub.received) == 1


def test_the_api_key_is_sent_but_never_shown(stub_server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    stub = stub_server([503])
    judge = stub_judge(stub, tmp_path, api_key_env=KEY_ENV)
    judge.grade(ITEMS)
    assert {headers["Authorization"] for headers, _ in stub.received} == {f"Bearer {KEY}"}
    assert caplog.records and KEY not in caplog.text

    client = ChatClient(stub.url, "stub-model", KEY_ENV)
    assert KEY not in repr(client) and KEY not in repr(judge) and KEY not in str(vars(client))
    assert KEY.encode() not in pickle.dumps(client)
    assert pickle.loads(pickle.dumps(client)).complete("Grade:", 4) == "A"  # the key comes from the env again
    assert stub.received[-1][0]["Authorization"] == f"Bearer {KEY}"

    cfg = SweepConfig()
    cfg.judge.kind, cfg.judge.base_url, cfg.judge.api_key_env = "http", stub.url, KEY_ENV
    assert KEY_ENV in to_yaml(cfg) and KEY not in to_yaml(cfg)
    assert KEY not in json.dumps(flatten(cfg))  # what MLflow gets as params


def test_no_authorization_header_without_a_key(stub_server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    stub = stub_server([])
    stub_judge(stub, tmp_path, api_key_env=KEY_ENV).grade(ITEMS[:1])
    assert "Authorization" not in stub.received[0][0]
