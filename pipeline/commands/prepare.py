"""``cardiotwin prepare``: give a mesh what it lacks to be simulated.

Reads a mesh (VTU, an openCARP file set, or anything meshio reads: a mesh from openCARP,
CemrgApp or gmsh, perhaps without tags or surfaces), adds the missing surfaces, anatomical
coordinates, fibres, AHA segments and pacing sites (:func:`cardiotwin.meshing.prepare.prepare`)
and writes the result. Settings come from the ``anatomy`` section of ``--config``;
``--septum-mm`` overrides its ``septum_point_mm``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cardiotwin.files import write_json_atomic
from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mesh", type=Path, required=True, help="input mesh (.vtu, .pts, ...)")
    parser.add_argument("--out", type=Path, required=True, help="output mesh (.vtu, .pts, ...)")
    parser.add_argument(
        "--kind",
        choices=("ventricle", "atrium"),
        default="ventricle",
        help="ventricle (LV or biventricular; default) or atrium",
    )
    parser.add_argument("--config", type=Path, help="cardiotwin configuration (YAML or JSON)")
    parser.add_argument(
        "--septum-mm",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="a point in the septum, scanner mm (orients an LV-only mesh's AHA segments)",
    )
    parser.add_argument("--report", type=Path, help="write what was added and decided (JSON)")
    parser.add_argument(
        "--pictures", type=Path, help="folder for PNG pictures (fibres, AHA segments and sites)"
    )


def run(args: argparse.Namespace) -> int:
    from cardiotwin.meshing.io import read_mesh, write_mesh
    from cardiotwin.meshing.mesh import MeshError
    from cardiotwin.meshing.prepare import prepare
    from cardiotwin.pipeline.config import ConfigError, load_config

    try:
        config = load_config(args.config).anatomy
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if args.septum_mm is not None and args.kind != "ventricle":
        raise CommandError("--septum-mm orients a ventricle's AHA segments; an atrium ignores it")
    if args.septum_mm is not None:
        config = config.model_copy(update={"septum_point_mm": tuple(args.septum_mm)})
    try:
        mesh = read_mesh(args.mesh)
        prepared, report = prepare(mesh, args.kind, config)
    except (MeshError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    try:
        write_mesh(prepared, args.out)
    except (MeshError, ValueError, OSError) as exc:
        raise CommandError(f"nothing written: {exc}") from None
    summary = report.as_dict()
    if args.report:
        write_json_atomic(summary, args.report)
    if args.pictures:
        from cardiotwin.pipeline.mesh_pictures import save_pictures

        summary["pictures"] = [p.name for p in save_pictures(prepared, args.pictures, args.kind)]
    log.info(
        "prepare: added %d item(s), kept %d; %d pacing sites",
        len(report.added),
        len(report.kept),
        len(report.sites),
    )
    print(json.dumps({k: summary[k] for k in ("kind", "added", "kept", "notes", "moved_sites")}))
    return 0
