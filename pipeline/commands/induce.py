"""``cardiotwin induce``: programmed stimulation on a patient's mesh, re-entry, risk.

``cardiotwin induce --mesh MESH --config CFG --out DIR [--backend auto|cpu|cuda]
[--precision fp64|mixed] [--sites all|NAME,...]`` (default: the configuration's
``induction.sites``) writes
``DIR/induction.json`` (:mod:`cardiotwin.pipeline.risk`) and one ``DIR/vt-<id>.vtu`` per
unique VT (the mesh with the VT's activation maps as point data), all or nothing; progress
(a bar per batch of trials: simulated ms, trials finished, node-steps/s) goes to stderr, a
one-line summary to stdout. Each finished trial is recorded in ``DIR/.journal`` (or
``--journal``): killed and started again, the study resumes from there with the same answer;
the journal is removed once the outputs are written.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiotwin.files import write_all_or_nothing
from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", required=True, type=Path, help="tagged mesh (VTU, openCARP)")
    parser.add_argument("--config", type=Path, help="configuration file (YAML/JSON)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--backend",
        choices=("auto", "cpu", "cuda", "reference"),
        help="simulation backend (default: the configuration's simulation.backend)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp64", "mixed"),
        help="storage precision (default: the configuration's simulation.precision)",
    )
    parser.add_argument(
        "--sites",
        help="'all' or comma-separated site names (e.g. AHA-3,AHA-9); default: the "
        "configuration's induction.sites (null there: all)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        help="folder recording each finished trial, so a killed run resumes where it stopped "
        "(default: OUT/.journal; removed once the outputs are written). A folder that holds "
        "other files is refused, never emptied",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _backend(name: str) -> str:
    from cardiotwin.solvers.stepping import BackendUnavailable, select_backend

    try:
        return select_backend(name).NAME
    except (BackendUnavailable, NotImplementedError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def with_precision(config, precision: str | None):
    """``config`` with ``simulation.precision`` set to ``precision`` (None: unchanged)."""
    if precision is None:
        return config
    simulation = config.simulation.model_copy(update={"precision": precision})
    return config.model_copy(update={"simulation": simulation})


def run(args: argparse.Namespace) -> int:
    from cardiotwin.meshing.io import check_vtu_support, read_mesh
    from cardiotwin.meshing.mesh import MeshError
    from cardiotwin.pipeline.config import ConfigError, for_stage, load_config
    from cardiotwin.pipeline.induction import InductionError, run_induction
    from cardiotwin.pipeline.induction.journal import JournalError, remove_journal
    from cardiotwin.pipeline.induction.protocols import ProtocolError
    from cardiotwin.pipeline.risk import build_report, vt_file_name, vt_mesh
    from cardiotwin.pipeline.tissue import TissueError

    try:
        config = for_stage(load_config(args.config), "induce")
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    config = with_precision(config, args.precision)
    backend = _backend(args.backend or config.simulation.backend)
    try:
        mesh = read_mesh(args.mesh)
    except (MeshError, OSError, ValueError) as exc:
        raise CommandError(f"cannot read the mesh: {exc}") from None
    if args.sites is None:
        sites = None if config.induction.sites is None else list(config.induction.sites)
    elif args.sites.strip().lower() == "all":
        sites = None
    else:
        sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if sites is not None and not sites:
        raise CommandError("--sites names no site; give 'all' or names like AHA-3,AHA-9")
    journal = args.journal or args.out / ".journal"
    try:
        check_vtu_support(args.out / "vt-1.vtu")  # the VT maps are written at the very end
    except MeshError as exc:
        raise CommandError(str(exc)) from None
    try:
        result = run_induction(
            mesh,
            config,
            backend=backend,
            sites=sites,
            progress=not args.no_progress,
            journal=journal,
        )
    except (InductionError, TissueError, ProtocolError, JournalError) as exc:
        raise CommandError(str(exc)) from None
    report = build_report(result, mesh.fingerprint())
    from cardiotwin.pipeline.provenance import backend_record, provenance

    report.provenance = provenance(
        "induction",
        inputs={"mesh": args.mesh},
        config=config,
        backend=backend_record(args.backend or config.simulation.backend, backend),
        wall_s=report.wall_s,
    )
    from cardiotwin.meshing.io import write_mesh

    writers = {
        args.out / "induction.json": lambda p: Path(p).write_text(
            report.model_dump_json(indent=2) + "\n", encoding="utf-8"
        )
    }
    for vt in result.vts:
        writers[args.out / vt_file_name(vt.id)] = lambda p, vt=vt: write_mesh(
            vt_mesh(mesh, result, vt), p
        )
    write_all_or_nothing(writers)
    remove_journal(journal)  # the answer is written: nothing to resume
    for stale in set(args.out.glob("vt-*.vtu")) - set(writers):
        stale.unlink()  # a VT of an earlier run in this folder that this one did not find
    print(
        f"{report.note}; {len(report.unique_vts)} unique "
        f"{'VT' if report.chamber == 'ventricle' else 'driver'}(s); wrote "
        f"{args.out / 'induction.json'} ({report.wall_s:.0f} s, {report.backend})"
    )
    return 0
