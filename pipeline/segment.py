"""Classify an LGE wall into healthy (1), border zone / fibrosis (2) and dense scar (3).

``cardiotwin segment --lge F --wall F --out F --method nsd|fwhm|iir`` writes the label map
on the LGE's own grid (same shape and affine, 0 outside the wall), a JSON report next to
it, optionally a near-isotropic copy for meshing (``--resample-iso MM``) and quality-control
pictures (``--qc DIR``). All outputs are written together or not at all.

Methods (thresholds configurable; defaults in :data:`DEFAULTS`):

- ``nsd``: n standard deviations above remote myocardium (Yan 2006, Circulation
  114:32; JHU variant: border zone 2-4 SD, dense scar >= 4 SD with the Otsu low class of
  the wall as the remote reference, DESIGN §5).
- ``fwhm``: full width at half maximum (Amado 2004, JACC 44:2383; Schmidt 2007,
  Circulation 115:2006): dense scar >= 50 % of the maximum wall intensity, border zone
  above the peak of remote myocardium and below that.
- ``iir``: image intensity ratio = wall intensity / mean blood-pool intensity, for atria
  (Benito 2017, Europace 19:1272: fibrosis IIR > 1.20, dense scar > 1.32); fibrosis % of
  the wall and its Utah stage (Oakes 2009, Circulation 119:1758; Marrouche 2014, DECAAF,
  JAMA 311:498: I < 10 %, II 10-20 %, III 20-30 %, IV >= 30 %).

Shared steps, in order:

1. **Remote reference** (``nsd`` and ``fwhm``): mean and SD of remote myocardium in the
   *acquired* image, so that SD means what the published thresholds mean (the image's
   noise plus tissue variation). Region: the wall's interior voxels (not touching the
   blood pool, whose partial volume inflates both numbers), starting from their Otsu low
   class and refined by iterative 3-SD clipping; that keeps a healthy wall (one mode, no
   enhancement) from being split in half by Otsu.
2. **In-wall smoothing** (``smooth_mm``, default 0.8 mm Gaussian sigma) of the image that
   is then thresholded: a normalised convolution over wall voxels only, so blood and
   background do not bleed in; axes whose spacing is much coarser than sigma (thick
   slices) are not smoothed. Voxel-wise thresholds on a noisy image (SNR 10-20) scatter
   labels; this light denoising is what keeps a 4-5 mm isthmus connected.
3. **Blood-pool partial-volume rim** (``nsd`` and ``fwhm``, on by default): wall voxels
   face-adjacent to the blood pool mix myocardium with bright blood and would read as
   enhancement; they take the label of the nearest interior wall voxel (distance in mm).
4. **Small components** (``min_component_ml``): connected groups of enhanced voxels
   (labels 2-3, 26-connected) smaller than this become healthy; isolated noise voxels are
   not scar.

The blood pool is the ``--blood`` mask if given, else the cavity enclosed by the wall:
holes of the wall mask filled slice by slice (slices along the coarsest axis) and in 3-D.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cardiotwin.files import write_all_or_nothing
from cardiotwin.meshing.tags import BACKGROUND, BORDER_ZONE, DENSE_SCAR, HEALTHY, TISSUE_NAMES
from cardiotwin.pipeline.images import (
    ImageError,
    ImageVolume,
    check_mask_not_empty,
    check_same_grid,
    check_volume,
    load_nifti,
    resample_isotropic,
    save_nifti,
)

log = logging.getLogger(__name__)

METHODS = ("nsd", "fwhm", "iir")
#: the labels a segmentation writes (lesions are added later, on the mesh)
LABEL_NAMES = {
    label: TISSUE_NAMES[label] for label in (BACKGROUND, HEALTHY, BORDER_ZONE, DENSE_SCAR)
}

#: In-plane closing (mm) that bridges gaps in a thin wall before its cavity is filled.
CAVITY_CLOSING_MM = 8.0

#: Fewest wall voxels that give usable statistics.
MIN_WALL_VOXELS = 20

#: Utah stages of LA fibrosis by % of the wall (Oakes 2009; Marrouche 2014, DECAAF).
UTAH_STAGE_LIMITS = ((10.0, "I"), (20.0, "II"), (30.0, "III"), (math.inf, "IV"))


class SegmentationError(ValueError):
    """The image cannot be segmented as asked; the message says why and what to do."""


@dataclass(frozen=True)
class SegmentationSettings:
    """Every setting of one segmentation; :data:`DEFAULTS` holds one per method.

    ``border_zone_sd`` / ``dense_sd``: n-SD thresholds (SD above the remote mean).
    ``fwhm_fraction``: dense scar at this fraction of the maximum (FWHM: 0.5).
    ``remote_peak_sd``: the FWHM border zone starts at the peak of remote myocardium,
    estimated as mean + this many SD of the reference: the expected maximum of a
    hand-drawn remote region of 20-50 voxels is 1.9-2.3 SD above its mean (the literal
    maximum of the whole remote wall would grow with its voxel count).
    ``fibrosis_iir`` / ``dense_iir``: IIR thresholds. ``smooth_mm``: in-wall Gaussian sigma
    in mm (0 = off). ``pv_rim``: relabel the blood-adjacent partial-volume rim.
    ``min_component_ml``: enhanced components below this volume become healthy.
    ``blood_erode_voxels``: in-plane erosion of the blood pool before its mean is taken
    (IIR), to keep wall partial volume out of the reference.
    """

    method: str
    border_zone_sd: float = 2.0
    dense_sd: float = 4.0
    fwhm_fraction: float = 0.5
    remote_peak_sd: float = 2.0
    fibrosis_iir: float = 1.20
    dense_iir: float = 1.32
    smooth_mm: float = 0.8
    pv_rim: bool = True
    min_component_ml: float = 0.1
    blood_erode_voxels: int = 1

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SegmentationError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        checks = [
            ("border_zone_sd", self.border_zone_sd, 0, None),
            ("dense_sd", self.dense_sd, self.border_zone_sd, None),
            ("fwhm_fraction", self.fwhm_fraction, 0, 1),
            ("remote_peak_sd", self.remote_peak_sd, 0, None),
            ("fibrosis_iir", self.fibrosis_iir, 0, None),
            ("dense_iir", self.dense_iir, self.fibrosis_iir, None),
            ("smooth_mm", self.smooth_mm, 0, 20),
            ("min_component_ml", self.min_component_ml, 0, None),
            ("blood_erode_voxels", self.blood_erode_voxels, 0, 10),
        ]
        for name, value, low, high in checks:
            ok = math.isfinite(value) and value >= low and (high is None or value <= high)
            if not ok:
                upper = "" if high is None else f" and at most {high:g}"
                raise SegmentationError(
                    f"{name.replace('_', '-')} must be a number of at least {low:g}{upper}, "
                    f"got {value}"
                )


DEFAULTS: dict[str, SegmentationSettings] = {
    "nsd": SegmentationSettings("nsd"),
    "fwhm": SegmentationSettings("fwhm"),
    # Atrial walls are one or two voxels thick and touch blood everywhere: no interior to
    # borrow labels from, and small fibrotic patches are real.
    "iir": SegmentationSettings("iir", pv_rim=False, min_component_ml=0.0),
}


@dataclass
class Segmentation:
    """Labels on the LGE grid (uint8, 0 outside the wall) and the JSON-ready report."""

    labels: ImageVolume
    report: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def check_inputs(
    lge: ImageVolume, wall: ImageVolume, blood: ImageVolume | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate the images; return the wall (and blood) masks as bool arrays.

    Raises :class:`~cardiotwin.pipeline.images.ImageError` naming the file for NaNs,
    absurd spacing, grids that differ, an empty or too small wall mask, or a wall of one
    constant intensity.
    """
    for volume in (lge, wall) + ((blood,) if blood is not None else ()):
        check_volume(volume)
    check_same_grid(lge, wall)
    check_mask_not_empty(wall)
    wall_mask = _as_mask(wall)
    if np.count_nonzero(wall_mask) < MIN_WALL_VOXELS:
        raise ImageError(
            f"{wall.source}: has only {np.count_nonzero(wall_mask)} wall voxels, fewer than "
            f"the {MIN_WALL_VOXELS} needed for intensity statistics. Check that this is the "
            "myocardium mask of this image."
        )
    wall_values = np.asarray(lge.array)[wall_mask]
    if np.ptp(wall_values) == 0:
        raise ImageError(
            f"{lge.source}: all {wall_values.size} wall voxels have the same intensity "
            f"({wall_values[0]:g}), so there is nothing to classify. Check that this is the "
            "LGE magnitude image and that the mask matches it."
        )
    blood_mask = None
    if blood is not None:
        check_same_grid(lge, blood)
        check_mask_not_empty(blood)
        blood_mask = _as_mask(blood) & ~wall_mask
    return wall_mask, blood_mask


