"""Resampling onto a near-isotropic grid: trilinear for intensities, shape-based for labels."""

from __future__ import annotations

from typing import Literal

import numpy as np

from cardiotwin.pipeline.imaging.volume import (
    MAX_RESAMPLED_VOXELS,
    ImageVolume,
    _image_error,
    check_volume,
)


def resample_isotropic(
    volume: ImageVolume,
    spacing_mm: float,
    kind: Literal["intensity", "labels"] = "intensity",
) -> ImageVolume:
    """Resample onto a near-isotropic grid covering the same field of view (mm).

    Each axis gets ``round(extent / spacing_mm)`` voxels, so the spacing is within half a
    voxel of ``spacing_mm`` and the outer voxel edges stay where they were; the returned
    affine keeps the orientation and maps the new voxels to the same scanner mm.
    ``kind="intensity"``: trilinear interpolation, float32 (float64 stays float64).
    ``kind="labels"``: shape-based interpolation (Raya & Udupa 1990, IEEE TMI 9:32):
    each label's signed Euclidean distance map (mm, negative inside) is interpolated with
    cubic B-splines and each new voxel takes the label with the smallest distance; the
    dtype is kept and no new label values appear. Convex shapes still shrink a little
    between thick slices (about 1-3% of the volume of a 40 mm sphere from 6-7.5 mm slices).
    """
    from scipy import ndimage

    if not np.isfinite(spacing_mm) or spacing_mm <= 0:
        raise ValueError(f"spacing_mm must be a positive number of mm, got {spacing_mm!r}")
    if kind not in ("intensity", "labels"):
        raise ValueError(f"kind must be 'intensity' or 'labels', got {kind!r}")
    check_volume(volume)
    old_spacing = volume.spacing_mm
    extent_mm = np.asarray(volume.shape) * old_spacing
    counts = np.maximum(1.0, np.rint(extent_mm / spacing_mm))
    if float(np.prod(counts)) > MAX_RESAMPLED_VOXELS:
        raise _image_error(
            volume.source,
            f"resampled to {spacing_mm:g} mm it would have {float(np.prod(counts)):.3g} voxels "
            f"(more than {MAX_RESAMPLED_VOXELS:.0e})",
            "Give a spacing of at least a few tenths of a mm (e.g. 1.0).",
        )
    new_shape = tuple(int(n) for n in counts)
    # Old voxel index of new voxel index n along each axis: n * scale + offset, which keeps
    # the outer voxel edges (-0.5 and shape - 0.5 in old indices) fixed.
    scale = extent_mm / np.asarray(new_shape) / old_spacing
    offset = 0.5 * scale - 0.5
    new_to_old = np.eye(4)
    new_to_old[:3, :3] = np.diag(scale)
    new_to_old[:3, 3] = offset
    affine = np.asarray(volume.affine, dtype=np.float64) @ new_to_old

    def interpolate(array: np.ndarray, order: int) -> np.ndarray:
        # mode="nearest": samples in the outer half voxel take the edge value.
        return ndimage.affine_transform(
            array,
            scale,
            offset,
            output_shape=new_shape,
            order=order,
            mode="nearest",
            prefilter=order > 1,
        )

    if kind == "intensity":
        dtype = np.float64 if volume.array.dtype == np.float64 else np.float32
        resampled = interpolate(volume.array.astype(dtype, copy=False), order=1)
    else:
        resampled = _shape_based_labels(volume, old_spacing, interpolate, new_shape)
    return ImageVolume(resampled, affine, volume.source)


def _shape_based_labels(volume, spacing_mm, interpolate, new_shape) -> np.ndarray:
    """Label map on the new grid: argmin over labels of the interpolated signed distance."""
    from scipy import ndimage

    labels = volume.array
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels)):
        raise _image_error(
            volume.source,
            "has non-integer values, so it is not a label map",
            'Use kind="intensity" for images, or round the label map first.',
        )
    values = np.unique(labels)
    if values.size == 1:
        return np.full(new_shape, values[0], dtype=labels.dtype)
    best_distance = np.full(new_shape, np.inf, dtype=np.float32)
    best_label = np.zeros(new_shape, dtype=labels.dtype)
    # One label at a time keeps memory at two fine-grid arrays whatever the label count.
    for value in values:
        inside = labels == value
        signed_mm = ndimage.distance_transform_edt(
            ~inside, sampling=spacing_mm
        ) - ndimage.distance_transform_edt(inside, sampling=spacing_mm)
        # Cubic, not linear: linear interpolation follows chords of a curved outline
        # between thick slices and shrinks convex shapes (a 40 mm sphere from 7.5 mm
        # slices lost ~5% of its volume with linear, ~3% with cubic, in our tests).
        fine = interpolate(signed_mm.astype(np.float32), order=3)
        closer = fine < best_distance
        best_distance[closer] = fine[closer]
        best_label[closer] = value
    return best_label
