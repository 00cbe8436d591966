"""The CLI as a newcomer meets it: quick answers before anything heavy loads, relative paths from any folder,
and progress lines whose counts add up."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from sweep.progress import Progress

from conftest import CONF, QUESTIONS, REPO, write_simpleqa_csv

HEAVY = ("torch", "ray", "mlflow", "transformers", "optuna")


@pytest.mark.parametrize("args", [
    ["--help"],
    ["run", "--config", "conf/nope.yaml", "--out", "runs/x"],
    ["run", "--config", str(CONF / "smoke.yaml"), "--out", "runs/x", "model.colour=red"],
    ["run", "--config", str(CONF / "smoke.yaml"), "--out", "runs/x", "search.trials=0"],
])
def test_help_and_bad_input_answer_before_the_heavy_stack_loads(tmp_path, args):
    probe = ("import sys\nfrom sweep.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    code = e.code\nprint('LOADED', sorted(m for m in %r if m in sys.modules), code)" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded.startswith("LOADED [] "), loaded
    assert loaded.endswith(" 0") if args == ["--help"] else loaded.endswith(" 2")
    assert not (tmp_path / "runs").exists()


def test_the_plain_progress_line_counts_rate_and_time_left():
    stream = io.StringIO()  # not a terminal: plain lines
    with Progress("tune", 10, "trials", stream=stream, every_s=0) as progress:
        progress.update(3, "best mean objective 0.120")
        progress.update(2)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("tune 3/10 trials · ") and "best mean objective 0.120 · ETA " in lines[0]
    assert lines[-1].startswith("tune 5/10 trials · ") and len(lines) == 2  # the closing line is not repeated
    assert progress.done == 5


@pytest.mark.slow
def test_relative_paths_work_from_another_working_folder(tmp_path):
    """--out, --config and data.csv relative to the folder the command runs in (Tune itself wants an absolute
    storage path: the CLI resolves them once)."""
    work = tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    write_simpleqa_csv(work / "data" / "qa.csv", QUESTIONS[:3])
    config = os.path.relpath(CONF / "smoke.yaml", work)
    out = subprocess.run([sys.executable, "-m", "sweep.cli", "run", "--config", config, "--out", "runs/rel",
                          "model.name=tiny-random", "model.quantization=none", "data.csv=data/qa.csv",
                          "generation.max_new_tokens=8", "search.trials=1", "controls=[prompt_only]"],
                         cwd=work, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    run = work / "runs" / "rel"
    assert (run / "report.html").exists() and (run / "tune" / "attempt-1").is_dir()
    assert f"csv: {work / 'data' / 'qa.csv'}" in (run / "config.yaml").read_text()
    trials = 3 * (1 + 2)  # 3 prompts x (prompt_only + full + segmented), one trial each
    assert f"tune {trials}/{trials} trials" in out.stderr
    assert f"Report: {run / 'report.html'}" in out.stderr