def _as_mask(volume: ImageVolume) -> np.ndarray:
    array = np.asarray(volume.array)
    return array > 0.5 if np.issubdtype(array.dtype, np.floating) else array > 0


def slice_axis(spacing_mm: np.ndarray) -> int:
    """The coarsest axis (the slice direction of a 2-D multi-slice stack)."""
    return int(np.argmax(spacing_mm))


def blood_pool_from_wall(wall: np.ndarray, spacing_mm: np.ndarray) -> np.ndarray:
    """Cavity enclosed by ``wall`` (bool array).

    Holes of the wall filled in 3-D, united with the holes of each slice (slices along the
    coarsest axis) after an in-plane closing of :data:`CAVITY_CLOSING_MM` that bridges
    small gaps in a thin wall (an atrial wall is often broken where it runs nearly
    parallel to a thick slice). Voxels added by the closing are not blood.
    """
    from scipy import ndimage

    axis = slice_axis(spacing_mm)
    filled = ndimage.binary_fill_holes(wall) & ~wall
    in_plane = [s for a, s in enumerate(spacing_mm) if a != axis]
    radius = [max(1, int(round(CAVITY_CLOSING_MM / s))) for s in in_plane]
    yy, xx = np.ogrid[-radius[0] : radius[0] + 1, -radius[1] : radius[1] + 1]
    disk = (yy / radius[0]) ** 2 + (xx / radius[1]) ** 2 <= 1.0
    slices_filled = np.moveaxis(filled, axis, 0)
    for index, section in enumerate(np.moveaxis(wall, axis, 0)):
        if not section.any():
            continue
        padded = np.pad(section, max(radius))
        closed = ndimage.binary_closing(padded, structure=disk)
        closed = closed[tuple(slice(max(radius), -max(radius)) for _ in range(2))]
        slices_filled[index] |= ndimage.binary_fill_holes(closed) & ~closed
    return filled


