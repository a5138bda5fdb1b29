"""Image volumes in scanner millimetres: NIfTI and DICOM series in, NIfTI out.

The code lives in the package :mod:`cardiotwin.pipeline.imaging` (``volume``: the volume
type and checks; ``nifti``; ``dicom``: de-identified series, pseudonyms, output-path checks;
``resample``). This module keeps the old import path working with the same public names.
"""

from cardiotwin.pipeline.imaging.dicom import (
    DEFAULT_PSEUDONYM_SALT,
    PSEUDONYM_SALT_ENV,
    DicomSeriesInfo,
    check_output_path,
    dicom_to_nifti,
    list_dicom_series,
    load_volume,
    load_volume_with_identifiers,
    pseudonymous_case_id,
)
from cardiotwin.pipeline.imaging.nifti import NIFTI_SUFFIXES, load_nifti, save_nifti
from cardiotwin.pipeline.imaging.resample import resample_isotropic
from cardiotwin.pipeline.imaging.volume import (
    MAX_RESAMPLED_VOXELS,
    MAX_SPACING_MM,
    MIN_SPACING_MM,
    ImageError,
    ImageVolume,
    check_mask_not_empty,
    check_same_grid,
    check_volume,
)

__all__ = [
    "DEFAULT_PSEUDONYM_SALT",
    "MAX_RESAMPLED_VOXELS",
    "MAX_SPACING_MM",
    "MIN_SPACING_MM",
    "NIFTI_SUFFIXES",
    "PSEUDONYM_SALT_ENV",
    "DicomSeriesInfo",
    "ImageError",
    "ImageVolume",
    "check_mask_not_empty",
    "check_output_path",
    "check_same_grid",
    "check_volume",
    "dicom_to_nifti",
    "list_dicom_series",
    "load_nifti",
    "load_volume",
    "load_volume_with_identifiers",
    "pseudonymous_case_id",
    "resample_isotropic",
    "save_nifti",
]
