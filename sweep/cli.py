"""`fusion-steering`: one subcommand per stage, `run` for all of them, and tools around them.

Only the standard library, OmegaConf and this package's light modules are imported before the arguments are
parsed: `--help`, a bad key or a missing file answer at once; Ray, torch and MLflow load in the commands that
use them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import EXPECTED_ERRORS
from .stages import STAGES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-steering", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="library logs, Ray's notices and Tune's status tables (off by default)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in (*STAGES, "run"):
        sub = commands.add_parser(name, help="all stages in order" if name == "run" else f"the {name} stage")
        sub.add_argument("--config", type=Path, required=True, help="conf/NAME.yaml")
        sub.add_argument("--out", type=Path, required=True, help="the run directory")
        sub.add_argument("overrides", nargs="*", help="dotted key=value, e.g. model.quantization=none")
    grade = commands.add_parser("grade", help="grade any answers with the project's judges (CSV or Parquet)")
    grade.add_argument("--input", type=Path, required=True, help="columns question, answer (gold), response")
    grade.add_argument("--output", type=Path, required=True, help=".csv or .parquet: the rows plus grades")
    grade.add_argument("--config", type=Path, help="a config file whose judge.* keys to use (default: the packaged "
                       "defaults, the exact grader; conf/grade.yaml in a checkout)")
    grade.add_argument("overrides", nargs="*", help="dotted key=value, e.g. judge.kind=http")
    bench = commands.add_parser("bench", help="the paper's loop vs the engine, and the sweep's orchestration")
    bench.add_argument("--config", type=Path, default=Path("conf/bench.yaml"))
    bench.add_argument("--trials", type=int, default=32, help="engine trials per mode and batch size")
    bench.add_argument("--paper-trials", type=int, default=4, help="trials through the paper's loop (slow)")
    bench.add_argument("--faithful-trials", type=int, default=16,
                       help="trials through the faithful engine (slow); its batches are capped at this")
    bench.add_argument("--batch-sizes", default="8,32", help="comma-separated engine batch sizes")
    bench.add_argument("--new-tokens", type=int, default=100)
    bench.add_argument("--sweep-studies", type=int, default=8, help="studies in the sweep-overhead run (0: skip)")
    bench.add_argument("--overhead-batch-sizes", default="1,16,64,256",
                       help="batch sizes of the steered vs unsteered table ('': skip)")
    bench.add_argument("--overhead-tokens", type=int, default=32, help="new tokens per row there, cached mode")
    bench.add_argument("--faithful-overhead-tokens", type=int, default=8, help="new tokens per row there, faithful")
    bench.add_argument("--repeats", type=int, default=3, help="alternating repeats of the overhead and compaction runs")
    bench.add_argument("--compaction-rows", type=int, default=64, help="demo rows generated to EOS (0: skip)")
    bench.add_argument("--compaction-tokens", type=int, default=48, help="their max new tokens (conf/demo.yaml's)")
    bench.add_argument("--compact-below", default="0.5,0.75,1", help="compaction thresholds to time (live share)")
    bench.add_argument("--orchestration", action="store_true",
                       help="only the tune stage's orchestration, with a zero-cost engine in the replicas")
    bench.add_argument("--prompts", default="500,2000,4326", help="with --orchestration: prompt counts")
    bench.add_argument("--tracking-uri", help="with --orchestration: the MLflow store to track into, e.g. "
                       "postgresql+psycopg2://USER@HOST:PORT/DB or http://HOST:PORT (default: SQLite per run)")
    bench.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    bench.add_argument("overrides", nargs="*", help="dotted key=value, e.g. model.quantization=none")
    doctor = commands.add_parser("doctor", help="the device check: batched = alone, engine speed and MFU, the "
                                 "smoke sweep, per model and quantization (docs/gpu.md)")
    doctor.add_argument("--device", choices=("cpu", "cuda"), required=True)
    doctor.add_argument("--out", type=Path, required=True, help="writes DIR/doctor.json")
    doctor.add_argument("--quick", action="store_true",
                        help="CPU-sized: tiny-random, none and 8bit, batches 2,4, 8 tokens, no sweep")
    doctor.add_argument("--models", help="comma-separated names from conf/model/ (default smollm2-135m,gemma3-270m)")
    doctor.add_argument("--quantizations", help="comma-separated: none, 8bit, 4bit (default all three)")
    doctor.add_argument("--batch-sizes", help="comma-separated engine batch sizes (default 64,256,512)")
    doctor.add_argument("--new-tokens", type=int, help="tokens per trial, EOS suppressed (default 100)")
    doctor.add_argument("--paper-trials", type=int, help="trials through the paper's loop (default 3)")
    doctor.add_argument("--faithful-trials", type=int, help="faithful engine trials; caps its batch (default 64)")
    doctor.add_argument("--agreement-trials", type=int, help="trials batched vs alone (default 8)")
    doctor.add_argument("--random-weights", action="store_true",
                        help="each model's architecture with random weights (conf/model/NAME-random.yaml)")
    doctor.add_argument("--tokenizer", type=Path,
                        help="a tokenizer folder for random-weight models (default: their tokenizer_from model's)")
    doctor.add_argument("--smoke", action="store_true", help="with --quick: run the smoke sweep too")
    doctor.add_argument("--budget-s", type=float,
                        help="start no model after this many seconds (default 420 on CUDA, 0 = no limit)")
    doctor.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's; 1 with --quick on a CPU)")
    doctor.add_argument("--conf-dir", type=Path, default=Path("conf"), help="the folder holding model/NAME.yaml")
    compare = commands.add_parser("compare", help="a table over run directories; paired figures for two")
    compare.add_argument("dirs", type=Path, nargs="+")
    table = commands.add_parser("paper-table", help="the paper's table recomputed from the authors' CSVs")
    table.add_argument("--notebook-csvs", type=Path, required=True)
    table.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    return parser


def _configure_logging(verbose: bool) -> None:
    """Our stages' lines always; everyone else's (Ray, Tune, MLflow, transformers) only with -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s" if verbose else "%(message)s")
    logging.getLogger("sweep").setLevel(logging.INFO)
    # Tune's default CSV/TensorBoard/JSON loggers duplicate what Parquet and MLflow hold.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # A tracking server that is down should cost seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's older reporter is silent at verbose=0


