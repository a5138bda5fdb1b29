"""Numbers that describe a label map or compare two: volumes, percentages, Dice, Utah stage,
and the two measures of what a segmentation does to a re-entry channel.
"""

from __future__ import annotations

import math

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR
from cardiotwin.pipeline.segmentation.inputs import slice_axis

#: Utah stages of LA fibrosis by % of the wall (Oakes 2009; Marrouche 2014, DECAAF).
UTAH_STAGE_LIMITS = ((10.0, "I"), (20.0, "II"), (30.0, "III"), (math.inf, "IV"))


def utah_stage(fibrosis_percent: float) -> str:
    """Utah / DECAAF stage: I < 10 %, II 10-20 %, III 20-30 %, IV >= 30 % of the wall."""
    for upper, stage in UTAH_STAGE_LIMITS:
        if fibrosis_percent < upper:
            return stage
    return "IV"


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


def centreline_labels(labels: np.ndarray, affine: np.ndarray, centreline_mm) -> np.ndarray:
    """Label of the voxel holding each centreline point (scanner mm), -1 outside the grid."""
    points = np.asarray(centreline_mm, dtype=float).reshape(-1, 3)
    ijk = np.rint((points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(labels.shape)), axis=1)
    out = np.full(len(points), -1, dtype=int)
    out[inside] = labels[tuple(ijk[inside].T)]
    return out


def piece_structure(spacing_mm) -> np.ndarray:
    """Connectivity of scar pieces: 8-neighbours in-plane, and across the slice axis only
    voxels that overlap (adjacent thick slices meet where they overlap, not at corners)."""
    from scipy import ndimage

    axis = slice_axis(spacing_mm)  # as the channel steps take it (the last on a near-cube)
    structure = np.zeros((3, 3, 3), dtype=bool)
    index = [slice(None)] * 3
    index[axis] = 1
    structure[tuple(index)] = ndimage.generate_binary_structure(2, 2)
    centre = [1, 1, 1]
    for end in (0, 2):
        centre[axis] = end
        structure[tuple(centre)] = True
    return structure


def dense_pieces(labels: np.ndarray, affine: np.ndarray, min_ml: float = 0.2) -> int:
    """Number of dense-scar pieces of at least ``min_ml`` (:func:`piece_structure`)."""
    from scipy import ndimage

    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    components, n = ndimage.label(labels == DENSE_SCAR, structure=piece_structure(spacing))
    if n == 0:
        return 0
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine)[:3, :3]))) / 1000.0
    sizes = np.bincount(components.ravel())[1:] * voxel_ml
    return int(np.count_nonzero(sizes >= min_ml))


def channel_report(labels: np.ndarray, affine: np.ndarray, truth: dict) -> dict:
    """What a label map does to a phantom's isthmus: centreline labels and dense pieces."""
    along = centreline_labels(labels, affine, truth["isthmus"]["centerline_mm"])
    valid = along >= 0
    n = max(1, int(np.count_nonzero(valid)))
    return {
        "centreline_border_zone_fraction": float(np.count_nonzero(along == BORDER_ZONE) / n),
        "centreline_dense_fraction": float(np.count_nonzero(along == DENSE_SCAR) / n),
        "centreline_healthy_fraction": float(np.count_nonzero(along == 1) / n),
        "dense_pieces": dense_pieces(labels, affine),
        "designed_dense_pieces": int(truth["infarct"]["dense_pieces"]),
    }
