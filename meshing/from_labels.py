"""Label maps to tagged tetrahedral meshes (ventricles).

A ventricular wall is thick (6–12 mm) against the voxel size, so its label map is meshed
directly: the wall mask (every label > 0) is blurred with a Gaussian of
``smoothing_mm`` and its 0.5 level set, sampled trilinearly, is filled with tetrahedra by
isosurface stuffing (:mod:`cardiotwin.meshing.stuffing`): smooth boundaries at the target
mean edge, BCC elements inside. Each element then takes the tissue label (healthy, border
zone, dense scar, lesion) whose blurred indicator (σ = ``tag_smoothing_mm``) is largest at
its centre, so tissue interfaces follow the smoothed label boundaries rather than the voxel
staircase and small structures (an isthmus) keep their volume. Dense scar stays in the mesh
with its tag (the engine drops it as non-conducting). Pieces not connected to the main mesh
are dropped with a warning; a wall that falls apart into large pieces is bad input.

Inputs are a label array and its voxel → scanner-mm affine; clinical stacks (8 mm slices)
must be resampled onto a near-isotropic grid first (shape-based interpolation,
:func:`cardiotwin.pipeline.images.resample_isotropic`), which the ``cardiotwin mesh`` command
does. Atria (thin walls) are meshed from the blood pool instead: :mod:`.atrium`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from cardiotwin.meshing.mesh import Mesh, check_mesh
from cardiotwin.meshing.quality import drop_islands
from cardiotwin.meshing.stuffing import BCC_MEAN_EDGE_PER_SPACING, lattice_spacing_for_edge, stuff
from cardiotwin.meshing.surfaces import mask_surface, mm_to_voxel, voxel_to_mm
from cardiotwin.meshing.tags import BACKGROUND, Tissue

log = logging.getLogger(__name__)

#: BCC tetrahedra per unit volume of the lattice cube h³ (12 per cube)
ELEMENTS_PER_CUBE = 12
#: an edge shorter than this fraction of the finest voxel spacing resolves nothing the image
#: holds (the image's detail is ~ one voxel); 1/8 still allows 0.2 mm atrial meshes from
#: 1.25–1.5 mm voxels
MIN_EDGE_PER_VOXEL = 0.125
#: elements needed across the wall for a transmural gradient
MIN_ELEMENTS_ACROSS_WALL = 2
_TISSUE_LABELS = tuple(int(t) for t in Tissue if t != BACKGROUND)


class MeshingError(ValueError):
    """Labels or settings that cannot be meshed; the message says which and the fix."""


def wall_mask(labels: np.ndarray) -> np.ndarray:
    """Voxels of tissue (any label > 0); an unknown label value is an error."""
    labels = np.asarray(labels)
    unknown = np.setdiff1d(np.unique(labels), (BACKGROUND, *_TISSUE_LABELS))
    if unknown.size:
        shown = ", ".join(f"{v:g}" for v in unknown[:5].tolist())
        more = f" and {unknown.size - 5} more" if unknown.size > 5 else ""
        image = " (an intensity image?)" if unknown.size > 5 else ""
        raise MeshingError(
            f"contains {unknown.size} value(s) that are not tissue labels{image}: {shown}{more}; "
            f"the labels are {list((BACKGROUND, *_TISSUE_LABELS))} (0 background, 1 healthy, "
            "2 border zone, 3 dense scar, 4 lesion): give the segmentation's label map"
        )
    mask = labels > 0
    if not mask.any():
        raise MeshingError(
            "has no wall (every voxel is background); give the segmentation's label map or "
            "the wall mask, not an empty image"
        )
    return mask


def wall_thickness_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """Mean wall thickness, mm: twice the volume over the surface area (a thin shell of
    thickness t and mid-surface area A has volume A·t and two faces of area ≈ A)."""
    points, triangles = mask_surface(mask, affine)
    x = points[triangles]
    area = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1).sum()
    voxel_ml = abs(np.linalg.det(np.asarray(affine)[:3, :3]))
    return float(2.0 * np.count_nonzero(mask) * voxel_ml / area)


def largest_piece_fraction(mask: np.ndarray) -> float:
    """Fraction of the mask's voxels in its largest 26-connected piece."""
    from scipy import ndimage

    pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count <= 1:
        return 1.0
    sizes = np.bincount(pieces.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def estimated_elements(volume_mm3: float, edge_mm: float) -> int:
    """Elements a stuffed mesh of this volume and mean edge will have (12 per BCC cube)."""
    return int(ELEMENTS_PER_CUBE * volume_mm3 / lattice_spacing_for_edge(edge_mm) ** 3)


def estimated_nodes(volume_mm3: float, edge_mm: float) -> int:
    """Nodes of that mesh (a BCC lattice has two vertices per cube, plus the surface)."""
    return int(2 * volume_mm3 / lattice_spacing_for_edge(edge_mm) ** 3)


def check_edge_length(
    edge_mm: float,
    *,
    voxel_spacing_mm,
    wall_thickness_mm: float,
    wall_volume_mm3: float,
    max_elements: int,
    min_elements_across: int = MIN_ELEMENTS_ACROSS_WALL,
) -> None:
    """Refuse an edge the labels cannot support; the message says which limit and what to use.

    Too small: below :data:`MIN_EDGE_PER_VOXEL` of the finest voxel spacing, or more than
    ``max_elements`` elements (memory). Too large: fewer than ``min_elements_across``
    elements across the wall.
    """
    if not (np.isfinite(edge_mm) and edge_mm > 0):
        raise MeshingError(f"edge length must be a positive number of mm, got {edge_mm}")
    finest = float(np.min(voxel_spacing_mm))
    smallest = MIN_EDGE_PER_VOXEL * finest
    largest = wall_thickness_mm / min_elements_across
    if edge_mm < smallest:
        raise MeshingError(
            f"edge {edge_mm:g} mm is far below the voxel size ({finest:.2g} mm): the image "
            f"holds no detail that fine; use --edge-mm {max(smallest, 0.35):.2g} or more"
        )
    if edge_mm > largest:
        raise MeshingError(
            f"edge {edge_mm:g} mm is too large to resolve the wall (mean thickness "
            f"{wall_thickness_mm:.1f} mm needs {min_elements_across} elements across); use "
            f"--edge-mm {largest:.2g} or less"
        )
    expected = estimated_elements(wall_volume_mm3, edge_mm)
    if expected > max_elements:
        fits = BCC_MEAN_EDGE_PER_SPACING * (ELEMENTS_PER_CUBE * wall_volume_mm3 / max_elements) ** (
            1 / 3
        )
        raise MeshingError(
            f"edge {edge_mm:g} mm would give about {expected:,} elements, above the limit of "
            f"{max_elements:,} (mesh.max_elements); use --edge-mm {fits:.2g} or more, or raise "
            "the limit if the machine has the memory (~1 kB per element while meshing)"
        )


def _sigma_voxels(affine: np.ndarray, sigma_mm: float) -> np.ndarray:
    return sigma_mm / np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def wall_level_set(
    mask: np.ndarray, affine: np.ndarray, smoothing_mm: float
) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, np.ndarray]:
    """``(phi, lower_mm, upper_mm)``: phi(x) = 0.5 − (blurred mask)(x), negative inside, and a
    scanner-axis box that holds the wall with room for the blur."""
    from scipy import ndimage

    indicator = np.pad(mask.astype(np.float32), 3)
    padded_affine = np.asarray(affine, dtype=np.float64).copy()
    padded_affine[:3, 3] = voxel_to_mm(affine, -3.0 * np.ones((1, 3)))[0]
    if smoothing_mm > 0:
        indicator = ndimage.gaussian_filter(indicator, _sigma_voxels(affine, smoothing_mm))

    def phi(points_mm: np.ndarray) -> np.ndarray:
        voxels = mm_to_voxel(padded_affine, points_mm)
        inside = ndimage.map_coordinates(indicator, voxels.T, order=1, mode="constant", cval=0.0)
        return 0.5 - inside

    index = np.argwhere(mask)
    lo, hi = index.min(axis=0) - 1, index.max(axis=0) + 1
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])], dtype=np.float64)  # fmt: skip
    corners_mm = voxel_to_mm(affine, corners)
    margin = 3.0 * max(smoothing_mm, 0.0) + float(np.max(np.linalg.norm(affine[:3, :3], axis=0)))
    return phi, corners_mm.min(axis=0) - margin, corners_mm.max(axis=0) + margin


