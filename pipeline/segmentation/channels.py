"""Clean-up of a label map that keeps the structure re-entry depends on.

The border-zone channels between pieces of dense scar carry VT re-entry. Thresholding loses
them in two ways: blur, partial volume and noise lift a few channel voxels over the dense
threshold (a dense speck or a thin dense bridge then blocks the channel or joins two scar
pieces across it), or drop dim border zone below the border-zone threshold (the channel
reads as healthy tissue). :func:`keep_channels` runs, in order:

1. :func:`demote_dense_specks`: dense pieces of a few voxels become border zone;
2. :func:`open_channels`: thin dense necks (what an in-plane opening with a disk of
   ``neck_mm`` removes) that join two large dense pieces and are dimmer than both become
   border zone; any other neck stays dense, and so does a bridge as bright as the scar;
3. :func:`corridor_between_pieces`: healthy voxels on a short in-plane path between two
   large dense pieces (at most ``channel_max_gap_mm``: clinical isthmuses are 5-15 mm wide)
   that are above remote myocardium (mean + ``corridor_sd`` SD) become border zone. Tissue
   squeezed between scar pieces with any enhancement is grey zone, not remote myocardium.

:func:`remove_small_components` drops enhanced specks (labels 2-3) below a volume.
Scar pieces connect in-plane through any of the 8 neighbours and across the slice axis only
where they overlap (:func:`.metrics.piece_structure`).
"""

from __future__ import annotations

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.segmentation.inputs import slice_axis
from cardiotwin.pipeline.segmentation.metrics import piece_structure


