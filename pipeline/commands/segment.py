"""``cardiotwin segment --lge F --wall F --out F``: scar / fibrosis labels from LGE.

Writes the label map on the LGE's own grid (same shape and affine, 0 outside the wall), a
JSON report next to it, and optionally a near-isotropic copy for meshing (``--resample-iso``),
the atrial surface with per-vertex IIR (``--surface-out``, ``iir-surface``) and
quality-control pictures (``--qc``). All outputs are written together or not at all.

``--lge`` may be a NIfTI file or a DICOM series (a folder, or one of its files; ``--series``
picks one of several). With DICOM input the outputs are named after the pseudonymous case
id when ``--out`` is a folder, any output path holding an identifier of the series is
refused, and the report stores content hashes of the inputs, never their paths.

The method defaults to the chamber's (``fwhm`` for a ventricle, ``iir-surface`` for an
atrium); the chamber is detected from the wall mask's thickness unless ``--chamber`` says
it. ``--method iir`` or ``iir-surface`` on a ventricle is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("cardiotwin.pipeline.segment")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from cardiotwin.pipeline.segmentation import CHAMBERS, METHODS

    parser.add_argument(
        "--lge", type=Path, required=True, help="LGE image: NIfTI, or a DICOM folder / file"
    )
    parser.add_argument("--series", metavar="UID", help="DICOM: the SeriesInstanceUID to read")
    parser.add_argument("--wall", type=Path, help="wall (myocardium) mask on the LGE grid")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="label map to write (.nii.gz), or an existing folder (named after the case)",
    )
    parser.add_argument("--method", choices=METHODS, help="classification (default: the chamber's)")
    parser.add_argument(
        "--chamber", choices=CHAMBERS, help="ventricle or atrium (default: from wall thickness)"
    )
    parser.add_argument("--blood", type=Path, help="blood-pool mask (default: the cavity)")
    parser.add_argument(
        "--wall-label",
        type=float,
        nargs="+",
        metavar="N",
        help="--wall is a label map: these labels are the wall (e.g. 2 for ACDC-style maps)",
    )
    parser.add_argument(
        "--blood-label",
        type=float,
        nargs="+",
        metavar="N",
        help="--blood is a label map: these labels are the blood pool",
    )
    parser.add_argument("--stats", type=Path, help="JSON report (default: OUT with .json)")
    parser.add_argument("--qc", type=Path, help="folder for the quality-control pictures")
    parser.add_argument(
        "--resample-iso",
        type=float,
        metavar="MM",
        help="also write the labels on a near-isotropic grid of MM mm (shape-based)",
    )
    parser.add_argument("--iso-out", type=Path, help="that label map (default OUT_isoMMmm)")
    parser.add_argument(
        "--surface-out", type=Path, help="iir-surface: the surface with IIR per vertex (.vtp)"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="label map to compare with (e.g. a phantom's truth_labels.nii.gz): Dice in "
        "the report, its contours on the montage",
    )
    group = parser.add_argument_group("thresholds (defaults per method)")
    group.add_argument("--bz-sd", type=float, help="nsd: border zone SD (default 2)")
    group.add_argument("--dense-sd", type=float, help="nsd: dense scar SD (default 4)")
    group.add_argument(
        "--nsd-reference", choices=("remote", "mode"), help="nsd: remote reference (remote)"
    )
    group.add_argument("--fwhm-fraction", type=float, help="fwhm: fraction of max (0.5)")
    group.add_argument("--remote-peak-sd", type=float, help="fwhm: remote peak SD (2.0)")
    group.add_argument("--fibrosis-iir", type=float, help="iir: fibrosis (default 1.20)")
    group.add_argument("--dense-iir", type=float, help="iir: dense scar (default 1.32)")
    group.add_argument("--smooth-mm", type=float, help="in-wall Gaussian sigma, mm (0.8; 0 off)")
    group.add_argument(
        "--min-component-ml", type=float, help="drop smaller enhanced parts (0.3 ml; iir 0)"
    )
    group.add_argument(
        "--surface-band",
        type=float,
        nargs=2,
        metavar=("LOW_MM", "HIGH_MM"),
        help="iir-surface: sampling band along the normal (default 0 3)",
    )
    for flag, text in (
        ("--pv-rim", "relabel the blood-adjacent wall rim from the interior"),
        ("--blood-edge", "remove blood-like voxels at the wall mask's edge"),
        (
            "--fit-endocardium",
            "with --blood-edge: fit a smooth endocardium where its edge is seen and take the "
            "LV cavity from it (off: trim by the overshoot seen nearby)",
        ),
        ("--keep-channels", "keep border-zone channels between scar pieces"),
    ):
        group.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=text + " (fwhm/nsd default on)",
        )


#: setting -> (its option, the methods that read it; None: every method)
OPTION_OF_SETTING: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "border_zone_sd": ("--bz-sd", ("nsd",)),
    "dense_sd": ("--dense-sd", ("nsd",)),
    "nsd_reference": ("--nsd-reference", ("nsd",)),
    "fwhm_fraction": ("--fwhm-fraction", ("fwhm",)),
    "remote_peak_sd": ("--remote-peak-sd", ("fwhm",)),
    "fibrosis_iir": ("--fibrosis-iir", ("iir", "iir-surface")),
    "dense_iir": ("--dense-iir", ("iir", "iir-surface")),
    "smooth_mm": ("--smooth-mm", None),
    "min_component_ml": ("--min-component-ml", None),
    "pv_rim": ("--pv-rim", None),
    "trim_blood_edge": ("--blood-edge", None),
    "fit_endocardium": ("--fit-endocardium", ("fwhm", "nsd")),
    "keep_channels": ("--keep-channels", None),
    "surface_band_mm": ("--surface-band", ("iir-surface",)),
}


def settings_from_args(args: argparse.Namespace, method: str):
    """The method's defaults with the options given on the command line; an option the
    method does not read is refused (it was ignored without a word), and a bad value is
    named by its option."""
    from cardiotwin.pipeline.cli import CommandError
    from cardiotwin.pipeline.segmentation import DEFAULTS, SegmentationError

    values = {
        "border_zone_sd": args.bz_sd,
        "dense_sd": args.dense_sd,
        "nsd_reference": args.nsd_reference,
        "fwhm_fraction": args.fwhm_fraction,
        "remote_peak_sd": args.remote_peak_sd,
        "fibrosis_iir": args.fibrosis_iir,
        "dense_iir": args.dense_iir,
        "smooth_mm": args.smooth_mm,
        "min_component_ml": args.min_component_ml,
        "pv_rim": args.pv_rim,
        "trim_blood_edge": args.blood_edge,
        "fit_endocardium": args.fit_endocardium,
        "keep_channels": args.keep_channels,
        "surface_band_mm": None if args.surface_band is None else tuple(args.surface_band),
    }
    given = {key: value for key, value in values.items() if value is not None}
    for key in given:
        option, methods = OPTION_OF_SETTING[key]
        if methods is not None and method not in methods:
            raise CommandError(
                f"{option} is a threshold of --method {' or '.join(methods)}, not of {method}, "
                "which would ignore it; drop it or choose that method"
            )
    settings = replace(DEFAULTS[method], **given)
    try:
        settings.validate()
    except SegmentationError as exc:
        message = str(exc)
        for key, (option, _) in OPTION_OF_SETTING.items():
            message = message.replace(key.replace("_", "-"), option)
        raise CommandError(message) from None
    return settings


def _stem(out: Path) -> str:
    name = out.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _sibling(out: Path, tail: str) -> Path:
    return out.with_name(_stem(out) + tail)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def volume_sha256(volume) -> str:
    """Hash of a volume's voxels and affine (for DICOM inputs, whose files hold identifiers)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(volume.array).tobytes())
    digest.update(np.round(np.asarray(volume.affine, dtype=np.float64), 6).tobytes())
    return digest.hexdigest()


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.cli import CommandError
    from cardiotwin.pipeline.commands.dicom_import import choose_series
    from cardiotwin.pipeline.images import (
        ImageError,
        check_output_path,
        check_same_grid,
        load_nifti,
        load_volume_with_identifiers,
        resample_isotropic,
        save_nifti,
    )
    from cardiotwin.pipeline.imaging.nifti import is_nifti_path
    from cardiotwin.pipeline.segmentation import (
        SegmentationError,
        compare_labels,
        resolve_chamber,
        segment,
    )
    from cardiotwin.pipeline.segmentation.inputs import select_labels

    if args.resample_iso is not None and not (
        math.isfinite(args.resample_iso) and 0 < args.resample_iso <= 20
    ):
        raise CommandError(f"--resample-iso must be in (0, 20] mm, got {args.resample_iso}")
    if args.wall is None and not (args.method == "iir-surface" and args.blood is not None):
        raise CommandError("give the wall mask with --wall (iir-surface may use --blood alone)")
    try:
        series = choose_series(args.lge, args.series)
        lge, identifiers = load_volume_with_identifiers(args.lge, series_uid=series)
        from_dicom = not is_nifti_path(args.lge)  # LGE.NII.GZ is NIfTI too
        wall = load_nifti(args.wall) if args.wall is not None else None
        blood = load_nifti(args.blood) if args.blood is not None else None
        if wall is not None and args.wall_label:
            wall = select_labels(wall, args.wall_label)
        if blood is not None and args.blood_label:
            blood = select_labels(blood, args.blood_label)
        if wall is not None:
            check_same_grid(lge, wall)
            method, chamber, chamber_info = resolve_chamber(args.method, args.chamber, wall)
        else:
            method, chamber = args.method, args.chamber or "atrium"
            chamber_info = {"chamber": chamber, "source": "no wall mask given"}
        settings = settings_from_args(args, method)  # validated, errors named by option
    except (ImageError, SegmentationError) as exc:
        raise CommandError(str(exc)) from None

    out = args.out
    if out.is_dir():
        name = f"{lge.source}_labels_{method}" if from_dicom else f"labels_{method}"
        out = out / f"{name}.nii.gz"
    if not is_nifti_path(out):
        raise CommandError(
            f"--out {out.name} must end in .nii or .nii.gz, or be a folder that exists (make "
            "it first)"
        )

    try:
        result = segment(lge, wall, settings, blood)
        reference = None
        if args.reference is not None:
            reference = load_nifti(args.reference)
            check_same_grid(lge, reference)
            result.report["reference"] = {
                "sha256": file_sha256(args.reference),
                **compare_labels(result.labels.array, np.asarray(reference.array), lge.affine),
            }
    except (ImageError, SegmentationError) as exc:
        raise CommandError(str(exc)) from None
    result.report["chamber"] = chamber_info
    # Inputs by content, never by path: a folder can be named after the patient.
    result.report["inputs"] = {
        "lge": {"case_id": lge.source, "voxels_sha256": volume_sha256(lge)}
        if from_dicom
        else {"sha256": file_sha256(args.lge)},
        "wall": None if args.wall is None else {"sha256": file_sha256(args.wall)},
        "blood": None if args.blood is None else {"sha256": file_sha256(args.blood)},
    }
    from cardiotwin.pipeline.provenance import provenance

    # the inputs' hashes are above (a DICOM series by its voxels); the settings are in
    # report["settings"]: this adds the code and library versions that made the labels
    result.report["provenance"] = provenance("segmentation")

    writers: dict[Path, Callable[[Path], object]] = {
        out: lambda p: save_nifti(result.labels, p, description=f"cardiotwin labels {method}")
    }
    if args.resample_iso is not None:
        try:
            iso = resample_isotropic(result.labels, args.resample_iso, kind="labels")
        except ImageError as exc:
            raise CommandError(str(exc)) from None
        iso_out = args.iso_out or _sibling(out, f"_iso{args.resample_iso:g}mm.nii.gz")
        writers[iso_out] = lambda p: save_nifti(iso, p, description="cardiotwin labels iso")
        result.report["isotropic"] = {
            "file": iso_out.name,
            "spacing_mm": [round(float(s), 6) for s in iso.spacing_mm],
            "shape": list(iso.shape),
            "method": "shape-based interpolation of the labels (signed distance maps)",
        }
    if result.surface is not None and args.surface_out is not None and not _has_pyvista():
        raise CommandError("--surface-out writes VTK PolyData, which needs pyvista: install it")
    if result.surface is not None and args.surface_out is None and not _has_pyvista():
        # a stripped environment (the GPU image has no VTK): the surface is a picture for
        # ParaView that no later stage reads, so the labels and statistics still go out
        log.warning("pyvista is not installed: the fibrosis surface (VTP) is not written")
        result.report["surface"]["file"] = None
    elif result.surface is not None:
        surface_out = args.surface_out or _sibling(out, "_surface.vtp")
        writers[surface_out] = result.surface.write_vtp
        result.report["surface"]["file"] = surface_out.name
    elif args.surface_out is not None:
        raise CommandError("--surface-out needs --method iir-surface")
    if args.qc is not None:
        from cardiotwin.pipeline.segmentation import qc

        stem = _stem(out)
        title = f"{stem}: {method}"
        writers[args.qc / f"{stem}_montage.png"] = lambda p: qc.save_montage(
            lge, result.labels, p, title=title, reference=reference
        )
        if result.surface is not None:
            # the 3-D view of an atrium is its fibrosis surface (same name as the ventricles')
            writers[args.qc / f"{stem}_3d.png"] = lambda p: qc.save_surface_render(
                result.surface, p, title=title
            )
        else:
            writers[args.qc / f"{stem}_3d.png"] = lambda p: qc.save_render(
                result.labels, p, title=title
            )
        result.report["qc"] = [p.name for p in writers if p.parent == args.qc]
    stats_path = args.stats or _sibling(out, ".json")
    writers[stats_path] = lambda p: Path(p).write_text(
        json.dumps(result.report, indent=1, allow_nan=False) + "\n"
    )
    try:
        for path in writers:
            check_output_path(path, identifiers, lge.source)
    except ImageError as exc:
        raise CommandError(str(exc)) from None
    from cardiotwin.files import write_all_or_nothing

    try:
        written = write_all_or_nothing(writers)
    except (ImageError, OSError) as exc:
        raise CommandError(f"nothing written: {exc}") from None
    summary = {
        k: round(result.report[k], 3)
        for k in ("scar_volume_ml", "border_zone_volume_ml", "scar_percent", "border_zone_percent")
    }
    if method in ("iir", "iir-surface"):
        summary["fibrosis_percent"] = round(result.report["fibrosis_percent"], 2)
        summary["utah_stage"] = result.report["utah_stage"]
    if "reference" in result.report:
        compared = result.report["reference"]
        summary.update({k: round(compared[k], 3) for k in ("dice_dense_scar", "dice_border_zone")})
    log.info(
        "%s (%s, %s): %s; wrote %s",
        lge.source if from_dicom else out.name,
        chamber,
        method,
        summary,
        ", ".join(str(p) for p in written),
    )
    return 0


def _has_pyvista() -> bool:
    """Whether pyvista (and with it VTK) can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("pyvista") is not None
    except (ImportError, ValueError):
        return False
