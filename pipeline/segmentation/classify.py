"""Classify an LGE wall into healthy (1), border zone / fibrosis (2) and dense scar (3).

Methods (thresholds in :mod:`.thresholds`; defaults in :data:`DEFAULTS`): ``fwhm`` and
``nsd`` for ventricles, ``iir-surface`` (:mod:`.surface`, the field's atrial measure) and
``iir`` (voxel-wise, the volumetric option) for atria. The default for a ventricle is
``fwhm``: it was chosen over n-SD for what it does to re-entry channels as well as for Dice
(see ``data_samples/README.md``). ``iir`` / ``iir-surface`` on a ventricle is refused: the
blood-pool ratio thresholds were derived for the thin atrial wall.

Steps of ``nsd`` and ``fwhm``, in order:

1. **Blood edge** (:mod:`.edges`): wall voxels at the mask's edge that are connected to and
   as bright as the blood (a wall mask drawn a pixel or two into the blood) leave the wall.
   By default (``fit_endocardium``), in each slice where the endocardium's edge is seen on
   enough of its circumference (blood against dark myocardium), a smooth endocardium is
   fitted to it and every wall voxel inside it leaves the wall, over scar as bright as the
   blood too, where the image alone cannot tell the mask's overshoot from scar; elsewhere,
   and at other blood (the RV's), the overshoot seen nearby is trimmed.
2. **Remote reference**: mean and SD of remote myocardium in the *acquired* image over the
   wall's interior (not touching bright blood), so that SD means what the published
   thresholds mean (noise plus tissue variation).
3. **In-wall smoothing** (``smooth_mm`` Gaussian sigma) of the image that is thresholded:
   a normalised convolution over wall voxels only; axes whose spacing is much coarser than
   sigma (thick slices) are not smoothed.
4. **Partial-volume rim**: wall voxels face-adjacent to bright blood (the cavity or another
   chamber's blood) take the label of the nearest interior wall voxel.
5. **Small components**: enhanced groups below ``min_component_ml`` become healthy.
6. **Channels** (:mod:`.channels`): thin dense bridges between large dense pieces, dimmer
   than the pieces, go back to border zone, so the channels between scar pieces survive.

The blood pool is the ``--blood`` mask if given, else the cavity enclosed by the wall mask.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from cardiotwin.meshing.tags import BACKGROUND, BORDER_ZONE, DENSE_SCAR, HEALTHY, TISSUE_NAMES
from cardiotwin.pipeline.images import ImageVolume
from cardiotwin.pipeline.segmentation import channels, edges, thresholds
from cardiotwin.pipeline.segmentation.inputs import (
    SegmentationError,
    as_mask,
    blood_pool_from_wall,
    check_inputs,
    detect_chamber,
)
from cardiotwin.pipeline.segmentation.metrics import label_statistics, utah_stage

log = logging.getLogger(__name__)

METHODS = ("fwhm", "nsd", "iir-surface", "iir")
VENTRICLE_METHODS = ("fwhm", "nsd")
ATRIUM_METHODS = ("iir-surface", "iir")
CHAMBERS = ("ventricle", "atrium")
#: the method used when none is given, per chamber
DEFAULT_METHOD = {"ventricle": "fwhm", "atrium": "iir-surface"}

#: the labels a segmentation writes (lesions are added later, on the mesh)
LABEL_NAMES = {
    label: TISSUE_NAMES[label] for label in (BACKGROUND, HEALTHY, BORDER_ZONE, DENSE_SCAR)
}


@dataclass(frozen=True)
class SegmentationSettings:
    """Every setting of one segmentation; :data:`DEFAULTS` holds one per method.

    n-SD: ``border_zone_sd`` / ``dense_sd`` above the ``nsd_reference`` (``remote`` or
    ``mode``, :func:`.thresholds.remote_reference`, in the acquired image).
    FWHM: dense scar at ``fwhm_fraction`` of the maximum (``maximum_percentile`` of the
    smoothed wall; 100 = the literal maximum); border zone above the peak of remote
    myocardium, mean + ``remote_peak_sd`` SD of remote in the smoothed image (the expected
    maximum of a hand-drawn remote region of 20-50 voxels is 1.9-2.3 SD above its mean), and
    at least ``border_zone_floor`` of the way from remote to the maximum: a voxel counts as
    border zone when at least half of it is border-zone tissue (fibrotic fraction ≥ ~0.25),
    which at high SNR is far above the remote peak.
    IIR: ``fibrosis_iir`` / ``dense_iir`` times the blood-pool mean.
    Shared: ``smooth_mm`` in-wall Gaussian sigma (0 = off); ``pv_rim`` relabels the
    partial-volume rim; ``trim_blood_edge``, ``trim_max_mm``, ``blood_like_sd``: the
    blood-edge step (:mod:`.edges`), which with ``fit_endocardium`` takes the LV cavity
    from an endocardium fitted where its edge is seen (:func:`.edges.fitted_cavity`, a
    Fourier series of ``endocardium_order`` per slice) in every slice where one fits;
    ``maximum_at_least_blood``: the FWHM maximum is at least the blood pool's median
    (:func:`.thresholds.remote_thresholds`); ``min_component_ml``: enhanced components below this
    become healthy; ``blood_erode_voxels``: in-plane erosion of the blood pool before its
    statistics.
    Channels (:mod:`.channels`, ``keep_channels``): dense pieces under
    ``min_dense_piece_ml`` become border zone; dense necks thinner than ``channel_neck_mm``
    between pieces of ``channel_min_piece_ml`` and dimmer than them become border zone;
    healthy voxels on an in-plane path of at most ``channel_max_gap_mm`` between two pieces
    that are above remote mean + ``corridor_sd`` SD become border zone.
    Surface (``iir-surface``): ``surface_band_mm``, ``surface_step_mm`` along the normals.
    """

    method: str
    border_zone_sd: float = 2.0
    dense_sd: float = 4.0
    nsd_reference: str = "remote"
    fwhm_fraction: float = 0.5
    maximum_percentile: float = 100.0
    remote_peak_sd: float = 2.0
    border_zone_floor: float = 0.12
    fibrosis_iir: float = 1.20
    dense_iir: float = 1.32
    smooth_mm: float = 0.8
    pv_rim: bool = True
    outer_rim: bool = True
    trim_blood_edge: bool = True
    trim_max_mm: float = 4.5
    trim_carry_over: bool = True
    fit_endocardium: bool = True
    maximum_at_least_blood: bool = True
    endocardium_order: int = 1
    blood_like_sd: float = 2.0
    min_component_ml: float = 0.3
    blood_erode_voxels: int = 1
    keep_channels: bool = True
    min_dense_piece_ml: float = 0.1
    channel_neck_mm: float = 1.5
    channel_min_piece_ml: float = 0.5
    channel_max_gap_mm: float = 18.0
    corridor_sd: float = 1.0
    channel_core_fraction: float = 0.75
    surface_band_mm: tuple[float, float] = (0.0, 3.0)
    surface_step_mm: float = 0.25

    def validate(self) -> None:
        if self.method not in METHODS:
            raise SegmentationError(
                f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if self.nsd_reference not in ("remote", "mode"):
            raise SegmentationError(
                f"nsd reference must be 'remote' or 'mode', got {self.nsd_reference!r}"
            )
        checks = [
            ("border_zone_sd", self.border_zone_sd, 0, None),
            ("dense_sd", self.dense_sd, self.border_zone_sd, None),
            ("fwhm_fraction", self.fwhm_fraction, 0, 1),
            ("maximum_percentile", self.maximum_percentile, 50, 100),
            ("remote_peak_sd", self.remote_peak_sd, 0, None),
            ("border_zone_floor", self.border_zone_floor, 0, 1),
            ("fibrosis_iir", self.fibrosis_iir, 0, None),
            ("dense_iir", self.dense_iir, self.fibrosis_iir, None),
            ("smooth_mm", self.smooth_mm, 0, 20),
            ("trim_max_mm", self.trim_max_mm, 0, 20),
            ("blood_like_sd", self.blood_like_sd, 0, None),
            ("min_component_ml", self.min_component_ml, 0, None),
            ("blood_erode_voxels", self.blood_erode_voxels, 0, 10),
            ("min_dense_piece_ml", self.min_dense_piece_ml, 0, None),
            ("channel_neck_mm", self.channel_neck_mm, 0, 20),
            ("channel_min_piece_ml", self.channel_min_piece_ml, 0, None),
            ("channel_max_gap_mm", self.channel_max_gap_mm, 0, 100),
            ("corridor_sd", self.corridor_sd, 0, None),
            ("surface_step_mm", self.surface_step_mm, 0.01, 5),
            ("endocardium_order", self.endocardium_order, 0, 4),
        ]
        for name, value, low, high in checks:
            ok = math.isfinite(value) and value >= low and (high is None or value <= high)
            if not ok:
                upper = "" if high is None else f" and at most {high:g}"
                raise SegmentationError(
                    f"{name.replace('_', '-')} must be a number of at least {low:g}{upper}, "
                    f"got {value}"
                )
        if self.keep_channels and self.method in ("iir", "iir-surface"):
            raise SegmentationError(
                f"--keep-channels is for ventricular scar (fwhm, nsd), not --method "
                f"{self.method}: atrial fibrosis has no scar lobes with channels between them"
            )
        low, high = self.surface_band_mm
        if not (math.isfinite(low) and math.isfinite(high) and -10 <= low < high <= 10):
            raise SegmentationError(
                f"surface band must be two numbers of mm, low < high, within ±10 mm, got "
                f"{self.surface_band_mm}; try 0 3"
            )


DEFAULTS: dict[str, SegmentationSettings] = {
    "fwhm": SegmentationSettings("fwhm"),
    "nsd": SegmentationSettings("nsd"),
    # Atrial walls are one or two voxels thick and touch blood everywhere: no interior to
    # borrow labels from, no scar lobes with channels, and small fibrotic patches are real.
    "iir": SegmentationSettings(
        "iir", pv_rim=False, trim_blood_edge=False, keep_channels=False, min_component_ml=0.0
    ),
    "iir-surface": SegmentationSettings(
        "iir-surface", pv_rim=False, trim_blood_edge=False, keep_channels=False
    ),
}


@dataclass
class Segmentation:
    """Labels on the LGE grid (uint8, 0 outside the wall) and the JSON-ready report.

    ``surface`` (``iir-surface`` only): the endocardial surface with per-vertex values
    (:class:`.surface.SurfaceFibrosis`).
    """

    labels: ImageVolume
    report: dict = field(default_factory=dict)
    surface: object | None = None


def resolve_chamber(
    method: str | None, chamber: str | None, wall: ImageVolume
) -> tuple[str, str, dict]:
    """(method, chamber, info): the chamber detected from the wall if not given, the
    chamber's default method if none is given; refuses an atrial method on a ventricle."""
    wall_mask = as_mask(wall)
    detected, thickness = detect_chamber(wall_mask, np.asarray(wall.spacing_mm))
    info = {"detected": detected, "mean_wall_thickness_mm": round(thickness, 3)}
    if chamber is not None and chamber not in CHAMBERS:
        raise SegmentationError(f"chamber must be one of {', '.join(CHAMBERS)}, got {chamber!r}")
    used = chamber or detected
    info["chamber"] = used
    info["source"] = "given" if chamber else "detected from the wall mask's mean thickness"
    if method is None:
        method = DEFAULT_METHOD[used]
    if method in ATRIUM_METHODS and used == "ventricle":
        raise SegmentationError(
            f"--method {method} is for atria (blood-pool ratio thresholds of the thin atrial "
            f"wall), but {wall.source} looks like a ventricle (mean wall thickness "
            f"{thickness:.1f} mm). Use --method fwhm (the default) or nsd; if it really is "
            "an atrium, say --chamber atrium."
        )
    if method in VENTRICLE_METHODS and used == "atrium":
        log.warning(
            "%s looks like an atrial wall (mean thickness %.1f mm); %s is a ventricular "
            "method: consider --method iir-surface",
            wall.source,
            thickness,
            method,
        )
        info["warning"] = f"{method} on an atrial wall"
    return method, used, info


