"""NIfTI files in and out (nibabel), in scanner RAS mm; writes are atomic."""

from __future__ import annotations

import logging
import os
import secrets
import zlib
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.imaging.volume import (
    ImageVolume,
    _fmt_mm,
    _image_error,
    check_volume,
)

logger = logging.getLogger("cardiotwin.pipeline.images")

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def load_nifti(path: str | Path, *, check: bool = True) -> ImageVolume:
    """Read a NIfTI file (``.nii`` / ``.nii.gz``) into scanner RAS mm.

    Trailing singleton axes (x, y, z, 1) are dropped; spatial units in metres or microns
    are converted to mm. With ``check`` (default) the result passes :func:`check_volume`.
    Raises :class:`ImageError` for a missing, unreadable or truncated file.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise _image_error(
            path, "does not exist or is not a file", "Check the path and the config."
        )
    try:
        img = nib.load(str(path))
        array = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
        space_unit = img.header.get_xyzt_units()[0]
        has_scanner_affine = img.header["sform_code"] > 0 or img.header["qform_code"] > 0
    except (
        nib.filebasedimages.ImageFileError,
        OSError,
        EOFError,
        ValueError,
        zlib.error,
    ) as exc:
        name = path.name.lower()
        if not name.endswith((".nii", ".nii.gz", ".hdr", ".img")):
            fix = (
                f"It is not a NIfTI file ({path.suffix or 'no suffix'}): give the image "
                "as .nii or .nii.gz (or a DICOM folder where the command takes one)."
            )
        else:
            fix = (
                "The file is damaged or truncated (an interrupted copy or write?); "
                "copy or export it again."
            )
        raise _image_error(
            path, f"cannot be read as NIfTI ({type(exc).__name__}: {exc})", fix
        ) from exc
    if not has_scanner_affine:
        logger.warning(
            "%s has neither sform nor qform; its coordinates are voxel spacing only, "
            "not scanner mm",
            path.name,
        )
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    # The NIfTI standard states sform/qform in the header's spatial unit; 'unknown' is
    # taken as mm like every common tool does.
    unit_to_mm = {"meter": 1000.0, "micron": 0.001}.get(space_unit, 1.0)
    affine[:3, :] *= unit_to_mm
    volume = ImageVolume(array, affine, str(path))
    if check:
        check_volume(volume)
    logger.debug(
        "read NIfTI %s: shape %s, spacing %s mm", path.name, array.shape, _fmt_mm(volume.spacing_mm)
    )
    return volume


def save_nifti(volume: ImageVolume, path: str | Path, *, description: str = "cardiotwin") -> Path:
    """Write ``volume`` as NIfTI-1 (``.nii`` or ``.nii.gz``) atomically and return the path.

    The data go to a temporary file in the same folder that is renamed onto ``path`` only
    when complete, so a crash leaves either the old file or none. sform and qform are both
    set to ``volume.affine`` (scanner, mm); ``description`` goes in the header's descrip
    field (at most 80 ASCII characters, never patient data). bool voxels are stored as
    uint8 and int64 labels as the smallest of int16/int32 that holds them.
    """
    import nibabel as nib

    path = Path(path)
    suffix = _nifti_suffix(path)
    if suffix is None:
        raise _image_error(
            path,
            "does not end in .nii or .nii.gz",
            "Name the output file with a NIfTI extension.",
        )
    affine = np.asarray(volume.affine, dtype=np.float64)
    array = _nifti_compatible(volume.array)
    img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    img.header.set_xyzt_units(xyz="mm", t="sec")
    img.header["descrip"] = description.encode("ascii")[:80]

    path.parent.mkdir(parents=True, exist_ok=True)
    # Random hidden temp name with the same suffix (nibabel picks gzip from it); not
    # created by mkstemp so the final file keeps the usual umask permissions.
    tmp = path.parent / f".{path.name[: -len(suffix)]}.{secrets.token_hex(6)}.tmp{suffix}"
    try:
        nib.save(img, str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise _image_error(
            path,
            f"could not be written ({type(exc).__name__}: {exc})",
            "Check free disk space and write permission on the folder.",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def is_nifti_path(path: str | Path) -> bool:
    """Whether ``path`` names a NIfTI file (.nii or .nii.gz, in any letter case)."""
    return _nifti_suffix(Path(path)) is not None


def _nifti_suffix(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    return None


def _nifti_compatible(array: np.ndarray) -> np.ndarray:
    """Cast ``array`` to a type that NIfTI readers other than nibabel accept."""
    array = np.asarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= low and high <= info.max:
                return array.astype(candidate)
    return array
