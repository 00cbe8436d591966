"""The cluster set-up's moving parts run for real on this machine, with the tiny random model:

* MLflow on PostgreSQL: cluster.yaml's own head commands create and start a PostgreSQL (initdb, pg_ctl,
  createdb) and an `mlflow server` with basic auth on it (only ports, paths and the artifact store are moved into
  a temp dir; the admin's credentials come from a secrets file, as on the head), and the smoke sweep logs to it
  through the CLI with those credentials in its environment, as the driver on the head does.
* `ray job submit`: a `ray start --head` cluster with token authentication, as on the cluster, and the smoke sweep
  submitted to it with `--working-dir .` and `cluster.address=auto`, as docs/cluster.md shows.

Both are slow. PostgreSQL's server binaries come from Debian's `postgresql` package (.ci/run installs it); without
them the PostgreSQL test is skipped, except under CI (the environment variable CI set), where it fails."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pyarrow.parquet as pq
import pytest
import requests
import yaml

from conftest import CONF, QUESTIONS, REPO, free_port, kill_processes, sweep_command, write_simpleqa_csv

pytestmark = pytest.mark.slow

CI = bool(os.environ.get("CI"))
BIN = Path(sys.executable).parent  # this environment's `ray`, `fusion-steering` and `mlflow`


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail under CI, where .ci/run installs what is missing."""
    if CI:
        pytest.fail(f"{reason} (CI is set: .ci/run should have installed it)")
    pytest.skip(reason)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} was not written)"


def assert_smoke_studies(trials) -> dict[tuple[int, str], int]:  # noqa: ANN001 - a DataFrame
    """conf/smoke.yaml's studies, all finished: 4 prompts x 9 arms (2 methods, their random and mismatched
    controls, sampled: 2 trials each; prompt_only, in_context: 1). Returns {(prompt_id, arm): trials}."""
    studies = trials.groupby(["prompt_id", "method"]).size()
    expected = {"full": 2, "segmented": 2, "full-random": 2, "segmented-random": 2, "full-mismatched": 2,
                "segmented-mismatched": 2, "sampled": 2, "prompt_only": 1, "in_context": 1}
    assert {(p, m): n for (p, m), n in studies.items()} == {
        (p, m): n for p in trials["prompt_id"].unique() for m, n in expected.items()}
    assert trials["prompt_id"].nunique() == 4
    return {(int(p), m): int(n) for (p, m), n in studies.items()}


# ------------------------------------------------------------------------------------ MLflow on PostgreSQL

PG_BIN_LOOKUP = "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"


def postgres_bin() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, else Debian's /usr/lib/postgresql/<major>/bin (newest major)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    majors = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    majors.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else -1)
    return majors[-1] if majors else None


def head_command(marker: str) -> str:
    cluster = yaml.safe_load((REPO / "cluster.yaml").read_text())
    commands = [c for c in cluster["head_start_ray_commands"] if marker in c]
    assert len(commands) == 1, f"cluster.yaml should have one head command with {marker!r}"
    return commands[0]


