"""Quality-control pictures: moved to :mod:`cardiotwin.pipeline.segmentation.qc`.

This module keeps the old import path working with the same public names.
"""

from cardiotwin.pipeline.segmentation.qc import (
    LABEL_COLOURS,
    LABEL_TEXT,
    save_montage,
    save_render,
    save_surface_render,
)

__all__ = ["LABEL_COLOURS", "LABEL_TEXT", "save_montage", "save_render", "save_surface_render"]
