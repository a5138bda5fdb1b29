"""``cardiotwin report``: one case's report (HTML + PDF) and results.json from its stage outputs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--case-id", required=True, help="the (pseudonymous) case id")
    parser.add_argument("--kind", choices=("ventricle", "atrium"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for report.* files")
    parser.add_argument("--config", type=Path, help="the configuration file the run used")
    parser.add_argument("--segmentation", type=Path, help="segmentation JSON (segment --stats)")
    parser.add_argument("--montage", type=Path, help="LGE montage PNG (segment --qc)")
    parser.add_argument("--scar-3d", type=Path, help="3-D scar PNG (segment --qc)")
    parser.add_argument("--mesh", type=Path, help="the patient mesh (VTU)")
    parser.add_argument("--mesh-quality", type=Path, help="the mesh's quality JSON (mesh)")
    parser.add_argument("--mesh-picture", type=Path, help="mesh tags and fibres PNG (mesh)")
    parser.add_argument("--sites-picture", type=Path, help="AHA segments / sites PNG (mesh)")
    parser.add_argument("--induction", type=Path, help="induction.json")
    parser.add_argument("--ablation", type=Path, help="ablation.json")
    parser.add_argument("--no-pdf", action="store_true", help="write only the HTML page")


def run(args: argparse.Namespace) -> int:
    from cardiotwin.meshing.mesh import MeshError
    from cardiotwin.pipeline.config import ConfigError, load_config
    from cardiotwin.pipeline.report.build import CaseInputs, ReportError, write_report
    from cardiotwin.pipeline.workflow import case_id_problem

    problem = case_id_problem(args.case_id)
    if problem is not None:  # it heads the report and names its folder in a cohort
        raise CommandError(f"--case-id: {problem}")

    pictures = {
        role: path
        for role, path in (
            ("montage", args.montage),
            ("scar_3d", args.scar_3d),
            ("mesh", args.mesh_picture),
            ("sites", args.sites_picture),
        )
        if path is not None
    }
    inputs = CaseInputs(
        case_id=args.case_id,
        kind=args.kind,
        segmentation_json=args.segmentation,
        pictures=pictures,
        mesh=args.mesh,
        mesh_quality_json=args.mesh_quality,
        induction_json=args.induction,
        ablation_json=args.ablation,
    )
    try:
        # without --config the report cannot know the settings: its table is left out
        config = None if args.config is None else load_config(args.config)
        written = write_report(inputs, args.out, config, pdf=not args.no_pdf)
    except (ReportError, ConfigError, MeshError, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from None
    log.info("report of %s: %s", args.case_id, written["html"])
    return 0
