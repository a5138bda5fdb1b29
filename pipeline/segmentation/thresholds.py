"""Intensity thresholds: remote myocardium, n-SD, FWHM and IIR, and in-wall smoothing.

- ``nsd``: n standard deviations above remote myocardium (Yan 2006, Circulation 114:32:
  grey zone 2-3 SD, core > 3 SD; JHU variant, DESIGN §5: border zone 2-4 SD, dense ≥ 4 SD).
  Two references: ``remote`` (the Otsu low class of the wall interior, refined by iterative
  3-SD clipping, which stands in for a hand-drawn remote region) and ``mode`` (the peak of
  the wall's intensity histogram with the SD from its lower half-width: robust to a large
  enhanced tail).
- ``fwhm``: full width at half maximum (Amado 2004, JACC 44:2383; Schmidt 2007,
  Circulation 115:2006): dense scar ≥ 50 % of the maximum wall intensity, border zone above
  the peak of remote myocardium and below that.
- ``iir``: image intensity ratio = wall / mean blood pool (Benito 2017, Europace 19:1272:
  fibrosis > 1.20, dense > 1.32).
"""

from __future__ import annotations

import numpy as np

from cardiotwin.pipeline.images import ImageError, ImageVolume
from cardiotwin.pipeline.segmentation.inputs import MIN_WALL_VOXELS, in_plane_structure, slice_axis


