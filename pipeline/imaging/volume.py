"""Image volumes in scanner millimetres and the checks every input passes.

Convention: ``ImageVolume.affine`` maps voxel indices (i, j, k) to scanner coordinates in
mm in the RAS+ frame (NIfTI / nibabel convention), and ``ImageVolume.array`` is indexed
``array[i, j, k]`` like nibabel's. Every problem with an input raises :class:`ImageError`,
whose message names the file, says what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Voxel spacing above this (mm) is treated as a broken header or wrong units.
MAX_SPACING_MM = 20.0
#: Most voxels a resampled grid may have (a 0.25 mm grid over a whole chest is ~10^9).
MAX_RESAMPLED_VOXELS = 100_000_000

#: Voxel spacing below this (mm) is treated as a broken header or wrong units (metres written
#: as mm); no clinical or preclinical cardiac MRI is finer.
MIN_SPACING_MM = 0.05


class ImageError(ValueError):
    """An input image or mask cannot be used; the message names the file and the fix."""


def _image_error(source: str | Path, problem: str, fix: str) -> ImageError:
    return ImageError(f"{source}: {problem}. {fix}")


@dataclass(frozen=True)
class ImageVolume:
    """A 3-D image: voxel array, voxel->scanner affine (RAS+, mm), and where it came from.

    ``source`` names the file for error messages only; it never holds patient data (for
    DICOM it is the pseudonymous case id).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = "<memory>"

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along i, j, k in mm (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def voxel_to_scanner_mm(self, ijk: np.ndarray) -> np.ndarray:
        """(n, 3) voxel indices -> (n, 3) scanner RAS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------


def check_volume(volume: ImageVolume) -> ImageVolume:
    """Return ``volume`` if it is a finite, real 3-D image with spacing in [0.05, 20] mm.

    Raises :class:`ImageError` naming ``volume.source`` otherwise.
    """
    source = volume.source
    array = volume.array
    if array.ndim != 3:
        raise _image_error(
            source,
            f"is {array.ndim}-D with shape {array.shape}, expected a 3-D volume",
            "Give one 3-D image; split a time series or multi-echo file into single volumes.",
        )
    if np.iscomplexobj(array) or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise _image_error(
            source,
            f"has voxel type {array.dtype}, expected real numbers",
            "Export the magnitude image.",
        )
    affine = np.asarray(volume.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _image_error(
            source,
            "has a missing or non-finite voxel-to-scanner affine",
            "Repair the header (sform/qform) or re-export the image from the DICOM.",
        )
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(affine[:3, :3])) <= 0:
        raise _image_error(
            source,
            f"has voxel spacing {_fmt_mm(spacing)} mm, which is not positive along every axis",
            "The header's affine/pixdim is broken; re-export the image from the DICOM.",
        )
    if np.any(spacing > MAX_SPACING_MM):
        raise _image_error(
            source,
            f"has voxel spacing {_fmt_mm(spacing)} mm, above {MAX_SPACING_MM:g} mm",
            "Check the header's spatial units (cm or m instead of mm?) and pixdim.",
        )
    if np.any(spacing < MIN_SPACING_MM):
        raise _image_error(
            source,
            f"has voxel spacing {_fmt_mm(spacing)} mm, below {MIN_SPACING_MM:g} mm",
            "Check the header's spatial units (metres or microns written as mm?) and pixdim.",
        )
    if np.issubdtype(array.dtype, np.floating):
        n_nan = int(np.count_nonzero(np.isnan(array)))
        n_inf = int(np.count_nonzero(np.isinf(array)))
        if n_nan or n_inf:
            raise _image_error(
                source,
                f"contains {n_nan} NaN and {n_inf} infinite voxels",
                "Fix the step that produced it, or replace them (e.g. numpy.nan_to_num).",
            )
    return volume


def check_same_grid(image: ImageVolume, mask: ImageVolume, *, atol_mm: float = 0.01) -> None:
    """Raise :class:`ImageError` unless ``image`` and ``mask`` share one voxel grid.

    Same shape, spacing equal within ``atol_mm`` (mm), and every corner voxel centre at the
    same scanner position within ``atol_mm``. The default 0.01 mm allows the float32
    round-off of NIfTI headers and nothing a resampling would cause.
    """
    names = f"{mask.source} (mask) and {image.source} (image)"
    fix = (
        "Resample the mask onto the image grid (nearest-neighbour or shape-based), or "
        "export both from the same series (the 0.01 mm tolerance allows only header "
        "round-off)"
    )
    if image.shape != mask.shape:
        raise _image_error(
            names, f"differ in shape: {mask.shape} vs {image.shape} voxels", fix + "."
        )
    spacing_gap = np.abs(image.spacing_mm - mask.spacing_mm)
    if np.any(spacing_gap > atol_mm):
        raise _image_error(
            names,
            f"differ in voxel spacing: {_fmt_mm(mask.spacing_mm)} mm vs "
            f"{_fmt_mm(image.spacing_mm)} mm",
            fix + ".",
        )
    corners = _corner_indices(image.shape)
    offsets = np.linalg.norm(
        _apply_affine(image.affine, corners) - _apply_affine(mask.affine, corners), axis=1
    )
    if offsets.max() > atol_mm:
        raise _image_error(
            names,
            f"are placed differently in the scanner: voxel centres up to "
            f"{offsets.max():.3g} mm apart (tolerance {atol_mm:g} mm)",
            fix + ".",
        )


def check_mask_not_empty(mask: ImageVolume, *, labels: tuple[int, ...] | None = None) -> None:
    """Raise :class:`ImageError` if ``mask`` has no non-zero voxel (or none in ``labels``)."""
    if labels is None:
        count = int(np.count_nonzero(mask.array))
        what = "no non-zero voxel"
    else:
        count = int(np.count_nonzero(np.isin(mask.array, labels)))
        what = f"no voxel with label {', '.join(str(v) for v in labels)}"
    if count == 0:
        raise _image_error(
            mask.source,
            f"is empty: {what}",
            "Check that the segmentation ran on this image and the right file was given.",
        )


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def _apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def _corner_indices(shape: tuple[int, ...]) -> np.ndarray:
    last = np.asarray(shape[:3], dtype=float) - 1
    return np.array([[a, b, c] for a in (0, last[0]) for b in (0, last[1]) for c in (0, last[2])])


def _fmt_mm(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in np.asarray(values, dtype=float)) + ")"
