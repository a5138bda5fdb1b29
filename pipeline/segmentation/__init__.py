"""Scar and fibrosis from LGE: wall checks, blood edge, thresholds, channels, atrial surface.

:func:`segment` (in :mod:`.classify`) runs one method; :func:`resolve_chamber` picks the
method for a chamber and refuses an atrial method on a ventricle; :mod:`.metrics` compares
label maps; :mod:`.qc` draws the pictures.
"""

from cardiotwin.pipeline.segmentation.classify import (
    ATRIUM_METHODS,
    CHAMBERS,
    DEFAULT_METHOD,
    DEFAULTS,
    LABEL_NAMES,
    METHODS,
    VENTRICLE_METHODS,
    Segmentation,
    SegmentationSettings,
    resolve_chamber,
    segment,
)
from cardiotwin.pipeline.segmentation.inputs import (
    SegmentationError,
    blood_pool_from_wall,
    check_inputs,
    slice_axis,
)
from cardiotwin.pipeline.segmentation.metrics import (
    channel_report,
    compare_labels,
    dice,
    label_statistics,
    utah_stage,
)

__all__ = [
    "ATRIUM_METHODS",
    "CHAMBERS",
    "DEFAULTS",
    "DEFAULT_METHOD",
    "LABEL_NAMES",
    "METHODS",
    "VENTRICLE_METHODS",
    "Segmentation",
    "SegmentationError",
    "SegmentationSettings",
    "blood_pool_from_wall",
    "channel_report",
    "check_inputs",
    "compare_labels",
    "dice",
    "label_statistics",
    "resolve_chamber",
    "segment",
    "slice_axis",
    "utah_stage",
]
