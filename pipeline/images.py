"""Image volumes in scanner millimetres: NIfTI and DICOM series in, NIfTI out.

Convention: ``ImageVolume.affine`` maps voxel indices (i, j, k) to scanner coordinates in
mm in the RAS+ frame (NIfTI / nibabel convention). DICOM (LPS) is converted on the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageVolume:
    """A 3-D image: voxel array, voxel->scanner affine (RAS+, mm), and where it came from.

    ``source`` names the file for error messages only; it never holds patient data.
    """

    array: np.ndarray
    affine: np.ndarray
    source: str = "<memory>"

    @property
    def spacing_mm(self) -> np.ndarray:
        """Voxel size along i, j, k in mm (column norms of the affine)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def voxel_to_scanner_mm(self, ijk: np.ndarray) -> np.ndarray:
        """(n, 3) voxel indices -> (n, 3) scanner RAS mm."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


def load_nifti(path: str | Path) -> ImageVolume:
    """Read a NIfTI file (``.nii`` / ``.nii.gz``)."""
    import nibabel as nib

    img = nib.load(str(path))
    return ImageVolume(np.asarray(img.dataobj), np.asarray(img.affine, float), Path(path).name)


def save_nifti(volume: ImageVolume, path: str | Path) -> Path:
    """Write ``volume`` as NIfTI."""
    import nibabel as nib

    path = Path(path)
    nib.save(nib.Nifti1Image(volume.array, volume.affine), str(path))
    return path
