"""The ``cardiotwin`` command: one subcommand per pipeline stage.

Each subcommand lives in its own module, which provides ``configure_parser(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so a machine
without the imaging packages (nibabel, SimpleITK) can still run ``cardiotwin verify``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from cardiotwin import __version__

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "verify": (
        "cardiotwin.pipeline.verify",
        "verification runs: the N-version slab benchmark, single-cell action potentials",
    ),
    "phantom": (
        "cardiotwin.pipeline.commands.phantom",
        "write a synthetic patient (LGE image, wall mask, ground truth)",
    ),
    "import": (
        "cardiotwin.pipeline.commands.dicom_import",
        "convert a DICOM series to a de-identified NIfTI file named by the case",
    ),
    "segment": (
        "cardiotwin.pipeline.commands.segment",
        "classify an LGE wall into healthy / border zone / dense scar (or atrial fibrosis)",
    ),
    "mesh": ("cardiotwin.pipeline.commands.mesh", "label map -> tagged tetrahedral mesh"),
    "report": (
        "cardiotwin.pipeline.commands.report",
        "one case's report (HTML, PDF, results.json)",
    ),
    "config": ("cardiotwin.pipeline.commands.config", "check a configuration; its JSON schema"),
    "cohort-summary": ("cardiotwin.pipeline.commands.cohort_summary", "table and plot over cases"),
    "prepare": (
        "cardiotwin.pipeline.commands.prepare",
        "add missing surfaces, coordinates, fibres, AHA segments and pacing sites to a mesh",
    ),
    "induce": ("cardiotwin.pipeline.commands.induce", "programmed stimulation: inducibility, VTs"),
    "ablate": ("cardiotwin.pipeline.commands.ablate", "virtual ablation until non-inducible"),
}


class CommandError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cardiotwin",
        description="Cardiac electrophysiology digital twins from LGE-MRI.",
    )
    parser.add_argument("--version", action="version", version=f"cardiotwin {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``command``'s module is imported (all of them when ``None``)."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            importlib.import_module(module_name).configure_parser(sp)
    return parser


def quiet_numba() -> None:
    """Keep Numba's own chatter out of the stage logs.

    On a real GPU numba-cuda logs every device deallocation at INFO (hundreds of lines per
    simulated second of an induction, seen on an H200) and warns about the small grids of
    our reductions; both drowned the progress lines a user reads.
    """
    logging.getLogger("numba").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Grid size \d+ will likely result in GPU under")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = "__none__"  # --help / --version / a typo: argparse reports it
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    quiet_numba()
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except CommandError as exc:
        print(f"cardiotwin {args.command}: error: {exc}", file=sys.stderr)
        return 2
