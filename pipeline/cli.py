"""The ``cardiotwin`` command: one subcommand per pipeline stage.

Each subcommand lives in its own module, which provides ``configure_parser(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so a machine
without the imaging packages (nibabel, SimpleITK) can still run ``cardiotwin verify``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path

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
    parser.add_argument(
        "--redact-inputs",
        action="store_true",
        help="name the input files by their option (<--lge>) in logs and errors, never by "
        "path (a DICOM folder is often named after the patient); the workflow sets it",
    )
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


#: options that name something a command writes (all other path options are read)
OUTPUT_OPTIONS = frozenset(
    {"out", "json", "stats", "qc", "iso_out", "surface_out", "pictures", "quality_json",
     "journal", "report"}
)  # fmt: skip
#: of those, the ones that name a folder (``--out`` is one for these commands)
FOLDER_OPTIONS = frozenset({"qc", "pictures", "journal"})
FOLDER_OUT_COMMANDS = frozenset({"phantom", "report", "induce", "ablate", "cohort-summary"})


def _is_folder_option(command: str, dest: str) -> bool:
    return dest in FOLDER_OPTIONS or (dest == "out" and command in FOLDER_OUT_COMMANDS)


def path_arguments(args: argparse.Namespace):
    """(dest, path) for every path a parsed call names, one per path of a list option."""
    for dest, value in vars(args).items():
        for path in value if isinstance(value, list) else [value]:
            if isinstance(path, Path):
                yield dest, path


def check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, a call whose outputs would overwrite one of its inputs or
    each other (``segment --out`` naming the LGE image, ``--stats`` naming ``--out``: both
    were written over, exit 0), and an output folder that is a file."""
    command = args.command
    seen: dict[str, tuple[str, bool, bool]] = {}  # real path -> (option, output, folder)
    for dest, path in path_arguments(args):
        option = "--" + dest.replace("_", "-") if dest != "file" else "FILE"
        output = dest in OUTPUT_OPTIONS
        if output and _is_folder_option(command, dest) and path.exists() and not path.is_dir():
            raise CommandError(f"{option} {path} is a file: name a folder")
        key = os.path.realpath(path)
        folder = output and _is_folder_option(command, dest)
        if key in seen:
            other, other_output, other_folder = seen[key]
            # two folders to write into, or a folder that is there: nothing is overwritten
            shared_folder = os.path.isdir(key) or (folder and other_folder)
            if (output or other_output) and not shared_folder:
                if output and other_output:
                    raise CommandError(f"{other} and {option} name the same file ({path})")
                written, read = (option, other) if output else (other, option)
                raise CommandError(
                    f"{written} would overwrite the input {read} ({path}): name another file"
                )
        seen[key] = (option, output, folder)


class Redaction(logging.Filter):
    """Replaces the input paths of a call (as given, absolute, and their last parts: a DICOM
    folder named after the patient) by the option that named them, in log records and in
    any text; outputs keep their paths (the workflow names them by case id)."""

    def __init__(self, replacements: dict[str, str]) -> None:
        super().__init__()
        # longest first, so a path is replaced before its own last part; a part only where it
        # stands alone (a folder "data" leaves "metadata" alone)
        self.replacements = [
            (re.compile(rf"(?<![\w.-]){re.escape(old)}(?![\w-])"), new)
            for old, new in sorted(replacements.items(), key=lambda kv: -len(kv[0]))
        ]

    @classmethod
    def of(cls, args: argparse.Namespace) -> Redaction:
        replacements: dict[str, str] = {}
        # the outputs' folder names (the case id in the workflow) are not the patient's
        kept = {
            part
            for dest, path in path_arguments(args)
            if dest in OUTPUT_OPTIONS
            for part in Path(os.path.abspath(path)).parts
        }
        for dest, path in path_arguments(args):
            if dest in OUTPUT_OPTIONS:
                continue
            label = f"<--{dest.replace('_', '-')}>"
            for form in (str(path), os.path.abspath(path), os.path.realpath(path)):
                replacements[form] = label
            for part in (path.name, path.parent.name):
                if len(part) >= 3 and part not in kept:
                    replacements.setdefault(part, label)
        return cls(replacements)

    def __call__(self, text: str) -> str:
        for pattern, label in self.replacements:
            text = pattern.sub(label, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self(record.getMessage()), ()
        return True


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
    redact = Redaction.of(args) if args.redact_inputs else None
    handlers = list(logging.getLogger().handlers) if redact is not None else []
    for handler in handlers:
        handler.addFilter(redact)
    try:
        return _run(args, redact)
    finally:
        for handler in handlers:  # a second call in this process starts clean
            handler.removeFilter(redact)


def _run(args: argparse.Namespace, redact: Redaction | None) -> int:
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        check_paths(args)
        return int(module.run(args) or 0)
    except CommandError as exc:
        message = str(exc) if redact is None else redact(str(exc))
        print(f"cardiotwin {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception:
        if redact is None:
            raise
        import traceback

        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return 1