def segment(
    lge: ImageVolume,
    wall: ImageVolume,
    settings: SegmentationSettings,
    blood: ImageVolume | None = None,
) -> Segmentation:
    """Label the wall of ``lge`` with ``settings.method``; see the module docstring.

    Chamber checks (refusing ``iir`` on a ventricle) are :func:`resolve_chamber`'s; this
    runs the method it is given.
    """
    settings.validate()
    if settings.method == "iir-surface":
        from cardiotwin.pipeline.segmentation.surface import segment_surface

        return segment_surface(lge, wall, settings, blood)
    wall_mask, blood_mask = check_inputs(lge, wall, blood)
    spacing = lge.spacing_mm
    image = np.asarray(lge.array, dtype=np.float64)
    voxel_ml = abs(float(np.linalg.det(lge.affine[:3, :3]))) / 1000.0
    if blood_mask is None:
        blood_pool = blood_pool_from_wall(wall_mask, spacing)
        blood_source = "cavity enclosed by the wall mask"
    else:
        blood_pool = blood_mask
        blood_source = "the given blood-pool mask"  # its path can name the patient
    report: dict = {"method": settings.method}

    if settings.method == "iir":
        blood_stats = thresholds.blood_reference(
            lge,
            blood_pool,
            settings.blood_erode_voxels,
            wall.source,
            None if blood is None else blood.source,
        )
        report["blood_pool"] = {**blood_stats, "source": blood_source}
        cuts = thresholds.iir_thresholds(blood_stats, settings)
        wall_used, rim = wall_mask, np.zeros_like(wall_mask)
        smoothed = thresholds.smooth_within_mask(image, wall_used, spacing, settings.smooth_mm)
    else:
        wall_used, rim, blood_stats, extra = _ventricle_edges(
            image, wall_mask, blood_pool, spacing, settings
        )
        report["blood_pool"] = {**blood_stats, "source": blood_source}
        report.update(extra)
        acquired_reference = thresholds.remote_reference(
            image, wall_used, rim, kind=settings.nsd_reference
        )
        smoothed = thresholds.smooth_within_mask(image, wall_used, spacing, settings.smooth_mm)
        # FWHM compares smoothed intensities: the remote peak is measured in the same image.
        smoothed_reference = thresholds.remote_reference(smoothed, wall_used, rim)
        report["remote_reference"] = acquired_reference
        report["remote_reference_smoothed"] = smoothed_reference
        reference = acquired_reference if settings.method == "nsd" else smoothed_reference
        cuts = thresholds.remote_thresholds(
            smoothed, wall_used, reference, settings, blood_stats["median_intensity"]
        )

    labels = np.zeros(lge.shape, dtype=np.uint8)
    labels[wall_used] = HEALTHY
    labels[wall_used & (smoothed >= cuts["border_zone"])] = BORDER_ZONE
    labels[wall_used & (smoothed >= cuts["dense_scar"])] = DENSE_SCAR
    if settings.pv_rim:
        labels = edges.relabel_rim_from_interior(labels, wall_used, rim, spacing)
    labels, n_removed = channels.remove_small_components(
        labels, voxel_ml, settings.min_component_ml
    )
    if settings.keep_channels:
        corridor_cut = smoothed_reference["mean"] + settings.corridor_sd * smoothed_reference["sd"]
        labels, report["channels"] = channels.keep_channels(
            labels, smoothed, spacing, settings, corridor_cut
        )

    report["thresholds"] = cuts
    report["settings"] = _settings_record(settings)
    report["removed_small_components"] = n_removed
    report["blood_pool_voxels"] = int(np.count_nonzero(blood_pool))
    report.update(label_statistics(labels, lge.affine))
    if settings.method == "iir":
        report["fibrosis_percent"] = report["border_zone_percent"] + report["scar_percent"]
        report["dense_fibrosis_percent"] = report["scar_percent"]
        report["utah_stage"] = utah_stage(report["fibrosis_percent"])
    report["labels"] = LABEL_NAMES
    report["grid"] = grid_record(lge)
    return Segmentation(ImageVolume(labels, lge.affine.copy(), "labels"), report)


