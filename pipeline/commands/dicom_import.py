"""``cardiotwin import --dicom DIR --out lge.nii.gz``: a DICOM series as de-identified NIfTI.

The output is named after the pseudonymous case id when ``--out`` is a folder; a path with
an identifier of the series (patient name, IDs, birth date, institution, dates) in any folder
or file name is refused. A folder with several series lists them; pick one with
``--series UID``. Nothing identifying is logged.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("cardiotwin.pipeline.import")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dicom", type=Path, required=True, help="folder holding the series (or one file of it)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output .nii.gz file, or an existing folder (then <case id>.nii.gz inside)",
    )
    parser.add_argument("--series", metavar="UID", help="SeriesInstanceUID to read")


def series_listing(folder: Path) -> str:
    """The folder's series, one per line, without patient data."""
    from cardiotwin.pipeline.images import list_dicom_series

    lines = []
    for info in list_dicom_series(folder):
        number = "-" if info.series_number is None else str(info.series_number)
        lines.append(
            f"{info.series_uid} (series {number}, {info.modality or 'unknown'}, "
            f"{info.n_files} files)"
        )
    return "; ".join(lines)


def choose_series(source: Path, series: str | None) -> str | None:
    """The series to read; a folder with several and no ``--series`` is a user error."""
    from cardiotwin.pipeline.cli import CommandError
    from cardiotwin.pipeline.images import list_dicom_series

    if series is not None or not source.is_dir():
        return series
    infos = list_dicom_series(source)
    if len(infos) > 1:
        raise CommandError(
            f"{source} holds {len(infos)} DICOM series: {series_listing(source)}. "
            "Choose one with --series UID."
        )
    return None


def _same_image(path: Path, volume) -> bool:
    """Whether the NIfTI at ``path`` holds ``volume`` (same grid and voxels)."""
    import numpy as np

    from cardiotwin.pipeline.images import ImageError, load_nifti

    try:
        old = load_nifti(path)
    except (ImageError, OSError):
        return False
    return (
        old.shape == volume.shape
        and np.allclose(old.affine, volume.affine, atol=1e-4)
        and np.array_equal(np.asarray(old.array), np.asarray(volume.array))
    )


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.cli import CommandError
    from cardiotwin.pipeline.images import (
        ImageError,
        check_output_path,
        load_volume_with_identifiers,
        save_nifti,
    )
    from cardiotwin.pipeline.imaging.nifti import is_nifti_path

    try:
        series = choose_series(args.dicom, args.series)
        volume, identifiers = load_volume_with_identifiers(args.dicom, series_uid=series)
        out = args.out
        if out.is_dir():
            out = out / f"{volume.source}.nii.gz"
        elif not is_nifti_path(out):
            raise CommandError(
                f"--out must be a .nii/.nii.gz file or an existing folder; e.g. "
                f"{volume.source}.nii.gz"
            )
        check_output_path(out, identifiers, volume.source)
        if out.exists() and not _same_image(out, volume):
            # the case id is the study's: another series of it (PSIR beside magnitude, a
            # long-axis stack) would silently replace the first
            raise CommandError(
                f"{out.name} exists and holds another image: a second series of the same study "
                f"gets the same case id. Give it its own file, e.g. --out "
                f"{out.with_name(volume.source + '_2.nii.gz')}"
            )
        save_nifti(volume, out, description="cardiotwin LGE")
    except ImageError as exc:
        raise CommandError(str(exc)) from None
    log.info(
        "wrote %s (shape %s, spacing %s mm) as %s",
        volume.source,
        volume.shape,
        tuple(round(float(s), 3) for s in volume.spacing_mm),
        out.name,
    )
    return 0
