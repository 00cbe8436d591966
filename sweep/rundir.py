"""The run directory: one file per stage, atomic writes, and whether a stage is already done."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import SweepConfig, from_yaml, result_affecting_diff, to_yaml
from .errors import ConfigError

# Column order and types of every Parquet file a stage writes; readers and tests rely on these.
SCHEMAS: dict[str, pa.Schema] = {
    "prompts": pa.schema([
        ("prompt_id", pa.int64()), ("question", pa.string()), ("answer", pa.string()),
        ("topic", pa.string()), ("answer_type", pa.string()),
        ("baseline_text", pa.string()), ("baseline_grade", pa.string()),
    ]),
    "references": pa.schema([
        ("prompt_id", pa.int64()), ("question", pa.string()), ("answer", pa.string()),
        ("explanation", pa.string()), ("explanation_source", pa.string()), ("reference_text", pa.string()),
    ]),
    "grades": pa.schema([
        ("prompt_id", pa.int64()), ("method", pa.string()), ("text", pa.string()),
        ("overlap", pa.float64()), ("overlap_continuation", pa.float64()),
        ("overlap_with_prompt", pa.float64()), ("repetition", pa.float64()), ("distinct_2", pa.float64()),
        ("degenerate", pa.bool_()), ("judge_score", pa.int64()),
        ("judge_parsed", pa.bool_()), ("grade", pa.string()), ("exact_grade", pa.string()),
        ("composite", pa.float64()), ("accurate_paper", pa.bool_()), ("accurate", pa.bool_()),
    ]),
    "shift_norms": pa.schema([  # the vectors stage: per arm with a vector, mean over a segment of ||v - mu_q||
        ("prompt_id", pa.int64()), ("method", pa.string()), ("segment", pa.string()), ("norm", pa.float64()),
    ]),
    "timings": pa.schema([
        ("prompt_id", pa.int64()), ("method", pa.string()), ("trial", pa.int64()), ("seconds", pa.float64()),
    ]),
}
SCHEMAS["transfer"] = SCHEMAS["grades"].append(pa.field("setting", pa.string()))
TRIAL_COLUMNS = [
    ("prompt_id", pa.int64()), ("method", pa.string()), ("trial", pa.int64()),
    ("alpha_all", pa.float64()), ("gamma_all", pa.float64()),
    ("alpha_early", pa.float64()), ("alpha_middle", pa.float64()), ("alpha_late", pa.float64()),
    ("gamma_early", pa.float64()), ("gamma_middle", pa.float64()), ("gamma_late", pa.float64()),
    ("vector", pa.string()), ("text", pa.string()), ("overlap", pa.float64()), ("perplexity", pa.float64()),
    ("repetition", pa.float64()), ("distinct_2", pa.float64()), ("objective", pa.float64()),
]
SCHEMAS["trials"] = pa.schema(TRIAL_COLUMNS)
SCHEMAS["best"] = pa.schema(TRIAL_COLUMNS)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def table(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    @property
    def vectors(self) -> Path:
        return self.root / "vectors.safetensors"

    @property
    def tune_storage(self) -> Path:
        return self.root / "tune"

    @property
    def tune_state(self) -> Path:
        """One file per shard of studies: their Optuna state and finished rows (sweep/tuning.py)."""
        return self.root / "tune" / "state"

    @property
    def tune_failed(self) -> Path:
        """Studies that failed in the last tune stage; while it exists the stage is not done."""
        return self.root / "tune" / "failed.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.json"

    @property
    def mlflow_ids(self) -> Path:
        """The MLflow store and parent run this directory logs to."""
        return self.root / "mlflow_run.json"

    @property
    def mlflow_synced(self) -> Path:
        """What the last complete MLflow sync saw of this directory, per store (runner.sync_tracking)."""
        return self.root / "mlflow_synced.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def lease(self) -> Path:
        """The driver that holds this directory (sweep/lease.py)."""
        return self.root / "driver.lease"

    @property
    def identity(self) -> Path:
        """This directory's random id: its MLflow parent run carries it, so a directory made again at the same
        path starts a parent of its own instead of adopting the old one."""
        return self.root / "run_id.json"

    def run_id(self) -> str:
        """The directory's random id, made on first use."""
        if not self.identity.exists():
            write_text_atomic(self.identity, json.dumps({"run_id": uuid.uuid4().hex}))
        return json.loads(self.identity.read_text())["run_id"]

    def prepare(self, cfg: SweepConfig) -> None:
        """Create the directory and save the resolved config; refuse a directory made for another config."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create output directory {self.root}: {err.strerror}") from err
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"output directory {self.root} is not writable")
        if self.config.exists():
            changed = result_affecting_diff(from_yaml(self.config.read_text()), cfg)
            if changed:
                raise ConfigError(
                    f"{self.root} holds a run with a different config (changed: {', '.join(changed)}); "
                    "use a new --out directory or the same config")
        write_text_atomic(self.config, to_yaml(cfg))


@contextmanager
def replacing(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary files beside `paths` to write; once the block ends without error each is fsynced and renamed onto
    its path, in order (the directory fsynced after), else removed. Readers never see a half-written file, and a
    power cut or a lost node (NFS) leaves the old file or the new one, never a renamed but empty one."""
    temporary: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            temporary.append(Path(name))
        yield temporary
        for tmp, path in zip(temporary, paths):
            _fsync(tmp, os.O_RDONLY)
            os.replace(tmp, path)
            _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    with replacing([path]) as (tmp,):
        write(tmp)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    write_arrow(path, pa.Table.from_pylist(rows, schema=schema))


def write_arrow(path: Path, table: pa.Table) -> None:
    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def iter_rows(path: Path, batch: int = 10_000) -> Iterator[dict]:
    """A Parquet file's rows in order, a batch at a time in memory (trials.parquet of a full sweep: 160,000)."""
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch):
        yield from record_batch.to_pylist()