def _compose(config: Path, overrides: list[str]):  # noqa: ANN202 - SweepConfig
    from .config import compose, resolve_paths

    cfg = compose(config.resolve(), overrides)
    resolve_paths(cfg, Path.cwd())
    return cfg


def _paper_table(csv_dir: Path, as_json: bool) -> None:
    from analysis.tables import markdown_table, paper_notebook_table, paper_table_notes

    table = paper_notebook_table(csv_dir)
    if as_json:
        print(json.dumps(table, indent=2))
        return
    print(markdown_table({k: table[k] for k in ("baseline", "full", "segmented")}), end="")
    print(paper_table_notes(table))


def _compare(dirs: list[Path]) -> None:
    from analysis.compare import compare_table, paired_trials

    print(compare_table(dirs))
    if len(dirs) == 2:
        paired = paired_trials(*dirs)
        print(f"\nSame (prompt, arm, trial) in both: {paired['trials']:.0f}; identical text "
              f"{paired['same_text']:.0%}; objective change {paired['objective_change']:+.3f} per trial, "
              f"{paired['best_objective_change']:+.3f} for the best; accuracy change {paired['accuracy_change']:+.1%} "
              "(second minus first)")


def _bench(args: argparse.Namespace) -> None:
    cfg = _compose(args.config, args.overrides)
    if args.orchestration:
        from .orchestration import run_orchestration_bench, summary_lines

        result = run_orchestration_bench(cfg, [int(p) for p in args.prompts.split(",")], args.tracking_uri)
    else:
        from .bench import EngineCosts, run_bench, summary_lines

        sizes = [int(b) for b in args.batch_sizes.split(",")]
        cfg.generation.max_new_tokens = args.new_tokens  # the sweep-overhead run generates as many tokens
        costs = EngineCosts([int(b) for b in args.overhead_batch_sizes.split(",") if b.strip()], args.overhead_tokens,
                            args.faithful_overhead_tokens, args.repeats, args.compaction_rows, args.compaction_tokens,
                            [float(t) for t in args.compact_below.split(",") if t.strip()])
        result = run_bench(cfg, args.trials, args.paper_trials, args.faithful_trials, sizes, args.new_tokens,
                           args.sweep_studies, costs)
    print("\n".join(summary_lines(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _doctor(args: argparse.Namespace) -> None:
    from .doctor import make_plan, run_doctor, summary_lines

    plan = make_plan(args.device, args.out.resolve(), args.quick, args.models, args.quantizations, args.batch_sizes,
                     args.new_tokens, args.paper_trials, args.agreement_trials, args.faithful_trials,
                     args.random_weights, args.smoke, args.budget_s, args.conf_dir, args.tokenizer,
                     ["fusion-steering", *args.argv], args.threads)
    result = run_doctor(plan)
    print("\n".join(summary_lines(result, plan.out / "doctor.json")))


def _grade(args: argparse.Namespace) -> None:
    from .grading import grade_file

    if args.config is None:
        from .config import compose_judge_only, resolve_paths

        cfg = compose_judge_only(args.overrides)
        resolve_paths(cfg, Path.cwd())
    else:
        cfg = _compose(args.config, args.overrides)
    print(grade_file(cfg, args.input.resolve(), args.output.resolve()))


def _run(args: argparse.Namespace) -> None:
    cfg = _compose(args.config, args.overrides)  # before the heavy imports: a bad key answers at once
    from .stages.runner import run_stages

    run_stages(cfg, args.out.resolve(), STAGES if args.command == "run" else [args.command], args.verbose)


COMMANDS = {"compare": lambda a: _compare(a.dirs), "paper-table": lambda a: _paper_table(a.notebook_csvs, a.json),
            "bench": _bench, "grade": _grade, "doctor": _doctor}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.argv = list(argv)  # the exact command line, for the files that record it
    _configure_logging(args.verbose)
    try:
        COMMANDS.get(args.command, _run)(args)
    except (*EXPECTED_ERRORS, ValueError) as err:
        print(f"fusion-steering: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a vanished directory: the atomic writes left earlier files intact
        print(f"fusion-steering: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
