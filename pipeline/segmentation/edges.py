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

:func:`fitted_cavity` resolves what the image cannot: the endocardium is smooth and, beside
the scar, seen; fitted there slice by slice, it says which voxels over the scar are blood
(used by default at the LV cavity, where a slice can be fitted).

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


def _quantile_fit(design: np.ndarray, values: np.ndarray, quantile: float) -> np.ndarray:
    """Coefficients of the ``quantile`` regression of ``values`` on ``design`` (iteratively
    reweighted least squares, 40 rounds)."""
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    for _ in range(40):
        residual = values - design @ coef
        weight = np.where(residual > 0, quantile, 1.0 - quantile) / np.maximum(
            np.abs(residual), 0.05
        )
        sqrt_w = np.sqrt(weight)
        coef, *_ = np.linalg.lstsq(design * sqrt_w[:, None], values * sqrt_w, rcond=None)
    return coef


def _fourier(angles: np.ndarray, order: int) -> np.ndarray:
    columns = [np.ones_like(angles)]
    for m in range(1, order + 1):
        columns += [np.cos(m * angles), np.sin(m * angles)]
    return np.stack(columns, axis=1)


def _ray_edges(profile, in_wall, radii, low, step_px) -> tuple[np.ndarray, np.ndarray]:
    """(ray index, edge radius) of the rays whose profile falls from blood to dark
    myocardium within 3 pixels of the drawn contour (see :func:`fitted_cavity`)."""
    window = int(round(3.0 / step_px))
    past = int(round(1.5 / step_px))
    rays, edges_px = [], []
    for ray in range(profile.shape[0]):
        hits = np.flatnonzero(in_wall[ray])
        if hits.size == 0:
            continue
        lo = max(1, hits[0] - window)
        hi = min(radii.size - past - 1, hits[0] + window)
        values = profile[ray]
        if values[lo] < low:
            continue  # not blood where the window starts (a papillary muscle, trabeculae)
        below = np.flatnonzero(values[lo : hi + 1] < low)
        if below.size == 0:
            continue  # bright all through: scar (or blood) behind the contour
        j = lo + below[0]
        if np.any(values[j : j + past + 1] >= low):
            continue  # a dip, not dark myocardium
        # the edge at half-way between the blood and the myocardium on either side of it
        # (trabeculae darken the blood beside the wall: a global level would sit inward)
        blood_side = float(np.median(values[max(lo, j - past) : j]))
        dark_side = float(np.median(values[j : j + past + 1]))
        level = 0.5 * (blood_side + dark_side)
        k = j
        while k > lo and values[k - 1] < level:
            k -= 1
        a, b = values[k - 1], values[k]
        rays.append(ray)
        edges_px.append(radii[k - 1] + step_px * (a - level) / max(a - b, 1e-12))
    return np.asarray(rays, dtype=np.int64), np.asarray(edges_px, dtype=np.float64)


