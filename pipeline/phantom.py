"""Synthetic patients with ground truth: an LGE image, a wall mask and the designed labels.

Three kinds (``cardiotwin phantom KIND --out DIR --seed N``):

- ``lv-infarct``: a left ventricle (truncated ellipsoidal shell: ~50 mm cavity, ~82-90 mm
  long axis, 9-11 mm wall) with a transmural infarct (dense core ~30-38 mm across inside a
  4.5-6 mm border-zone rim) crossed by a border-zone channel (a VT isthmus, 4-5 mm wide,
  ~30 mm long) that joins healthy tissue at both ends;
- ``lv-healthy``: the same ventricle (same seed, same anatomy) without scar;
- ``la-fibrosis``: a left atrium (ellipsoidal body, 2-3 mm wall, four pulmonary-vein
  stubs, a mitral opening) with patchy fibrosis at a chosen burden.

How a phantom is made
---------------------
1. **Anatomy** on a fine grid that subdivides every acquisition voxel into whole
   sub-voxels (about ``fine_mm`` each; 0.5 mm for the shipped samples): a class per
   sub-voxel (background, healthy, border zone / fibrosis, dense scar, blood).
2. **Acquisition**: signal per class (:class:`TissueSignal`, blood = 1), a smooth
   multiplicative coil-bias field (±``bias_fraction``), an in-plane Gaussian point-spread
   function of FWHM ``psf_fwhm_pixels`` pixels, the mean over each acquisition voxel
   (partial volume and the slice profile of a thick slice), then Rician noise: the
   magnitude of signal + complex Gaussian noise of standard deviation
   ``sigma = blood signal / snr`` per channel. **SNR is the blood-pool signal over the
   noise sigma.**
3. **Truth on the acquisition (LGE) grid**: the wall mask holds the voxels that are at
   least half myocardium (by sub-voxel count); each of them takes the median tissue class
   of its myocardial sub-voxels (healthy < border zone < dense scar): border zone if at
   least half of them are border zone or scar, dense scar if at least half are scar. So
   ``truth_labels.nii.gz`` is 0 exactly outside ``wall.nii.gz`` and can be compared voxel
   by voxel with a segmentation of ``lge.nii.gz``.

Ventricular short-axis stacks slice across the long axis, so the isthmus runs along the
long axis (through 3-5 slices) and its width lies in the image plane, where 1.5 mm pixels
resolve it; a channel lying inside one short-axis plane would have its width across an
8 mm slice and vanish in the partial volume.

The random draws come from three independent streams of ``numpy.random.SeedSequence(seed)``
(anatomy, tissue texture, noise), so the anatomy of a seed does not change with the SNR,
the spacing or the fine grid.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cardiotwin.files import write_all_or_nothing
from cardiotwin.meshing.tags import BACKGROUND, BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.images import MAX_SPACING_MM, ImageVolume, save_nifti
from cardiotwin.pipeline.segment import label_statistics, utah_stage

log = logging.getLogger(__name__)

KINDS = ("lv-infarct", "lv-healthy", "la-fibrosis")

#: Fine-grid tissue classes: the tissue labels (meshing.tags) plus the phantom's own class for
#: blood, which never reaches a label map (there 4 is an ablation-lesion tag)
BLOOD = 4

PHANTOM_FILES = ("lge.nii.gz", "wall.nii.gz", "truth_labels.nii.gz", "blood.nii.gz", "truth.json")


class PhantomError(ValueError):
    """A phantom setting is out of range; the message names the setting and its range."""


@dataclass(frozen=True)
class TissueSignal:
    """Noise-free LGE signal per tissue class, relative to the blood pool (= 1).

    Ventricle defaults: healthy myocardium nulled by the inversion time (not zero: a
    little recovery), border zone intermediate (about a third of the scar, as for tissue
    that is part viable myocytes and part fibrosis), dense scar above blood (scar-to-blood
    ratios of 1-1.5 are usual 10-20 min after gadolinium), the surrounding tissue
    dark-grey.

    Atrium defaults: these are tissue values that no voxel of a 2-3 mm wall ever shows
    whole. Partial volume with blood and the surroundings brings fibrotic voxels to image
    intensity ratios of about 1.2-2 and healthy ones below 1, as in patients; the values
    were chosen so that the published IIR cut-off of 1.20 (Benito 2017) recovers the true
    fibrosis % of the label map within about 1.5 points at 1.25 x 1.25 x 2.5 mm and at
    1.5 x 1.5 x 8 mm (late-phase fibrosis retains gadolinium while blood washes out).
    """

    background: float
    healthy: float
    border_zone: float
    dense_scar: float
    blood: float = 1.0

    def lookup(self) -> np.ndarray:
        """Signal indexed by fine-grid class (BACKGROUND ... BLOOD)."""
        return np.array(
            [self.background, self.healthy, self.border_zone, self.dense_scar, self.blood],
            dtype=np.float32,
        )


VENTRICLE_SIGNAL = TissueSignal(background=0.2, healthy=0.1, border_zone=0.45, dense_scar=1.25)
ATRIUM_SIGNAL = TissueSignal(background=0.45, healthy=0.35, border_zone=2.8, dense_scar=3.4)


@dataclass(frozen=True)
class Acquisition:
    """How the phantom is imaged.

    ``spacing_mm``: acquisition voxel size (i, j, k) in mm; k is the slice direction.
    ``snr``: blood-pool signal / noise sigma (Rician noise). ``fine_mm``: target size of
    the anatomy sub-voxels (each acquisition voxel is split into whole sub-voxels).
    ``psf_fwhm_pixels``: in-plane Gaussian blur, FWHM in acquisition pixels.
    ``bias_fraction``: amplitude of the smooth multiplicative coil-bias field.
    """

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 8.0)
    snr: float = 15.0
    fine_mm: float = 0.5
    psf_fwhm_pixels: float = 1.0
    bias_fraction: float = 0.1

    def validate(self) -> None:
        spacing = np.asarray(self.spacing_mm, dtype=float)
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)):
            raise PhantomError(f"spacing must be three numbers in mm, got {self.spacing_mm}")
        if np.any(spacing <= 0) or np.any(spacing > MAX_SPACING_MM):
            raise PhantomError(
                f"spacing {tuple(float(s) for s in spacing)} mm is outside (0, "
                f"{MAX_SPACING_MM:g}] mm; give e.g. --spacing 1.5 1.5 8"
            )
        if not (math.isfinite(self.snr) and self.snr > 0):
            raise PhantomError(f"SNR must be a positive number, got {self.snr}; try 15")
        if not (math.isfinite(self.fine_mm) and 0.1 <= self.fine_mm <= 2.0):
            raise PhantomError(f"fine grid must be 0.1-2 mm, got {self.fine_mm} mm; try 0.5")
        if not (math.isfinite(self.psf_fwhm_pixels) and 0 <= self.psf_fwhm_pixels <= 5):
            raise PhantomError(f"PSF FWHM must be 0-5 pixels, got {self.psf_fwhm_pixels}")
        if not (math.isfinite(self.bias_fraction) and 0 <= self.bias_fraction < 0.5):
            raise PhantomError(f"bias fraction must be in [0, 0.5), got {self.bias_fraction}")

    def subdivision(self) -> np.ndarray:
        """Sub-voxels per acquisition voxel along i, j, k."""
        return np.maximum(1, np.rint(np.asarray(self.spacing_mm) / self.fine_mm)).astype(int)


@dataclass
class Phantom:
    """A synthetic patient: images on the acquisition grid and the designed truth.

    ``blood`` is the blood-pool mask (voxels at least half blood), an optional input of
    the IIR segmentation. ``truth`` is JSON-ready; every position is in scanner RAS mm.
    """

    lge: ImageVolume
    wall: ImageVolume
    truth_labels: ImageVolume
    blood: ImageVolume
    truth: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Grids and poses
# ---------------------------------------------------------------------------------------


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def _rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis`` by ``angle_rad``."""
    x, y, z = _unit(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def _random_tilt(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation by up to ``max_deg`` degrees about a random axis."""
    return _rotation_about(rng.normal(size=3), math.radians(rng.uniform(0, max_deg)))


def _acquisition_grid(
    points_mm: np.ndarray,
    slice_normal: np.ndarray,
    in_plane_angle_rad: float,
    spacing_mm: np.ndarray,
    margin_mm: np.ndarray,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of an oblique stack covering ``points_mm`` (scanner) with margins.

    Slices are normal to ``slice_normal`` (the k axis); the in-plane axes are turned by
    ``in_plane_angle_rad``; (e_i, e_j, e_k) is right-handed.
    """
    e_k = _unit(slice_normal)
    helper = np.array([1.0, 0, 0]) if abs(e_k[0]) < 0.9 else np.array([0, 1.0, 0])
    e_i = _unit(helper - (helper @ e_k) * e_k)
    e_i = _rotation_about(e_k, in_plane_angle_rad) @ e_i
    e_j = np.cross(e_k, e_i)
    axes = np.stack([e_i, e_j, e_k], axis=1)
    local = points_mm @ axes
    low = local.min(axis=0) - margin_mm
    high = local.max(axis=0) + margin_mm
    shape = np.maximum(1, np.ceil((high - low) / spacing_mm)).astype(int)
    # Centre the grid on the covered box so the margins are even on both sides.
    start = 0.5 * (low + high) - 0.5 * (shape - 1) * spacing_mm
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing_mm
    affine[:3, 3] = axes @ start
    return affine, (int(shape[0]), int(shape[1]), int(shape[2]))


#: Largest anatomy grid (sub-voxels); 0.5 mm over a ventricle is ~8 million.
MAX_FINE_VOXELS = 60_000_000


def _fine_shape(shape: tuple[int, int, int], subdivision: np.ndarray) -> tuple[int, int, int]:
    fine_shape = tuple(int(n * f) for n, f in zip(shape, subdivision, strict=True))
    count = math.prod(fine_shape)
    if count > MAX_FINE_VOXELS:
        raise PhantomError(
            f"the anatomy grid would have {count:,} sub-voxels (more than "
            f"{MAX_FINE_VOXELS:,}); give a larger --fine-mm, e.g. 0.5"
        )
    return fine_shape


def _fine_grid_affine(affine: np.ndarray, subdivision: np.ndarray) -> np.ndarray:
    """Affine of the sub-voxel grid whose blocks of ``subdivision`` tile each voxel."""
    fine_to_coarse = np.eye(4)
    fine_to_coarse[:3, :3] = np.diag(1.0 / subdivision)
    fine_to_coarse[:3, 3] = 0.5 / subdivision - 0.5
    return affine @ fine_to_coarse


def _local_coordinates(
    fine_affine: np.ndarray, fine_shape: tuple[int, int, int], frame: np.ndarray, origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-voxel centres in a local frame: ``frame.T @ (scanner_mm - origin)``, float32."""
    to_local = frame.T @ fine_affine[:3, :3]
    offset = frame.T @ (fine_affine[:3, 3] - origin)
    i, j, k = (np.arange(n, dtype=np.float32) for n in fine_shape)
    coordinates = []
    for row in range(3):
        a, b, c = (np.float32(v) for v in to_local[row])
        coordinates.append(
            a * i[:, None, None] + b * j[None, :, None] + c * k[None, None, :] + offset[row]
        )
    return tuple(np.asarray(c, dtype=np.float32) for c in coordinates)


# ---------------------------------------------------------------------------------------
# Acquisition: signal, blur, partial volume, noise, truth on the acquisition grid
# ---------------------------------------------------------------------------------------


def _block_mean(array: np.ndarray, subdivision: np.ndarray) -> np.ndarray:
    n0, n1, n2 = (s // f for s, f in zip(array.shape, subdivision, strict=True))
    f0, f1, f2 = subdivision
    return array.reshape(n0, f0, n1, f1, n2, f2).mean(axis=(1, 3, 5), dtype=np.float64)


def _acquire(
    classes: np.ndarray,
    signal: TissueSignal,
    acquisition: Acquisition,
    noise_rng: np.random.Generator,
    bias_rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """LGE magnitude image on the acquisition grid from the fine class map."""
    from scipy import ndimage

    subdivision = acquisition.subdivision()
    fine_spacing = np.asarray(acquisition.spacing_mm) / subdivision
    image = signal.lookup()[classes]

    # Coil bias: a linear ramp of random direction across the field of view.
    direction = _unit(bias_rng.normal(size=3))
    centre = (np.asarray(classes.shape) - 1) / 2
    half_extent = 0.5 * np.linalg.norm(np.asarray(classes.shape) * fine_spacing)
    along = [
        (np.arange(n, dtype=np.float32) - centre[axis]) * fine_spacing[axis]
        for axis, n in enumerate(classes.shape)
    ]
    # Any direction does for a smooth bias; take it in the grid's own (mm) axes.
    ramp = (
        direction[0] * along[0][:, None, None]
        + direction[1] * along[1][None, :, None]
        + direction[2] * along[2][None, None, :]
    ) / half_extent
    image *= (1.0 + acquisition.bias_fraction * ramp).astype(np.float32)

    if acquisition.psf_fwhm_pixels > 0:
        sigma_mm = acquisition.psf_fwhm_pixels * np.asarray(acquisition.spacing_mm[:2]) / 2.3548
        sigma_fine = (sigma_mm / fine_spacing[:2]).tolist() + [0.0]
        image = ndimage.gaussian_filter(image, sigma_fine, mode="nearest")
    clean = _block_mean(image, subdivision)
    sigma = signal.blood / acquisition.snr
    real = clean + noise_rng.normal(scale=sigma, size=clean.shape)
    imaginary = noise_rng.normal(scale=sigma, size=clean.shape)
    magnitude = np.hypot(real, imaginary).astype(np.float32)
    info = {
        "noise_sigma": float(sigma),
        "bias_direction_voxel_axes": direction.round(4).tolist(),
    }
    return magnitude, info


def _truth_on_acquisition_grid(
    classes: np.ndarray, subdivision: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels uint8, wall mask uint8, blood mask uint8) on the acquisition grid."""
    counts = np.stack([_block_mean(classes == c, subdivision) for c in range(BLOOD + 1)], axis=0)
    myocardium = counts[HEALTHY] + counts[BORDER_ZONE] + counts[DENSE_SCAR]
    wall = myocardium >= 0.5 - 1e-9
    # Median class of the myocardial part (healthy < border zone < dense scar): a voxel
    # that is mostly enhanced counts as enhanced even if no single class has a majority.
    at_least_bz = counts[BORDER_ZONE] + counts[DENSE_SCAR] >= 0.5 * myocardium - 1e-9
    dense = counts[DENSE_SCAR] >= 0.5 * myocardium - 1e-9
    labels = np.where(wall, HEALTHY + at_least_bz.astype(int) + (at_least_bz & dense), 0)
    blood = (counts[BLOOD] >= 0.5 - 1e-9) & ~wall
    return labels.astype(np.uint8), wall.astype(np.uint8), blood.astype(np.uint8)


def _to_list(array: np.ndarray, decimals: int = 3) -> list:
    return np.round(np.asarray(array, dtype=float), decimals).tolist()


# ---------------------------------------------------------------------------------------
# Left ventricle
# ---------------------------------------------------------------------------------------


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

    def mid_radius(self, w: np.ndarray) -> np.ndarray:
        """Mid-wall radius (mm) at height ``w`` (on the mean of the two ellipsoids)."""
        a_mid = 0.5 * (self.a_endo + self.a_epi)
        c_mid = 0.5 * (self.c_endo + self.c_epi)
        return a_mid * np.sqrt(np.clip(1.0 - (w / c_mid) ** 2, 0.0, None))


@dataclass(frozen=True)
class InfarctDesign:
    """A transmural infarct patch in mid-wall surface coordinates (mm).

    ``s_c``: circumferential arc length at mid-wall from the centre angle ``phi0``;
    ``s_l``: height along the long axis from ``w0``. Dense core: an ellipse with semi-axes
    ``core_circ_mm``, ``core_long_mm`` whose boundary is modulated by low harmonics; a
    border-zone rim ``rim_mm`` wide around it; an isthmus channel ``width_mm`` wide along
    the line through (``offset_mm``, 0) at ``angle_rad`` from the long axis.
    """

    phi0: float
    w0: float
    core_circ_mm: float
    core_long_mm: float
    rim_mm: float
    harmonics: tuple[tuple[int, float, float], ...]
    width_mm: float
    offset_mm: float
    angle_rad: float

    def boundary_factor(self, theta: np.ndarray) -> np.ndarray:
        factor = np.ones_like(theta)
        for order, amplitude, phase in self.harmonics:
            factor = factor + amplitude * np.cos(order * theta + phase)
        return factor

    def classify(self, s_c: np.ndarray, s_l: np.ndarray) -> np.ndarray:
        """Class (HEALTHY, BORDER_ZONE or DENSE_SCAR) of wall points at (s_c, s_l)."""
        x = s_c / self.core_circ_mm
        y = s_l / self.core_long_mm
        theta = np.arctan2(y, x)
        radius_core = np.hypot(x, y) / self.boundary_factor(theta)
        # The rim has a constant width in mm: compare with the core enlarged by rim_mm.
        x_out = s_c / (self.core_circ_mm + self.rim_mm)
        y_out = s_l / (self.core_long_mm + self.rim_mm)
        radius_outer = np.hypot(x_out, y_out) / self.boundary_factor(np.arctan2(y_out, x_out))
        channel = self.channel_distance(s_c, s_l) <= 0.5 * self.width_mm
        classes = np.full(s_c.shape, HEALTHY, dtype=np.uint8)
        classes[radius_outer <= 1.0] = BORDER_ZONE
        classes[(radius_core <= 1.0) & ~channel] = DENSE_SCAR
        return classes

    def channel_distance(self, s_c: np.ndarray, s_l: np.ndarray) -> np.ndarray:
        return np.abs(
            (s_c - self.offset_mm) * math.cos(self.angle_rad) - s_l * math.sin(self.angle_rad)
        )

    def inside_core(self, s_c: np.ndarray, s_l: np.ndarray) -> np.ndarray:
        x = s_c / self.core_circ_mm
        y = s_l / self.core_long_mm
        return np.hypot(x, y) <= self.boundary_factor(np.arctan2(y, x))


def _draw_ventricle(rng: np.random.Generator) -> tuple[VentricleGeometry, InfarctDesign, dict]:
    """Random adult LV, pose and infarct design. Every draw happens for every kind."""
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
    apex_direction = _random_tilt(rng, 10.0) @ _unit([-0.55, 0.6, -0.58])
    base_centre = np.array([5.0, -15.0, 10.0]) + rng.uniform(-10, 10, size=3)
    pose = {"apex_direction": apex_direction, "base_centre": base_centre}
    phi0 = math.radians(rng.uniform(10.0, 100.0))  # anterior (0) to lateral (90 deg)
    w0 = rng.uniform(-18.0, -8.0)
    core_circ_mm = rng.uniform(15.0, 19.0)
    core_long_mm = rng.uniform(16.0, 19.0)
    rim_mm = rng.uniform(4.5, 6.0)
    harmonics = tuple(
        (order, rng.uniform(0.0, 0.06), rng.uniform(0, 2 * math.pi)) for order in (2, 3, 4)
    )
    width_mm = rng.uniform(4.0, 5.0)
    angle_rad = math.radians(rng.uniform(-12.0, 12.0))
    infarct = InfarctDesign(
        phi0=phi0,
        w0=w0,
        core_circ_mm=core_circ_mm,
        core_long_mm=core_long_mm,
        rim_mm=rim_mm,
        harmonics=harmonics,
        width_mm=width_mm,
        # The channel passes within 30 % of the core's half-width of its centre.
        offset_mm=rng.uniform(-0.3, 0.3) * core_circ_mm,
        angle_rad=angle_rad,
    )
    pose["slice_tilt"] = _random_tilt(rng, 4.0)
    pose["in_plane_angle"] = rng.uniform(0, 2 * math.pi)
    return geometry, infarct, pose


def _ventricle_frame(apex_direction: np.ndarray) -> np.ndarray:
    """Columns (u anterior, v lateral, w towards the base) in scanner RAS."""
    w_hat = -_unit(apex_direction)
    anterior = np.array([0.0, 1.0, 0.0])
    u_hat = _unit(anterior - (anterior @ w_hat) * w_hat)
    left = np.array([-1.0, 0.0, 0.0])
    v_hat = left - (left @ w_hat) * w_hat - (left @ u_hat) * u_hat
    return np.stack([u_hat, _unit(v_hat), w_hat], axis=1)


def _ventricle_surface_points(geometry: VentricleGeometry) -> np.ndarray:
    """Points on the epicardial surface and base rim (local mm), for the field of view."""
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    w = np.linspace(-geometry.c_epi, geometry.w_base, 40)
    radius = geometry.a_epi * np.sqrt(np.clip(1 - (w / geometry.c_epi) ** 2, 0, None))
    tt, ww = np.meshgrid(theta, w)
    rr = np.broadcast_to(radius[:, None], tt.shape)
    return np.stack([rr * np.cos(tt), rr * np.sin(tt), ww], axis=-1).reshape(-1, 3)


def _mid_wall_point(geometry: VentricleGeometry, phi: float, w: float) -> np.ndarray:
    radius = float(geometry.mid_radius(np.asarray(w)))
    return np.array([radius * math.cos(phi), radius * math.sin(phi), w])


def make_ventricle(
    seed: int, *, infarct: bool = True, acquisition: Acquisition | None = None
) -> Phantom:
    """An ``lv-infarct`` (or, with ``infarct=False``, ``lv-healthy``) phantom for ``seed``."""
    acquisition = acquisition or Acquisition()
    acquisition.validate()
    anatomy_rng, texture_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    geometry, design, pose = _draw_ventricle(anatomy_rng)
    frame = _ventricle_frame(pose["apex_direction"])
    # Local origin = ellipsoid centre; the base centre sits at w = w_base.
    origin = pose["base_centre"] - geometry.w_base * frame[:, 2]

    spacing = np.asarray(acquisition.spacing_mm, dtype=float)
    surface = _ventricle_surface_points(geometry) @ frame.T + origin
    affine, shape = _acquisition_grid(
        surface,
        pose["slice_tilt"] @ frame[:, 2],
        pose["in_plane_angle"],
        spacing,
        margin_mm=np.array([12.0, 12.0, 0.6 * spacing[2]]),
    )
    subdivision = acquisition.subdivision()
    fine_shape = _fine_shape(shape, subdivision)
    fine_affine = _fine_grid_affine(affine, subdivision)
    u, v, w = _local_coordinates(fine_affine, fine_shape, frame, origin)

    radial2 = u * u + v * v
    below_base = w <= geometry.w_base
    inside_endo = (radial2 / geometry.a_endo**2 + (w / geometry.c_endo) ** 2 <= 1) & below_base
    inside_epi = (radial2 / geometry.a_epi**2 + (w / geometry.c_epi) ** 2 <= 1) & below_base
    wall = inside_epi & ~inside_endo
    classes = np.full(fine_shape, BACKGROUND, dtype=np.uint8)
    classes[inside_endo] = BLOOD
    classes[wall] = HEALTHY
    if infarct:
        phi = np.arctan2(v[wall], u[wall])
        d_phi = np.angle(np.exp(1j * (phi - design.phi0)))
        w_wall = w[wall]
        classes[wall] = design.classify(d_phi * geometry.mid_radius(w_wall), w_wall - design.w0)
    del u, v, w, radial2

    lge, acquisition_info = _acquire(classes, VENTRICLE_SIGNAL, acquisition, noise_rng, texture_rng)
    labels, wall_mask, blood_mask = _truth_on_acquisition_grid(classes, subdivision)

    def scanner(local_point: np.ndarray) -> np.ndarray:
        return frame @ local_point + origin

    apex = scanner(np.array([0.0, 0.0, -geometry.c_epi]))
    base_centre = scanner(np.array([0.0, 0.0, geometry.w_base]))
    truth: dict = {
        "kind": "lv-infarct" if infarct else "lv-healthy",
        "seed": int(seed),
        **_acquisition_record(acquisition, affine, shape, VENTRICLE_SIGNAL, acquisition_info),
        "ventricle": {
            "long_axis_unit": _to_list(frame[:, 2], 5),
            "apex_mm": _to_list(apex),
            "base_centre_mm": _to_list(base_centre),
            "long_axis_length_mm": round(float(np.linalg.norm(base_centre - apex)), 3),
            "cavity_diameter_mm": round(2 * geometry.a_endo, 3),
            "wall_thickness_mm": round(geometry.a_epi - geometry.a_endo, 3),
            "apex_wall_thickness_mm": round(geometry.c_epi - geometry.c_endo, 3),
            "anterior_unit": _to_list(frame[:, 0], 5),
            "ellipsoid_centre_mm": _to_list(origin),
            "endo_semi_axes_mm": [round(geometry.a_endo, 3), round(geometry.c_endo, 3)],
            "epi_semi_axes_mm": [round(geometry.a_epi, 3), round(geometry.c_epi, 3)],
            "description": "truncated ellipsoidal shell; semi-axes are (short, long); the "
            "base is the plane through base_centre_mm normal to long_axis_unit",
        },
        **label_statistics(labels, affine),
    }
    if infarct:
        truth.update(_infarct_record(geometry, design, scanner))
    else:
        truth["infarct"] = None
        truth["isthmus"] = None
    truth["designed_fine_grid_ml"] = _fine_volumes_ml(classes, fine_affine)
    return Phantom(
        lge=ImageVolume(lge, affine, "lge.nii.gz"),
        wall=ImageVolume(wall_mask, affine, "wall.nii.gz"),
        truth_labels=ImageVolume(labels, affine, "truth_labels.nii.gz"),
        blood=ImageVolume(blood_mask, affine, "blood.nii.gz"),
        truth=truth,
    )


def _infarct_record(geometry: VentricleGeometry, design: InfarctDesign, scanner: Callable) -> dict:
    """The infarct and isthmus of ``design`` in scanner mm."""
    # Walk along the channel line in 0.5 mm steps and keep the run inside the dense core.
    tau = np.arange(-60.0, 60.0 + 1e-9, 0.5)
    s_c = design.offset_mm + tau * math.sin(design.angle_rad)
    s_l = tau * math.cos(design.angle_rad)
    inside = design.inside_core(s_c, s_l)
    centre_index = int(np.argmin(np.abs(tau)))
    first = last = centre_index
    while first > 0 and inside[first - 1]:
        first -= 1
    while last < len(tau) - 1 and inside[last + 1]:
        last += 1
    points = []
    for sc, sl in zip(s_c[first : last + 1], s_l[first : last + 1], strict=True):
        w = design.w0 + sl
        phi = design.phi0 + sc / float(geometry.mid_radius(np.asarray(w)))
        points.append(scanner(_mid_wall_point(geometry, phi, w)))
    points = np.asarray(points)
    # Keep every second point: a 1 mm spaced centreline.
    centreline = points[::2] if len(points) > 2 else points
    length = float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))
    centre = scanner(_mid_wall_point(geometry, design.phi0, design.w0))
    # Each re-entry loop: through the isthmus, back around one half of the core inside
    # the rim (half the perimeter of the ellipse at mid-rim, Ramanujan's approximation).
    a = design.core_circ_mm + 0.5 * design.rim_mm
    b = design.core_long_mm + 0.5 * design.rim_mm
    perimeter = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    return {
        "infarct": {
            "centre_mm": _to_list(centre),
            "transmural": True,
            "core_semi_axes_mm": {
                "circumferential": round(design.core_circ_mm, 3),
                "longitudinal": round(design.core_long_mm, 3),
            },
            "border_zone_rim_mm": round(design.rim_mm, 3),
            "extent_mm": {
                "circumferential": round(2 * (design.core_circ_mm + design.rim_mm), 3),
                "longitudinal": round(2 * (design.core_long_mm + design.rim_mm), 3),
            },
            "angle_from_anterior_deg": round(math.degrees(design.phi0), 3),
            "description": "dense core (label 3) inside a border-zone rim (label 2), "
            "sizes are arc lengths at mid-wall",
        },
        "isthmus": {
            "centerline_mm": _to_list(centreline),
            "width_mm": round(design.width_mm, 3),
            "length_mm": round(length, 3),
            "ends_mm": [_to_list(points[0]), _to_list(points[-1])],
            "angle_from_long_axis_deg": round(math.degrees(design.angle_rad), 3),
            "reentry_loop_mm": round(length + 0.5 * perimeter, 3),
            "description": "transmural border-zone channel through the dense core; "
            "centreline at mid-wall, 1 mm spacing, from the apical to the basal end; "
            "width is at mid-wall and scales with the radius across the wall; "
            "reentry_loop_mm is the path of one loop of a figure-of-eight circuit (isthmus "
            "plus half the perimeter around the core at mid-rim)",
        },
    }


def _fine_volumes_ml(classes: np.ndarray, fine_affine: np.ndarray) -> dict:
    voxel_ml = abs(np.linalg.det(fine_affine[:3, :3])) / 1000.0
    return {
        name: float(np.count_nonzero(classes == value) * voxel_ml)
        for name, value in (
            ("healthy", HEALTHY),
            ("border_zone", BORDER_ZONE),
            ("dense_scar", DENSE_SCAR),
            ("blood", BLOOD),
        )
    }


def _acquisition_record(
    acquisition: Acquisition,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    signal: TissueSignal,
    info: dict,
) -> dict:
    subdivision = acquisition.subdivision()
    return {
        "acquisition": {
            "spacing_mm": [float(s) for s in acquisition.spacing_mm],
            "shape": list(shape),
            "affine": _to_list(affine, 6),
            "snr": float(acquisition.snr),
            "snr_definition": "blood-pool signal / noise sigma; Rician noise = magnitude of "
            "signal plus complex Gaussian noise with this sigma per channel",
            "noise_sigma": info["noise_sigma"],
            "fine_spacing_mm": _to_list(np.asarray(acquisition.spacing_mm) / subdivision, 4),
            "psf_fwhm_mm": _to_list(
                acquisition.psf_fwhm_pixels * np.asarray(acquisition.spacing_mm[:2]), 4
            ),
            "slice_profile": "rectangular, as thick as the slice spacing (no gap)",
            "bias_fraction": float(acquisition.bias_fraction),
            "bias_direction_voxel_axes": info["bias_direction_voxel_axes"],
            "truth_rule": "wall = voxels at least half myocardium; label = median tissue "
            "class (healthy < border zone < dense scar) of the voxel's myocardial sub-voxels",
        },
        "signal_relative_to_blood": asdict(signal),
        "labels": {
            "0": "background",
            "1": "healthy",
            "2": "border zone / fibrosis",
            "3": "dense scar",
        },
        "units": {"length": "mm", "volume": "ml", "coordinates": "scanner RAS+ mm"},
    }


# ---------------------------------------------------------------------------------------
# Left atrium
# ---------------------------------------------------------------------------------------

#: Pulmonary-vein directions in the atrial frame (left, posterior, superior).
_VEIN_DIRECTIONS = {
    "LSPV": (0.70, 0.55, 0.45),
    "LIPV": (0.75, 0.55, -0.35),
    "RSPV": (-0.70, 0.55, 0.45),
    "RIPV": (-0.75, 0.55, -0.35),
}
_MITRAL_DIRECTION = (0.25, -0.70, -0.65)

#: Smoothing (Gaussian sigma, mm) of the random field whose top fraction is fibrotic:
#: patches of roughly 5-20 mm, the scale of the enhancement seen in atrial LGE.
FIBROSIS_PATCH_SIGMA_MM = 5.0

#: Share of the fibrotic wall that is dense scar (label 3) in la-fibrosis.
DENSE_SHARE = 0.4


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
        return self.frame @ local_point + self.centre


def _draw_atrium(rng: np.random.Generator) -> AtriumDesign:
    """Random adult (AF-sized) left atrium, its veins, mitral opening and axial stack."""
    semi_axes = np.array([rng.uniform(25, 29), rng.uniform(18, 22), rng.uniform(20, 24)])
    wall_mm = rng.uniform(2.0, 3.0)
    # Local (left, posterior, superior) -> scanner RAS (+x right, +y anterior, +z up).
    frame = _random_tilt(rng, 12.0) @ np.diag([-1.0, -1.0, 1.0])
    centre = np.array([-5.0, -25.0, 15.0]) + rng.uniform(-10, 10, size=3)
    veins = {}
    for name, direction in _VEIN_DIRECTIONS.items():
        d = _random_tilt(rng, 8.0) @ _unit(direction)
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
        mitral_direction=_random_tilt(rng, 8.0) @ _unit(_MITRAL_DIRECTION),
        mitral_radius=rng.uniform(12.0, 14.0),
        slice_normal=_random_tilt(rng, 5.0) @ np.array([0.0, 0.0, 1.0]),
        in_plane_angle=rng.uniform(-0.2, 0.2),
    )


