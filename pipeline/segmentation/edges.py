"""The wall's edges against bright blood: wall-mask errors and partial volume.

A wall mask drawn on LGE tends to take in a pixel or two of the bright blood pool (readers
and networks err towards including the edge, since subendocardial scar and blood look
alike), and the voxels at the true edge mix myocardium with blood. Both read as enhancement.
Published LGE pipelines exclude wall voxels that are connected to the blood pool and as
bright as it; :func:`trim_blood_edge` does that with a depth that is measured where it can
be and carried over where it cannot:

1. **Blood-like**: intensity between the midpoint of remote myocardium and blood (a voxel at
   least half blood) and the blood mean + ``blood_sd`` robust SD (brighter than that is scar).
2. **Layers**: in each slice, wall voxels that are blood-like and face-adjacent to bright
   non-wall voxels (the cavity, or another chamber's blood outside the mask) are layer 1;
   blood-like wall voxels adjacent to layer 1 are layer 2; and so on up to ``max_mm``.
3. **Runs**: a run of layers that ends, inward, at wall that is not blood-like (dark
   myocardium, border zone, or scar brighter than blood) is the mask's overshoot into the
   blood and leaves the wall. A run still blood-like at ``max_mm`` is kept: that is scar as
   bright as blood right at the edge (or a blood overshoot beyond the step's reach) and the
   image cannot tell which. A one- or two-voxel layer of subendocardial scar as bright as
   blood over dark myocardium looks exactly like an overshoot and is removed too.

:func:`partial_volume_rim` and :func:`relabel_rim_from_interior` then give the wall voxels
that still touch bright blood the label of the nearest interior voxel.
"""

from __future__ import annotations

import numpy as np

from cardiotwin.pipeline.segmentation.inputs import in_plane_structure, slice_axis


def bright_outside(
    image: np.ndarray, wall: np.ndarray, threshold: float, blood_pool: np.ndarray | None = None
) -> np.ndarray:
    """Non-wall voxels at least ``threshold`` bright (blood), plus the given blood pool."""
    bright = ~wall & (image >= threshold)
    if blood_pool is not None:
        bright |= blood_pool & ~wall
    return bright


