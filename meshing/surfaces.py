"""Triangle surfaces from image masks, their normals, and image samples along the normals.

Shared by the atrial mesher (the wall is extruded from the blood-pool surface) and the
atrial fibrosis measurement on the surface (Utah / CemrgApp: LGE sampled along each vertex's
normal). Images enter as a plain array with its voxel → scanner-mm ``affine`` (the
convention of :mod:`cardiotwin.pipeline.images`: ``array[i, j, k]`` sits at
``affine @ (i, j, k, 1)``), so this module does not depend on the imaging code.
"""

from __future__ import annotations

import numpy as np


def voxel_to_mm(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """(k, 3) voxel indices (may be fractional) → scanner mm."""
    affine = np.asarray(affine, dtype=np.float64)
    return np.asarray(ijk, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def mm_to_voxel(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """(k, 3) scanner mm → fractional voxel indices."""
    affine = np.asarray(affine, dtype=np.float64)
    return (np.asarray(points_mm, dtype=np.float64) - affine[:3, 3]) @ np.linalg.inv(
        affine[:3, :3]
    ).T


def mask_surface(
    mask: np.ndarray, affine: np.ndarray, *, smoothing_voxels: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The boundary of a binary mask as a closed triangle surface in scanner mm.

    The mask is blurred (Gaussian, σ = ``smoothing_voxels``) and its 0.5 level set is
    extracted by marching cubes, so the surface is smooth rather than a voxel staircase and
    passes where a partial-volume boundary would. Returns ``(points_mm (p, 3), triangles
    (t, 3))`` with every triangle's normal pointing out of the mask. An empty mask is an error.
    """
    from scipy import ndimage
    from skimage import measure

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the mask is empty: there is no surface to extract")
    padded = np.pad(mask.astype(np.float32), 2)  # closed surface even where the mask touches
    if smoothing_voxels > 0:
        padded = ndimage.gaussian_filter(padded, smoothing_voxels)
    vertices, triangles, _, _ = measure.marching_cubes(padded, 0.5, gradient_direction="descent")
    points_mm = voxel_to_mm(affine, vertices - 2.0)
    triangles = np.ascontiguousarray(triangles, dtype=np.int64)
    # marching cubes orients by index space; a left-handed affine mirrors it
    if np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]) < 0:
        triangles = triangles[:, [0, 2, 1]]
    if _enclosed_volume(points_mm, triangles) < 0:
        triangles = triangles[:, [0, 2, 1]]
    return points_mm, triangles


def _enclosed_volume(points: np.ndarray, triangles: np.ndarray) -> float:
    x = points[triangles]
    return float(np.einsum("ij,ij->i", x[:, 0], np.cross(x[:, 1], x[:, 2])).sum() / 6.0)


def triangle_normals(points_mm: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(t, 3) unit normals of the triangles (right-hand rule on the vertex order)."""
    x = np.asarray(points_mm)[np.asarray(triangles)]
    normals = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)


def vertex_normals(points_mm: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(p, 3) unit vertex normals: area-weighted means of the adjacent triangles' normals."""
    points_mm = np.asarray(points_mm, dtype=np.float64)
    triangles = np.asarray(triangles)
    x = points_mm[triangles]
    area_normals = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])  # length = 2 × area
    normals = np.zeros_like(points_mm)
    for corner in range(3):
        np.add.at(normals, triangles[:, corner], area_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)


def sample_along_normals(
    image: np.ndarray,
    affine: np.ndarray,
    points_mm: np.ndarray,
    normals: np.ndarray,
    *,
    band_mm: tuple[float, float] = (0.0, 3.0),
    step_mm: float = 0.25,
    reduce: str = "max",
    order: int = 1,
) -> np.ndarray:
    """Image values along each point's normal, reduced to one value per point.

    Samples ``image`` (trilinear for ``order=1``) at ``point + s · normal`` for ``s`` from
    ``band_mm[0]`` to ``band_mm[1]`` mm every ``step_mm`` (positive ``s`` goes along the
    normal, e.g. outward through the atrial wall), and returns the ``"max"`` or ``"mean"``
    per point (Utah / CemrgApp use the maximum in a band outside the endocardium). Samples
    outside the image are ignored; a point with none gets NaN.
    """
    from scipy import ndimage

    lo, hi = float(band_mm[0]), float(band_mm[1])
    if not hi >= lo or step_mm <= 0:
        raise ValueError(f"band_mm must be (low, high) with low ≤ high, got {band_mm}")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    offsets = np.arange(lo, hi + 0.5 * step_mm, step_mm)
    points_mm = np.asarray(points_mm, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    positions = points_mm[:, None, :] + offsets[None, :, None] * normals[:, None, :]
    voxels = mm_to_voxel(affine, positions.reshape(-1, 3))
    image = np.asarray(image, dtype=np.float64)
    inside = np.all((voxels >= -0.5) & (voxels <= np.array(image.shape) - 0.5), axis=1)
    values = ndimage.map_coordinates(image, voxels.T, order=order, mode="nearest")
    values = np.where(inside, values, np.nan).reshape(len(points_mm), len(offsets))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
            return np.nanmax(values, axis=1) if reduce == "max" else np.nanmean(values, axis=1)