def moved(command: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in command, f"cluster.yaml's head command no longer contains {old!r}: {command}"
        command = command.replace(old, new)
    return command


class Postgres:
    """cluster.yaml's PostgreSQL command, run as on the head but on a free port in a temp dir. initdb refuses to
    run as root, so under root everything runs as the `postgres` user that Debian's package creates."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="fs-pg-"))  # not under pytest's tmp: that is private to root
        self.data, self.port = self.root / "data", free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    def run(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["bash", "-c", command]
        if self.user is not None:
            argv = ["runuser", "-u", self.user.pw_name, "--", *argv]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=180)
        if check:
            assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    def head_command(self) -> str:
        # The port first: the temp paths put in after it could contain "5432".
        replacements = {"5432": str(self.port), "/mnt/shared/mlflow/postgres": str(self.data),
                        "-k /tmp": f"-k {self.root}", "/tmp/postgres.log": str(self.root / "postgres.log")}
        if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
            replacements[PG_BIN_LOOKUP] = str(self.bin)  # not Debian's layout: the binaries found on PATH
        return moved(head_command("pg_ctl"), replacements)

    def backend_store_uri(self) -> str:
        uri = head_command("mlflow server").split("--backend-store-uri", 1)[1].split()[0]
        return moved(uri, {"127.0.0.1:5432": f"127.0.0.1:{self.port}"})

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            stopped = self.run(f"{self.bin}/pg_ctl -D {self.data} stop -m immediate", check=False)
            if stopped.returncode != 0:  # pg_ctl could not: the postmaster's PID is the file's first line
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401 - the driver the MLflow server's backend store URI names
    except ImportError:
        unavailable("psycopg2 is not installed (pip install -e '.[test]')")
    server = Postgres(bin_dir)
    try:
        command = server.head_command()
        server.run(command)  # the first `ray up`: initdb, start, createdb
        server.run(command)  # every later one: already there and running, nothing to do
        yield server
    finally:
        server.stop()


class HeadMlflow:
    """cluster.yaml's MLflow command, run as on the head (basic auth, the credentials from the secrets file the
    launcher mounts), on free ports in a temp dir, with local artifacts instead of S3."""

    def __init__(self, postgres: Postgres) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fs-mlflow-"))
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = self.root / "mlflow-server.log"
        self.username, self.password = "admin", secrets.token_hex(16)
        self.secrets_file = self.root / "secrets.env"
        self.secrets_file.write_text(f"MLFLOW_TRACKING_USERNAME={self.username}\n"
                                     f"MLFLOW_TRACKING_PASSWORD={self.password}\n"
                                     f"MLFLOW_FLASK_SERVER_SECRET_KEY={secrets.token_hex(32)}\n")
        self.secrets_file.chmod(0o600)
        # The ports first: the temp paths put in after them could contain the digits.
        self.command = moved(head_command("mlflow server"), {
            "5432": str(postgres.port), "5000": str(self.port), "/tmp/": f"{self.root}/",
            "~/.fusion-steering/secrets.env": str(self.secrets_file),
            # One worker, in uvicorn's own process: on this shared 2-core machine its supervisor would restart
            # workers that miss their health ping under load.
            "--workers 2": "--workers 1",
            "s3://CHANGE-ME-bucket/fusion-steering/mlflow-artifacts": str(self.root / "artifacts")})
        self.pid: int | None = None

    def credentials(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}

    def start(self, timeout: float = 300) -> None:  # the auth app's start takes a minute on a loaded 2-core machine
        # No MLflow credentials of the caller's: the server must get its admin from the secrets file alone.
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        done = subprocess.run(["bash", "-c", self.command], cwd=self.root, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{self.command}\nexit {done.returncode}\n{done.stderr[-2000:]}"
        self.pid = int((self.root / "mlflow-server.pid").read_text())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):
                assert psutil.pid_exists(self.pid), f"mlflow server exited:\n{tail(self.log)}"
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer within {timeout:.0f} s:\n{tail(self.log)}")

    def processes(self) -> list[psutil.Process]:
        try:
            server = psutil.Process(self.pid)
            return [server, *server.children(recursive=True)]
        except (psutil.NoSuchProcess, TypeError):
            return []

    def stop(self) -> None:
        kill_processes(self.processes())
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_on_postgres(postgres):
    server = HeadMlflow(postgres)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_sweep_logs_to_mlflow_on_postgresql(postgres, mlflow_on_postgres, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    import psycopg2

    server = mlflow_on_postgres
    # Basic auth is on: a request without credentials is refused, and no process of the server has the
    # password on its command line (it came from the secrets file, through the environment).
    search = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    wait = 120  # a password check hashes (PBKDF2): seconds on a loaded machine
    assert requests.get(search, timeout=wait).status_code == 401
    assert requests.get(search, auth=(server.username, "wrong"), timeout=wait).status_code == 401
    assert requests.get(search, auth=(server.username, server.password), timeout=wait).ok
    cmdlines = [" ".join(p.cmdline()) for p in server.processes()]
    assert cmdlines and not [c for c in cmdlines if server.password in c]

    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    # The driver's environment on the head: the secrets file's MLflow credentials, which MLflow's client sends
    # (the server refuses every request without them, above: a sweep that logs at all sent them).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, **server.credentials(),
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(sweep_command(out, csv, f"tracking.uri={server.uri}"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    (tmp_path / "sweep.log").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-4000:] + "\n--- mlflow server:\n" + tail(server.log)
    assert not (out / "mlflow.db").exists(), "the sweep fell back to a local SQLite store"

    studies = assert_smoke_studies(pq.read_table(out / "trials.parquet").to_pandas())
    for name, value in server.credentials().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("fusion-steering")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("fusion_steering.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("fusion_steering.role") == "study"]
    assert len(parents) == 1 and len(children) == len(studies) and len(runs) == 1 + len(studies)
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "objective")]
        study = (int(child.data.tags["fusion_steering.prompt_id"]), child.data.tags["fusion_steering.method"])
        assert sorted(steps) == list(range(studies[study])), f"{child.info.run_name}: steps {steps}"

    # The runs, and the auth app's users, are rows in PostgreSQL, not anywhere else.
    uri = urlparse(postgres.backend_store_uri())
    with closing(psycopg2.connect(host=uri.hostname, port=uri.port, user=uri.username,
                                  dbname=uri.path.lstrip("/"))) as db, db.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(cursor.fetchall()) == {"FINISHED": len(runs)}
        cursor.execute("SELECT username, is_admin FROM users")
        assert cursor.fetchall() == [(server.username, True)]


# ------------------------------------------------------------------------------------------- ray job submit

class RayHead:
    """`ray start --head --block` on 127.0.0.1 with token authentication, every port its own, in a temp dir.

    Never `ray stop`: it kills every Ray process of this user on the machine, other people's clusters included.
    Teardown kills, by PID, the processes that carry this head's marker in their environment (every Ray process
    it starts inherits it, the job's driver and workers too) and whatever is left in its process group."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fs-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.token_file = self.root / "auth_token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.marker = secrets.token_hex(8)
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                    "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "FUSION_STEERING_TEST_HEAD": self.marker,
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.log = self.root / "head.log"
        self.process: subprocess.Popen | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}

    def start(self, timeout: float = 120) -> None:
        ports = {"--port": self.port, "--dashboard-port": self.dashboard_port,
                 "--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
                 "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
                 "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(),
                 "--object-manager-port": free_port()}
        argv = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={self.root / 'ray'}",
                "--disable-usage-stats", *[f"{flag}={port}" for flag, port in ports.items()]]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"ray start exited with {self.process.returncode}:\n{tail(self.log)}"
            try:
                if requests.get(f"{self.address}/api/jobs/", headers=self.headers(), timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the Ray head's job API did not answer within {timeout:.0f} s:\n{tail(self.log)}")

    def ours(self) -> list[psutil.Process]:
        found = []
        group = os.getpgid(self.process.pid) if self.process and self.process.poll() is None else None
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("FUSION_STEERING_TEST_HEAD") == self.marker or (
                        group is not None and os.getpgid(proc.pid) == group):
                    found.append(proc)
            except (psutil.Error, ProcessLookupError):
                continue
        return found

    def stop(self) -> None:
        procs = self.ours()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        procs += [p for p in self.ours() if p not in procs]
        kill_processes(procs)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    head = RayHead()
    try:
        head.start()
        yield head
    finally:
        head.stop()


@pytest.mark.cluster
def test_ray_job_submit_runs_the_sweep_on_a_token_auth_head(ray_head, tmp_path):
    # Token authentication is on: the job API refuses a request without the token.
    assert requests.get(f"{ray_head.address}/api/jobs/", timeout=10).status_code in (401, 403)

    csv = write_simpleqa_csv(tmp_path / "simpleqa.csv", QUESTIONS)
    out = tmp_path / "run"
    submission = f"fusion-steering-test-{secrets.token_hex(4)}"
    sweep = sweep_command(out, csv, "cluster.address=auto")
    # docs/cluster.md's command: `fusion-steering run ...` from the uploaded working directory.
    entrypoint = ["fusion-steering", *sweep[sweep.index("run"):]]
    assert Path(sweep[sweep.index("--config") + 1]) == CONF / "smoke.yaml"
    entrypoint[entrypoint.index("--config") + 1] = "conf/smoke.yaml"
    submit = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", ray_head.address, "--submission-id", submission,
         "--working-dir", ".", "--", *entrypoint],
        cwd=REPO, env=ray_head.env, capture_output=True, text=True, timeout=600)
    logs = (submit.stdout + submit.stderr)[-4000:]
    assert submit.returncode == 0, logs

    info = requests.get(f"{ray_head.address}/api/jobs/{submission}", headers=ray_head.headers(), timeout=10)
    assert info.ok, info.text
    assert info.json()["status"] == "SUCCEEDED", (info.json(), logs)
    assert (out / "report.md").is_file(), logs
    assert_smoke_studies(pq.read_table(out / "trials.parquet").to_pandas())
