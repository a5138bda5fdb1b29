"""Atrial fibrosis on the endocardial surface, as the field measures it (Utah / CemrgApp).

1. The endocardial surface is the boundary of the blood-pool mask (``--blood``, else the
   cavity enclosed by the wall mask): marching cubes of the lightly blurred mask, in scanner
   mm (:func:`cardiotwin.meshing.surfaces.mask_surface`).
2. At every vertex the LGE is sampled along the outward normal over ``surface_band_mm``
   (default 0-3 mm: through a 2-3 mm wall) every ``surface_step_mm`` (cubic spline
   interpolation) and the **maximum** is kept (the maximum intensity projection of Oakes
   2009 / CemrgApp).
3. IIR per vertex = that maximum / the mean of the blood pool (eroded one voxel in-plane);
   fibrosis where IIR ≥ 1.20, dense where ≥ 1.32 (Benito 2017).
4. Only vertices with wall beneath count (the wall mask within the band, if a wall mask is
   given: openings such as the mitral valve have none); fibrosis % is area-weighted (a third
   of each adjacent triangle's area per vertex); Utah stage from it.

The volumetric label map is still written: each wall voxel takes the class of the nearest
surface vertex, so meshing and the report have labels on the LGE grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.surfaces import mask_surface, sample_along_normals, vertex_normals
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.images import ImageError, ImageVolume, check_same_grid, check_volume
from cardiotwin.pipeline.segmentation import thresholds
from cardiotwin.pipeline.segmentation.inputs import (
    MIN_WALL_VOXELS,
    as_mask,
    blood_pool_from_wall,
    check_inputs,
    check_is_mask,
)
from cardiotwin.pipeline.segmentation.metrics import label_statistics, utah_stage


@dataclass
class SurfaceFibrosis:
    """The endocardial surface (scanner mm) with per-vertex values."""

    points_mm: np.ndarray
    triangles: np.ndarray
    iir: np.ndarray
    classes: np.ndarray  # 1 healthy, 2 fibrosis, 3 dense; 0 where there is no wall
    area_mm2: np.ndarray
    has_wall: np.ndarray

    def write_vtp(self, path) -> None:
        """Write the surface with IIR, class and wall flag as point data (VTK PolyData)."""
        import pyvista as pv

        cells = np.hstack([np.full((len(self.triangles), 1), 3), self.triangles]).ravel()
        mesh = pv.PolyData(self.points_mm, cells.astype(np.int64))
        mesh.point_data["iir"] = self.iir.astype(np.float32)
        mesh.point_data["tissue"] = self.classes.astype(np.int32)
        mesh.point_data["has_wall"] = self.has_wall.astype(np.uint8)
        mesh.save(str(path), binary=True)


def vertex_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """A third of the area of the triangles around each vertex (mm²)."""
    x = points[triangles]
    areas = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
    out = np.zeros(len(points))
    for corner in range(3):
        np.add.at(out, triangles[:, corner], areas / 3.0)
    return out


def surface_fibrosis(
    lge: ImageVolume,
    blood_pool: np.ndarray,
    wall: np.ndarray | None,
    blood_mean: float,
    settings,
) -> SurfaceFibrosis:
    """Steps 1-4 of the module docstring on arrays on ``lge``'s grid."""
    points, triangles = mask_surface(blood_pool, lge.affine)
    normals = vertex_normals(points, triangles)
    band = tuple(float(b) for b in settings.surface_band_mm)
    maximum = sample_along_normals(
        np.asarray(lge.array, dtype=np.float64),
        lge.affine,
        points,
        normals,
        band_mm=band,
        step_mm=settings.surface_step_mm,
        reduce="max",
        # cubic spline: trilinear samples never exceed their voxels, so the peak of a wall
        # thinner than the slice is read low (on 1.5 x 1.5 x 2.5 mm grids: -1.5 points mean,
        # -3.3 worst over 80 phantoms, against -0.9 / -2.4 cubic; data_samples/README.md)
        order=3,
    )
    iir = maximum / blood_mean
    if wall is None:
        has_wall = np.isfinite(iir)
    else:
        # Wall within the band (nearest-voxel samples of the mask).
        wall_seen = sample_along_normals(
            wall.astype(np.float64),
            lge.affine,
            points,
            normals,
            band_mm=(band[0], band[1]),
            step_mm=settings.surface_step_mm,
            reduce="max",
            order=0,
        )
        has_wall = np.nan_to_num(wall_seen) > 0.5
    has_wall &= np.isfinite(iir)
    classes = np.zeros(len(points), dtype=np.uint8)
    classes[has_wall] = HEALTHY
    classes[has_wall & (iir >= settings.fibrosis_iir)] = BORDER_ZONE
    classes[has_wall & (iir >= settings.dense_iir)] = DENSE_SCAR
    return SurfaceFibrosis(
        points_mm=points,
        triangles=triangles,
        iir=np.nan_to_num(iir),
        classes=classes,
        area_mm2=vertex_areas(points, triangles),
        has_wall=has_wall,
    )


