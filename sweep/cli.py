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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Tune's default CSV/JSON/TensorBoard loggers duplicate what Parquet and MLflow hold.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    try:
        if args.command == "paper-table":
            _paper_table(args.notebook_csvs, args.json)
            return 0
        cfg = compose(args.config, args.overrides)
        run_stages(cfg, args.out, STAGES if args.command == "run" else [args.command])
    except (*EXPECTED_ERRORS, ValueError) as err:
        print(f"fusion-steering: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
