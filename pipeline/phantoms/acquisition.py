"""How a phantom is imaged: the acquisition grid, partial volume, blur, coil bias and noise.

An anatomy is a function ``sample(points_mm) -> (classes, signal)`` that gives, for points in
scanner mm, the tissue class (:class:`Fine`) and the noise-free LGE signal (blood = 1,
texture included). The acquisition:

1. evaluates it on sub-voxels of about ``fine_mm`` that tile every acquisition voxel inside
   the box holding the heart, and on a coarse 1 × 1 × 2 subdivision elsewhere (chest wall and
   lungs need no sub-millimetre detail), one slice at a time so memory stays small;
2. averages the signal over each voxel (partial volume; the slice profile of a thick slice);
3. multiplies by a smooth coil-bias ramp (±``bias_fraction``), blurs in-plane with a Gaussian
   point-spread function of FWHM ``psf_fwhm_pixels`` pixels, and adds Rician noise: the
   magnitude of signal + complex Gaussian noise of standard deviation ``sigma = 1 / snr``
   per channel. **SNR is the blood-pool signal over the noise sigma.**
4. takes the truth on the same grid from the sub-voxel class counts: the wall mask holds the
   voxels that are at least half wall; each takes the median tissue class of its wall
   sub-voxels (healthy < border zone < dense scar); the blood mask holds the voxels at least
   half blood pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
from cardiotwin.pipeline.images import MAX_SPACING_MM, MIN_SPACING_MM


class PhantomError(ValueError):
    """A phantom setting is out of range; the message names the setting and its range."""


class Fine(IntEnum):
    """Tissue classes of the anatomy (sub-voxel level); 1-3 are the wall's tissue labels."""

    OUTSIDE = 0  # neither the chamber's wall nor its blood pool: air, lung, soft tissue
    HEALTHY = HEALTHY
    BORDER_ZONE = BORDER_ZONE
    DENSE_SCAR = DENSE_SCAR
    BLOOD = 4  # the chamber's blood pool (LV cavity, LA)
    OTHER_BLOOD = 5  # another chamber's blood (RV)
    OTHER_MUSCLE = 6  # myocardium outside the wall mask: RV wall, papillary muscles, trabeculae


N_FINE_CLASSES = len(Fine)

#: Largest acquisition grid (voxels); a clinical LGE stack has < 1 million.
MAX_ACQUISITION_VOXELS = 20_000_000

