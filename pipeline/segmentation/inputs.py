"""What a segmentation accepts: image and mask checks, the blood pool, which chamber it is."""

from __future__ import annotations

import numpy as np

from cardiotwin.pipeline.images import (
    ImageError,
    ImageVolume,
    check_mask_not_empty,
    check_same_grid,
    check_volume,
)

#: In-plane closing (mm) that bridges gaps in a thin wall before its cavity is filled.
CAVITY_CLOSING_MM = 8.0

#: Fewest wall voxels that give usable statistics.
MIN_WALL_VOXELS = 20

#: A mask has at most this many distinct values (a label map), else it is an image.
MAX_MASK_VALUES = 16

#: Mean wall thickness (mm) above which a wall is a ventricle's (LV 6-12 mm, atria 1-4 mm).
VENTRICLE_MIN_THICKNESS_MM = 5.0


class SegmentationError(ValueError):
    """The image cannot be segmented as asked; the message says why and what to do."""


def as_mask(volume: ImageVolume) -> np.ndarray:
    """A mask volume as bool: non-zero (float masks: above 0.5)."""
    array = np.asarray(volume.array)
    return array > 0.5 if np.issubdtype(array.dtype, np.floating) else array > 0


def check_is_mask(volume: ImageVolume, role: str) -> None:
    """Refuse an image passed where a mask belongs (e.g. the LGE given as ``--wall``).

    A mask holds few distinct integer values (a binary mask or a label map) or fractions in
    [0, 1] (a soft mask); an image has many distinct values beyond that.
    """
    array = np.asarray(volume.array)
    if array.dtype == np.bool_:
        return
    sample = array.ravel()
    if sample.size > 2_000_000:
        sample = sample[:: sample.size // 2_000_000 + 1]
    values = np.unique(sample)
    integer = np.issubdtype(array.dtype, np.integer) or bool(np.all(values == np.round(values)))
    if integer and values.size <= MAX_MASK_VALUES and values.min() >= 0:
        return
    if not integer and values.min() >= 0 and values.max() <= 1.0:
        return  # a soft (probability) mask, read at 0.5
    raise ImageError(
        f"{volume.source}: is not a mask: it has {values.size}+ distinct values from "
        f"{float(values.min()):.4g} to {float(values.max()):.4g}, like an image. Give the "
        f"{role} mask (0 outside, 1 inside; or a label map) there, and the LGE as --lge."
    )


def check_one_label(volume: ImageVolume, role: str, option: str) -> None:
    """Refuse a label map of several labels where one structure's mask belongs: which label
    is the wall (or the blood pool) is not known (an ACDC-style map has blood pool 1,
    myocardium 2 and right ventricle 3), and taking every label would put them all in it."""
    array = np.asarray(volume.array)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        if array.dtype == np.bool_ or not np.all(array == np.round(array)):
            return  # a binary or soft mask
    labels = np.unique(array[array != 0])
    if labels.size > 1:
        counts = ", ".join(
            f"{float(v):g}: {int(np.count_nonzero(array == v))} voxels" for v in labels[:8]
        )
        raise ImageError(
            f"{volume.source}: is a label map with {labels.size} labels ({counts}), not the "
            f"{role} mask: which label is the {role} is not known. Give a binary mask, or "
            f"pick the {role}'s labels with {option} (e.g. {option} 2 for an ACDC-style map)."
        )


def select_labels(volume: ImageVolume, labels: list[float]) -> ImageVolume:
    """The binary mask of the given labels of a label map (``--wall-label`` and the like)."""
    array = np.asarray(volume.array)
    found = set(np.unique(array).tolist())
    missing = [v for v in labels if v not in found]
    if missing:
        raise ImageError(
            f"{volume.source}: has no label {', '.join(f'{v:g}' for v in missing)} (its "
            f"labels: {', '.join(f'{v:g}' for v in sorted(found) if v != 0)})"
        )
    return ImageVolume(np.isin(array, labels).astype(np.uint8), volume.affine, volume.source)


def check_inputs(
    lge: ImageVolume, wall: ImageVolume, blood: ImageVolume | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the images; return the wall (and blood) masks as bool arrays.

    Raises :class:`~cardiotwin.pipeline.images.ImageError` naming the file for NaNs,
    absurd spacing, grids that differ, an image given as a mask, an empty or too small wall
    mask, or a wall of one constant intensity.
    """
    for volume in (lge, wall) + ((blood,) if blood is not None else ()):
        check_volume(volume)
    check_same_grid(lge, wall)
    check_is_mask(wall, "wall")
    check_one_label(wall, "wall", "--wall-label")
    check_mask_not_empty(wall)
    wall_mask = as_mask(wall)
    if np.count_nonzero(wall_mask) < MIN_WALL_VOXELS:
        raise ImageError(
            f"{wall.source}: has only {np.count_nonzero(wall_mask)} wall voxels, fewer than "
            f"the {MIN_WALL_VOXELS} needed for intensity statistics. Check that this is the "
            "myocardium mask of this image."
        )
    wall_values = np.asarray(lge.array)[wall_mask]
    if np.ptp(wall_values) == 0:
        raise ImageError(
            f"{lge.source}: all {wall_values.size} wall voxels have the same intensity "
            f"({wall_values[0]:g}), so there is nothing to classify. Check that this is the "
            "LGE magnitude image and that the mask matches it."
        )
    blood_mask = None
    if blood is not None:
        check_same_grid(lge, blood)
        check_is_mask(blood, "blood-pool")
        check_one_label(blood, "blood-pool", "--blood-label")
        check_mask_not_empty(blood)
        blood_mask = as_mask(blood) & ~wall_mask
    return wall_mask, blood_mask


def slice_axis(spacing_mm: np.ndarray) -> int:
    """The coarsest axis (the slice direction of a 2-D multi-slice stack); the last axis of
    a (near-)isotropic grid, the acquisition's k."""
    spacing = np.asarray(spacing_mm, dtype=float)
    if spacing.max() <= 1.01 * spacing.min():
        return 2
    return int(np.argmax(spacing))


def in_plane_structure(axis: int, connectivity: int = 1) -> np.ndarray:
    """3 × 3 × 3 structuring element connecting only within the planes normal to ``axis``."""
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    plane = ndimage.generate_binary_structure(2, connectivity)
    index = [slice(None)] * 3
    index[axis] = 1
    structure[tuple(index)] = plane
    return structure


def blood_pool_from_wall(wall: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Cavity enclosed by ``wall`` (bool array).

    Holes of the wall filled in 3-D, united with the holes of each slice (slices along the
    coarsest axis) after an in-plane closing of :data:`CAVITY_CLOSING_MM` that bridges
    small gaps in a thin wall (an atrial wall is often broken where it runs nearly
    parallel to a thick slice). Voxels added by the closing are not blood.
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    filled = ndimage.binary_fill_holes(wall) & ~wall
    in_plane = [s for a, s in enumerate(spacing_mm) if a != axis]
    radius = [max(1, int(round(CAVITY_CLOSING_MM / s))) for s in in_plane]
    yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
    disk = (yy / radius[0]) ** 2 + (xx / radius[1]) ** 2 <= 1.0
    slices_filled = np.moveaxis(filled, axis, 0)
    for index, section in enumerate(np.moveaxis(wall, axis, 0)):
        if not section.any():
            continue
        padded = np.pad(section, max(radius))
        closed = ndimage.binary_closing(padded, structure=disk)
        closed = closed[tuple(slice(max(radius), -max(radius)) for _ in range(2))]
        slices_filled[index] |= ndimage.binary_fill_holes(closed) & ~closed
    return filled


def mean_wall_thickness_mm(wall: np.ndarray, spacing_mm: np.ndarray) -> float:
    """Mean thickness of a shell-like mask: 2 × volume / boundary area (mm).

    For a shell of thickness t the boundary (both faces) has about twice the mid-surface
    area, so 2 V / A ≈ t. Faces between voxels count with their own area (anisotropic
    grids).
    """
    wall = np.asarray(wall, dtype=bool)
    spacing = np.asarray(spacing_mm, dtype=float)
    volume = np.count_nonzero(wall) * float(np.prod(spacing))
    area = 0.0
    for axis in range(3):
        padded = np.pad(wall, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        faces = np.count_nonzero(np.diff(padded.astype(np.int8), axis=axis))
        area += faces * float(np.prod(np.delete(spacing, axis)))
    return 2.0 * volume / area if area > 0 else 0.0


def detect_chamber(wall: np.ndarray, spacing_mm: np.ndarray) -> tuple[str, float]:
    """``("ventricle" | "atrium", mean thickness mm)`` from the wall mask's thickness."""
    thickness = mean_wall_thickness_mm(wall, spacing_mm)
    return ("ventricle" if thickness >= VENTRICLE_MIN_THICKNESS_MM else "atrium"), thickness
