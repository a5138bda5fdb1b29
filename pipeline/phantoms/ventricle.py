"""``lv-infarct`` and ``lv-healthy``: a left ventricle in a chest, as a short-axis LGE stack.

Anatomy (local frame: ``u`` anterior, ``v`` lateral, ``w`` along the long axis towards the
base; angle ``phi`` from anterior towards lateral, the septum at −90°):

- **LV**: a truncated ellipsoidal shell (~50 mm cavity, 82-90 mm long, 9-11 mm wall, thinner
  apex). Its myocardium, septum included, is the wall mask.
- **RV**: a crescent against the septum (the RV cavity is an ellipsoid outside the LV
  epicardium, its free wall 3-5 mm thick) with its own bright blood pool, from the base to
  ~70 % of the LV length. Not in the wall mask.
- **Papillary muscles** (anterolateral and posteromedial, 8-12 mm thick, 20-28 mm long) and
  **trabeculation** (muscle strands in a 2-4 mm band inside the endocardium) in the LV blood
  pool. Not in the wall mask (as in clinical LV contours).
- **Chest**: soft tissue, two lungs and air around it; the field of view reaches 45 mm past
  the heart in-plane.
- **Texture**: the tissue's gadolinium partition and native T1 vary smoothly (1.5 mm) by a few
  %, blood by 3 % (5 mm), soft tissue by 10 %; the border zone's fibrotic fraction varies
  by ±0.06 (SD, 2 mm) around its mean (0.28-0.38 by seed), within 0.18-0.48.
- **Infarct** (``lv-infarct`` only): :mod:`.infarct` (two transmural dense lobes, a
  border-zone isthmus between them, a patchy rim; transmural, subendocardial or thinned by
  seed); ``lv-healthy`` is the same ventricle (same seed: same anatomy, contrast and noise)
  without it.
- **Contrast**: :mod:`.contrast` (inversion-recovery signal from T1 and partition
  coefficients drawn per seed).

Ventricular short-axis stacks slice across the long axis, so the isthmus runs along the long
axis (through several slices) and its width lies in the image plane, where 1.5 mm pixels
resolve it; a channel lying inside one short-axis plane would have its width across an 8 mm
slice and vanish in the partial volume.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.phantoms import infarct as infarct_module
from cardiotwin.pipeline.phantoms.acquisition import (
    Fine,
    RandomField,
    random_tilt,
    to_list,
    unit,
)
from cardiotwin.pipeline.phantoms.contrast import VentricleContrast

log = logging.getLogger(__name__)
#: Texture amplitudes: partition coefficient (absolute), native R1 (relative), blood,
#: soft tissue (relative), border-zone fibrotic fraction (absolute).
TEXTURE = {"partition": 0.012, "native": 0.015, "blood": 0.03, "soft": 0.10, "bz": 0.06}


@dataclass(frozen=True)
class VentricleGeometry:
    """A truncated ellipsoidal shell in its local frame (mm).

    Local frame: origin at the ellipsoids' centre, ``w`` along the long axis towards the
    base, ``u`` towards the anterior wall, ``v`` completing an orthonormal frame. The wall
    is inside the epicardial and outside the endocardial ellipsoid, below ``w_base``.
    """

    a_endo: float
    c_endo: float
    a_epi: float
    c_epi: float
    w_base: float

    def radius(self, depth: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Radius (mm) of the ellipsoid at transmural ``depth`` (0 endo, 1 epi) at height ``w``."""
        a = self.a_endo + depth * (self.a_epi - self.a_endo)
        c = self.c_endo + depth * (self.c_epi - self.c_endo)
        return a * np.sqrt(np.clip(1.0 - (w / c) ** 2, 0.0, None))

    def mid_radius(self, w: np.ndarray) -> np.ndarray:
        """Mid-wall radius (mm) at height ``w``."""
        return self.radius(np.asarray(0.5), np.asarray(w))

    def depth(self, rho: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Transmural depth (0 on the endocardium, 1 on the epicardium) of wall points.

        The member of the family of ellipsoids interpolated between endo- and epicardium
        that passes through the point (Newton iterations), clipped to [0, 1].
        """
        da, dc = self.a_epi - self.a_endo, self.c_epi - self.c_endo
        rho2, w2 = rho * rho, w * w
        lam = np.full(np.shape(rho), 0.5)
        for _ in range(8):
            a = self.a_endo + lam * da
            c = self.c_endo + lam * dc
            g = rho2 / a**2 + w2 / c**2 - 1.0
            dg = -2.0 * rho2 * da / a**3 - 2.0 * w2 * dc / c**3
            lam = np.clip(lam - g / dg, -0.5, 1.5)
        return np.clip(lam, 0.0, 1.0)

    def meridian(self) -> tuple[np.ndarray, np.ndarray]:
        """(w, s): heights and the mid-wall meridian arc length from the apex (mm)."""
        c_mid = 0.5 * (self.c_endo + self.c_epi)
        w = np.linspace(-c_mid, self.w_base, 4001)
        r = self.mid_radius(w)
        s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(w), np.diff(r)))])
        return w, s


@dataclass(frozen=True)
class RightVentricle:
    """RV cavity ellipsoid (local frame, mm) outside the LV epicardium, and its wall."""

    centre: np.ndarray
    semi_axes: np.ndarray
    wall_mm: float


@dataclass(frozen=True)
class Papillary:
    """A papillary muscle: an ellipsoid along the long axis (local frame, mm)."""

    centre: np.ndarray
    radius_mm: float
    half_length_mm: float


@dataclass(frozen=True)
class Chest:
    """Body cross-section (an elliptic cylinder along scanner z) and two lungs (ellipsoids)."""

    body_centre: np.ndarray
    body_semi_axes: np.ndarray
    lung_centres: tuple[np.ndarray, np.ndarray]
    lung_semi_axes: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class VentricleDesign:
    """Everything drawn for one seed (geometry, pose, RV, muscles, chest, infarct)."""

    geometry: VentricleGeometry
    frame: np.ndarray
    origin: np.ndarray
    slice_normal: np.ndarray
    in_plane_angle: float
    rv: RightVentricle
    papillaries: tuple[Papillary, ...]
    trabecular_band_mm: float
    trabecular_fill: float
    chest: Chest
    infarct: infarct_module.InfarctDesign

    def scanner(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local) @ self.frame.T + self.origin

    def local(self, scanner_mm: np.ndarray) -> np.ndarray:
        return (np.asarray(scanner_mm) - self.origin) @ self.frame


def ventricle_frame(apex_direction: np.ndarray) -> np.ndarray:
    """Columns (u anterior, v lateral, w towards the base) in scanner RAS."""
    w_hat = -unit(apex_direction)
    anterior = np.array([0.0, 1.0, 0.0])
    u_hat = unit(anterior - (anterior @ w_hat) * w_hat)
    left = np.array([-1.0, 0.0, 0.0])
    v_hat = left - (left @ w_hat) * w_hat - (left @ u_hat) * u_hat
    return np.stack([u_hat, unit(v_hat), w_hat], axis=1)


def draw_ventricle(rng: np.random.Generator, variant: str) -> VentricleDesign:
    """Random adult LV with RV, muscles, chest and an infarct design; fixed draw order."""
    cavity_radius = rng.uniform(24.0, 26.5)
    wall_mm = rng.uniform(9.0, 11.0)
    long_axis_mm = rng.uniform(82.0, 90.0)
    c_epi = long_axis_mm / 1.35
    geometry = VentricleGeometry(
        a_endo=cavity_radius,
        c_endo=c_epi - 0.8 * wall_mm,  # the apex is thinner than the free wall
        a_epi=cavity_radius + wall_mm,
        c_epi=c_epi,
        w_base=0.35 * c_epi,
    )
    # Apex points left, anterior and inferior in RAS (+x right, +y anterior, +z superior).
    apex_direction = random_tilt(rng, 10.0) @ unit([-0.55, 0.6, -0.58])
    base_centre = np.array([5.0, -15.0, 10.0]) + rng.uniform(-10, 10, size=3)
    frame = ventricle_frame(apex_direction)
    origin = base_centre - geometry.w_base * frame[:, 2]
    slice_normal = random_tilt(rng, 4.0) @ frame[:, 2]
    in_plane_angle = rng.uniform(0, 2 * math.pi)

    a = geometry.a_epi
    rv_length = rng.uniform(0.65, 0.75) * (geometry.c_epi + geometry.w_base)
    rv = RightVentricle(
        centre=np.array([rng.uniform(-4.0, 4.0), -a * rng.uniform(0.45, 0.55), geometry.w_base]),
        semi_axes=np.array(
            [a * rng.uniform(0.95, 1.05), a * 0.5 + rng.uniform(14.0, 20.0), rv_length]
        ),
        wall_mm=rng.uniform(3.0, 5.0),
    )
    papillaries = []
    for angle_deg in (rng.uniform(50.0, 80.0), rng.uniform(150.0, 190.0)):
        radius = rng.uniform(4.0, 6.0)
        half_length = rng.uniform(10.0, 14.0)
        w_centre = -rng.uniform(0.25, 0.40) * geometry.c_endo
        r_wall = geometry.a_endo * math.sqrt(max(0.0, 1 - (w_centre / geometry.c_endo) ** 2))
        r_centre = r_wall - radius + 1.5  # attached to (merged into) the wall
        phi = math.radians(angle_deg)
        papillaries.append(
            Papillary(
                centre=np.array([r_centre * math.cos(phi), r_centre * math.sin(phi), w_centre]),
                radius_mm=radius,
                half_length_mm=half_length,
            )
        )
    trabecular_band = rng.uniform(2.0, 4.0)
    trabecular_fill = rng.uniform(0.25, 0.40)

    heart_centre = origin + frame @ np.array([0.0, -0.2 * a, -0.2 * geometry.c_epi])
    body_centre = heart_centre + np.array([rng.uniform(35.0, 55.0), rng.uniform(-55.0, -40.0), 0.0])
    body_semi = np.array([rng.uniform(150.0, 175.0), rng.uniform(105.0, 125.0)])
    lungs = (
        body_centre + np.array([rng.uniform(70.0, 85.0), rng.uniform(-10.0, 5.0), 0.0]),
        body_centre + np.array([-rng.uniform(85.0, 100.0), rng.uniform(-20.0, -5.0), 0.0]),
    )
    lung_axes = (
        np.array([rng.uniform(55.0, 65.0), rng.uniform(75.0, 90.0), 160.0]),
        np.array([rng.uniform(50.0, 60.0), rng.uniform(70.0, 85.0), 160.0]),
    )
    chest = Chest(body_centre, body_semi, lungs, lung_axes)
    infarct = infarct_module.draw_infarct(rng, variant)
    return VentricleDesign(
        geometry=geometry,
        frame=frame,
        origin=origin,
        slice_normal=slice_normal,
        in_plane_angle=in_plane_angle,
        rv=rv,
        papillaries=tuple(papillaries),
        trabecular_band_mm=trabecular_band,
        trabecular_fill=trabecular_fill,
        chest=chest,
        infarct=infarct,
    )


def outline_points(design: VentricleDesign, rv: bool = True) -> np.ndarray:
    """Points (scanner mm) on the LV (and RV) epicardium, for the field of view."""
    g = design.geometry
    theta = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    w = np.linspace(-g.c_epi, g.w_base, 40)
    radius = g.a_epi * np.sqrt(np.clip(1 - (w / g.c_epi) ** 2, 0, None))
    tt, ww = np.meshgrid(theta, w)
    rr = np.broadcast_to(radius[:, None], tt.shape)
    points = [np.stack([rr * np.cos(tt), rr * np.sin(tt), ww], axis=-1).reshape(-1, 3)]
    if rv:
        axes = design.rv.semi_axes + design.rv.wall_mm
        z = np.linspace(-1.0, 0.0, 20)
        ring = np.sqrt(1 - z**2)
        tt, zz = np.meshgrid(theta, z)
        rr = np.broadcast_to(ring[:, None], tt.shape)
        unit_points = np.stack([rr * np.cos(tt), rr * np.sin(tt), zz], axis=-1).reshape(-1, 3)
        points.append(unit_points * axes + design.rv.centre)
    return design.scanner(np.concatenate(points))


class VentricleAnatomy:
    """``sample(points_mm) -> (classes, signal)`` of one ventricle phantom (see the module)."""

    def __init__(
        self,
        design: VentricleDesign,
        contrast: VentricleContrast,
        texture_rng: np.random.Generator,
        infarct_map: infarct_module.InfarctMap | None,
    ):
        self.design = design
        self.contrast = contrast
        self.infarct_map = infarct_map
        g = design.geometry
        self._meridian_w, self._meridian_s = g.meridian()
        self.s0 = float(np.interp(design.infarct.w0, self._meridian_w, self._meridian_s))
        rv_extent = design.rv.centre + design.rv.semi_axes + design.rv.wall_mm
        low = np.array([-g.a_epi - 5, min(-g.a_epi, design.rv.centre[1] - rv_extent[1]) - 5])
        low = np.concatenate([low, [-g.c_epi - 5]])
        high = np.array([g.a_epi + 5, g.a_epi + 5, g.w_base + 5])
        self.fields = {
            "partition": RandomField(texture_rng, low, high, 1.0, 1.5),
            "native": RandomField(texture_rng, low, high, 1.0, 1.5),
            "bz": RandomField(texture_rng, low, high, 1.0, 2.0),
            "blood": RandomField(texture_rng, low, high, 2.0, 5.0),
            "soft": RandomField(texture_rng, low, high, 3.0, 6.0),
            "trabeculae": RandomField(
                texture_rng,
                np.array([-g.a_endo, -g.a_endo, -g.c_endo]) - 1,
                np.array([g.a_endo, g.a_endo, g.w_base]) + 1,
                0.5,
                0.6,
            ),
        }

    # --- map coordinates -------------------------------------------------------------

    def map_coordinates(self, phi: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) on the infarct map: circumferential and meridian arc length at mid-wall."""
        d_phi = np.angle(np.exp(1j * (phi - self.design.infarct.phi0)))
        x = d_phi * self.design.geometry.mid_radius(w)
        y = np.interp(w, self._meridian_w, self._meridian_s) - self.s0
        return x, y

    def height_at(self, y: np.ndarray) -> np.ndarray:
        """Height ``w`` (mm) at map coordinate ``y``."""
        return np.interp(np.asarray(y) + self.s0, self._meridian_s, self._meridian_w)

    def map_point(self, x: float, y: float, depth: float = 0.5) -> np.ndarray:
        """Scanner mm of the wall point at map (x, y) and fractional depth of the wall there."""
        g = self.design.geometry
        w = float(self.height_at(np.asarray(y)))
        phi = self.design.infarct.phi0 + x / float(g.mid_radius(np.asarray(w)))
        thinning = 0.0
        if self.infarct_map is not None:
            thinning = float(self.infarct_map.thinning_at(np.asarray(x), np.asarray(y)))
        radius = float(g.radius(np.asarray(depth * (1.0 - thinning)), np.asarray(w)))
        return self.design.scanner(np.array([radius * math.cos(phi), radius * math.sin(phi), w]))

    # --- sampling ---------------------------------------------------------------------

    def __call__(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        design, g, contrast = self.design, self.design.geometry, self.contrast
        local = design.local(points_mm)
        u, v, w = local[:, 0], local[:, 1], local[:, 2]
        rho2 = u * u + v * v
        below_base = w <= g.w_base
        inside_endo = below_base & (rho2 / g.a_endo**2 + (w / g.c_endo) ** 2 <= 1)
        inside_epi = below_base & (rho2 / g.a_epi**2 + (w / g.c_epi) ** 2 <= 1)

        classes = np.zeros(len(points_mm), dtype=np.uint8)
        fibrotic = np.zeros(len(points_mm), dtype=np.float32)

        # LV wall: depth, infarct, thinning.
        wall = np.flatnonzero(inside_epi & ~inside_endo)
        if wall.size:
            rho = np.sqrt(rho2[wall])
            depth = g.depth(rho, w[wall])
            wall_classes = np.full(wall.size, HEALTHY, dtype=np.uint8)
            if self.infarct_map is not None:
                x, y = self.map_coordinates(np.arctan2(v[wall], u[wall]), w[wall])
                thinning = self.infarct_map.thinning_at(x, y)
                kept = depth <= 1.0 - thinning
                depth = np.where(kept, depth / np.maximum(1.0 - thinning, 1e-6), 1.0)
                wall_classes = self.infarct_map.classify(x, y, depth)
                wall_classes[~kept] = Fine.OUTSIDE
                bz = wall_classes == BORDER_ZONE
                f = design.infarct.bz_fibrosis_mean + TEXTURE["bz"] * self.fields["bz"].at(
                    local[wall[bz]]
                )
                fibrotic[wall[bz]] = np.clip(f, 0.18, 0.48)
                fibrotic[wall[wall_classes == DENSE_SCAR]] = 1.0
            classes[wall] = wall_classes

        # LV cavity: blood, papillary muscles, trabeculae.
        cavity = np.flatnonzero(inside_endo)
        if cavity.size:
            cavity_classes = np.full(cavity.size, Fine.BLOOD, dtype=np.uint8)
            for muscle in design.papillaries:
                d = local[cavity] - muscle.centre
                inside = (d[:, 0] ** 2 + d[:, 1] ** 2) / muscle.radius_mm**2 + (
                    d[:, 2] / muscle.half_length_mm
                ) ** 2 <= 1
                cavity_classes[inside] = Fine.OTHER_MUSCLE
            rc2, wc = rho2[cavity], w[cavity]
            f_endo = rc2 / g.a_endo**2 + (wc / g.c_endo) ** 2
            gradient = 2.0 * np.sqrt(rc2 / g.a_endo**4 + wc**2 / g.c_endo**4)
            below_endo_mm = (1.0 - f_endo) / np.maximum(gradient, 1e-9)
            band = below_endo_mm < design.trabecular_band_mm
            if band.any():
                # Strands fill trabecular_fill of the band next to the wall, thinning inward.
                share = design.trabecular_fill * (
                    1 - below_endo_mm[band] / design.trabecular_band_mm
                )
                limit = _normal_quantile(1.0 - share)
                strands = self.fields["trabeculae"].at(local[cavity[band]]) > limit
                band_index = np.flatnonzero(band)
                cavity_classes[band_index[strands]] = Fine.OTHER_MUSCLE
            classes[cavity] = cavity_classes

        # RV: cavity and free wall outside the LV.
        rv = design.rv
        d = (local - rv.centre) / rv.semi_axes
        in_rv = below_base & ~inside_epi & (np.einsum("ij,ij->i", d, d) <= 1)
        d = (local - rv.centre) / (rv.semi_axes + rv.wall_mm)
        in_rv_epi = below_base & ~inside_epi & (np.einsum("ij,ij->i", d, d) <= 1)
        classes[in_rv_epi & ~in_rv] = Fine.OTHER_MUSCLE
        classes[in_rv] = Fine.OTHER_BLOOD

        # Signal.
        signal = np.zeros(len(points_mm), dtype=np.float32)
        muscle = np.isin(classes, (HEALTHY, BORDER_ZONE, DENSE_SCAR, Fine.OTHER_MUSCLE))
        if muscle.any():
            at = local[muscle]
            signal[muscle] = contrast.myocardium(
                fibrotic[muscle],
                TEXTURE["partition"] * self.fields["partition"].at(at),
                TEXTURE["native"] * self.fields["native"].at(at),
            )
        blood = np.isin(classes, (Fine.BLOOD, Fine.OTHER_BLOOD))
        if blood.any():
            level = np.where(classes[blood] == Fine.OTHER_BLOOD, contrast.rv_blood_factor, 1.0)
            signal[blood] = level * (1 + TEXTURE["blood"] * self.fields["blood"].at(local[blood]))

        outside = classes == Fine.OUTSIDE
        heart = inside_epi | in_rv_epi
        signal[outside] = self._surroundings(points_mm[outside], local[outside], heart[outside])
        return classes, signal

    def _surroundings(
        self, points_mm: np.ndarray, local: np.ndarray, in_heart: np.ndarray
    ) -> np.ndarray:
        """Signal of air, lung and soft tissue (points outside the heart's chambers and wall)."""
        chest, contrast = self.design.chest, self.contrast
        xy = (points_mm[:, :2] - chest.body_centre[:2]) / chest.body_semi_axes
        in_body = np.einsum("ij,ij->i", xy, xy) <= 1
        # Lungs stop 4 mm short of the heart (pericardium, mediastinal tissue).
        g, rv = self.design.geometry, self.design.rv
        rho2 = local[:, 0] ** 2 + local[:, 1] ** 2
        near_lv = rho2 / (g.a_epi + 4) ** 2 + (local[:, 2] / (g.c_epi + 4)) ** 2 <= 1
        d = (local - rv.centre) / (rv.semi_axes + rv.wall_mm + 4)
        near_heart = in_heart | near_lv | (np.einsum("ij,ij->i", d, d) <= 1)
        in_lung = np.zeros(len(points_mm), dtype=bool)
        for centre, axes in zip(chest.lung_centres, chest.lung_semi_axes, strict=True):
            q = (points_mm - centre) / axes
            in_lung |= np.einsum("ij,ij->i", q, q) <= 1
        in_lung &= in_body & ~near_heart
        soft = contrast.soft_tissue * (1 + TEXTURE["soft"] * self.fields["soft"].at(local))
        return np.where(in_lung, contrast.lung, np.where(in_body, soft, 0.0)).astype(np.float32)


def _normal_quantile(p: np.ndarray) -> np.ndarray:
    """Standard normal quantile (the field is unit-SD Gaussian)."""
    from scipy.special import ndtri

    return ndtri(np.clip(p, 1e-6, 1 - 1e-6))


# ---------------------------------------------------------------------------------------
# Truth records
# ---------------------------------------------------------------------------------------


def ventricle_record(design: VentricleDesign) -> dict:
    """The ``ventricle`` block of truth.json (scanner mm)."""
    g, frame = design.geometry, design.frame
    apex = design.scanner(np.array([0.0, 0.0, -g.c_epi]))
    base_centre = design.scanner(np.array([0.0, 0.0, g.w_base]))
    rv = design.rv
    return {
        "long_axis_unit": to_list(frame[:, 2], 5),
        "apex_mm": to_list(apex),
        "base_centre_mm": to_list(base_centre),
        "long_axis_length_mm": round(float(np.linalg.norm(base_centre - apex)), 3),
        "cavity_diameter_mm": round(2 * g.a_endo, 3),
        "wall_thickness_mm": round(g.a_epi - g.a_endo, 3),
        "apex_wall_thickness_mm": round(g.c_epi - g.c_endo, 3),
        "anterior_unit": to_list(frame[:, 0], 5),
        "lateral_unit": to_list(frame[:, 1], 5),
        "ellipsoid_centre_mm": to_list(design.origin),
        "endo_semi_axes_mm": [round(g.a_endo, 3), round(g.c_endo, 3)],
        "epi_semi_axes_mm": [round(g.a_epi, 3), round(g.c_epi, 3)],
        "description": "truncated ellipsoidal shell; semi-axes are (short, long); the "
        "base is the plane through base_centre_mm normal to long_axis_unit; angles "
        "(phi) are measured from anterior_unit towards lateral_unit (septum at -90 deg)",
        "right_ventricle": {
            "cavity_centre_mm": to_list(design.scanner(rv.centre)),
            "cavity_semi_axes_mm_local": to_list(rv.semi_axes),
            "free_wall_thickness_mm": round(rv.wall_mm, 3),
            "description": "ellipsoidal RV cavity outside the LV epicardium (septum = LV "
            "wall), cut at the LV base; semi-axes along (anterior, lateral, long axis); "
            "not part of the wall mask",
        },
        "papillary_muscles": [
            {
                "centre_mm": to_list(design.scanner(p.centre)),
                "diameter_mm": round(2 * p.radius_mm, 3),
                "length_mm": round(2 * p.half_length_mm, 3),
            }
            for p in design.papillaries
        ],
        "trabeculation": {
            "band_mm": round(design.trabecular_band_mm, 3),
            "fill_at_wall": round(design.trabecular_fill, 3),
        },
    }


def infarct_record(anatomy: VentricleAnatomy, circuit: dict) -> dict:
    """The ``infarct`` and ``isthmus`` blocks of truth.json (scanner mm)."""
    infarct_map = anatomy.infarct_map
    design = infarct_map.design
    cos_a, sin_a = math.cos(design.channel_angle_rad), math.sin(design.channel_angle_rad)

    def on_line(along: np.ndarray, across: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        x = design.channel_offset_mm + along * sin_a + across * cos_a
        y = along * cos_a - across * sin_a
        return x, y

    # Centreline: the run of the channel line flanked by dense scar on both sides.
    along = np.arange(-60.0, 60.0 + 1e-9, 0.5)
    flanked = np.zeros(along.shape, dtype=bool)
    half = 0.5 * design.channel_width_mm
    for side in (-1.0, 1.0):
        hit = np.zeros(along.shape, dtype=bool)
        for offset in np.arange(half + 0.5, half + 3.01, 0.5):
            ix, iy, inside = infarct_map.index(*on_line(along, side * offset))
            hit |= inside & infarct_map.dense[ix, iy]
        flanked = hit if side < 0 else flanked & hit
    centre_index = int(np.argmin(np.abs(along)))
    first = last = centre_index
    while first > 0 and flanked[first - 1]:
        first -= 1
    while last < len(along) - 1 and flanked[last + 1]:
        last += 1
    run = along[first : last + 1 : 2]  # 1 mm steps
    points = np.array([anatomy.map_point(*on_line(np.asarray(a))) for a in run])
    length = float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))
    ends = [anatomy.map_point(*on_line(np.asarray(s * infarct_map.channel_half_length_mm)))
            for s in (-1.0, 1.0)]  # fmt: skip

    # Extent of the infarct (dense or border zone at mid-wall) on the map.
    classes = infarct_map.conduction_classes()
    enhanced = np.argwhere(classes != HEALTHY)
    x_range = (enhanced[:, 0].min(), enhanced[:, 0].max())
    y_range = (enhanced[:, 1].min(), enhanced[:, 1].max())
    px = infarct_module.MAP_PIXEL_MM
    lobes = []
    from scipy import ndimage

    components, n = ndimage.label(infarct_map.dense)
    for index in range(1, n + 1):
        cells = np.argwhere(components == index)
        lobes.append(
            {
                "width_mm": round(float(np.ptp(cells[:, 0]) + 1) * px, 2),
                "height_mm": round(float(np.ptp(cells[:, 1]) + 1) * px, 2),
                "centre_mm": to_list(
                    anatomy.map_point(
                        infarct_map.x0 + px * cells[:, 0].mean(),
                        infarct_map.y0 + px * cells[:, 1].mean(),
                    )
                ),
            }
        )
    nominal = circuit["scenarios"]["nominal"]["times_ms"]
    fast = circuit["scenarios"]["fast"]["times_ms"]
    return {
        "infarct": {
            "centre_mm": to_list(anatomy.map_point(0.0, 0.0)),
            "variant": design.variant,
            "transmural": True,
            "dense_pieces": n,
            "lobes": lobes,
            "core_semi_axes_mm": {
                "circumferential": round(design.half_width_mm, 3),
                "longitudinal": round(design.half_height_mm, 3),
            },
            "border_zone_rim_mm": round(design.rim_mm, 3),
            "border_zone_fibrotic_fraction_mean": round(design.bz_fibrosis_mean, 3),
            "viable_island_share_of_rim": round(design.island_share, 3),
            "subendocardial_extension_mm": round(design.skirt_mm, 3),
            "subendocardial_extension_depth": round(design.skirt_depth, 3),
            "wall_thinning_fraction": round(design.thinning, 3),
            "extent_mm": {
                "circumferential": round(float(np.ptp(x_range) + 1) * px, 2),
                "longitudinal": round(float(np.ptp(y_range) + 1) * px, 2),
            },
            "angle_from_anterior_deg": round(math.degrees(design.phi0), 3),
            "description": "two transmural dense lobes (label 3) side by side, a border-zone "
            "isthmus between them and a patchy border-zone rim (label 2) around them; variant "
            "transmural (radial edges), subendocardial (dense scar reaches "
            "subendocardial_extension_mm further at the endocardium, tapering to nothing at "
            "subendocardial_extension_depth of the wall) or thinned (wall over the core "
            "thinned by wall_thinning_fraction); sizes are arc lengths at mid-wall",
        },
        "isthmus": {
            "centerline_mm": to_list(points),
            "width_mm": round(design.channel_width_mm, 3),
            "length_mm": round(length, 3),
            "border_zone_length_mm": round(2 * infarct_map.channel_half_length_mm, 3),
            "ends_mm": [to_list(points[0]), to_list(points[-1])],
            "openings_mm": [to_list(e) for e in ends],
            "angle_from_long_axis_deg": round(math.degrees(design.channel_angle_rad), 3),
            "reentry_loop_mm": circuit["path_length_mm"]["loop"],
            "loop": {
                "path_length_mm": circuit["path_length_mm"],
                "conduction_time_ms": {
                    name: entry["times_ms"] for name, entry in circuit["scenarios"].items()
                },
                "cv_mm_per_ms": {
                    name: entry["cv_mm_per_ms"] for name, entry in circuit["scenarios"].items()
                },
                "nominal_loop_ms": nominal["loop"],
                "fast_loop_ms": fast["loop"],
                "method": "eikonal travel times on the unrolled mid-wall map (Dijkstra, "
                "32 directions, 1 mm pixels): isthmus = the fastest way between the channel's "
                "openings that stays within 20 mm of it; return = the fastest way back around "
                "one lobe with the channel closed; loop = isthmus + the faster return. Healthy "
                "CV anisotropic (fibres circumferential at mid-wall), border zone = the given "
                "fraction of healthy, dense scar impassable; the wave may use any layer of "
                "the wall (the most conductive class across the wall).",
                "requirement": "fast loop >= min_fast_loop_ms; the default 410 ms is the "
                "border zone's effective refractory period (TP06 with the published "
                "remodelling, 600 ms cycle; healthy 315 ms): the wave re-enters the isthmus "
                "one loop after leaving it; patients' VT cycle lengths 300-500 ms; the design "
                "is grown (lobes_widened_by, heightened_by) until it is met; "
                "requirement_met false: the largest design fell short",
            },
            "description": "border-zone channel between the two dense lobes; centerline_mm at "
            "mid-wall, 1 mm steps, where dense scar flanks it on both sides, from the apical "
            "to the basal end; it continues through the rim (border_zone_length_mm in all) "
            "and opens into healthy tissue at openings_mm; reentry_loop_mm is the path "
            "length of one loop of the figure-of-eight circuit (isthmus plus the shorter way "
            "back around a lobe)",
        },
    }


# ---------------------------------------------------------------------------------------
# The phantom
# ---------------------------------------------------------------------------------------

#: In-plane field of view beyond the heart (mm): chest wall and lungs are in the picture.
FIELD_OF_VIEW_MARGIN_MM = 45.0


def design_infarct_map(
    anatomy: VentricleAnatomy,
    map_seed: np.random.SeedSequence,
    min_loop_ms: float | None = None,
) -> tuple[infarct_module.InfarctMap, dict]:
    """Rasterise the seed's infarct and grow it until the circuit is slow enough.

    The lobes are widened and the infarct made taller, in turn, by
    :data:`~cardiotwin.pipeline.phantoms.infarct.GROWTH_FACTOR` (at most
    :data:`~cardiotwin.pipeline.phantoms.infarct.MAX_GROWTH_STEPS` steps) until one loop
    takes at least ``min_loop_ms`` (default
    :data:`~cardiotwin.pipeline.phantoms.infarct.MIN_FAST_LOOP_MS`) in the ``fast``
    scenario; the patch fields are the same at every try. When the last step falls short,
    that largest design is kept and ``requirement_met`` is False.
    """
    target = infarct_module.MIN_FAST_LOOP_MS if min_loop_ms is None else float(min_loop_ms)
    g = anatomy.design.geometry
    w_low = -0.5 * (g.c_endo + g.c_epi) + 5.0
    y_limits = (
        float(np.interp(w_low, anatomy._meridian_w, anatomy._meridian_s)) - anatomy.s0,
        float(np.interp(g.w_base - 2.0, anatomy._meridian_w, anatomy._meridian_s)) - anatomy.s0,
    )

    def half_circumference(y: np.ndarray) -> np.ndarray:
        return math.pi * g.mid_radius(anatomy.height_at(y))

    drawn = design = anatomy.design.infarct
    factor = infarct_module.GROWTH_FACTOR
    for step in range(infarct_module.MAX_GROWTH_STEPS + 1):
        rng = np.random.default_rng(map_seed)
        infarct_map = infarct_module.build_map(design, rng, half_circumference, y_limits)
        result = infarct_module.circuit(infarct_map)
        fast = result["scenarios"]["fast"]["times_ms"]["loop"]
        if fast >= target or step == infarct_module.MAX_GROWTH_STEPS:
            break
        design = design.widened(factor) if step % 2 == 0 else design.heightened(factor)
    result["widened_by"] = round(design.half_width_mm / drawn.half_width_mm, 4)
    result["heightened_by"] = round(design.half_height_mm / drawn.half_height_mm, 4)
    result["min_fast_loop_ms"] = target
    result["requirement_met"] = bool(fast >= target)
    if not result["requirement_met"]:
        log.warning(
            "lv-infarct: grown %.2f times wider and %.2f times taller, the circuit's fast loop "
            "takes %.0f ms, short of the %.0f ms asked for; kept as the largest design",
            result["widened_by"],
            result["heightened_by"],
            fast,
            target,
        )
    return infarct_map, result


def make_ventricle(
    seed: int,
    *,
    infarct: bool = True,
    acquisition=None,
    variant: str | None = None,
    wall_mask: str = "drawn",
    mask_model=None,
    min_loop_ms: float | None = None,
):
    """An ``lv-infarct`` (or, with ``infarct=False``, ``lv-healthy``) phantom for ``seed``.

    ``variant``: the scar variant (``transmural``, ``subendocardial``, ``thinned``); by
    default chosen by the seed (``seed % 3`` in that order). ``wall_mask``: ``"drawn"``
    (contour errors as a reader would make them, :mod:`.masks`) or ``"true"``.
    ``min_loop_ms``: the shortest loop of the circuit in the ``fast`` conduction scenario
    (ms; default :data:`~cardiotwin.pipeline.phantoms.infarct.MIN_FAST_LOOP_MS`): the
    infarct grows until one loop takes that long (:func:`design_infarct_map`).
    """
    from cardiotwin.pipeline.images import ImageVolume
    from cardiotwin.pipeline.phantoms.acquisition import (
        Acquisition,
        PhantomError,
        acquire,
        acquisition_grid,
        acquisition_record,
        box_of_points,
    )
    from cardiotwin.pipeline.phantoms.contrast import draw_ventricle_contrast
    from cardiotwin.pipeline.phantoms.masks import (
        DrawnMaskModel,
        cavity_enclosed,
        draw_masks,
        mask_agreement,
    )
    from cardiotwin.pipeline.phantoms.output import LABELS_RECORD, UNITS_RECORD, Phantom
    from cardiotwin.pipeline.segmentation.metrics import label_statistics

    acquisition = acquisition or Acquisition()
    acquisition.validate()
    if variant is None:
        variant = infarct_module.VARIANTS[seed % len(infarct_module.VARIANTS)]
    if variant not in infarct_module.VARIANTS:
        raise PhantomError(
            f"unknown scar variant {variant!r}; choose one of {', '.join(infarct_module.VARIANTS)}"
        )
    if wall_mask not in ("drawn", "true"):
        raise PhantomError(f"wall mask must be 'drawn' or 'true', got {wall_mask!r}")
    if min_loop_ms is not None:
        if not infarct:
            raise PhantomError("a circuit's loop time applies to lv-infarct only")
        if not (math.isfinite(min_loop_ms) and 0 < min_loop_ms <= 1000):
            raise PhantomError(
                f"the circuit's loop time must lie in (0, 1000] ms, got {min_loop_ms}"
            )
    streams = np.random.SeedSequence(seed).spawn(6)
    anatomy_rng, contrast_rng, texture_rng, noise_rng, _, mask_rng = (
        np.random.default_rng(s) for s in streams
    )
    design = draw_ventricle(anatomy_rng, variant)
    contrast = draw_ventricle_contrast(contrast_rng)
    anatomy = VentricleAnatomy(design, contrast, texture_rng, None)
    circuit = None
    if infarct:
        anatomy.infarct_map, circuit = design_infarct_map(anatomy, streams[4], min_loop_ms)

    spacing = np.asarray(acquisition.spacing_mm, dtype=float)
    outline = outline_points(design)
    margin = np.array([FIELD_OF_VIEW_MARGIN_MM, FIELD_OF_VIEW_MARGIN_MM, 0.6 * spacing[2]])
    heart_outline = outline_points(design, rv=False)
    affine, shape = acquisition_grid(
        heart_outline, design.slice_normal, design.in_plane_angle, spacing, margin
    )
    box = box_of_points(affine, shape, outline)
    acquired = acquire(anatomy, affine, shape, box, acquisition, noise_rng, noise_rng)

    wall_true = acquired.wall.astype(bool)
    mask_info: dict = {"kind": wall_mask}
    wall, blood = wall_true, acquired.blood.astype(bool)
    if wall_mask == "drawn":
        model = mask_model or DrawnMaskModel()
        cavity = cavity_enclosed(wall_true)
        wall, drawn_cavity = draw_masks(wall_true, cavity, spacing, mask_rng, model)
        blood = drawn_cavity
        mask_info.update(model.record())
    mask_info.update(mask_agreement(wall, wall_true))
    mask_info["description"] = (
        "wall.nii.gz is the mask handed to the segmentation: 'drawn' = slice-by-slice contours "
        "with smooth random errors and an endocardial bias into the blood (see "
        "pipeline/phantoms/masks.py); the true wall is truth_labels > 0"
    )

    labels = acquired.labels
    truth: dict = {
        "kind": "lv-infarct" if infarct else "lv-healthy",
        "seed": int(seed),
        "acquisition": acquisition_record(acquisition, affine, shape, acquired.info),
        "contrast": contrast.record(),
        "signal_relative_to_blood": contrast.record()["signal_relative_to_blood"],
        "labels": LABELS_RECORD,
        "units": UNITS_RECORD,
        "ventricle": ventricle_record(design),
        "wall_mask": mask_info,
        **label_statistics(labels, affine),
    }
    if infarct:
        truth.update(infarct_record(anatomy, circuit))
        loop = truth["isthmus"]["loop"]
        loop["lobes_widened_by"] = circuit["widened_by"]
        loop["heightened_by"] = circuit["heightened_by"]
        loop["min_fast_loop_ms"] = circuit["min_fast_loop_ms"]
        loop["requirement_met"] = circuit["requirement_met"]
    else:
        truth["infarct"] = None
        truth["isthmus"] = None
    truth["designed_fine_grid_ml"] = acquired.fine_volumes_ml
    return Phantom(
        lge=ImageVolume(acquired.lge, affine, "lge.nii.gz"),
        wall=ImageVolume(wall.astype(np.uint8), affine, "wall.nii.gz"),
        truth_labels=ImageVolume(labels, affine, "truth_labels.nii.gz"),
        blood=ImageVolume(blood.astype(np.uint8), affine, "blood.nii.gz"),
        truth=truth,
    )
