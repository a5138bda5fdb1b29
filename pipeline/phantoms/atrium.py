"""``la-fibrosis``: a left atrium with patchy fibrosis, on a 3-D LGE grid.

Anatomy (local frame: the body's left, posterior and superior axes): an ellipsoidal cavity
of 90-150 ml (an AF patient's LA) inside a 2-3 mm wall, four pulmonary-vein stubs (lumen
10-13 mm) and a mitral opening (24-28 mm). Fibrosis is the top ``fibrosis_percent`` of a
smooth random field (patches of ~5-20 mm, the scale of atrial LGE enhancement) over the
wall; the top :data:`DENSE_SHARE` of the fibrotic part is dense. The thresholds of the field
are set once per seed on a 1 mm reference sampling of the wall, so the burden does not
depend on the acquisition grid.

Tissue values are drawn per seed (:func:`.contrast.draw_atrium_contrast`); the wall, blood
and surroundings have a few % of smooth texture. Atrial LGE is a 3-D acquisition: the
default grid is 1.25 mm isotropic.

The truth gives the fibrosis % three ways: of the wall's sub-voxels (the design), of the
wall voxels of the label map, and **of the endocardial surface** (Utah / CemrgApp measure
it there): the true blood-pool surface (marching cubes of the analytic cavity on a 1 mm
grid) where wall lies beneath, each vertex fibrotic when the wall under it (along the normal)
is fibrotic at any depth (the quantity a maximum projection through the wall measures),
area-weighted; the mid-wall version is recorded too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.phantoms.acquisition import (
    Acquisition,
    Fine,
    PhantomError,
    RandomField,
    acquire,
    acquisition_grid,
    acquisition_record,
    box_of_points,
    random_tilt,
    to_list,
    unit,
)
from cardiotwin.pipeline.phantoms.contrast import AtriumContrast, draw_atrium_contrast

#: Pulmonary-vein directions in the atrial frame (left, posterior, superior).
VEIN_DIRECTIONS = {
    "LSPV": (0.70, 0.55, 0.45),
    "LIPV": (0.75, 0.55, -0.35),
    "RSPV": (-0.70, 0.55, 0.45),
    "RIPV": (-0.75, 0.55, -0.35),
}
MITRAL_DIRECTION = (0.25, -0.70, -0.65)

#: Smoothing (Gaussian sigma, mm) of the random field whose top fraction is fibrotic:
#: patches of roughly 5-20 mm, the scale of the enhancement seen in atrial LGE.
FIBROSIS_PATCH_SIGMA_MM = 5.0

#: Volume of the body's cavity (ml, veins excluded), drawn uniformly: the LA of patients
#: referred for AF ablation, 118 ± 42 ml by LGE-CMR (Chrispin et al. 2016, Europace 19:371;
#: 179 patients). A normal LA (about 50 ml) is too small for the wavelength of AF-remodelled
#: tissue (benchmarks/RESULTS.md, "Atria: a rotor needs room").
LA_VOLUME_ML = (90.0, 150.0)

#: Share of the fibrotic wall that is dense scar (label 3) in la-fibrosis.
DENSE_SHARE = 0.4

#: Default acquisition of atrial LGE: 3-D, 1.25 mm isotropic.
ATRIUM_SPACING_MM = (1.25, 1.25, 1.25)

#: Texture amplitudes (relative): wall, blood, surroundings.
TEXTURE = {"wall": 0.05, "blood": 0.03, "surroundings": 0.10}


def _inside_ellipsoid(x, y, z, semi_axes) -> np.ndarray:
    return (x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2 <= 1


@dataclass(frozen=True)
class AtriumDesign:
    """A left atrium in its local frame (mm): columns of ``frame`` are the body's left,
    posterior and superior axes in scanner RAS; ``centre`` is the body centre (scanner mm).

    Body: ellipsoidal cavity with ``semi_axes`` inside a ``wall_mm`` shell. Veins: name ->
    (unit direction, lumen radius, far end, ostium distance), all from the centre (mm).
    The mitral opening removes the wall within ``mitral_radius`` of its axis.
    """

    semi_axes: np.ndarray
    wall_mm: float
    frame: np.ndarray
    centre: np.ndarray
    veins: dict
    mitral_direction: np.ndarray
    mitral_radius: float
    slice_normal: np.ndarray
    in_plane_angle: float

    def scanner(self, local_point: np.ndarray) -> np.ndarray:
        return np.asarray(local_point) @ self.frame.T + self.centre

    def local(self, scanner_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(scanner_mm) - self.centre) @ self.frame

    def half_box_mm(self) -> float:
        """Half the side of a centred cube (mm) that holds the whole atrium."""
        body = float((self.semi_axes + self.wall_mm).max())
        veins = max(v["end"] + v["radius"] + self.wall_mm for v in self.veins.values())
        return max(body, veins)


def draw_atrium(rng: np.random.Generator) -> AtriumDesign:
    """Random adult left atrium of an AF patient (:data:`LA_VOLUME_ML`), its veins, mitral
    opening and axial stack."""
    shape = np.array([rng.uniform(25, 29), rng.uniform(18, 22), rng.uniform(20, 24)])
    volume_mm3 = 1000.0 * rng.uniform(*LA_VOLUME_ML)
    semi_axes = shape * (volume_mm3 / (4.0 / 3.0 * math.pi * float(np.prod(shape)))) ** (1 / 3)
    wall_mm = rng.uniform(2.0, 3.0)
    # Local (left, posterior, superior) -> scanner RAS (+x right, +y anterior, +z up).
    frame = random_tilt(rng, 12.0) @ np.diag([-1.0, -1.0, 1.0])
    centre = np.array([-5.0, -25.0, 15.0]) + rng.uniform(-10, 10, size=3)
    veins = {}
    for name, direction in VEIN_DIRECTIONS.items():
        d = random_tilt(rng, 8.0) @ unit(direction)
        to_surface = 1.0 / math.sqrt(float(np.sum((d / semi_axes) ** 2)))
        veins[name] = {
            "direction": d,
            "radius": rng.uniform(5.0, 6.5),
            "end": to_surface + wall_mm + rng.uniform(12.0, 18.0),
            "ostium": to_surface,
        }
    return AtriumDesign(
        semi_axes=semi_axes,
        wall_mm=wall_mm,
        frame=frame,
        centre=centre,
        veins=veins,
        mitral_direction=random_tilt(rng, 8.0) @ unit(MITRAL_DIRECTION),
        mitral_radius=rng.uniform(12.0, 14.0),
        slice_normal=random_tilt(rng, 5.0) @ np.array([0.0, 0.0, 1.0]),
        in_plane_angle=rng.uniform(-0.2, 0.2),
    )


def atrium_outline(design: AtriumDesign) -> np.ndarray:
    """Points (scanner mm) on the epicardial body and the vein tips, for the field of view."""
    epi_axes = design.semi_axes + design.wall_mm
    theta, z = np.meshgrid(np.linspace(0, 2 * np.pi, 36), np.linspace(-1, 1, 19))
    ring = np.sqrt(1 - z**2)
    points = [
        np.stack([ring * np.cos(theta), ring * np.sin(theta), z], -1).reshape(-1, 3) * epi_axes
    ]
    for vein in design.veins.values():
        tip = vein["direction"] * vein["end"]
        points.append(tip + (vein["radius"] + design.wall_mm) * np.eye(3))
        points.append(tip - (vein["radius"] + design.wall_mm) * np.eye(3))
    return design.scanner(np.concatenate(points))


def atrium_masks(x, y, z, design: AtriumDesign) -> tuple[np.ndarray, np.ndarray]:
    """(wall, lumen) boolean masks of points at local coordinates (x, y, z) mm."""
    cavity = _inside_ellipsoid(x, y, z, design.semi_axes)
    lumen = cavity.copy()
    wall = _inside_ellipsoid(x, y, z, design.semi_axes + design.wall_mm) & ~cavity
    radius2 = x * x + y * y + z * z
    for vein in design.veins.values():
        d = vein["direction"]
        along = x * d[0] + y * d[1] + z * d[2]
        radial = np.sqrt(np.maximum(radius2 - along * along, 0))
        in_segment = (along >= 0) & (along <= vein["end"])
        lumen |= in_segment & (radial < vein["radius"])
        wall |= in_segment & (radial < vein["radius"] + design.wall_mm) & ~cavity
    wall &= ~lumen
    m = design.mitral_direction
    along_mitral = x * m[0] + y * m[1] + z * m[2]
    wall &= ~((along_mitral > 0) & (radius2 - along_mitral**2 < design.mitral_radius**2))
    return wall, lumen


class AtriumAnatomy:
    """``sample(points_mm) -> (classes, signal)`` of one atrial phantom."""

    def __init__(
        self,
        design: AtriumDesign,
        contrast: AtriumContrast,
        texture_rng: np.random.Generator,
        fibrosis_percent: float,
    ):
        self.design = design
        self.contrast = contrast
        half = design.half_box_mm() + 5.0
        low, high = np.full(3, -half), np.full(3, half)
        self.fibrosis_field = RandomField(texture_rng, low, high, 1.0, FIBROSIS_PATCH_SIGMA_MM)
        self.wall_texture = RandomField(texture_rng, low, high, 1.0, 1.5)
        self.blood_texture = RandomField(texture_rng, low, high, 2.0, 5.0)
        self.surroundings_texture = RandomField(texture_rng, low, high, 2.0, 4.0)
        # Fibrosis thresholds from a 1 mm reference sampling of the wall (grid independent).
        axis = np.arange(-half, half + 1e-9, 1.5, dtype=np.float32)
        xx, yy, zz = np.meshgrid(axis, axis, axis, indexing="ij")
        wall, _ = atrium_masks(xx, yy, zz, design)
        reference = self.fibrosis_field.at(np.stack([xx[wall], yy[wall], zz[wall]], axis=1))
        self.fibrotic_limit = self.dense_limit = np.inf
        if fibrosis_percent > 0:
            self.fibrotic_limit = float(np.quantile(reference, 1 - fibrosis_percent / 100.0))
            self.dense_limit = float(
                np.quantile(reference, 1 - DENSE_SHARE * fibrosis_percent / 100.0)
            )

    def wall_classes(self, local: np.ndarray) -> np.ndarray:
        """Tissue class (1-3) of wall points at local coordinates (n, 3)."""
        values = self.fibrosis_field.at(local)
        classes = np.full(len(local), HEALTHY, dtype=np.uint8)
        classes[values >= self.fibrotic_limit] = BORDER_ZONE
        classes[values >= self.dense_limit] = DENSE_SCAR
        return classes

    def __call__(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = self.design.local(points_mm)
        wall, lumen = atrium_masks(local[:, 0], local[:, 1], local[:, 2], self.design)
        classes = np.zeros(len(points_mm), dtype=np.uint8)
        classes[lumen] = Fine.BLOOD
        classes[wall] = self.wall_classes(local[wall])
        c = self.contrast
        level = np.array([c.surroundings, c.healthy, c.fibrosis, c.dense, 1.0], np.float32)
        signal = level[classes]
        amplitude = np.where(
            wall, TEXTURE["wall"], np.where(lumen, TEXTURE["blood"], TEXTURE["surroundings"])
        ).astype(np.float32)
        texture = np.where(
            wall,
            self.wall_texture.at(local),
            np.where(lumen, self.blood_texture.at(local), self.surroundings_texture.at(local)),
        )
        return classes, signal * (1.0 + amplitude * texture)

    def surface_truth(self, spacing_mm: float = 1.0) -> dict:
        """Fibrosis % of the true endocardial surface (see the module docstring)."""
        from cardiotwin.meshing.surfaces import mask_surface, vertex_normals
        from cardiotwin.pipeline.segmentation.surface import vertex_areas

        design = self.design
        half = design.half_box_mm() + 3.0
        axis = np.arange(-half, half + 1e-9, spacing_mm, dtype=np.float32)
        xx, yy, zz = np.meshgrid(axis, axis, axis, indexing="ij")
        _, lumen = atrium_masks(xx, yy, zz, design)
        del xx, yy, zz
        affine = np.eye(4)
        affine[:3, :3] *= spacing_mm
        affine[:3, 3] = -half
        points, triangles = mask_surface(lumen, affine)
        normals = vertex_normals(points, triangles)
        area = vertex_areas(points, triangles)
        has_wall = np.zeros(len(points), dtype=bool)
        classes = np.zeros(len(points), dtype=np.uint8)
        mid_classes = np.zeros(len(points), dtype=np.uint8)
        for depth in np.linspace(0.1, 0.9, 9):
            inside = points + depth * design.wall_mm * normals
            wall, _ = atrium_masks(inside[:, 0], inside[:, 1], inside[:, 2], design)
            found = np.zeros(len(points), dtype=np.uint8)
            found[wall] = self.wall_classes(inside[wall])
            has_wall |= wall
            classes = np.maximum(classes, found)
            if abs(depth - 0.5) < 1e-9:
                mid_classes = found
        total = area[has_wall].sum()

        def percent(selected: np.ndarray) -> float:
            return round(float(100.0 * area[has_wall & selected].sum() / total), 4)

        return {
            "true_percent_surface": percent(classes >= BORDER_ZONE),
            "true_dense_percent_surface": percent(classes == DENSE_SCAR),
            "true_percent_surface_mid_wall": percent(mid_classes >= BORDER_ZONE),
            "surface_area_with_wall_mm2": round(float(total), 1),
            "surface_rule": "true blood-pool surface (1 mm marching cubes); a vertex counts where "
            "there is wall along its normal, and is fibrotic where the wall is fibrotic at "
            "any depth (10-90 % of the wall thickness: what a maximum projection through the "
            "wall measures), area-weighted; _mid_wall: the class at mid-wall only",
        }


def atrium_record(design: AtriumDesign) -> dict:
    """The atrial anatomy in scanner mm, for truth.json."""
    m = design.mitral_direction
    return {
        "centre_mm": to_list(design.centre),
        "endo_semi_axes_mm": to_list(design.semi_axes),
        "body_cavity_volume_ml": round(
            4.0 / 3.0 * math.pi * float(np.prod(design.semi_axes)) / 1000, 2
        ),
        "axes_units": to_list(design.frame.T, 5),
        "axes_description": "rows: the body's left, posterior and superior axes (scanner RAS "
        "unit vectors) along which endo_semi_axes_mm are measured",
        "wall_thickness_mm": round(design.wall_mm, 3),
        "pulmonary_veins": {
            name: {
                "ostium_mm": to_list(design.scanner(vein["direction"] * vein["ostium"])),
                "direction_unit": to_list(design.frame @ vein["direction"], 5),
                "lumen_diameter_mm": round(2 * vein["radius"], 3),
                "stub_length_mm": round(vein["end"] - vein["ostium"], 3),
            }
            for name, vein in design.veins.items()
        },
        "mitral_opening": {
            "centre_mm": to_list(
                design.scanner(m / math.sqrt(float(np.sum((m / design.semi_axes) ** 2))))
            ),
            "direction_unit": to_list(design.frame @ m, 5),
            "diameter_mm": round(2 * design.mitral_radius, 3),
        },
    }


def make_atrium(
    seed: int,
    *,
    fibrosis_percent: float = 20.0,
    acquisition: Acquisition | None = None,
    wall_mask: str = "true",
    mask_model=None,
):
    """An ``la-fibrosis`` phantom: thin-walled atrium with patchy fibrosis.

    ``acquisition`` defaults to :data:`ATRIUM_SPACING_MM`; ``wall_mask="drawn"`` gives the
    wall and blood-pool masks contour errors (:mod:`.masks`).
    """
    from cardiotwin.pipeline.images import ImageVolume
    from cardiotwin.pipeline.phantoms.masks import DrawnMaskModel, draw_masks, mask_agreement
    from cardiotwin.pipeline.phantoms.output import LABELS_RECORD, UNITS_RECORD, Phantom
    from cardiotwin.pipeline.segmentation.metrics import label_statistics, utah_stage

    acquisition = acquisition or Acquisition(spacing_mm=ATRIUM_SPACING_MM)
    acquisition.validate()
    if not (math.isfinite(fibrosis_percent) and 0.0 <= fibrosis_percent <= 80.0):
        raise PhantomError(f"fibrosis percent must be in [0, 80], got {fibrosis_percent}; try 20")
    if wall_mask not in ("drawn", "true"):
        raise PhantomError(f"wall mask must be 'drawn' or 'true', got {wall_mask!r}")
    streams = np.random.SeedSequence(seed).spawn(6)
    anatomy_rng, contrast_rng, texture_rng, noise_rng, _, mask_rng = (
        np.random.default_rng(s) for s in streams
    )
    design = draw_atrium(anatomy_rng)
    contrast = draw_atrium_contrast(contrast_rng)
    anatomy = AtriumAnatomy(design, contrast, texture_rng, fibrosis_percent)
    spacing = np.asarray(acquisition.spacing_mm, dtype=float)
    outline = atrium_outline(design)
    affine, shape = acquisition_grid(
        outline,
        design.slice_normal,
        design.in_plane_angle,
        spacing,
        np.array([20.0, 20.0, max(10.0, 0.6 * spacing[2])]),
    )
    box = box_of_points(affine, shape, outline)
    acquired = acquire(anatomy, affine, shape, box, acquisition, noise_rng, noise_rng)
    labels = acquired.labels
    wall_true, blood_true = acquired.wall.astype(bool), acquired.blood.astype(bool)
    wall, blood = wall_true, blood_true
    mask_info: dict = {"kind": wall_mask}
    if wall_mask == "drawn":
        model = mask_model or DrawnMaskModel()
        wall, blood = draw_masks(wall_true, blood_true, spacing, mask_rng, model)
        mask_info.update(model.record())
    mask_info.update(mask_agreement(wall, wall_true))
    mask_info["blood"] = mask_agreement(blood, blood_true)

    volumes = acquired.fine_volumes_ml
    fine_wall = volumes["healthy"] + volumes["border_zone"] + volumes["dense_scar"]
    fine_percent = 100.0 * (volumes["border_zone"] + volumes["dense_scar"]) / max(fine_wall, 1e-9)
    label_percent = (
        100.0 * np.count_nonzero(labels >= BORDER_ZONE) / max(1, np.count_nonzero(labels))
    )
    surface = anatomy.surface_truth()
    truth = {
        "kind": "la-fibrosis",
        "seed": int(seed),
        "acquisition": acquisition_record(acquisition, affine, shape, acquired.info),
        "contrast": contrast.record(),
        "signal_relative_to_blood": contrast.record()["signal_relative_to_blood"],
        "labels": LABELS_RECORD,
        "units": UNITS_RECORD,
        "atrium": atrium_record(design),
        "wall_mask": mask_info,
        "fibrosis": {
            "requested_percent": float(fibrosis_percent),
            "true_percent_fine_grid": round(float(fine_percent), 4),
            "true_percent_label_map": round(float(label_percent), 4),
            **surface,
            "utah_stage_surface": utah_stage(surface["true_percent_surface"]),
            "utah_stage_fine_grid": utah_stage(fine_percent),
            "dense_share_of_fibrosis": DENSE_SHARE,
            "patch_sigma_mm": FIBROSIS_PATCH_SIGMA_MM,
            "description": "percent of the wall that is label 2 or 3: of the wall's "
            "sub-voxels (fine grid), of the wall voxels of the label map (also "
            "fibrosis_percent, utah_stage: what a volumetric segmentation of lge.nii.gz is "
            "compared with), and of the endocardial surface (what the surface method, "
            "Utah / CemrgApp, is compared with)",
        },
        "fibrosis_percent": round(float(label_percent), 4),
        "utah_stage": utah_stage(label_percent),
        **label_statistics(labels, affine),
        "designed_fine_grid_ml": volumes,
    }
    return Phantom(
        lge=ImageVolume(acquired.lge, affine, "lge.nii.gz"),
        wall=ImageVolume(wall.astype(np.uint8), affine, "wall.nii.gz"),
        truth_labels=ImageVolume(labels, affine, "truth_labels.nii.gz"),
        blood=ImageVolume(blood.astype(np.uint8), affine, "blood.nii.gz"),
        truth=truth,
    )
