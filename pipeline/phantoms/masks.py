"""Masks as a person or a network would draw them, rather than the exact truth.

Contours are drawn slice by slice (along the acquisition's k axis). Each contour (the
endocardial one around the blood pool, the epicardial one around wall + blood pool) is moved
along its normal by a smooth random amount: a Gaussian random field with an in-plane
correlation length of ``correlation_mm`` (smooth along the contour, different in each slice
but for a shared part), standard deviation ``amplitude_voxels`` pixels, clipped to
± ``max_voxels``. The endocardial contour is in addition drawn ``endo_bias_voxels`` into the
blood on average: the bright blood and the bright subendocardial scar of LGE are hard to
tell apart, and readers and networks err towards including the edge.

A displacement is applied through signed in-plane distance maps (mm, zero on the contour
between pixel centres), so sub-pixel amounts move the contour by whole pixels with the right
probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DrawnMaskModel:
    """Contour errors in acquisition pixels (see the module docstring)."""

    amplitude_voxels: float = 0.8
    max_voxels: float = 2.0
    endo_bias_voxels: float = 0.7
    correlation_mm: float = 10.0
    shared_fraction: float = 0.5

    def record(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


def _signed_distance_in_plane(region: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Per slice (axis 2): distance (mm) to the region's contour, negative inside.

    The contour runs half a pixel outside the outermost pixel centres of the region.
    """
    from scipy import ndimage

    out = np.zeros(region.shape, dtype=np.float32)
    half_pixel = 0.5 * float(min(spacing_mm[0], spacing_mm[1]))
    for k in range(region.shape[2]):
        section = region[:, :, k]
        if not section.any():
            out[:, :, k] = 1e6
            continue
        if section.all():
            out[:, :, k] = -1e6
            continue
        outside = ndimage.distance_transform_edt(~section, sampling=spacing_mm[:2])
        inside = ndimage.distance_transform_edt(section, sampling=spacing_mm[:2])
        out[:, :, k] = np.where(section, -(inside - half_pixel), outside - half_pixel)
    return out


def _contour_field(
    rng: np.random.Generator, shape: tuple[int, ...], spacing_mm: np.ndarray, model: DrawnMaskModel
) -> np.ndarray:
    """Smooth displacement field (in pixels) of unit SD scaled and clipped by ``model``."""
    from scipy import ndimage

    sigma = [
        model.correlation_mm / float(spacing_mm[0]),
        model.correlation_mm / float(spacing_mm[1]),
    ]
    per_slice = ndimage.gaussian_filter(rng.normal(size=shape), sigma + [0.0], mode="nearest")
    shared = ndimage.gaussian_filter(rng.normal(size=shape[:2]), sigma, mode="nearest")
    per_slice /= max(float(per_slice.std()), 1e-12)
    shared /= max(float(shared.std()), 1e-12)
    w = model.shared_fraction
    field = np.sqrt(1 - w * w) * per_slice + w * shared[:, :, None]
    return np.clip(model.amplitude_voxels * field, -model.max_voxels, model.max_voxels)


def draw_masks(
    wall: np.ndarray,
    cavity: np.ndarray,
    spacing_mm: np.ndarray,
    rng: np.random.Generator,
    model: DrawnMaskModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(wall, cavity) as drawn: both contours displaced (see the module docstring).

    ``wall`` and ``cavity`` (bool, acquisition grid) are the true myocardium and the blood
    pool it encloses. The drawn wall is the drawn epicardial region minus the drawn cavity.
    """
    model = model or DrawnMaskModel()
    spacing_mm = np.asarray(spacing_mm, dtype=float)
    pixel_mm = float(min(spacing_mm[0], spacing_mm[1]))
    wall = np.asarray(wall, dtype=bool)
    cavity = np.asarray(cavity, dtype=bool) & ~wall
    endo_distance = _signed_distance_in_plane(cavity, spacing_mm)
    epi_distance = _signed_distance_in_plane(wall | cavity, spacing_mm)
    # Positive displacement moves a contour outward (grows its region).
    endo_shift = _contour_field(rng, wall.shape, spacing_mm, model) - model.endo_bias_voxels
    epi_shift = _contour_field(rng, wall.shape, spacing_mm, model)
    drawn_cavity = endo_distance < endo_shift * pixel_mm
    drawn_epi = epi_distance < epi_shift * pixel_mm
    drawn_wall = drawn_epi & ~drawn_cavity
    return drawn_wall, drawn_cavity & drawn_epi


def cavity_enclosed(wall: np.ndarray) -> np.ndarray:
    """The blood pool a wall encloses in each slice (axis 2): holes of the wall section."""
    from scipy import ndimage

    cavity = np.zeros_like(wall, dtype=bool)
    for k in range(wall.shape[2]):
        section = wall[:, :, k].astype(bool)
        if section.any():
            cavity[:, :, k] = ndimage.binary_fill_holes(section) & ~section
    return cavity


def mask_agreement(drawn: np.ndarray, true: np.ndarray) -> dict:
    """How far a drawn mask is from the truth: Dice and voxels added / missed."""
    drawn, true = np.asarray(drawn, bool), np.asarray(true, bool)
    overlap = int(np.count_nonzero(drawn & true))
    total = int(np.count_nonzero(drawn)) + int(np.count_nonzero(true))
    return {
        "dice_vs_true": round(2.0 * overlap / total, 4) if total else 1.0,
        "voxels_added": int(np.count_nonzero(drawn & ~true)),
        "voxels_missed": int(np.count_nonzero(true & ~drawn)),
    }