def trim_blood_edge(
    image: np.ndarray,
    wall: np.ndarray,
    outside_bright: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    low: float,
    high: float,
    max_mm: float,
    dark: float,
    depth_smoothing_mm: float = 6.0,
    carry_over: bool = True,
) -> tuple[np.ndarray, dict]:
    """Remove blood-like wall voxels at the edge (see the module docstring).

    ``low``/``high``: the blood-like intensity range. Returns the trimmed wall and a report.
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    in_plane = [s for a, s in enumerate(spacing_mm) if a != axis]
    pixel_mm = float(min(in_plane))
    n_layers = max(0, int(np.floor(max_mm / pixel_mm + 1e-6)))
    report = {"max_mm": float(max_mm), "layers": n_layers, "blood_like": [low, high]}
    if n_layers == 0 or not outside_bright.any():
        report.update(removed_voxels=0)
        return wall.copy(), report
    cross = in_plane_structure(axis, connectivity=1)
    blood_like = wall & (image >= low) & (image <= high)
    layer = np.zeros(wall.shape, dtype=np.int8)
    front = outside_bright
    for index in range(1, n_layers + 1):
        grown = ndimage.binary_dilation(front, cross) & blood_like & (layer == 0)
        layer[grown] = index
        front = grown
    # Where a run of blood-like layers ends, inward, at dark myocardium, the mask's
    # overshoot is seen: the run's depth (0 where dark wall is right at the edge).
    # The voxel at the true edge mixes blood and myocardium (intermediate): dark wall up to
    # one voxel beyond the run's end still shows the edge.
    dark_wall = wall & (image < dark)
    near_dark = wall & ~blood_like & ndimage.binary_dilation(dark_wall, cross)
    ends_dark = ndimage.binary_dilation(near_dark, cross)
    depth_seen = np.zeros(wall.shape, dtype=np.float64)
    seen = np.zeros(wall.shape, dtype=bool)
    for index in range(n_layers, 0, -1):
        here = (layer == index) & ends_dark & ~seen
        depth_seen[here] = index
        seen |= here
    at_edge = near_dark & ndimage.binary_dilation(outside_bright, cross)
    seen |= at_edge
    # Overshoot expected everywhere: seen depths nearby (in-plane Gaussian weights), else
    # their median over the volume.
    sigma = [0.0 if a == axis else depth_smoothing_mm / s for a, s in enumerate(spacing_mm)]
    weight = seen.astype(np.float64)
    numerator = ndimage.gaussian_filter(depth_seen * weight, sigma, mode="constant")
    denominator = ndimage.gaussian_filter(weight, sigma, mode="constant")
    values = depth_seen[seen]
    fallback = float(np.median(values)) if values.size else 0.0
    local = np.where(denominator > 0.05, numerator / np.maximum(denominator, 1e-12), fallback)
    if not carry_over:
        hidden = ~ndimage.binary_dilation(seen, cross, iterations=n_layers)
        local = np.where(hidden, 0.0, local)
    # Trim each run to the expected overshoot, never past its own end: layers only grow
    # through blood-like voxels, so a run that ends at wall that is not blood-like (border
    # zone, scar brighter than blood) stops there by construction.
    removed = (layer > 0) & (layer <= np.rint(local))
    trimmed = wall & ~removed
    report.update(
        removed_voxels=int(np.count_nonzero(removed)),
        kept_bright_edge_voxels=int(np.count_nonzero((layer > 0) & ~removed)),
        median_seen_overshoot_layers=fallback,
        edge_voxels_seen=int(np.count_nonzero(seen)),
    )
    return trimmed, report


def trim_outer_edge(
    image: np.ndarray,
    wall: np.ndarray,
    outside_bright: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    remote_mean: float,
    remote_sd: float,
    max_mm: float,
    smooth_mm: float,
) -> tuple[np.ndarray, dict]:
    """The blood-edge step (:func:`trim_blood_edge`) at the other edge of the wall.

    Beyond the epicardium lie pericardial tissue and fat, grey in LGE (brighter than nulled
    myocardium, dimmer than blood): a contour drawn a pixel or two into it reads as border
    zone. The grey tissue's intensity is taken from the non-wall voxels within 3 pixels of
    the wall that are neither blood-bright nor as dark as myocardium (lung); wall voxels at
    the edge within ±2 robust SD of it form the layers, and dark myocardium (below remote +
    2 SD) ends a run. Decisions use the image smoothed in the wall and outside separately
    (``smooth_mm``), since the grey-to-myocardium contrast is only a few noise SD.
    """
    from scipy import ndimage

    from cardiotwin.pipeline.segmentation.thresholds import smooth_within_mask

    axis = slice_axis(spacing_mm)
    report: dict = {"grey_voxels": 0, "removed_voxels": 0}
    near = ndimage.binary_dilation(wall, in_plane_structure(axis, 2), iterations=3) & ~wall
    smooth_out = smooth_within_mask(image, near & ~outside_bright, spacing_mm, smooth_mm)
    smooth_in = smooth_within_mask(image, wall, spacing_mm, smooth_mm)
    dark_limit = remote_mean + 2.0 * remote_sd
    grey = near & ~outside_bright & (smooth_out > dark_limit)
    report["grey_voxels"] = int(np.count_nonzero(grey))
    if np.count_nonzero(grey) < 50:
        return wall, report
    values = smooth_out[grey]
    median = float(np.median(values))
    spread = float(1.4826 * np.median(np.abs(values - median)))
    low, high = max(dark_limit, median - 2 * spread), median + 2 * spread
    combined = np.where(wall, smooth_in, smooth_out)
    trimmed, inner = trim_blood_edge(
        combined, wall, grey, spacing_mm, low=low, high=high, max_mm=max_mm, dark=dark_limit
    )
    report.update(inner, grey_range=[low, high], grey_median=median)
    return trimmed, report


def partial_volume_rim(wall: np.ndarray, outside_bright: np.ndarray) -> np.ndarray:
    """Wall voxels face-adjacent to bright blood outside the wall."""
    from scipy import ndimage

    if not outside_bright.any():
        return np.zeros_like(wall)
    touching = ndimage.binary_dilation(outside_bright, ndimage.generate_binary_structure(3, 1))
    return wall & touching


def outer_rim(wall: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Wall voxels with an in-plane face neighbour outside the wall mask (either edge).

    The epicardial edge mixes myocardium with pericardial tissue, fat or lung, and a drawn
    contour errs there too: like the blood-side rim, these voxels take an interior label.
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    return wall & ~ndimage.binary_erosion(wall, in_plane_structure(axis), border_value=1)


def relabel_rim_from_interior(
    labels: np.ndarray, wall: np.ndarray, rim: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """Give each rim voxel the label of its nearest interior wall voxel (distance in mm)."""
    from scipy import ndimage

    interior = wall & ~rim
    if not rim.any() or not interior.any():
        return labels
    _, nearest = ndimage.distance_transform_edt(
        ~interior, sampling=spacing_mm, return_distances=True, return_indices=True
    )
    out = labels.copy()
    out[rim] = labels[tuple(index[rim] for index in nearest)]
    return out