def _ventricle_edges(
    image: np.ndarray,
    wall: np.ndarray,
    blood_pool: np.ndarray,
    spacing: np.ndarray,
    settings: SegmentationSettings,
) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(wall used, partial-volume rim, blood statistics, report entries): steps 1 and 4."""
    from scipy import ndimage

    from cardiotwin.pipeline.segmentation.inputs import in_plane_structure, slice_axis

    pool = blood_pool
    if settings.blood_erode_voxels > 0:
        eroded = ndimage.binary_erosion(
            pool, in_plane_structure(slice_axis(spacing)), iterations=settings.blood_erode_voxels
        )
        pool = eroded if np.count_nonzero(eroded) >= 20 else pool
    values = image[pool] if pool.any() else image[~wall]
    median = float(np.median(values))
    robust_sd = float(1.4826 * np.median(np.abs(values - median)))
    blood_stats = {"median_intensity": median, "robust_sd": robust_sd, "n_voxels": int(values.size)}
    first_rim = edges.partial_volume_rim(wall, blood_pool)
    first_remote = thresholds.remote_reference(image, wall, first_rim)["mean"]
    low = 0.5 * (median + first_remote)
    high = median + settings.blood_like_sd * robust_sd
    outside = edges.bright_outside(image, wall, low, blood_pool)
    extra: dict = {}
    wall_used = wall
    if settings.trim_blood_edge and not blood_pool.any():
        # the "blood" statistics above then come from everything outside the wall (air,
        # lung, chest): trimming by them would cut healthy wall
        log.warning(
            "the wall mask encloses no blood pool and none was given (--blood): the blood-edge "
            "step is skipped and the blood statistics are those of all voxels outside the wall"
        )
        extra["blood_edge"] = {"skipped": "no blood pool: the wall encloses none, none given"}
    elif settings.trim_blood_edge:
        dark = first_remote + 0.25 * (median - first_remote)  # myocardium that ends a run
        wall_used, extra["blood_edge"] = edges.trim_blood_edge(
            image,
            wall,
            outside,
            spacing,
            low=low,
            high=high,
            max_mm=settings.trim_max_mm,
            dark=dark,
            carry_over=settings.trim_carry_over,
        )
        if settings.fit_endocardium:
            # In the slices where an endocardium can be fitted, the fit replaces the step at
            # the LV cavity: every voxel inside it leaves the wall. Other bright blood (the
            # RV's, beyond the septum) is still trimmed, only where the overshoot is seen.
            cavity, fitted, extra["fitted_endocardium"] = edges.fitted_cavity(
                image,
                wall,
                blood_pool,
                spacing,
                low=low,
                order=settings.endocardium_order,
                max_mm=settings.trim_max_mm,
            )
            other_blood, _ = edges.trim_blood_edge(
                image,
                wall,
                outside & ~blood_pool,
                spacing,
                low=low,
                high=high,
                max_mm=settings.trim_max_mm,
                dark=dark,
                carry_over=False,
            )
            extra["fitted_endocardium"]["removed_voxels"] = int(
                np.count_nonzero(fitted & wall & cavity)
            )
            wall_used = np.where(fitted, other_blood & ~cavity, wall_used)
        outside = edges.bright_outside(image, wall_used, low, blood_pool | (wall & ~wall_used))
        first_sd = thresholds.remote_reference(image, wall_used, first_rim)["sd"]
        wall_used, extra["outer_edge"] = edges.trim_outer_edge(
            image,
            wall_used,
            outside,
            spacing,
            remote_mean=first_remote,
            remote_sd=first_sd,
            max_mm=settings.trim_max_mm,
            smooth_mm=settings.smooth_mm,
        )
    rim = edges.partial_volume_rim(wall_used, outside)
    if settings.outer_rim:
        rim |= edges.outer_rim(wall_used, spacing)
    return wall_used, rim, blood_stats, extra


def _settings_record(settings: SegmentationSettings) -> dict:
    record = {k: v for k, v in vars(settings).items() if k != "method"}
    record["surface_band_mm"] = list(settings.surface_band_mm)
    return record


def grid_record(volume: ImageVolume) -> dict:
    return {
        "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing_mm],
        "affine": np.round(volume.affine, 6).tolist(),
    }