def _atrium_outline(design: AtriumDesign) -> np.ndarray:
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
    return np.concatenate(points) @ design.frame.T + design.centre


def _atrium_masks(x, y, z, design: AtriumDesign) -> tuple[np.ndarray, np.ndarray]:
    """(wall, lumen) boolean masks of sub-voxels at local coordinates (x, y, z) mm."""
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


def _fibrosis_classes(
    wall_points_mm: np.ndarray,
    fibrosis_percent: float,
    half_box_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Class per wall point (3, n local mm): the top ``fibrosis_percent`` of a smooth field.

    The field lives on a fixed 1 mm local grid, so the patches do not depend on the
    acquisition or the fine grid; the top 40 % of the fibrotic part is dense scar.
    """
    from scipy import ndimage

    n_texture = int(2 * half_box_mm) + 1
    texture = ndimage.gaussian_filter(
        rng.normal(size=(n_texture,) * 3).astype(np.float32),
        FIBROSIS_PATCH_SIGMA_MM,
        mode="wrap",
    )
    values = ndimage.map_coordinates(texture, wall_points_mm + half_box_mm, order=1, mode="nearest")
    classes = np.full(values.shape, HEALTHY, dtype=np.uint8)
    if fibrosis_percent > 0:
        fibrotic_limit = np.quantile(values, 1 - fibrosis_percent / 100.0)
        dense_limit = np.quantile(values, 1 - DENSE_SHARE * fibrosis_percent / 100.0)
        classes[values >= fibrotic_limit] = BORDER_ZONE
        classes[values >= dense_limit] = DENSE_SCAR
    return classes


def make_atrium(
    seed: int, *, fibrosis_percent: float = 20.0, acquisition: Acquisition | None = None
) -> Phantom:
    """An ``la-fibrosis`` phantom: thin-walled atrium with patchy fibrosis.

    ``fibrosis_percent`` (0-80) of the wall sub-voxels are fibrotic (label 2 or 3): the
    top of a smooth random field (white noise filtered by a Gaussian of
    :data:`FIBROSIS_PATCH_SIGMA_MM`) restricted to the wall; the top :data:`DENSE_SHARE`
    of the fibrotic part is dense (label 3). Slices are near-axial, as in atrial LGE.
    """
    acquisition = acquisition or Acquisition()
    acquisition.validate()
    if not (math.isfinite(fibrosis_percent) and 0.0 <= fibrosis_percent <= 80.0):
        raise PhantomError(f"fibrosis percent must be in [0, 80], got {fibrosis_percent}; try 20")
    anatomy_rng, texture_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    design = _draw_atrium(anatomy_rng)
    spacing = np.asarray(acquisition.spacing_mm, dtype=float)
    affine, shape = _acquisition_grid(
        _atrium_outline(design),
        design.slice_normal,
        design.in_plane_angle,
        spacing,
        np.array([10.0, 10.0, 0.6 * spacing[2]]),
    )
    subdivision = acquisition.subdivision()
    fine_shape = _fine_shape(shape, subdivision)
    fine_affine = _fine_grid_affine(affine, subdivision)
    x, y, z = _local_coordinates(fine_affine, fine_shape, design.frame, design.centre)
    wall, lumen = _atrium_masks(x, y, z, design)
    classes = np.full(fine_shape, BACKGROUND, dtype=np.uint8)
    classes[lumen] = BLOOD
    half_box = (design.semi_axes + design.wall_mm).max() + max(
        v["end"] for v in design.veins.values()
    )
    wall_classes = _fibrosis_classes(
        np.stack([x[wall], y[wall], z[wall]]), fibrosis_percent, half_box + 5.0, texture_rng
    )
    classes[wall] = wall_classes
    del x, y, z, lumen

    lge, acquisition_info = _acquire(classes, ATRIUM_SIGNAL, acquisition, noise_rng, texture_rng)
    labels, wall_mask, blood_mask = _truth_on_acquisition_grid(classes, subdivision)
    fine_percent = 100.0 * np.count_nonzero(wall_classes >= BORDER_ZONE) / max(1, wall.sum())
    label_percent = (
        100.0 * np.count_nonzero(labels >= BORDER_ZONE) / max(1, labels.astype(bool).sum())
    )
    truth = {
        "kind": "la-fibrosis",
        "seed": int(seed),
        **_acquisition_record(acquisition, affine, shape, ATRIUM_SIGNAL, acquisition_info),
        "atrium": _atrium_record(design),
        "fibrosis": {
            "requested_percent": float(fibrosis_percent),
            "true_percent_fine_grid": round(float(fine_percent), 4),
            "true_percent_label_map": round(float(label_percent), 4),
            "utah_stage_fine_grid": utah_stage(fine_percent),
            "dense_share_of_fibrosis": DENSE_SHARE,
            "patch_sigma_mm": FIBROSIS_PATCH_SIGMA_MM,
            "description": "percent of the wall that is label 2 or 3; the label-map value "
            "(also fibrosis_percent, utah_stage) is on the LGE grid over wall.nii.gz and is "
            "what a segmentation of lge.nii.gz is compared with",
        },
        "fibrosis_percent": round(float(label_percent), 4),
        "utah_stage": utah_stage(label_percent),
        **label_statistics(labels, affine),
        "designed_fine_grid_ml": _fine_volumes_ml(classes, fine_affine),
    }
    return Phantom(
        lge=ImageVolume(lge, affine, "lge.nii.gz"),
        wall=ImageVolume(wall_mask, affine, "wall.nii.gz"),
        truth_labels=ImageVolume(labels, affine, "truth_labels.nii.gz"),
        blood=ImageVolume(blood_mask, affine, "blood.nii.gz"),
        truth=truth,
    )


def _atrium_record(design: AtriumDesign) -> dict:
    """The atrial anatomy in scanner mm, for truth.json."""
    m = design.mitral_direction
    return {
        "centre_mm": _to_list(design.centre),
        "endo_semi_axes_mm": _to_list(design.semi_axes),
        "axes_units": _to_list(design.frame.T, 5),
        "axes_description": "rows: the body's left, posterior and superior axes (scanner RAS "
        "unit vectors) along which endo_semi_axes_mm are measured",
        "wall_thickness_mm": round(design.wall_mm, 3),
        "pulmonary_veins": {
            name: {
                "ostium_mm": _to_list(design.scanner(vein["direction"] * vein["ostium"])),
                "direction_unit": _to_list(design.frame @ vein["direction"], 5),
                "lumen_diameter_mm": round(2 * vein["radius"], 3),
                "stub_length_mm": round(vein["end"] - vein["ostium"], 3),
            }
            for name, vein in design.veins.items()
        },
        "mitral_opening": {
            "centre_mm": _to_list(
                design.scanner(m / math.sqrt(float(np.sum((m / design.semi_axes) ** 2))))
            ),
            "direction_unit": _to_list(design.frame @ m, 5),
            "diameter_mm": round(2 * design.mitral_radius, 3),
        },
    }


def make_phantom(
    kind: str,
    seed: int,
    *,
    acquisition: Acquisition | None = None,
    fibrosis_percent: float = 20.0,
) -> Phantom:
    """Dispatch on ``kind`` (one of :data:`KINDS`)."""
    if kind == "lv-infarct":
        return make_ventricle(seed, infarct=True, acquisition=acquisition)
    if kind == "lv-healthy":
        return make_ventricle(seed, infarct=False, acquisition=acquisition)
    if kind == "la-fibrosis":
        return make_atrium(seed, fibrosis_percent=fibrosis_percent, acquisition=acquisition)
    raise PhantomError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def write_phantom(phantom: Phantom, out_dir: str | Path) -> list[Path]:
    """Write the phantom's files (:data:`PHANTOM_FILES`) into ``out_dir``; all or none."""
    out_dir = Path(out_dir)
    writers: dict[str, Callable[[Path], object]] = {
        "lge.nii.gz": lambda p: save_nifti(phantom.lge, p, description="cardiotwin phantom LGE"),
        "wall.nii.gz": lambda p: save_nifti(phantom.wall, p, description="cardiotwin wall"),
        "truth_labels.nii.gz": lambda p: save_nifti(
            phantom.truth_labels, p, description="cardiotwin truth labels 0-3"
        ),
        "blood.nii.gz": lambda p: save_nifti(phantom.blood, p, description="cardiotwin blood"),
        "truth.json": lambda p: p.write_text(json.dumps(phantom.truth, indent=1) + "\n"),
    }
    return write_all_or_nothing({out_dir / name: writer for name, writer in writers.items()})


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="which synthetic patient")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, required=True, help="random seed (anatomy, noise)")
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        metavar=("I_MM", "J_MM", "SLICE_MM"),
        default=(1.5, 1.5, 8.0),
        help="acquisition voxel size in mm, slice thickness last (default 1.5 1.5 8)",
    )
    parser.add_argument(
        "--snr", type=float, default=15.0, help="blood signal / noise sigma (default 15)"
    )
    parser.add_argument(
        "--fine-mm",
        type=float,
        default=0.5,
        help="size of the anatomy sub-voxels in mm (default 0.5; 1.0 is faster)",
    )
    parser.add_argument(
        "--fibrosis-percent",
        type=float,
        default=20.0,
        help="la-fibrosis: percent of the atrial wall that is fibrotic (default 20)",
    )
    parser.add_argument(
        "--psf-fwhm-pixels",
        type=float,
        default=1.0,
        help="in-plane blur, FWHM in pixels (default 1)",
    )
    parser.add_argument(
        "--bias",
        type=float,
        default=0.1,
        help="coil-bias amplitude as a fraction of the signal (default 0.1)",
    )


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.cli import CommandError

    acquisition = Acquisition(
        spacing_mm=tuple(float(s) for s in args.spacing),
        snr=float(args.snr),
        fine_mm=float(args.fine_mm),
        psf_fwhm_pixels=float(args.psf_fwhm_pixels),
        bias_fraction=float(args.bias),
    )
    if args.out.exists() and not args.out.is_dir():
        raise CommandError(f"--out {args.out} exists and is not a folder; give a folder path")
    try:
        phantom = make_phantom(
            args.kind, args.seed, acquisition=acquisition, fibrosis_percent=args.fibrosis_percent
        )
    except PhantomError as exc:
        raise CommandError(str(exc)) from None
    try:
        written = write_phantom(phantom, args.out)
    except (ValueError, OSError) as exc:
        raise CommandError(f"nothing written to {args.out}: {exc}") from None
    log.info(
        "wrote %s phantom (seed %d, shape %s, spacing %s mm) to %s: %s",
        args.kind,
        args.seed,
        phantom.lge.shape,
        tuple(round(float(s), 3) for s in phantom.lge.spacing_mm),
        args.out,
        ", ".join(p.name for p in written),
    )
    return 0