# ---------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------


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
    image: np.ndarray, wall: np.ndarray, blood_pool: np.ndarray, clip_sd: float = 3.0
) -> dict[str, float]:
    """Mean and SD (image units) of remote myocardium in the acquired image.

    Start from the Otsu low class of the interior wall voxels (wall voxels not
    face-adjacent to the blood pool; the whole wall if fewer than :data:`MIN_WALL_VOXELS`),
    then iterate: keep the voxels within ``clip_sd`` SD of the mean, recompute. With an
    infarct this settles on the healthy mode without the enhanced tail; without one it
    grows back to the whole (unimodal) wall, where the Otsu split alone would take the
    lower half of the noise for "remote" and call the upper half enhanced.
    """
    interior = wall & ~partial_volume_rim(wall, blood_pool)
    source = interior if np.count_nonzero(interior) >= MIN_WALL_VOXELS else wall
    values = np.asarray(image[source], dtype=np.float64)
    threshold = otsu_threshold(values)
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
        "region": ("interior wall voxels" if source is interior else "wall voxels (few interior)")
        + f", Otsu low class then iterative {clip_sd:g}-SD clipping, acquired image",
    }


def partial_volume_rim(wall: np.ndarray, blood_pool: np.ndarray) -> np.ndarray:
    """Wall voxels face-adjacent to the blood pool."""
    from scipy import ndimage

    if not blood_pool.any():
        return np.zeros_like(wall)
    touching = ndimage.binary_dilation(blood_pool, ndimage.generate_binary_structure(3, 1))
    return wall & touching