def tag_elements(
    centres_mm: np.ndarray, labels: np.ndarray, affine: np.ndarray, smoothing_mm: float
) -> np.ndarray:
    """Tissue tag at each point: the label whose blurred indicator is largest there.

    Background voxels first take the label of the nearest tissue voxel, so a point just
    outside the voxel wall (the smooth boundary passes through partial voxels) still gets the
    tissue nearest to it.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    background = labels == BACKGROUND
    _, nearest = ndimage.distance_transform_edt(
        background, sampling=np.linalg.norm(affine[:3, :3], axis=0), return_indices=True
    )
    extended = labels[tuple(nearest)]
    del nearest
    voxels = mm_to_voxel(affine, centres_mm).T
    present = [t for t in _TISSUE_LABELS if np.any(labels == t)]
    if len(present) == 1:
        return np.full(len(centres_mm), present[0], dtype=np.int32)
    if smoothing_mm <= 0:
        values = ndimage.map_coordinates(extended, voxels, order=0, mode="nearest")
        return values.astype(np.int32)
    sigma = _sigma_voxels(affine, smoothing_mm)
    best = np.full(len(centres_mm), -np.inf)
    tag = np.zeros(len(centres_mm), dtype=np.int32)
    for label in present:
        indicator = ndimage.gaussian_filter((extended == label).astype(np.float32), sigma)
        value = ndimage.map_coordinates(indicator, voxels, order=1, mode="nearest")
        better = value > best
        best[better], tag[better] = value[better], label
    return tag


def mesh_ventricle(
    labels: np.ndarray,
    affine: np.ndarray,
    edge_mm: float,
    *,
    smoothing_mm: float = 1.0,
    tag_smoothing_mm: float = 0.5,
    max_island_fraction: float = 0.05,
    image_affine: np.ndarray | None = None,
) -> Mesh:
    """Tagged tetrahedral mesh of a ventricular label map (points in scanner mm).

    ``labels``: 0 background, 1 healthy, 2 border zone, 3 dense scar (4 lesion), on a
    near-isotropic grid with voxel → scanner-mm ``affine``. ``edge_mm``: target mean edge.
    Pieces not connected to the main mesh are dropped with a warning; if they hold more than
    ``max_island_fraction`` of the volume the wall is in fragments and this is an error.
    ``image_affine`` (default ``affine``) is stored on the mesh: the affine of the label image
    the user gave, before any resampling. Raises :class:`MeshingError` for bad input.
    """
    affine = np.asarray(affine, dtype=np.float64)
    mask = wall_mask(labels)
    fraction = largest_piece_fraction(mask)
    if fraction < 1.0 - max_island_fraction:
        raise MeshingError(
            f"the wall is in fragments: its largest connected piece holds only "
            f"{100 * fraction:.0f} % of the wall voxels; check the wall mask / segmentation "
            "(a ventricle is one connected piece), or mesh a thin wall with --kind atrium"
        )
    log.info("meshing: level set of the wall (smoothing %.2g mm)", smoothing_mm)
    phi, lower, upper = wall_level_set(mask, affine, smoothing_mm)
    log.info("meshing: isosurface stuffing at %.3g mm mean edge", edge_mm)
    points, tets = stuff(phi, lower, upper, lattice_spacing_for_edge(edge_mm))
    if tets.size == 0:
        raise MeshingError(
            "the smoothed wall is empty at this edge length (the wall is thinner than the "
            "smoothing); use a smaller --edge-mm or less smoothing"
        )
    log.info("meshing: %d elements; tagging tissue", len(tets))
    centres = np.concatenate(
        [points[tets[k : k + 1_000_000]].mean(axis=1) for k in range(0, len(tets), 1_000_000)]
    )
    region = tag_elements(centres, labels, affine, tag_smoothing_mm)
    mesh = Mesh(
        points_mm=points,
        tets=tets,
        region=region,
        affine=affine if image_affine is None else image_affine,
    )
    return finish_mesh(
        mesh,
        max_island_fraction,
        fragments="the meshed wall is in fragments; check the wall mask / segmentation",
        invalid="the mesher produced an invalid mesh",
    )


def finish_mesh(mesh: Mesh, max_island_fraction: float, *, fragments: str, invalid: str) -> Mesh:
    """Drop islands (warning), refuse a fragmented result, and check the elements.

    ``fragments`` / ``invalid`` start the error message for each failure."""
    mesh, dropped = drop_islands(mesh, source="meshing")
    if dropped > max_island_fraction:
        raise MeshingError(
            f"{fragments} ({100 * dropped:.1f} % of the volume is not connected to the main piece)"
        )
    try:
        return check_mesh(mesh)
    except ValueError as exc:
        raise MeshingError(f"{invalid} ({exc})") from exc
