"""The README's first screen, run as a newcomer would: its demo command from a fresh copy of the repository in a
temporary folder (a new .venv, relative paths, nothing set by hand), at the smallest size that still goes through
every stage; then again, which must reuse the environment and the run. And CI must run its test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.readme]
# Every stage, every arm, at the least work: 3 rows (the mismatched control needs 2 prompts), 1 trial, 8 tokens.
SMALLEST = "data.rows=3 data.keep_grades=[INCORRECT,NOT_ATTEMPTED] search.trials=1 generation.max_new_tokens=8"


def quick_start() -> list[str]:
    """The commands of the README's first code block (its Quick start)."""
    block = re.search(r"```(?:bash|sh)\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "the README has no bash block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def fresh_copy(target: Path) -> Path:
    """The files a clone of this working tree holds: tracked ones and new ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def test_the_quick_start_has_one_demo_and_one_test_command_and_ci_runs_the_test_one():
    commands = quick_start()
    assert len(commands) == 2 and commands[0].startswith("make demo") and commands[1] == "make test", commands
    assert commands[1] in (REPO / ".ci" / "run").read_text().splitlines()


def test_the_readme_demo_runs_from_a_fresh_copy_and_again_reuses_everything(tmp_path):
    clone = fresh_copy(tmp_path / "fusion-steering")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SIMPLEQA_CSV", "MLFLOW_TRACKING_URI")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    demo = f"{quick_start()[0]} DEMO_ARGS='{SMALLEST}'"

    first = subprocess.run(demo, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    assert (clone / "runs" / "demo" / "report.html").stat().st_size > 10_000
    assert f"Report: {clone / 'runs' / 'demo' / 'report.html'}" in first.stderr
    assert f"mlflow ui --backend-store-uri sqlite:///{clone / 'runs' / 'demo' / 'mlflow.db'}" in first.stderr
    assert "SimpleQA CORRECT on" in first.stderr

    again = subprocess.run(demo, shell=True, cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert "pip install" not in again.stdout  # the environment is reused
    assert again.stderr.count("already done, skipped") == 7  # and so is every stage of the run