def remove_small_components(
    labels: np.ndarray, voxel_ml: float, min_component_ml: float
) -> tuple[np.ndarray, int]:
    """Enhanced (>= 2) components under ``min_component_ml`` become healthy; (labels, count)."""
    from scipy import ndimage

    if min_component_ml <= 0:
        return labels, 0
    enhanced = labels >= BORDER_ZONE
    components, n = ndimage.label(enhanced, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return labels, 0
    sizes_ml = np.bincount(components.ravel())[1:] * voxel_ml
    small = np.flatnonzero(sizes_ml < min_component_ml) + 1
    out = labels.copy()
    out[np.isin(components, small)] = HEALTHY
    return out, int(small.size)


def _disk(spacing_mm: np.ndarray, axis: int, radius_mm: float) -> np.ndarray:
    """In-plane disk structuring element of ``radius_mm`` (at least the 4-neighbour cross)."""
    in_plane = [float(s) for a, s in enumerate(spacing_mm) if a != axis]
    radius = [max(1, int(np.floor(radius_mm / s + 1e-6))) for s in in_plane]
    yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
    plane = (yy * in_plane[0]) ** 2 + (xx * in_plane[1]) ** 2 <= max(
        radius_mm**2, min(in_plane) ** 2
    )
    return np.expand_dims(plane, axis)


def open_channels(
    labels: np.ndarray,
    intensity: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    neck_mm: float,
    min_piece_ml: float,
) -> tuple[np.ndarray, dict]:
    """Turn thin dense bridges between large dense pieces into border zone (module docstring).

    ``intensity``: the (smoothed) image the labels were thresholded from. Returns the new
    labels and a report (bridges opened, voxels relabelled).
    """
    from scipy import ndimage

    dense = labels == DENSE_SCAR
    report = {"neck_mm": float(neck_mm), "bridges_opened": 0, "voxels_relabelled": 0}
    if not dense.any() or neck_mm <= 0:
        return labels, report
    axis = slice_axis(spacing_mm)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    cube = piece_structure(spacing_mm)
    opened = ndimage.binary_opening(dense, _disk(spacing_mm, axis, neck_mm))
    pieces, n_pieces = ndimage.label(opened, structure=cube)
    if n_pieces < 2:
        return labels, report
    sizes = np.bincount(pieces.ravel()) * voxel_ml
    large = np.flatnonzero(sizes >= min_piece_ml)
    large = large[large > 0]
    if large.size < 2:
        return labels, report
    necks = dense & ~opened
    neck_parts, n_necks = ndimage.label(necks, structure=cube)
    out = labels.copy()
    piece_brightness = {int(p): float(np.median(intensity[pieces == p])) for p in large}
    for index in range(1, n_necks + 1):
        part = neck_parts == index
        touching = np.unique(pieces[ndimage.binary_dilation(part, cube) & (pieces > 0)])
        touching = [int(p) for p in touching if p in piece_brightness]
        if len(touching) < 2:
            continue
        if float(np.median(intensity[part])) >= min(piece_brightness[p] for p in touching):
            continue
        out[part] = BORDER_ZONE
        report["bridges_opened"] += 1
        report["voxels_relabelled"] += int(np.count_nonzero(part))
    return out, report


def keep_channels(
    labels: np.ndarray,
    intensity: np.ndarray,
    spacing_mm: np.ndarray,
    settings,
    corridor_cut: float,
) -> tuple[np.ndarray, dict]:
    """Steps 1-3 of the module docstring; ``corridor_cut``: the corridor's intensity floor."""
    labels, specks = demote_dense_specks(labels, spacing_mm, settings.min_dense_piece_ml)
    labels, report = open_channels(
        labels,
        intensity,
        spacing_mm,
        neck_mm=settings.channel_neck_mm,
        min_piece_ml=settings.channel_min_piece_ml,
    )
    # Corridors between the scar's cores: dense voxels there that are clearly dimmer than
    # the cores are grey zone too (a bright channel over the 50 %-of-maximum cut).
    dense = labels == DENSE_SCAR
    core_cut = np.inf
    if dense.any():
        core_cut = settings.channel_core_fraction * float(np.median(intensity[dense]))
    core = np.where(dense & (intensity >= core_cut), DENSE_SCAR, np.where(labels > 0, HEALTHY, 0))
    corridor = corridor_between_pieces(
        core.astype(np.uint8),
        spacing_mm,
        max_gap_mm=settings.channel_max_gap_mm,
        min_piece_ml=settings.channel_min_piece_ml,
    )
    dim_dense = corridor & dense & (intensity < core_cut)
    grown = corridor & (labels == HEALTHY) & (intensity >= corridor_cut)
    labels = labels.copy()
    labels[grown | dim_dense] = BORDER_ZONE
    report.update(
        dense_specks_demoted=specks,
        corridor_voxels_to_border_zone=int(np.count_nonzero(grown)),
        corridor_dim_dense_to_border_zone=int(np.count_nonzero(dim_dense)),
        corridor_intensity_floor=float(corridor_cut),
        core_intensity=float(core_cut) if np.isfinite(core_cut) else None,
    )
    return labels, report


def corridor_between_pieces(
    labels: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    max_gap_mm: float,
    min_piece_ml: float,
) -> np.ndarray:
    """Wall voxels on a short in-plane path between two different large dense pieces.

    A voxel is in the corridor when the in-plane distances to the nearest and to the
    second-nearest dense piece (different pieces) add up to at most ``max_gap_mm``.
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    pieces, n = ndimage.label(labels == DENSE_SCAR, structure=piece_structure(spacing_mm))
    if n < 2:
        return np.zeros(labels.shape, dtype=bool)
    sizes = np.bincount(pieces.ravel()) * voxel_ml
    large = [p for p in range(1, n + 1) if sizes[p] >= min_piece_ml]
    if len(large) < 2:
        return np.zeros(labels.shape, dtype=bool)
    in_plane = [float(s) for a, s in enumerate(spacing_mm) if a != axis]
    moved = np.moveaxis(pieces, axis, 0)
    wall = np.moveaxis(labels > 0, axis, 0)
    corridor = np.zeros(moved.shape, dtype=bool)
    for index in range(moved.shape[0]):
        present = [p for p in large if (moved[index] == p).any()]
        if len(present) < 2:
            continue
        distances = np.stack(
            [ndimage.distance_transform_edt(moved[index] != p, sampling=in_plane) for p in present]
        )
        distances.sort(axis=0)
        corridor[index] = wall[index] & (distances[0] + distances[1] <= max_gap_mm)
    return np.moveaxis(corridor, 0, axis) & (labels != DENSE_SCAR)


def demote_dense_specks(
    labels: np.ndarray, spacing_mm: np.ndarray, min_dense_ml: float
) -> tuple[np.ndarray, int]:
    """Dense-scar pieces smaller than ``min_dense_ml`` become border zone; (labels, count).

    A few voxels over the dense threshold inside border zone are noise on intermediate
    tissue more often than a scar island, and in a channel they would block it.
    """
    from scipy import ndimage

    if min_dense_ml <= 0:
        return labels, 0
    pieces, n = ndimage.label(labels == DENSE_SCAR, structure=piece_structure(spacing_mm))
    if n == 0:
        return labels, 0
    sizes = np.bincount(pieces.ravel()) * float(np.prod(spacing_mm)) / 1000.0
    small = np.flatnonzero(sizes < min_dense_ml)
    small = small[small > 0]
    out = labels.copy()
    out[np.isin(pieces, small)] = BORDER_ZONE
    return out, int(small.size)
