"""A phantom in memory (:class:`Phantom`) and on disk (:func:`write_phantom`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cardiotwin.files import write_all_or_nothing
from cardiotwin.pipeline.images import ImageVolume, save_nifti

PHANTOM_FILES = ("lge.nii.gz", "wall.nii.gz", "truth_labels.nii.gz", "blood.nii.gz", "truth.json")

#: truth.json's description of the label values and units
LABELS_RECORD = {
    "0": "background",
    "1": "healthy",
    "2": "border zone / fibrosis",
    "3": "dense scar",
}
UNITS_RECORD = {"length": "mm", "volume": "ml", "coordinates": "scanner RAS+ mm"}


@dataclass
class Phantom:
    """A synthetic patient: images on the acquisition grid and the designed truth.

    ``wall`` is the wall mask handed to the segmentation (drawn with contour errors unless
    made with ``wall_mask="true"``); the true wall is ``truth_labels > 0``. ``blood`` is the
    chamber's blood-pool mask (voxels at least half blood; drawn like the wall when the wall
    is). ``truth`` is JSON-ready; every position is in scanner RAS mm.
    """

    lge: ImageVolume
    wall: ImageVolume
    truth_labels: ImageVolume
    blood: ImageVolume
    truth: dict = field(default_factory=dict)


def write_phantom(phantom: Phantom, out_dir: str | Path) -> list[Path]:
    """Write the phantom's files (:data:`PHANTOM_FILES`) into ``out_dir``; all or none."""
    out_dir = Path(out_dir)
    writers: dict[str, Callable[[Path], object]] = {
        "lge.nii.gz": lambda p: save_nifti(phantom.lge, p, description="cardiotwin phantom LGE"),
        "wall.nii.gz": lambda p: save_nifti(phantom.wall, p, description="cardiotwin wall"),
        "truth_labels.nii.gz": lambda p: save_nifti(
            phantom.truth_labels, p, description="cardiotwin truth labels 0-3"
        ),
        "blood.nii.gz": lambda p: save_nifti(phantom.blood, p, description="cardiotwin blood"),
        "truth.json": lambda p: Path(p).write_text(json.dumps(phantom.truth, indent=1) + "\n"),
    }
    return write_all_or_nothing({out_dir / name: writer for name, writer in writers.items()})