def segment_surface(
    lge: ImageVolume, wall: ImageVolume | None, settings, blood: ImageVolume | None = None
):
    """The ``iir-surface`` method: a :class:`~.classify.Segmentation` with the surface."""
    from scipy.spatial import cKDTree

    from cardiotwin.pipeline.segmentation.classify import (
        LABEL_NAMES,
        Segmentation,
        _settings_record,
        grid_record,
    )

    if wall is not None:
        wall_mask, blood_mask = check_inputs(lge, wall, blood)
    else:
        if blood is None:
            raise ImageError("iir-surface needs the blood pool (--blood) or a wall mask (--wall)")
        check_volume(lge)
        check_volume(blood)
        check_same_grid(lge, blood)
        check_is_mask(blood, "blood-pool")
        wall_mask, blood_mask = None, as_mask(blood)
    spacing = lge.spacing_mm
    if blood_mask is None:
        blood_pool = blood_pool_from_wall(wall_mask, spacing)
        source = "cavity enclosed by the wall mask"
    else:
        blood_pool = blood_mask
        source = "the given blood-pool mask"  # its path can name the patient
    if np.count_nonzero(blood_pool) < MIN_WALL_VOXELS:
        where = blood.source if blood is not None else wall.source
        raise ImageError(
            f"{where}: the blood pool has only {np.count_nonzero(blood_pool)} voxels, too few "
            "to build the endocardial surface. Pass the atrium's blood pool as --blood MASK."
        )
    blood_stats = thresholds.blood_reference(
        lge,
        blood_pool,
        settings.blood_erode_voxels,
        wall.source if wall is not None else "",
        None if blood is None else blood.source,
    )
    result = surface_fibrosis(lge, blood_pool, wall_mask, blood_stats["mean_intensity"], settings)
    counted = result.has_wall
    area = result.area_mm2
    total = float(area[counted].sum())
    if total <= 0:
        raise ImageError(
            f"{(wall or blood).source}: no part of the endocardial surface has wall within "
            f"{list(settings.surface_band_mm)} mm along its normal. Check that the wall and "
            "blood masks belong to this image."
        )
    fibrosis = float(area[counted & (result.classes >= BORDER_ZONE)].sum()) / total * 100
    dense = float(area[counted & (result.classes == DENSE_SCAR)].sum()) / total * 100

    labels = np.zeros(lge.shape, dtype=np.uint8)
    if wall_mask is not None and counted.any():
        tree = cKDTree(result.points_mm[counted])
        ijk = np.argwhere(wall_mask)
        centres = ijk @ lge.affine[:3, :3].T + lge.affine[:3, 3]
        _, nearest = tree.query(centres)
        labels[tuple(ijk.T)] = result.classes[counted][nearest]
    report = {
        "method": "iir-surface",
        "blood_pool": {**blood_stats, "source": source},
        "thresholds": {
            **thresholds.iir_thresholds(blood_stats, settings),
            "rule": f"per vertex: maximum LGE along the normal over "
            f"{list(settings.surface_band_mm)} mm / mean blood pool; fibrosis IIR >= "
            f"{settings.fibrosis_iir:g}, dense >= {settings.dense_iir:g}",
        },
        "surface": {
            "vertices": int(len(result.points_mm)),
            "vertices_with_wall": int(np.count_nonzero(counted)),
            "area_with_wall_mm2": round(total, 1),
            "band_mm": list(settings.surface_band_mm),
            "step_mm": settings.surface_step_mm,
            "reduce": "max",
        },
        "fibrosis_percent": fibrosis,
        "dense_fibrosis_percent": dense,
        "utah_stage": utah_stage(fibrosis),
        "settings": _settings_record(settings),
        "blood_pool_voxels": int(np.count_nonzero(blood_pool)),
        **label_statistics(labels, lge.affine),
        "label_map": "each wall voxel takes the class of the nearest surface vertex with wall",
        "labels": LABEL_NAMES,
        "grid": grid_record(lge),
    }
    return Segmentation(ImageVolume(labels, lge.affine.copy(), "labels"), report, result)