def smooth_within_mask(
    image: np.ndarray, mask: np.ndarray, spacing_mm: np.ndarray, sigma_mm: float
) -> np.ndarray:
    """Gaussian-smooth ``image`` over ``mask`` voxels only (normalised convolution).

    Axes whose spacing exceeds 3 sigma are left alone (the kernel would be narrower than a
    third of a voxel). Voxels outside ``mask`` keep their value.
    """
    from scipy import ndimage

    image = image.astype(np.float64)
    if sigma_mm <= 0:
        return image
    sigma_voxels = [sigma_mm / s if s <= 3 * sigma_mm else 0.0 for s in spacing_mm]
    weight = mask.astype(np.float64)
    numerator = ndimage.gaussian_filter(image * weight, sigma_voxels, mode="constant")
    denominator = ndimage.gaussian_filter(weight, sigma_voxels, mode="constant")
    smoothed = numerator / np.maximum(denominator, 1e-12)
    return np.where(mask, smoothed, image)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (Otsu 1979): maximises the between-class variance of ``values``."""
    from skimage.filters import threshold_otsu

    if values.size == 0 or np.ptp(values) == 0:
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values, nbins=bins))


def remote_reference(
    image: np.ndarray,
    wall: np.ndarray,
    rim: np.ndarray,
    clip_sd: float = 3.0,
    kind: str = "remote",
) -> dict[str, float]:
    """Mean and SD (image units) of remote myocardium in the acquired image.

    Taken over the wall's interior (``wall`` minus the partial-volume ``rim``; the whole
    wall if fewer than :data:`MIN_WALL_VOXELS`). ``kind="remote"``: start from the Otsu low
    class, then iterate: keep the voxels within ``clip_sd`` SD of the mean, recompute. With
    an infarct this settles on the healthy mode without the enhanced tail; without one it
    grows back to the whole (unimodal) wall. ``kind="mode"``: the histogram peak, with the
    SD from the peak's half width on its lower side (FWHM / 2.355).
    """
    interior = wall & ~rim
    source = interior if np.count_nonzero(interior) >= MIN_WALL_VOXELS else wall
    values = np.asarray(image[source], dtype=np.float64)
    threshold = otsu_threshold(values)
    region = "interior wall voxels" if source is interior else "wall voxels (few interior)"
    if kind == "mode":
        counts, edges = np.histogram(values, bins=max(16, min(128, values.size // 50)))
        from scipy import ndimage

        smooth = ndimage.gaussian_filter1d(counts.astype(float), 1.5)
        peak = int(np.argmax(smooth))
        centres = 0.5 * (edges[1:] + edges[:-1])
        below = np.flatnonzero(smooth[:peak] <= 0.5 * smooth[peak])
        half_width = centres[peak] - (centres[below[-1]] if below.size else centres[0])
        sd = max(float(half_width) / 1.1774, 1e-12)  # HWHM = 1.1774 SD
        mean = float(centres[peak])
        return {
            "mean": mean,
            "sd": sd,
            "n_voxels": int(values.size),
            "otsu_threshold": threshold,
            "region": region + ", histogram mode and lower half-width, acquired image",
        }
    kept = values <= threshold
    for _ in range(100):
        mean, sd = float(values[kept].mean()), float(values[kept].std())
        updated = np.abs(values - mean) <= clip_sd * sd
        if np.array_equal(updated, kept) or np.count_nonzero(updated) < MIN_WALL_VOXELS:
            break
        kept = updated
    return {
        "mean": float(values[kept].mean()),
        "sd": float(values[kept].std()),
        "n_voxels": int(np.count_nonzero(kept)),
        "otsu_threshold": threshold,
        "region": region + f", Otsu low class then iterative {clip_sd:g}-SD clipping, "
        "acquired image",
    }


def remote_thresholds(
    smoothed: np.ndarray,
    wall: np.ndarray,
    reference: dict,
    settings,
    blood_median: float | None = None,
) -> dict:
    """Border-zone and dense-scar thresholds of the ``nsd`` and ``fwhm`` methods.

    FWHM with ``settings.maximum_at_least_blood`` and ``blood_median``: the maximum is at
    least the blood pool's median intensity. Dense scar in LGE enhances about as much as
    the blood; a wall whose brightest voxel is far dimmer has no dense scar to take the
    half-maximum of, and its own maximum (noise, or partial volume at the base) would put
    the border-zone floor and the dense cut inside healthy myocardium."""
    mean, sd = reference["mean"], reference["sd"]
    if settings.method == "nsd":
        return {
            "border_zone": mean + settings.border_zone_sd * sd,
            "dense_scar": mean + settings.dense_sd * sd,
            "rule": f"border zone >= mean + {settings.border_zone_sd:g} SD, dense scar >= "
            f"mean + {settings.dense_sd:g} SD of the {settings.nsd_reference} reference",
        }
    remote_peak = mean + settings.remote_peak_sd * sd
    wall_maximum = float(np.percentile(smoothed[wall], settings.maximum_percentile))
    maximum = wall_maximum
    if settings.maximum_at_least_blood and blood_median is not None:
        maximum = max(wall_maximum, float(blood_median))
    # Without real enhancement the maximum is remote noise: never call dense scar below
    # the remote peak, so a healthy wall stays healthy.
    dense = max(settings.fwhm_fraction * maximum, remote_peak)
    floor = mean + settings.border_zone_floor * (maximum - mean)
    return {
        "border_zone": min(max(remote_peak, floor), dense),
        "dense_scar": dense,
        "maximum": maximum,
        "wall_maximum": wall_maximum,
        "rule": f"dense scar >= {settings.fwhm_fraction:g} x maximum (the "
        f"{settings.maximum_percentile:g}th percentile of the smoothed wall); border zone "
        f"above the remote peak (mean + {settings.remote_peak_sd:g} SD)",
    }


def blood_reference(
    lge: ImageVolume,
    blood_pool: np.ndarray,
    erode_voxels: int,
    wall_source: str,
    blood_source: str | None,
) -> dict:
    """Mean (and robust SD) of the blood pool, eroded in-plane by ``erode_voxels``."""
    from scipy import ndimage

    pool = blood_pool
    if erode_voxels > 0:
        # In-plane erosion only: with thick slices a 3-D erosion removes whole slices.
        eroded = ndimage.binary_erosion(
            pool, in_plane_structure(slice_axis(lge.spacing_mm)), iterations=erode_voxels
        )
        if np.count_nonzero(eroded) >= MIN_WALL_VOXELS:
            pool = eroded
    if np.count_nonzero(pool) < MIN_WALL_VOXELS:
        if blood_source is not None:
            raise ImageError(
                f"{blood_source}: has only {np.count_nonzero(pool)} blood-pool voxels outside "
                f"the wall, fewer than the {MIN_WALL_VOXELS} the IIR reference needs. Give a "
                "mask of the cavity's blood pool on the LGE grid."
            )
        raise ImageError(
            f"{wall_source}: no blood pool found inside the wall mask "
            f"({np.count_nonzero(pool)} voxels) for the IIR reference. Pass the blood pool "
            "as --blood MASK, or check that the wall mask encloses the cavity."
        )
    values = np.asarray(lge.array)[pool].astype(np.float64)
    mean = float(values.mean())
    if not mean > 0:
        raise ImageError(
            f"{lge.source}: the mean blood-pool intensity is {mean:g}, so the IIR is "
            "undefined. Check the image (magnitude LGE expected) and the blood mask."
        )
    median = float(np.median(values))
    return {
        "mean_intensity": mean,
        "median_intensity": median,
        "robust_sd": float(1.4826 * np.median(np.abs(values - median))),
        "n_voxels": int(values.size),
    }


def iir_thresholds(blood: dict, settings) -> dict:
    """Fibrosis and dense-scar intensities of the IIR rule."""
    mean = blood["mean_intensity"]
    return {
        "border_zone": settings.fibrosis_iir * mean,
        "dense_scar": settings.dense_iir * mean,
        "rule": f"fibrosis IIR >= {settings.fibrosis_iir:g}, dense scar IIR >= "
        f"{settings.dense_iir:g} (IIR = wall / mean blood pool)",
    }
