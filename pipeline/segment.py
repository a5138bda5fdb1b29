"""Segmentation: moved to the package :mod:`cardiotwin.pipeline.segmentation`.

This module keeps the old import path working with the same public names (and the old
signatures of :func:`remote_reference` and :func:`relabel_rim_from_interior`, which took
the blood pool); the command is :mod:`cardiotwin.pipeline.commands.segment`.
"""

from __future__ import annotations

import numpy as np

from cardiotwin.pipeline.segmentation import edges as _edges
from cardiotwin.pipeline.segmentation import thresholds as _thresholds
from cardiotwin.pipeline.segmentation.channels import remove_small_components
from cardiotwin.pipeline.segmentation.classify import (
    DEFAULTS,
    LABEL_NAMES,
    METHODS,
    Segmentation,
    SegmentationSettings,
    segment,
)
from cardiotwin.pipeline.segmentation.inputs import (
    CAVITY_CLOSING_MM,
    MIN_WALL_VOXELS,
    SegmentationError,
    blood_pool_from_wall,
    check_inputs,
    slice_axis,
)
from cardiotwin.pipeline.segmentation.metrics import (
    UTAH_STAGE_LIMITS,
    compare_labels,
    dice,
    label_statistics,
    utah_stage,
)
from cardiotwin.pipeline.segmentation.thresholds import otsu_threshold, smooth_within_mask


def partial_volume_rim(wall: np.ndarray, blood_pool: np.ndarray) -> np.ndarray:
    """Wall voxels face-adjacent to the blood pool."""
    return _edges.partial_volume_rim(wall, blood_pool)


def remote_reference(
    image: np.ndarray, wall: np.ndarray, blood_pool: np.ndarray, clip_sd: float = 3.0
) -> dict[str, float]:
    """Remote myocardium over the wall voxels not touching ``blood_pool`` (old signature)."""
    return _thresholds.remote_reference(
        image, wall, _edges.partial_volume_rim(wall, blood_pool), clip_sd
    )


def relabel_rim_from_interior(
    labels: np.ndarray, wall: np.ndarray, blood_pool: np.ndarray, spacing_mm: np.ndarray
) -> np.ndarray:
    """Give each blood-adjacent wall voxel the label of its nearest interior wall voxel."""
    rim = _edges.partial_volume_rim(wall, blood_pool)
    return _edges.relabel_rim_from_interior(labels, wall, rim, spacing_mm)


__all__ = [
    "CAVITY_CLOSING_MM",
    "DEFAULTS",
    "LABEL_NAMES",
    "METHODS",
    "MIN_WALL_VOXELS",
    "UTAH_STAGE_LIMITS",
    "Segmentation",
    "SegmentationError",
    "SegmentationSettings",
    "blood_pool_from_wall",
    "check_inputs",
    "compare_labels",
    "dice",
    "label_statistics",
    "otsu_threshold",
    "partial_volume_rim",
    "relabel_rim_from_interior",
    "remote_reference",
    "remove_small_components",
    "segment",
    "slice_axis",
    "smooth_within_mask",
    "utah_stage",
]