Sampler = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


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
        if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
            raise PhantomError(
                f"spacing {tuple(float(s) for s in spacing)} mm is outside "
                f"[{MIN_SPACING_MM:g}, {MAX_SPACING_MM:g}] mm; give e.g. --spacing 1.5 1.5 8"
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


# ---------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rodrigues rotation matrix about ``axis`` by ``angle_rad``."""
    x, y, z = unit(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * (k @ k)


def random_tilt(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation by up to ``max_deg`` degrees about a random axis."""
    return rotation_about(rng.normal(size=3), math.radians(rng.uniform(0, max_deg)))


def acquisition_grid(
    points_mm: np.ndarray,
    slice_normal: np.ndarray,
    in_plane_angle_rad: float,
    spacing_mm: np.ndarray,
    margin_mm: np.ndarray,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of an oblique stack covering ``points_mm`` (scanner) with margins.

    Slices are normal to ``slice_normal`` (the k axis); the in-plane axes are turned by
    ``in_plane_angle_rad``; (e_i, e_j, e_k) is right-handed. Refuses (before allocating
    anything) a grid of more than :data:`MAX_ACQUISITION_VOXELS` voxels.
    """
    e_k = unit(slice_normal)
    helper = np.array([1.0, 0, 0]) if abs(e_k[0]) < 0.9 else np.array([0, 1.0, 0])
    e_i = unit(helper - (helper @ e_k) * e_k)
    e_i = rotation_about(e_k, in_plane_angle_rad) @ e_i
    e_j = np.cross(e_k, e_i)
    axes = np.stack([e_i, e_j, e_k], axis=1)
    local = points_mm @ axes
    low = local.min(axis=0) - margin_mm
    high = local.max(axis=0) + margin_mm
    extent = (high - low) / spacing_mm
    if float(np.prod(np.maximum(1.0, np.ceil(extent)))) > MAX_ACQUISITION_VOXELS:
        raise PhantomError(
            f"spacing {tuple(round(float(s), 4) for s in spacing_mm)} mm would need a grid of "
            f"{int(np.prod(np.ceil(extent))):,} voxels (more than {MAX_ACQUISITION_VOXELS:,}); "
            "give a clinical spacing such as --spacing 1.5 1.5 8 or 1.25 1.25 1.25"
        )
    shape = np.maximum(1, np.ceil(extent)).astype(int)
    # Centre the grid on the covered box so the margins are even on both sides.
    start = 0.5 * (low + high) - 0.5 * (shape - 1) * spacing_mm
    affine = np.eye(4)
    affine[:3, :3] = axes * spacing_mm
    affine[:3, 3] = axes @ start
    return affine, (int(shape[0]), int(shape[1]), int(shape[2]))


def fine_grid_affine(affine: np.ndarray, subdivision: np.ndarray) -> np.ndarray:
    """Affine of the sub-voxel grid whose blocks of ``subdivision`` tile each voxel."""
    fine_to_coarse = np.eye(4)
    fine_to_coarse[:3, :3] = np.diag(1.0 / np.asarray(subdivision, dtype=float))
    fine_to_coarse[:3, 3] = 0.5 / np.asarray(subdivision, dtype=float) - 0.5
    return affine @ fine_to_coarse


def box_of_points(
    affine: np.ndarray, shape: tuple[int, int, int], points_mm: np.ndarray, margin_voxels: int = 2
) -> tuple[tuple[int, int], tuple[int, int]]:
    """In-plane voxel index ranges [i0, i1), [j0, j1) covering ``points_mm`` plus a margin."""
    ijk = (np.asarray(points_mm) - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    ranges = []
    for axis in (0, 1):
        low = max(0, int(math.floor(ijk[:, axis].min())) - margin_voxels)
        high = min(shape[axis], int(math.ceil(ijk[:, axis].max())) + margin_voxels + 1)
        ranges.append((low, max(low + 1, high)))
    return ranges[0], ranges[1]


def _grid_points(affine: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """(n, 3) scanner mm of the voxel centres of ``affine``'s grid over index ``ranges``."""
    axes = [np.arange(low, high, dtype=np.float64) for low, high in ranges]
    ii, jj, kk = np.meshgrid(*axes, indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


# ---------------------------------------------------------------------------------------
# Texture
# ---------------------------------------------------------------------------------------


class RandomField:
    """Smooth Gaussian random field of unit SD on a box of a local frame (mm).

    White noise on a regular grid of ``spacing_mm`` filtered by a Gaussian of ``sigma_mm``;
    values between grid points are trilinear. The field lives in the anatomy's own frame,
    so it does not change with the acquisition grid.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        low_mm: np.ndarray,
        high_mm: np.ndarray,
        spacing_mm: float,
        sigma_mm: float,
    ):
        from scipy import ndimage

        self.low = np.asarray(low_mm, dtype=np.float64)
        self.spacing = float(spacing_mm)
        shape = tuple(int(n) for n in np.ceil((np.asarray(high_mm) - self.low) / self.spacing) + 2)
        noise = rng.standard_normal(size=shape, dtype=np.float32)
        field = ndimage.gaussian_filter(noise, sigma_mm / self.spacing, mode="wrap")
        self.values = (field / max(float(field.std()), 1e-12)).astype(np.float32)

    def at(self, local_mm: np.ndarray) -> np.ndarray:
        """Field values at (n, 3) local points (mm); the nearest edge value outside the box."""
        from scipy import ndimage

        coordinates = ((np.asarray(local_mm) - self.low) / self.spacing).T
        return ndimage.map_coordinates(self.values, coordinates, order=1, mode="nearest").astype(
            np.float32
        )


# ---------------------------------------------------------------------------------------
# The acquisition
# ---------------------------------------------------------------------------------------


@dataclass
class Acquired:
    """The acquisition's outputs on the LGE grid, and the designed volumes."""

    lge: np.ndarray
    labels: np.ndarray
    wall: np.ndarray
    blood: np.ndarray
    info: dict
    fine_volumes_ml: dict


def acquire(
    sample: Sampler,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    box: tuple[tuple[int, int], tuple[int, int]],
    acquisition: Acquisition,
    noise_rng: np.random.Generator,
    bias_rng: np.random.Generator,
) -> Acquired:
    """Image the anatomy ``sample`` on the grid (``affine``, ``shape``); see the module docstring.

    ``box``: the in-plane index ranges ((i0, i1), (j0, j1)) that hold the heart; only there
    are sub-voxels of ``fine_mm`` evaluated (and only there can wall or blood pool be).
    """
    from scipy import ndimage

    subdivision = acquisition.subdivision()
    (i0, i1), (j0, j1) = box
    fine_affine = fine_grid_affine(affine, subdivision)
    coarse_subdivision = np.array([1, 1, min(int(subdivision[2]), 2)])
    coarse_affine = fine_grid_affine(affine, coarse_subdivision)
    n_i, n_j, n_k = shape
    clean = np.zeros(shape, dtype=np.float64)
    fractions = np.zeros((N_FINE_CLASSES, i1 - i0, j1 - j0, n_k), dtype=np.float32)
    fine_counts = np.zeros(N_FINE_CLASSES, dtype=np.int64)
    s0, s1, s2 = (int(s) for s in subdivision)
    c2 = int(coarse_subdivision[2])
    for k in range(n_k):
        points = _grid_points(coarse_affine, [(0, n_i), (0, n_j), (k * c2, (k + 1) * c2)])
        _, signal = sample(points)
        clean[:, :, k] = signal.reshape(n_i, n_j, c2).mean(axis=2)
        points = _grid_points(
            fine_affine, [(i0 * s0, i1 * s0), (j0 * s1, j1 * s1), (k * s2, (k + 1) * s2)]
        )
        classes, signal = sample(points)
        block = (i1 - i0, s0, j1 - j0, s1, s2)
        clean[i0:i1, j0:j1, k] = signal.reshape(i1 - i0, s0, j1 - j0, s1, s2).mean(
            axis=(1, 3, 4), dtype=np.float64
        )
        fine_counts += np.bincount(classes, minlength=N_FINE_CLASSES)
        for value in range(N_FINE_CLASSES):
            fractions[value, :, :, k] = (classes == value).reshape(block).mean(axis=(1, 3, 4))

    # Coil bias: a linear ramp of random direction across the field of view.
    direction = unit(bias_rng.normal(size=3))
    spacing = np.asarray(acquisition.spacing_mm, dtype=float)
    centre = (np.asarray(shape) - 1) / 2
    half_extent = 0.5 * np.linalg.norm(np.asarray(shape) * spacing)
    along = [(np.arange(n) - centre[a]) * spacing[a] for a, n in enumerate(shape)]
    ramp = (
        direction[0] * along[0][:, None, None]
        + direction[1] * along[1][None, :, None]
        + direction[2] * along[2][None, None, :]
    ) / half_extent
    clean *= 1.0 + acquisition.bias_fraction * ramp
    if acquisition.psf_fwhm_pixels > 0:
        sigma_pixels = acquisition.psf_fwhm_pixels / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        clean = ndimage.gaussian_filter(clean, [sigma_pixels, sigma_pixels, 0.0], mode="nearest")
    sigma = 1.0 / acquisition.snr
    real = clean + noise_rng.normal(scale=sigma, size=shape)
    imaginary = noise_rng.normal(scale=sigma, size=shape)
    lge = np.hypot(real, imaginary).astype(np.float32)

    labels_box, wall_box, blood_box = _truth_from_fractions(fractions)
    labels = np.zeros(shape, dtype=np.uint8)
    wall = np.zeros(shape, dtype=np.uint8)
    blood = np.zeros(shape, dtype=np.uint8)
    labels[i0:i1, j0:j1] = labels_box
    wall[i0:i1, j0:j1] = wall_box
    blood[i0:i1, j0:j1] = blood_box
    fine_voxel_ml = abs(np.linalg.det(fine_affine[:3, :3])) / 1000.0
    volumes = {
        name: float(fine_counts[value] * fine_voxel_ml)
        for name, value in (
            ("healthy", Fine.HEALTHY),
            ("border_zone", Fine.BORDER_ZONE),
            ("dense_scar", Fine.DENSE_SCAR),
            ("blood", Fine.BLOOD),
        )
    }
    info = {
        "noise_sigma": float(sigma),
        "bias_direction_voxel_axes": direction.round(4).tolist(),
        "fine_box_voxels": [[int(i0), int(i1)], [int(j0), int(j1)]],
    }
    return Acquired(lge, labels, wall, blood, info, volumes)


def _truth_from_fractions(
    fractions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, wall, blood) uint8 from per-voxel class fractions (see the module docstring)."""
    myocardium = fractions[Fine.HEALTHY] + fractions[Fine.BORDER_ZONE] + fractions[Fine.DENSE_SCAR]
    wall = myocardium >= 0.5 - 1e-6
    # Median class of the wall part (healthy < border zone < dense scar): a voxel that is
    # mostly enhanced counts as enhanced even if no single class has a majority.
    enhanced = fractions[Fine.BORDER_ZONE] + fractions[Fine.DENSE_SCAR]
    at_least_bz = enhanced >= 0.5 * myocardium - 1e-6
    dense = fractions[Fine.DENSE_SCAR] >= 0.5 * myocardium - 1e-6
    labels = np.where(wall, HEALTHY + at_least_bz.astype(int) + (at_least_bz & dense), 0)
    blood = (fractions[Fine.BLOOD] >= 0.5 - 1e-6) & ~wall
    return labels.astype(np.uint8), wall.astype(np.uint8), blood.astype(np.uint8)


def acquisition_record(
    acquisition: Acquisition, affine: np.ndarray, shape: tuple[int, int, int], info: dict
) -> dict:
    """The ``acquisition`` block of truth.json."""
    subdivision = acquisition.subdivision()
    return {
        "spacing_mm": [float(s) for s in acquisition.spacing_mm],
        "shape": list(shape),
        "affine": to_list(affine, 6),
        "snr": float(acquisition.snr),
        "snr_definition": "blood-pool signal / noise sigma; Rician noise = magnitude of "
        "signal plus complex Gaussian noise with this sigma per channel",
        "noise_sigma": info["noise_sigma"],
        "fine_spacing_mm": to_list(np.asarray(acquisition.spacing_mm) / subdivision, 4),
        "fine_box_voxels": info["fine_box_voxels"],
        "psf_fwhm_mm": to_list(
            acquisition.psf_fwhm_pixels * np.asarray(acquisition.spacing_mm[:2]), 4
        ),
        "slice_profile": "rectangular, as thick as the slice spacing (no gap)",
        "bias_fraction": float(acquisition.bias_fraction),
        "bias_direction_voxel_axes": info["bias_direction_voxel_axes"],
        "truth_rule": "wall = voxels at least half wall; label = median tissue class "
        "(healthy < border zone < dense scar) of the voxel's wall sub-voxels; blood = voxels "
        "at least half blood pool",
    }


def to_list(array, decimals: int = 3) -> list:
    return np.round(np.asarray(array, dtype=float), decimals).tolist()
