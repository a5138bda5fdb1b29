"""Tissue labels: the one set of integers shared by label maps and mesh element tags.

The segmentation writes them as voxel labels, the mesher copies them to element tags, the
tissue stage maps them to ionic models and conductivities, and ablation adds ``LESION``.
"""

from __future__ import annotations

from enum import IntEnum


class Tissue(IntEnum):
    """Voxel label / element tag of each tissue class."""

    BACKGROUND = 0
    HEALTHY = 1
    BORDER_ZONE = 2  # border zone (ventricle) or fibrosis (atrium)
    DENSE_SCAR = 3
    LESION = 4  # a virtual ablation lesion (non-conducting, like dense scar)


BACKGROUND, HEALTHY, BORDER_ZONE, DENSE_SCAR, LESION = (int(t) for t in Tissue)

#: human-readable name of each label (report tables, JSON)
TISSUE_NAMES = {
    0: "background",
    1: "healthy",
    2: "border zone / fibrosis",
    3: "dense scar",
    4: "ablation lesion",
}

#: element tags that do not conduct (dropped by the monodomain problem)
NONCONDUCTING = (DENSE_SCAR, LESION)
