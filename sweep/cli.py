"""`fusion-steering`: one subcommand per stage, `run` for all of them, and `paper-table`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .config import ConfigError, compose
from .data import DataError
from .models import ModelError
from .stages import STAGES, SweepError, run_stages

EXPECTED_ERRORS = (ConfigError, DataError, ModelError, SweepError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-steering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in (*STAGES, "run"):
        sub = commands.add_parser(name, help="all stages in order" if name == "run" else f"the {name} stage")
        sub.add_argument("--config", type=Path, required=True, help="conf/NAME.yaml")
        sub.add_argument("--out", type=Path, required=True, help="the run directory")
        sub.add_argument("overrides", nargs="*", help="dotted key=value, e.g. model.quantization=none")
    bench = commands.add_parser("bench", help="the paper's loop vs the engine, and the sweep's overhead")
    bench.add_argument("--config", type=Path, default=Path("conf/bench.yaml"))
    bench.add_argument("--trials", type=int, default=32, help="engine trials per mode and batch size")
    bench.add_argument("--paper-trials", type=int, default=4, help="trials through the paper's loop (slow)")
    bench.add_argument("--faithful-trials", type=int, default=16,
                       help="trials through the faithful engine (slow); its batches are capped at this")
    bench.add_argument("--batch-sizes", default="8,32", help="comma-separated engine batch sizes")
    bench.add_argument("--new-tokens", type=int, default=100)
    bench.add_argument("--sweep-studies", type=int, default=8, help="studies in the sweep-overhead run (0: skip)")
    bench.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    bench.add_argument("overrides", nargs="*", help="dotted key=value, e.g. model.quantization=none")
    compare = commands.add_parser("compare", help="a table over run directories; paired figures for two")
    compare.add_argument("dirs", type=Path, nargs="+")
    table = commands.add_parser("paper-table", help="the paper's table recomputed from the authors' CSVs")
    table.add_argument("--notebook-csvs", type=Path, required=True)
    table.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    return parser


def _paper_table(csv_dir: Path, as_json: bool) -> None:
    from analysis.tables import markdown_table, paper_notebook_table

    table = paper_notebook_table(csv_dir)
    if as_json:
        print(json.dumps(table, indent=2))
        return
    print(markdown_table({k: table[k] for k in ("baseline", "full", "segmented")}))
    print(f"\nOverlap recomputed = authors' recorded token_overlap (4 dp) on {table['overlap_agreement']:.1%} "
          "of best trials.")


def _compare(dirs: list[Path]) -> None:
    from analysis.compare import compare_table, paired_trials

    print(compare_table(dirs))
    if len(dirs) == 2:
        paired = paired_trials(*dirs)
        print(f"\nSame (prompt, method, trial) in both: {paired['trials']:.0f}; identical text "
              f"{paired['same_text']:.0%}; objective change {paired['objective_change']:+.3f} per trial, "
              f"{paired['best_objective_change']:+.3f} for the best; accuracy change {paired['accuracy_change']:+.1%} "
              "(second minus first)")


def _bench(cfg, args: argparse.Namespace) -> None:  # noqa: ANN001 - SweepConfig
    from .bench import run_bench, summary_lines

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    cfg.generation.max_new_tokens = args.new_tokens  # the sweep-overhead run generates as many tokens
    result = run_bench(cfg, args.trials, args.paper_trials, args.faithful_trials, sizes, args.new_tokens,
                       args.sweep_studies)
    print("\n".join(summary_lines(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Tune's default CSV/TensorBoard loggers duplicate what Parquet and MLflow hold (its JSON logger is kept,
    # explicitly, in the tune stage). Experiment snapshots after every checkpoint are wanted: they keep
    # resume exact, so Tune's warning about their frequency is silenced.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A tracking server that is down should cost seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        if args.command == "compare":
            _compare(args.dirs)
            return 0
        if args.command == "paper-table":
            _paper_table(args.notebook_csvs, args.json)
            return 0
        cfg = compose(args.config, args.overrides)
        if args.command == "bench":
            _bench(cfg, args)
            return 0
        run_stages(cfg, args.out, STAGES if args.command == "run" else [args.command])
    except (*EXPECTED_ERRORS, ValueError) as err:
        print(f"fusion-steering: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a vanished directory: the atomic writes left earlier files intact
        print(f"fusion-steering: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
