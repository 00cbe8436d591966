"""Judges over HTTP: any OpenAI-compatible chat-completions server (vLLM, OpenAI, Mistral, Ollama,
`transformers serve`), with bounded retries, a concurrency limit, timeouts and an on-disk reply cache.

The API key is read from the environment variable the config names and lives only in the HTTP session's
headers: no repr, config dump, MLflow param, log line or pickle of these objects carries it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .judges import SCORE_PROMPT, Judge, model_judge

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)


class JudgeError(RuntimeError):
    """A judge request that failed for good: a non-retryable status, retries used up, or a malformed reply."""


def _session(api_key_env: str | None, retries: int, backoff_s: float, pool_size: int) -> requests.Session:
    """A session that retries rate limits and server errors (POST included: completions are idempotent at
    temperature 0), honours Retry-After, and sends the key, if its variable is set, only as a header."""
    retry = Retry(total=retries, backoff_factor=backoff_s, status_forcelist=RETRY_STATUSES,
                  allowed_methods=frozenset({"POST"}), respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if api_key_env:
        key = os.environ.get(api_key_env)
        if key:
            session.headers["Authorization"] = f"Bearer {key}"
        else:
            log.warning("judge.api_key_env names %s, which is not set: sending no Authorization header", api_key_env)
    return session


class ChatClient:
    """POSTs single-message chat completions at temperature 0 and returns the reply text."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5, pool_size: int = 4) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.pool_size = pool_size
        self._session = _session(api_key_env, retries, backoff_s, pool_size)

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (e.g. Ray shipping a judge to a worker) leave the session, and so the key, behind."""
        return {k: v for k, v in self.__dict__.items() if k != "_session"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The unpickled client reads the key from its own process's environment."""
        self.__dict__.update(state)
        self._session = _session(self.api_key_env, self.retries, self.backoff_s, self.pool_size)

    def complete(self, prompt: str, max_tokens: int) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "max_tokens": max_tokens}
        try:
            response = self._session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as err:
            raise JudgeError(f"POST {self.url} failed after {self.retries} retries: {err}") from err
        if not response.ok:
            raise JudgeError(f"POST {self.url} returned HTTP {response.status_code} "
                             f"(after up to {self.retries} retries on {RETRY_STATUSES}): {response.text[:300]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, LookupError, TypeError) as err:
            raise JudgeError(f"POST {self.url}: no choices[0].message.content in the reply: "
                             f"{response.text[:300]}") from err
        return content or ""  # a null content (a refusal) parses as no grade, like an empty reply


class ReplyCache:
    """Judge replies in one SQLite file, so a resumed or repeated evaluation never pays for a reply twice.

    A connection per call keeps it safe from the judge's worker threads and from several processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"ReplyCache({str(self.path)!r})"

    def _connect(self) -> closing[sqlite3.Connection]:
        return closing(sqlite3.connect(self.path, timeout=60))

    def get(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, reply: str) -> None:
        with self._connect() as conn, conn:  # the inner `conn` commits
            conn.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, reply))

    def __len__(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def rubric_version(grade_template: str) -> str:
    """A digest of both prompt templates: editing either one starts a fresh set of cache entries."""
    return hashlib.sha256(f"{grade_template}\0{SCORE_PROMPT}".encode()).hexdigest()[:16]


def cache_key(model: str, rubric: str, max_tokens: int, prompt: str) -> str:
    """The key of one reply. The filled prompt holds the question, the gold answer, the predicted output
    and which template (grade or score) asked, so (judge model, rubric version, prompt) keys exactly the
    (model, rubric, kind, question, answer, output) tuple; max_tokens is in it because it can cut a reply."""
    return hashlib.sha256(json.dumps([model, rubric, max_tokens, prompt]).encode()).hexdigest()


def http_judge(base_url: str, model: str, api_key_env: str | None, cache_path: Path, grade_template: str,
               max_new_tokens: int, concurrency: int = 4, timeout_s: float = 60.0, retries: int = 3,
               backoff_s: float = 0.5) -> Judge:
    """A judge whose replies come from an OpenAI-compatible server, at most `concurrency` requests at a
    time, each cached in `cache_path` before the next batch can ask for it again."""
    client = ChatClient(base_url, model, api_key_env, timeout_s, retries, backoff_s, pool_size=concurrency)
    cache = ReplyCache(cache_path)
    rubric = rubric_version(grade_template)

    def fetch(key: str, prompt: str, max_tokens: int) -> str:
        reply = client.complete(prompt, max_tokens)
        cache.put(key, reply)  # stored at once, so replies that arrived survive a later failure
        return reply

    def generate(prompts: list[str], max_tokens: int) -> list[str]:
        keys = [cache_key(model, rubric, max_tokens, p) for p in prompts]
        replies = {key: cache.get(key) for key in keys}
        misses = {key: prompt for key, prompt in zip(keys, prompts) if replies[key] is None}
        log.info("judge %s: %d prompts, %d cached, %d to send", model, len(prompts), len(prompts) - len(misses),
                 len(misses))
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {key: pool.submit(fetch, key, prompt, max_tokens) for key, prompt in misses.items()}
            try:
                replies.update({key: future.result() for key, future in futures.items()})
            finally:
                pool.shutdown(cancel_futures=True)  # after a failure, send nothing more
        return [replies[key] for key in keys]  # type: ignore[misc]

    return model_judge(f"http:{model}", generate, grade_template, max_new_tokens)