def fitted_cavity(
    image: np.ndarray,
    wall: np.ndarray,
    cavity: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    low: float,
    order: int = 1,
    max_mm: float = 4.5,
    n_rays: int = 180,
    min_seen_fraction: float = 0.25,
    quantile: float = 0.25,
    outlier_px: float = 1.0,
    smooth_px: float = 0.6,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The cavity inside an endocardium fitted, slice by slice, to where its edge is seen.

    A drawn endocardial contour over scar as bright as the blood cannot be checked against
    the image there, but the endocardium is smooth, and beside the scar (blood against dark
    myocardium) it is seen. In each slice, each cavity piece of at least 30 pixels whose
    centroid lies inside it (the LV's; a crescent such as the RV's has its centroid outside
    and gets no fit) sends ``n_rays`` rays from its centroid across the drawn endocardium.
    Along each, in the image smoothed in-plane by ``smooth_px`` pixels, the edge is found
    within 3 pixels of the drawn contour where the profile starts in blood (at least
    ``low``, the midpoint of blood and remote myocardium) and falls below ``low`` for 1.5
    pixels (dark myocardium, not a bright layer); it lies half-way between the blood and
    the myocardium on either side of it (trabeculae darken the blood beside the wall, so a
    global level would put it inward). Behind subendocardial scar as bright as blood an
    edge is still found, at the scar's far side, further out than the endocardium. So the
    edges' radius is fitted as a circle about the centroid at the low ``quantile``, then,
    without the edges more than ``outlier_px`` pixels outside it, as a Fourier series in the
    angle up to ``order`` (1: a circle off the centroid) at their median, and again on the
    edges within ``outlier_px`` of that. A piece with edges on fewer than
    ``min_seen_fraction`` of its rays gets no fit. The fitted cavity never reaches more than
    ``max_mm`` into the wall from the drawn one.

    Returns (cavity: pixels whose centre lies inside a fitted contour; fitted: the pixels
    nearer a fitted cavity piece than any other, where the fit decides; a report).
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    in_plane = np.array([float(s) for a, s in enumerate(spacing_mm) if a != axis])
    pixel_mm = float(in_plane.min())
    scale = in_plane / pixel_mm  # pixels of pixel_mm per index along each in-plane axis
    out = np.zeros(wall.shape, dtype=bool)
    fitted = np.zeros(wall.shape, dtype=bool)
    report: dict = {"slices_fitted": 0, "slices_not_fitted": 0}
    residuals = []
    theta = np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False)
    direction = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    step_px = 0.25
    sections = zip(
        np.moveaxis(image, axis, 0),
        np.moveaxis(wall, axis, 0),
        np.moveaxis(cavity, axis, 0),
        np.moveaxis(out, axis, 0),
        np.moveaxis(fitted, axis, 0),
        strict=True,
    )
    for section, wall_2d, cavity_2d, out_2d, fitted_2d in sections:
        if not wall_2d.any():
            continue
        pieces, n_pieces = ndimage.label(cavity_2d, np.ones((3, 3), dtype=bool))
        if n_pieces == 0:
            report["slices_not_fitted"] += 1
            continue
        # each pixel belongs to the nearest cavity piece (distance in mm)
        _, nearest = ndimage.distance_transform_edt(
            pieces == 0, sampling=in_plane, return_indices=True
        )
        owner = pieces[tuple(nearest)]
        smooth = ndimage.gaussian_filter(section.astype(np.float64), smooth_px)
        any_fit = False
        for piece in range(1, n_pieces + 1):
            mine = pieces == piece
            if np.count_nonzero(mine) < 30:
                continue
            centre = np.array(ndimage.center_of_mass(mine))
            if not mine[tuple(np.rint(centre).astype(int))]:
                continue  # a crescent: rays from outside it would cross it twice
            reach = np.linalg.norm((np.argwhere(wall_2d) - centre) * scale, axis=1).max() + 2
            radii = np.arange(0.0, reach, step_px)
            points = centre + radii[None, :, None] * direction[:, None, :] / scale
            flat = points.reshape(-1, 2).T
            in_wall = ndimage.map_coordinates(wall_2d.astype(np.uint8), flat, order=0)
            profile = ndimage.map_coordinates(smooth, flat, order=1, mode="nearest")
            rays, r = _ray_edges(
                profile.reshape(n_rays, -1), in_wall.reshape(n_rays, -1), radii, low, step_px
            )
            if rays.size < max(2 * order + 2, min_seen_fraction * n_rays):
                continue
            t = theta[rays]
            # first a circle about the centroid at the low quantile (a shift would lean
            # into a sector of edges behind scar), then the full order on the edges near it
            radius = _quantile_fit(_fourier(t, 0), r, quantile)
            near = r - radius[0] <= outlier_px
            coef = _quantile_fit(_fourier(t[near], order), r[near], 0.5)
            # then symmetric: a muscle strand in the blood beside the wall ends a profile
            # early
            near = np.abs(r - _fourier(t, order) @ coef) <= outlier_px
            coef = _quantile_fit(_fourier(t[near], order), r[near], 0.5)
            residual = r[near] - _fourier(t[near], order) @ coef
            residuals.append(float(pixel_mm * np.sqrt(np.mean(residual**2))))
            offset = (np.indices(section.shape).reshape(2, -1).T - centre) * scale
            angle = np.arctan2(offset[:, 1], offset[:, 0])
            inside = np.linalg.norm(offset, axis=1) < _fourier(angle, order) @ coef
            region = owner == piece
            depth = ndimage.distance_transform_edt(~mine, sampling=in_plane)
            out_2d |= inside.reshape(section.shape) & region & (depth <= max_mm)
            fitted_2d |= region
            any_fit = True
        report["slices_fitted" if any_fit else "slices_not_fitted"] += 1
    report["median_fit_residual_mm"] = round(float(np.median(residuals)), 3) if residuals else None
    return out, fitted, report
