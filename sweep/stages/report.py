"""report -> report.md, report.html, plots/: every table and figure, from the Parquet files alone."""

from __future__ import annotations

from ..session import Session


def report(session: Session) -> None:
    from analysis.report import write_report

    write_report(session.run, session.cfg)