def relabel_rim_from_interior(
    labels: np.ndarray, wall: np.ndarray, blood_pool: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """Give each blood-adjacent wall voxel the label of its nearest interior wall voxel."""
    from scipy import ndimage

    rim = partial_volume_rim(wall, blood_pool)
    interior = wall & ~rim
    if not rim.any() or not interior.any():
        return labels
    _, nearest = ndimage.distance_transform_edt(
        ~interior, sampling=spacing_mm, return_distances=True, return_indices=True
    )
    out = labels.copy()
    out[rim] = labels[tuple(index[rim] for index in nearest)]
    return out


def remove_small_components(
    labels: np.ndarray, voxel_ml: float, min_component_ml: float
) -> tuple[np.ndarray, int]:
    """Enhanced (>= 2) components under ``min_component_ml`` become healthy; (labels, count)."""
    from scipy import ndimage

    if min_component_ml <= 0:
        return labels, 0
    enhanced = labels >= BORDER_ZONE
    components, n = ndimage.label(enhanced, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return labels, 0
    sizes_ml = np.bincount(components.ravel())[1:] * voxel_ml
    small = np.flatnonzero(sizes_ml < min_component_ml) + 1
    out = labels.copy()
    out[np.isin(components, small)] = HEALTHY
    return out, int(small.size)


def utah_stage(fibrosis_percent: float) -> str:
    """Utah / DECAAF stage: I < 10 %, II 10-20 %, III 20-30 %, IV >= 30 % of the wall."""
    for upper, stage in UTAH_STAGE_LIMITS:
        if fibrosis_percent < upper:
            return stage
    return "IV"


# ---------------------------------------------------------------------------------------
# The segmentation
# ---------------------------------------------------------------------------------------


def segment(
    lge: ImageVolume,
    wall: ImageVolume,
    settings: SegmentationSettings,
    blood: ImageVolume | None = None,
) -> Segmentation:
    """Label the wall of ``lge`` with ``settings.method``; see the module docstring."""
    settings.validate()
    wall_mask, blood_mask = check_inputs(lge, wall, blood)
    spacing = lge.spacing_mm
    voxel_ml = abs(float(np.linalg.det(lge.affine[:3, :3]))) / 1000.0
    if blood_mask is None:
        blood_pool = blood_pool_from_wall(wall_mask, spacing)
        blood_source = "cavity enclosed by the wall mask"
    else:
        blood_pool = blood_mask
        blood_source = blood.source
    smoothed = smooth_within_mask(lge.array, wall_mask, spacing, settings.smooth_mm)

    report: dict = {"method": settings.method}
    if settings.method == "iir":
        thresholds, extra = _iir_thresholds(lge, blood_pool, wall, blood, settings)
        report["blood_pool"] = {**extra, "source": blood_source}
    else:
        reference = remote_reference(lge.array, wall_mask, blood_pool)
        report["remote_reference"] = reference
        thresholds = _remote_thresholds(smoothed, wall_mask, reference, settings)
    labels = np.zeros(lge.shape, dtype=np.uint8)
    labels[wall_mask] = HEALTHY
    labels[wall_mask & (smoothed >= thresholds["border_zone"])] = BORDER_ZONE
    labels[wall_mask & (smoothed >= thresholds["dense_scar"])] = DENSE_SCAR

    if settings.pv_rim:
        labels = relabel_rim_from_interior(labels, wall_mask, blood_pool, spacing)
    labels, n_removed = remove_small_components(labels, voxel_ml, settings.min_component_ml)

    report["thresholds"] = thresholds
    report["settings"] = {k: v for k, v in vars(settings).items() if k != "method"}
    report["removed_small_components"] = n_removed
    report["blood_pool_voxels"] = int(np.count_nonzero(blood_pool))
    report.update(label_statistics(labels, lge.affine))
    if settings.method == "iir":
        report["fibrosis_percent"] = report["border_zone_percent"] + report["scar_percent"]
        report["dense_fibrosis_percent"] = report["scar_percent"]
        report["utah_stage"] = utah_stage(report["fibrosis_percent"])
    report["labels"] = LABEL_NAMES
    report["grid"] = {
        "shape": list(lge.shape),
        "spacing_mm": [round(float(s), 6) for s in spacing],
        "affine": np.round(lge.affine, 6).tolist(),
    }
    return Segmentation(ImageVolume(labels, lge.affine.copy(), "labels"), report)


def _remote_thresholds(
    smoothed: np.ndarray, wall: np.ndarray, reference: dict, settings: SegmentationSettings
) -> dict[str, float]:
    mean, sd = reference["mean"], reference["sd"]
    if settings.method == "nsd":
        return {
            "border_zone": mean + settings.border_zone_sd * sd,
            "dense_scar": mean + settings.dense_sd * sd,
            "rule": f"border zone >= mean + {settings.border_zone_sd:g} SD, dense scar >= "
            f"mean + {settings.dense_sd:g} SD of the remote reference",
        }
    remote_peak = mean + settings.remote_peak_sd * sd
    maximum = float(smoothed[wall].max())
    # Without real enhancement the maximum is remote noise: never call dense scar below
    # the remote peak, so a healthy wall stays healthy.
    dense = max(settings.fwhm_fraction * maximum, remote_peak)
    return {
        "border_zone": remote_peak,
        "dense_scar": dense,
        "maximum": maximum,
        "rule": f"dense scar >= {settings.fwhm_fraction:g} x maximum (smoothed wall); border "
        f"zone above the remote peak (mean + {settings.remote_peak_sd:g} SD)",
    }


def _iir_thresholds(
    lge: ImageVolume,
    blood_pool: np.ndarray,
    wall: ImageVolume,
    blood: ImageVolume | None,
    settings: SegmentationSettings,
) -> tuple[dict[str, float], dict]:
    from scipy import ndimage

    pool = blood_pool
    if settings.blood_erode_voxels > 0:
        # In-plane erosion only: with thick slices a 3-D erosion removes whole slices.
        eroded = ndimage.binary_erosion(
            pool,
            _in_plane_structure(slice_axis(lge.spacing_mm)),
            iterations=settings.blood_erode_voxels,
        )
        if np.count_nonzero(eroded) >= MIN_WALL_VOXELS:
            pool = eroded
    if np.count_nonzero(pool) < MIN_WALL_VOXELS:
        if blood is not None:
            raise ImageError(
                f"{blood.source}: has only {np.count_nonzero(pool)} blood-pool voxels outside "
                f"the wall, fewer than the {MIN_WALL_VOXELS} the IIR reference needs. Give a "
                "mask of the cavity's blood pool on the LGE grid."
            )
        raise ImageError(
            f"{wall.source}: no blood pool found inside the wall mask "
            f"({np.count_nonzero(pool)} voxels) for the IIR reference. Pass the blood pool "
            "as --blood MASK, or check that the wall mask encloses the cavity."
        )
    blood_mean = float(np.mean(lge.array[pool]))
    if not blood_mean > 0:
        raise ImageError(
            f"{lge.source}: the mean blood-pool intensity is {blood_mean:g}, so the IIR is "
            "undefined. Check the image (magnitude LGE expected) and the blood mask."
        )
    thresholds = {
        "border_zone": settings.fibrosis_iir * blood_mean,
        "dense_scar": settings.dense_iir * blood_mean,
        "rule": f"fibrosis IIR >= {settings.fibrosis_iir:g}, dense scar IIR >= "
        f"{settings.dense_iir:g} (IIR = smoothed wall / mean blood pool)",
    }
    return thresholds, {"mean_intensity": blood_mean, "n_voxels": int(np.count_nonzero(pool))}


def _in_plane_structure(axis: int) -> np.ndarray:
    """4-connected structuring element in the planes normal to ``axis``."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1, 1, 1] = True
    for other in {0, 1, 2} - {axis}:
        for end in (0, 2):
            index = [1, 1, 1]
            index[other] = end
            structure[tuple(index)] = True
    return structure


def label_statistics(labels: np.ndarray, affine: np.ndarray) -> dict:
    """Volumes (ml, voxel volume from the affine) and percentages of the wall per label."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    counts = {label: int(np.count_nonzero(labels == label)) for label in (1, 2, 3)}
    wall = sum(counts.values())
    return {
        "voxel_volume_ml": voxel_ml,
        "wall_voxels": wall,
        "wall_volume_ml": wall * voxel_ml,
        "healthy_volume_ml": counts[1] * voxel_ml,
        "border_zone_volume_ml": counts[2] * voxel_ml,
        "scar_volume_ml": counts[3] * voxel_ml,
        "border_zone_percent": 100.0 * counts[2] / wall if wall else 0.0,
        "scar_percent": 100.0 * counts[3] / wall if wall else 0.0,
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean arrays (1.0 when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else float(2.0 * np.count_nonzero(a & b) / total)


def compare_labels(labels: np.ndarray, reference: np.ndarray, affine: np.ndarray) -> dict:
    """Dice per class and volume / fibrosis-% differences of ``labels`` vs ``reference``."""
    ours = label_statistics(labels, affine)
    theirs = label_statistics(reference, affine)
    return {
        "dice_dense_scar": dice(labels == DENSE_SCAR, reference == DENSE_SCAR),
        "dice_border_zone": dice(labels == BORDER_ZONE, reference == BORDER_ZONE),
        "dice_enhanced": dice(labels >= BORDER_ZONE, reference >= BORDER_ZONE),
        "dice_wall": dice(labels > 0, reference > 0),
        "reference_scar_volume_ml": theirs["scar_volume_ml"],
        "reference_border_zone_volume_ml": theirs["border_zone_volume_ml"],
        "enhanced_percent_minus_reference": (ours["scar_percent"] + ours["border_zone_percent"])
        - (theirs["scar_percent"] + theirs["border_zone_percent"]),
    }


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lge", type=Path, required=True, help="LGE image (NIfTI)")
    parser.add_argument("--wall", type=Path, required=True, help="wall (myocardium) mask")
    parser.add_argument("--out", type=Path, required=True, help="label map to write (.nii.gz)")
    parser.add_argument("--method", choices=METHODS, required=True, help="classification")
    parser.add_argument("--blood", type=Path, help="blood-pool mask (default: the cavity)")
    parser.add_argument("--stats", type=Path, help="JSON report (default: OUT with .json)")
    parser.add_argument("--qc", type=Path, help="folder for the quality-control pictures")
    parser.add_argument(
        "--resample-iso",
        type=float,
        metavar="MM",
        help="also write the labels on a near-isotropic grid of MM mm (shape-based)",
    )
    parser.add_argument("--iso-out", type=Path, help="that label map (default OUT_isoMMmm)")
    parser.add_argument(
        "--reference",
        type=Path,
        help="label map to compare with (e.g. a phantom's truth_labels.nii.gz): Dice in "
        "the report, its contours on the montage",
    )
    group = parser.add_argument_group("thresholds (defaults per method)")
    group.add_argument("--bz-sd", type=float, help="nsd: border zone SD (default 2)")
    group.add_argument("--dense-sd", type=float, help="nsd: dense scar SD (default 4)")
    group.add_argument("--fwhm-fraction", type=float, help="fwhm: fraction of max (0.5)")
    group.add_argument("--remote-peak-sd", type=float, help="fwhm: remote peak SD (2.0)")
    group.add_argument("--fibrosis-iir", type=float, help="iir: fibrosis (default 1.20)")
    group.add_argument("--dense-iir", type=float, help="iir: dense scar (default 1.32)")
    group.add_argument("--smooth-mm", type=float, help="in-wall Gaussian sigma, mm (0.8; 0 off)")
    group.add_argument(
        "--min-component-ml", type=float, help="drop smaller enhanced parts (0.1 ml; iir 0)"
    )
    group.add_argument(
        "--pv-rim",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="relabel the blood-adjacent wall rim from the interior (nsd/fwhm default on)",
    )


def settings_from_args(args: argparse.Namespace) -> SegmentationSettings:
    """The method's :data:`DEFAULTS` with the options given on the command line."""
    overrides = {
        "border_zone_sd": args.bz_sd,
        "dense_sd": args.dense_sd,
        "fwhm_fraction": args.fwhm_fraction,
        "remote_peak_sd": args.remote_peak_sd,
        "fibrosis_iir": args.fibrosis_iir,
        "dense_iir": args.dense_iir,
        "smooth_mm": args.smooth_mm,
        "min_component_ml": args.min_component_ml,
        "pv_rim": args.pv_rim,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    return replace(DEFAULTS[args.method], **given)


def _default_sibling(out: Path, tail: str) -> Path:
    name = out.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + tail)


def run(args: argparse.Namespace) -> int:
    from cardiotwin.pipeline.cli import CommandError

    if not str(args.out).endswith((".nii", ".nii.gz")):
        raise CommandError(f"--out {args.out} must end in .nii or .nii.gz")
    if args.resample_iso is not None and not (
        math.isfinite(args.resample_iso) and 0 < args.resample_iso <= 20
    ):
        raise CommandError(f"--resample-iso must be in (0, 20] mm, got {args.resample_iso}")
    settings = settings_from_args(args)
    try:
        settings.validate()
        lge = load_nifti(args.lge)
        wall = load_nifti(args.wall)
        blood = load_nifti(args.blood) if args.blood is not None else None
        result = segment(lge, wall, settings, blood)
        reference = None
        if args.reference is not None:
            reference = load_nifti(args.reference)
            check_same_grid(lge, reference)
            result.report["reference"] = {
                "path": str(args.reference),
                **compare_labels(result.labels.array, np.asarray(reference.array), lge.affine),
            }
    except (ImageError, SegmentationError) as exc:
        raise CommandError(str(exc)) from None
    result.report["inputs"] = {
        "lge": str(args.lge),
        "wall": str(args.wall),
        "blood": None if args.blood is None else str(args.blood),
    }

    writers: dict[Path, Callable[[Path], object]] = {
        args.out: lambda p: save_nifti(
            result.labels, p, description=f"cardiotwin labels {settings.method}"
        )
    }
    if args.resample_iso is not None:
        iso = resample_isotropic(result.labels, args.resample_iso, kind="labels")
        iso_out = args.iso_out or _default_sibling(args.out, f"_iso{args.resample_iso:g}mm.nii.gz")
        writers[iso_out] = lambda p: save_nifti(iso, p, description="cardiotwin labels iso")
        result.report["isotropic"] = {
            "path": str(iso_out),
            "spacing_mm": [round(float(s), 6) for s in iso.spacing_mm],
            "shape": list(iso.shape),
            "method": "shape-based interpolation of the labels (signed distance maps)",
        }
    if args.qc is not None:
        from cardiotwin.pipeline import qc

        stem = _default_sibling(args.out, "").name
        writers[args.qc / f"{stem}_montage.png"] = lambda p: qc.save_montage(
            lge, result.labels, p, title=f"{stem}: {settings.method}", reference=reference
        )
        writers[args.qc / f"{stem}_3d.png"] = lambda p: qc.save_render(
            result.labels, p, title=f"{stem}: {settings.method}"
        )
        result.report["qc"] = [str(p) for p in list(writers)[-2:]]
    stats_path = args.stats or _default_sibling(args.out, ".json")
    writers[stats_path] = lambda p: write_json(result.report, p)
    try:
        written = write_all_or_nothing(writers)
    except (ImageError, OSError) as exc:
        raise CommandError(f"nothing written: {exc}") from None
    summary = {
        k: round(result.report[k], 3)
        for k in ("scar_volume_ml", "border_zone_volume_ml", "scar_percent", "border_zone_percent")
    }
    if settings.method == "iir":
        summary["fibrosis_percent"] = round(result.report["fibrosis_percent"], 2)
        summary["utah_stage"] = result.report["utah_stage"]
    if "reference" in result.report:
        compared = result.report["reference"]
        summary.update({k: round(compared[k], 3) for k in ("dice_dense_scar", "dice_border_zone")})
    log.info("%s: %s; wrote %s", settings.method, summary, ", ".join(str(p) for p in written))
    return 0
