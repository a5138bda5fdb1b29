"""``cardiotwin ablate``: virtual ablation until the heart is non-inducible.

``cardiotwin ablate --mesh MESH --induction DIR/induction.json --config CFG --out DIR2
[--backend auto|cpu|cuda] [--precision fp64|mixed] [--no-progress]`` reads the induction
study of MESH (its unique VTs and their activation maps ``vt-<id>.vtu``), runs the ablation loop
(:mod:`cardiotwin.pipeline.ablation.loop`: lesions at each circuit's critical site, the whole
induction protocol again from every site of the study, until non-inducible or the budget of
the configuration's ``ablation`` section), and writes, all or nothing:

- ``DIR2/ablation.json`` (:mod:`cardiotwin.pipeline.ablation.report`, with provenance);
- ``DIR2/ablated.vtu``: the mesh with the lesions tagged 4;
- ``DIR2/round-<k>-induction.json``: the induction report after each round, with its VTs'
  activation maps ``round-<k>-vt-<id>.vtu`` on that round's ablated mesh (and
  ``control-<k>-...`` per random control).

Each re-induction records its finished trials in ``DIR2/.journal/round-<k>`` (or
``control-<k>``): killed and started again with the same inputs, the ablation replays the
rounds it had run from there (the loop is deterministic, so each round's mesh is the same).
The journals are removed once the outputs are written.

Progress (rounds, and the induction's bars per batch of trials) goes to stderr, a one-line
summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)

ABLATED_MESH = "ablated.vtu"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", required=True, type=Path, help="the mesh the induction ran on")
    parser.add_argument(
        "--induction", required=True, type=Path, help="induction.json of cardiotwin induce"
    )
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
        "--vts",
        help="target only these VTs of the induction in round 1 (comma-separated ids, e.g. "
        "the clinical VT); the re-inductions still run every site and later rounds target "
        "every VT they find",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _chosen_vts(first, text: str | None):
    """``first`` with only the circuits named in ``--vts`` (all when not given)."""
    from dataclasses import replace

    if text is None:
        return first
    try:
        wanted = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise CommandError(f"--vts takes VT ids separated by commas, got {text!r}") from None
    known = {c.id for c in first.circuits}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        listed = ", ".join(str(k) for k in sorted(known)) or "none"
        raise CommandError(
            f"--vts {text}: VT {', '.join(map(str, unknown)) or '(none given)'} is not in the "
            f"induction (its VTs: {listed})"
        )
    log.info("round 1 targets VT %s only (--vts)", ", ".join(map(str, sorted(wanted))))
    return replace(first, circuits=[c for c in first.circuits if c.id in wanted])


def _same_protocol(config, report: dict) -> bool:
    """Whether ``config`` is the one the induction ran with, in the sections an induction
    reads (files written before the hash covered only those: up to the ablation section)."""
    from cardiotwin.pipeline.config import STAGE_SECTIONS, AblationConfig, config_hash

    wanted = report.get("config_hash")
    return wanted in (
        config_hash(config, sections=STAGE_SECTIONS["induce"]),
        config_hash(config),
        config_hash(config.model_copy(update={"ablation": AblationConfig()})),
    )


def run(args: argparse.Namespace) -> int:
    from cardiotwin.files import write_all_or_nothing
    from cardiotwin.meshing.io import check_vtu_support, read_mesh, write_mesh
    from cardiotwin.meshing.mesh import MeshError
    from cardiotwin.pipeline.ablation.critical import CriticalSiteError
    from cardiotwin.pipeline.ablation.inputs import (
        InductionInputError,
        round_from_file,
        round_from_result,
    )
    from cardiotwin.pipeline.ablation.lesions import LesionError
    from cardiotwin.pipeline.ablation.loop import AblationError, run_ablation, run_controls
    from cardiotwin.pipeline.ablation.report import build_report
    from cardiotwin.pipeline.commands.induce import _backend, with_precision
    from cardiotwin.pipeline.config import ConfigError, load_config
    from cardiotwin.pipeline.induction import InductionError, run_induction
    from cardiotwin.pipeline.induction.journal import JournalError, remove_journal
    from cardiotwin.pipeline.induction.protocols import ProtocolError
    from cardiotwin.pipeline.induction.sites import chamber_of
    from cardiotwin.pipeline.provenance import StageTimer, backend_record, provenance
    from cardiotwin.pipeline.risk import vt_file_name, vt_mesh
    from cardiotwin.pipeline.tissue import TissueError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    config = with_precision(config, args.precision)
    requested = args.backend or config.simulation.backend
    backend = _backend(requested)
    try:
        mesh = read_mesh(args.mesh)
    except (MeshError, OSError, ValueError) as exc:
        raise CommandError(f"cannot read the mesh: {exc}") from None
    try:
        check_vtu_support(args.out / ABLATED_MESH)  # written after every round has run
    except MeshError as exc:
        raise CommandError(str(exc)) from None
    with StageTimer() as timer:
        try:
            first = round_from_file(args.induction, mesh)
        except InductionInputError as exc:
            raise CommandError(str(exc)) from None
        first = _chosen_vts(first, args.vts)
        mismatch = ""
        if not _same_protocol(config, first.report):
            mismatch = (
                "this configuration, which is not the one the induction ran with (its config "
                f"hash {str(first.report.get('config_hash'))[:12]}…)"
            )
            log.warning("ablate runs %s", mismatch)
        sites = [s["name"] for s in first.sites]
        reports: dict[str, dict] = {}
        maps: dict[str, object] = {}

        journals = args.out / ".journal"

        def induce(ablated, round_no: int):
            prefix = f"round-{round_no}" if round_no > 0 else f"control-{-round_no}"
            # one trial journal per re-induction: killed and started again (a cluster job
            # past its time), the rounds already run come back from there, not from scratch
            result = run_induction(
                ablated,
                config,
                backend=backend,
                sites=sites,
                progress=not args.no_progress,
                journal=journals / prefix,
            )
            induction = round_from_result(result, ablated)
            # every round's answer is kept: its report and its VTs' activation maps (on
            # that round's ablated mesh), named after the round
            for vt, entry in zip(result.vts, induction.report["unique_vts"], strict=True):
                entry["activation_map"] = f"{prefix}-{vt_file_name(vt.id)}"
                maps[entry["activation_map"]] = vt_mesh(ablated, result, vt)
            reports[f"{prefix}-induction.json"] = induction.report
            return induction

        # the tissue the re-inductions simulate decides what conducts: in an atrium dense
        # fibrosis conducts, so the targets' graph includes it and a lesion ablates it
        chamber = first.report.get("chamber") or chamber_of(mesh)
        blocking = getattr(config.tissue, chamber).nonconducting_tags()
        try:
            result = run_ablation(mesh, first, induce, config.ablation, blocking)
            result.controls = run_controls(mesh, result, induce, config.ablation, blocking)
            if mismatch and reports:
                result.note += (
                    f" The re-inductions ran {mismatch}: before and after are not the same "
                    "protocol."
                )
            elif mismatch:  # nothing was re-induced: say so, not that re-inductions ran
                result.note += f" Given {mismatch}; nothing was re-induced."
        except (AblationError, CriticalSiteError, LesionError) as exc:
            raise CommandError(str(exc)) from None
        except (InductionError, TissueError, ProtocolError, JournalError) as exc:
            raise CommandError(f"re-induction failed: {exc}") from None
    report = build_report(
        result,
        input_inducible=first.inducible,
        mesh_fingerprint=mesh.fingerprint(),
        ablated_mesh=ABLATED_MESH,
        radius_mm=config.ablation.lesion_radius_mm,
        strategy=config.ablation.strategy,
        provenance=provenance(
            "ablation",
            inputs={"mesh": args.mesh, "induction": args.induction},
            config=config,
            backend=backend_record(requested, backend),
            seeds={"random_controls": config.ablation.seed},
            wall_s=timer.wall_s,
        ),
    )
    writers = {
        args.out / "ablation.json": lambda p: Path(p).write_text(
            report.model_dump_json(indent=2) + "\n", encoding="utf-8"
        ),
        args.out / ABLATED_MESH: lambda p: write_mesh(result.mesh, p),
    }
    for name, data in reports.items():
        writers[args.out / name] = lambda p, data=data: Path(p).write_text(
            json.dumps(data, indent=1) + "\n", encoding="utf-8"
        )
    for name, vt_map in maps.items():
        writers[args.out / name] = lambda p, vt_map=vt_map: write_mesh(vt_map, p)
    write_all_or_nothing(writers)
    # rounds, controls and VT maps of an earlier run in this folder that this one did not make
    earlier = {*args.out.glob("round-*-*"), *args.out.glob("control-*-*")}
    for stale in earlier - set(writers):
        stale.unlink()
    if journals.is_dir():  # the answer is written: nothing to resume
        for journal in journals.iterdir():
            remove_journal(journal)
        try:
            journals.rmdir()
        except OSError:
            log.info("%s kept: it holds other files", journals)
    print(
        f"{report.status}: {report.note or 'done'}; {len(report.lesions)} ablation point(s), "
        f"{report.total_volume_ml:.3g} ml in {report.rounds} round(s); wrote "
        f"{args.out / 'ablation.json'}"
    )
    return 0
