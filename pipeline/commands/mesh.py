"""``cardiotwin mesh``: a label map (or wall mask) to a tagged tetrahedral mesh.

Ventricles: the label map is resampled onto an isotropic grid (shape-based interpolation)
and meshed by :func:`cardiotwin.meshing.from_labels.mesh_ventricle`. Atria: the blood pool
(``--blood``, or the cavity the wall mask encloses) is extruded through the wall by
:func:`cardiotwin.meshing.atrium.mesh_atrium`, with fibrosis from the LGE image (``--lge``,
IIR) or else from the label map. Writes the mesh (``.vtu``; an openCARP file set when the
name ends in ``.elem`` or ``.pts``) and a quality JSON beside it (``<name>.quality.json``);
nothing is written when anything fails.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger("cardiotwin.mesh")

#: an atrial mesh must hold at least this fraction of the wall mask's volume
MIN_ATRIAL_WALL_COVERAGE = 0.6


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        help="label map (0 background, 1 healthy, 2 border zone, 3 dense scar) or wall mask, NIfTI",
    )
    parser.add_argument("--kind", required=True, choices=("ventricle", "atrium"))
    parser.add_argument(
        "--edge-mm",
        type=float,
        help="target mean edge length, mm (default: mesh.edge_mm of the configuration, 1 mm)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="mesh file: *.vtu, or *.elem for an openCARP file set",
    )
    parser.add_argument(
        "--lge",
        type=Path,
        help="atrium: LGE image for the fibrosis (IIR along the normal): NIfTI or a DICOM folder",
    )
    parser.add_argument(
        "--series", metavar="UID", help="atrium, DICOM --lge: the SeriesInstanceUID to read"
    )
    parser.add_argument(
        "--blood",
        type=Path,
        help="atrium: blood-pool mask (default: the cavity enclosed by the wall)",
    )
    parser.add_argument("--wall", type=Path, help="atrium: wall mask (default: labels > 0)")
    parser.add_argument(
        "--config", type=Path, help="configuration file (mesh and anatomy sections)"
    )
    parser.add_argument(
        "--prepare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add surfaces, coordinates, fibres, AHA segments and pacing sites (cardiotwin "
        "prepare) so the mesh is ready to simulate (default; --no-prepare: tagged volume only)",
    )
    parser.add_argument(
        "--septum-mm",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="a point in the septum, scanner mm (orients an LV-only mesh's AHA segments)",
    )
    parser.add_argument(
        "--pictures", type=Path, help="folder for PNG pictures (tags and fibres, AHA and sites)"
    )
    parser.add_argument(
        "--quality-json",
        type=Path,
        help="quality report (default: <out name>.quality.json beside it)",
    )


def _load(path: Path, what: str, dicom: bool = False, series: str | None = None):
    """A NIfTI file, or (``dicom``: the LGE) a DICOM series folder, read de-identified
    (``series``: which of the folder's series)."""
    from cardiotwin.pipeline.commands.dicom_import import choose_series
    from cardiotwin.pipeline.images import ImageError, load_nifti, load_volume

    try:
        if dicom and path.is_dir():
            return load_volume(path, series_uid=choose_series(path, series))
        if not path.is_file():
            raise CommandError(f"{what} file {path} does not exist")
        return load_nifti(path)
    except ImageError as exc:
        raise CommandError(str(exc)) from None


def _crop(volume, mask: np.ndarray, margin_voxels: int = 4):
    """The volume cut to the mask's bounding box plus a margin (same scanner positions)."""
    from cardiotwin.pipeline.images import ImageVolume

    index = np.argwhere(mask)
    lo = np.maximum(index.min(axis=0) - margin_voxels, 0)
    hi = np.minimum(index.max(axis=0) + margin_voxels + 1, mask.shape)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ lo + volume.affine[:3, 3]
    array = volume.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return ImageVolume(array, affine, volume.source)


def _isotropic(volume, spacing_mm: float, kind: str):
    """Resample (shape-based for labels) unless the grid is already that fine and isotropic."""
    from cardiotwin.pipeline.images import resample_isotropic

    spacing = volume.spacing_mm
    if spacing.max() <= spacing_mm and spacing.max() - spacing.min() < 0.05 * spacing.max():
        return volume
    log.info("resampling %s onto a %.3g mm isotropic grid", kind, spacing_mm)
    return resample_isotropic(volume, spacing_mm, kind=kind)


def _quality_path(out: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(stem + ".quality.json")


def run(args: argparse.Namespace) -> int:
    from cardiotwin.files import write_json_atomic
    from cardiotwin.meshing.from_labels import (
        MeshingError,
        check_edge_length,
        mesh_ventricle,
        wall_mask,
        wall_thickness_mm,
    )
    from cardiotwin.meshing.io import write_mesh
    from cardiotwin.meshing.quality import quality_summary
    from cardiotwin.pipeline.config import ConfigError, for_stage, load_config
    from cardiotwin.pipeline.images import ImageError
    from cardiotwin.pipeline.provenance import StageTimer, provenance

    if args.out.suffix.lower() not in (".vtu", ".elem", ".pts"):
        raise CommandError(
            f"--out {args.out}: name the mesh *.vtu (ParaView) or *.elem (openCARP file set)"
        )
    ignored = [option for option, value, kind in (
        ("--lge", args.lge, "atrium"), ("--blood", args.blood, "atrium"),
        ("--wall", args.wall, "atrium"), ("--series", args.series, "atrium"),
        ("--septum-mm", args.septum_mm, "ventricle"),
    ) if value is not None and kind != args.kind]  # fmt: skip
    if ignored:
        raise CommandError(
            f"{', '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} not read for --kind "
            f"{args.kind} and would be ignored: drop {'it' if len(ignored) == 1 else 'them'}"
        )
    if args.septum_mm is not None and not args.prepare:
        raise CommandError("--septum-mm orients what prepare adds: drop --no-prepare or it")
    if args.series is not None and args.lge is None:
        raise CommandError("--series picks the series of a DICOM --lge: give --lge too")
    if args.pictures is not None and not args.prepare:
        raise CommandError(
            "--pictures draws the fibres and pacing sites that prepare adds: drop --no-prepare "
            "or --pictures"
        )
    timer = StageTimer().__enter__()
    try:
        whole_config = for_stage(load_config(args.config), "mesh")
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    config = whole_config.mesh
    edge_mm = config.edge_mm if args.edge_mm is None else args.edge_mm
    if not (np.isfinite(edge_mm) and edge_mm > 0):
        raise CommandError(f"--edge-mm must be a positive number of mm, got {edge_mm}")

    labels = _load(args.labels, "label")
    try:
        mask = wall_mask(labels.array)
    except MeshingError as exc:
        raise CommandError(f"{args.labels}: {exc}") from None
    _check_kind(args, mask, labels.spacing_mm)
    image_affine = labels.affine.copy()
    labels = _crop(labels, mask)
    spacing = min(config.resample_mm, float(labels.spacing_mm.min()))
    try:
        if args.kind == "ventricle":
            iso = _isotropic(labels, spacing, "labels")
            iso_mask = wall_mask(iso.array)
            check_edge_length(
                edge_mm,
                voxel_spacing_mm=labels.spacing_mm,
                wall_thickness_mm=wall_thickness_mm(iso_mask, iso.affine),
                wall_volume_mm3=float(np.count_nonzero(iso_mask))
                * abs(np.linalg.det(iso.affine[:3, :3])),
                max_elements=config.max_elements,
            )
            mesh = mesh_ventricle(
                iso.array,
                iso.affine,
                edge_mm,
                smoothing_mm=config.smoothing_mm,
                tag_smoothing_mm=config.tag_smoothing_mm,
                max_island_fraction=config.max_island_fraction,
                image_affine=image_affine,
            )
        else:
            mesh = _mesh_atrium(args, labels, spacing, edge_mm, config)
    except MeshingError as exc:
        raise CommandError(f"{args.labels}: {exc}") from None
    except ImageError as exc:
        raise CommandError(str(exc)) from None
    except MemoryError:
        raise CommandError(
            f"{args.labels}: out of memory meshing at {edge_mm:g} mm; use a larger --edge-mm"
        ) from None

    log.info("quality: %d nodes, %d elements", mesh.n_points, mesh.n_elements)
    report = quality_summary(mesh)
    report["input"] = {"kind": args.kind, "edge_mm_requested": edge_mm, "resampled_mm": spacing}
    if args.prepare:
        mesh, report["prepare"] = _prepare(mesh, args, whole_config)
    quality_path = _quality_path(args.out, args.quality_json)
    inputs = {"labels": args.labels}
    inputs.update({k: getattr(args, k) for k in ("lge", "blood", "wall") if getattr(args, k)})
    report["provenance"] = provenance(
        "mesh", inputs=inputs, config=whole_config, wall_s=timer.elapsed_s
    )
    if args.pictures is not None:  # first: pictures that fail leave no mesh behind
        from cardiotwin.pipeline.mesh_pictures import save_pictures

        save_pictures(mesh, args.pictures, args.kind)
    write_mesh(mesh, args.out)
    write_json_atomic(report, quality_path)  # last: its presence says the mesh is whole
    dihedral = report["dihedral_deg"]
    log.info(
        "wrote %s (%d elements, mean edge %.3g mm, dihedral min %.1f° / 1st pct %.1f°) and %s",
        args.out.name,
        mesh.n_elements,
        report["edge_mm"]["mean"],
        dihedral["min"],
        dihedral["p1"],
        quality_path.name,
    )
    return 0


def _prepare(mesh, args, config):
    """Surfaces, coordinates, fibres, AHA segments and pacing sites (meshing.prepare)."""
    from cardiotwin.meshing.mesh import MeshError
    from cardiotwin.meshing.prepare import prepare

    anatomy = config.anatomy
    if args.septum_mm is not None:
        anatomy = anatomy.model_copy(update={"septum_point_mm": tuple(args.septum_mm)})
    log.info("preparing: surfaces, coordinates, fibres, AHA segments, pacing sites")
    try:
        prepared, report = prepare(mesh, args.kind, anatomy)
    except (MeshError, ValueError) as exc:
        raise CommandError(
            f"{args.labels}: the mesh was built but cannot be prepared: {exc}"
        ) from None
    return prepared, report.as_dict()


#: mean wall thicknesses (mm, as segment's chamber detection measures them: voxel faces,
#: which read oblique walls thin: the sample LV 6.8 mm, the sample atrium 1.5 mm) beyond
#: which --kind is refused: no atrial wall is this thick, no ventricular wall this thin.
#: Between them (a thinned ventricle) a warning.
ATRIUM_REFUSED_FROM_MM = 5.0  # segment's split, VENTRICLE_MIN_THICKNESS_MM
VENTRICLE_REFUSED_BELOW_MM = 3.0


def _check_kind(args, mask: np.ndarray, spacing_mm) -> None:
    """Refuse ``--kind`` when the wall's thickness clearly says the other chamber (an atrial
    mesh of a ventricle ran and looked plausible); warn when it only leans that way."""
    from cardiotwin.pipeline.segmentation.inputs import detect_chamber

    detected, thickness = detect_chamber(mask, np.asarray(spacing_mm, dtype=float))
    if detected == args.kind:
        return
    clear = (args.kind == "atrium" and thickness >= ATRIUM_REFUSED_FROM_MM) or (
        args.kind == "ventricle" and thickness < VENTRICLE_REFUSED_BELOW_MM
    )
    message = (
        f"{args.labels}: the wall is {thickness:.1f} mm thick on average, like a {detected}'s "
        f"(measured on voxel faces: atria read 1-3 mm, ventricles 5 mm or more), but --kind "
        f"is {args.kind}"
    )
    if clear:
        raise CommandError(f"{message}: use --kind {detected}")
    log.warning("%s; check --kind", message)


def _mesh_atrium(args, labels, spacing: float, edge_mm: float, config):
    from scipy import ndimage

    from cardiotwin.meshing.atrium import mesh_atrium
    from cardiotwin.meshing.from_labels import (
        MIN_EDGE_PER_VOXEL,
        MeshingError,
        wall_mask,
        wall_thickness_mm,
    )
    from cardiotwin.pipeline.images import ImageVolume, check_same_grid
    from cardiotwin.pipeline.segment import DEFAULTS, blood_pool_from_wall

    full_labels = _load(args.labels, "label")
    wall = full_labels if args.wall is None else _load(args.wall, "wall")
    if args.wall is not None:
        check_same_grid(wall, full_labels)
    wall_array = wall.array > 0
    if args.blood is not None:
        blood = _load(args.blood, "blood-pool")
        check_same_grid(blood, full_labels)
        blood_array = blood.array > 0
    else:
        blood_array = blood_pool_from_wall(wall_array, full_labels.spacing_mm)
        if not blood_array.any():
            raise MeshingError(
                "the wall encloses no blood pool; give the blood-pool mask with --blood"
            )
    finest = float(full_labels.spacing_mm.min())
    if edge_mm < MIN_EDGE_PER_VOXEL * finest:
        raise MeshingError(
            f"edge {edge_mm:g} mm is far below the voxel size ({finest:.2g} mm): the image "
            f"holds no detail that fine; use --edge-mm {MIN_EDGE_PER_VOXEL * finest:.2g} or more"
        )
    union = wall_array | blood_array
    crop = lambda array: _crop(ImageVolume(array, full_labels.affine, "mask"), union)  # noqa: E731
    wall_iso = _isotropic(crop(wall_array.astype(np.uint8)), spacing, "labels")
    blood_iso = _isotropic(crop(blood_array.astype(np.uint8)), spacing, "labels")
    labels_iso = _isotropic(crop(full_labels.array), spacing, "labels")
    thickness = config.atrial_wall_mm
    if thickness is None:
        thickness = wall_thickness_mm(wall_mask(wall_iso.array), wall_iso.affine)
    if edge_mm > 2.0 * thickness:
        raise MeshingError(
            f"edge {edge_mm:g} mm is too large for the atrial wall ({thickness:.1f} mm thick): "
            f"the elements would be flat plates; use --edge-mm {2.0 * thickness:.2g} or less"
        )
    settings = DEFAULTS["iir"]
    lge = blood_mean = None
    if args.lge is not None:
        lge = _load(args.lge, "LGE", dicom=True, series=args.series)
        check_same_grid(lge, full_labels)
        pool = ndimage.binary_erosion(blood_array)
        pool = pool if pool.sum() > 100 else blood_array
        blood_mean = float(np.mean(lge.array[pool]))
        if not blood_mean > 0:
            raise CommandError(
                f"{args.lge}: the mean blood-pool intensity is {blood_mean:g}, so the IIR is "
                "undefined; give the magnitude LGE image"
            )
    mesh = mesh_atrium(
        blood_iso.array > 0,
        wall_iso.array > 0,
        blood_iso.affine,
        edge_mm,
        thickness_mm=thickness,
        layers=config.atrial_layers,
        smoothing_mm=config.smoothing_mm,
        lge=None if lge is None else lge.array,
        lge_affine=None if lge is None else lge.affine,
        blood_mean=blood_mean,
        fibrosis_iir=settings.fibrosis_iir,
        dense_iir=settings.dense_iir,
        labels=labels_iso.array if lge is None else None,
        max_island_fraction=config.max_island_fraction,
        image_affine=full_labels.affine,
    )
    # a blood pool that reaches only part of the wall (e.g. one derived from a wall that is
    # open at the veins and valve) gives a mesh of part of the atrium: refuse it
    wall_ml = np.count_nonzero(wall_array) * abs(np.linalg.det(full_labels.affine[:3, :3])) / 1e3
    if mesh.volume_ml() < MIN_ATRIAL_WALL_COVERAGE * wall_ml:
        source = "--blood" if args.blood is not None else "the cavity enclosed by the wall"
        raise MeshingError(
            f"the blood pool ({source}) lies against only "
            f"{100 * mesh.volume_ml() / wall_ml:.0f} % of the wall's volume; give the atrium's "
            "whole blood-pool mask with --blood"
        )
    return mesh
