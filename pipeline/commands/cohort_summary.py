"""``cardiotwin cohort-summary``: a table and a plot over every case's results.json."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, nargs="+", required=True,
                        help="the cases' results.json files")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder for summary.html/.tsv")


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.report.cohort import write_summary

    try:
        written = write_summary(args.results, args.out)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    log.info("cohort summary: %s", written["html"])
    return 0
