"""DICOM series in (pydicom + SimpleITK), de-identified, in scanner RAS mm.

DICOM and ITK use LPS and hand out arrays indexed (k, j, i); both are converted on the way
in. Privacy: a series is read for its pixels and geometry only. Patient name, ID, birth
date, accession number, institution, referring physician and all dates and times never
reach an ``ImageVolume``, a log message or an output file; the case is known by a
pseudonymous id (:func:`pseudonymous_case_id`), and :func:`check_output_path` refuses output
paths that hold any of them. Burned-in text in the pixels is not detected.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.imaging.nifti import _nifti_suffix, load_nifti, save_nifti
from cardiotwin.pipeline.imaging.volume import (
    ImageVolume,
    _apply_affine,
    _fmt_mm,
    _image_error,
    check_volume,
)

logger = logging.getLogger("cardiotwin.pipeline.images")

#: Public, fixed key for the pseudonymous case id. Anyone holding the code can recompute
#: ids from (StudyInstanceUID, PatientID) with it, so every site should set its own secret
#: key in the environment variable named by ``PSEUDONYM_SALT_ENV`` (or pass ``salt=``).
DEFAULT_PSEUDONYM_SALT = "cardiotwin-pseudonym-v1"
PSEUDONYM_SALT_ENV = "CARDIOTWIN_PSEUDONYM_SALT"

# DICOM/ITK patient coordinates are LPS; NIfTI scanner coordinates are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

# Header tags read from each DICOM file: geometry and the two ids hashed into the
# pseudonym. The identifying values are used in memory only and never stored.
_GEOMETRY_TAGS = [
    "SeriesInstanceUID",
    "SeriesNumber",
    "Modality",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
]
_PSEUDONYM_TAGS = ["StudyInstanceUID", "PatientID"]
# Values that must never appear in an output path (checked by check_output_path).
_IDENTIFYING_TAGS = [
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
]


# ---------------------------------------------------------------------------------------
# Pseudonyms
# ---------------------------------------------------------------------------------------

_warned_default_salt = False


def pseudonymous_case_id(
    study_instance_uid: str, patient_id: str, *, salt: str | None = None
) -> str:
    """Return ``case-<10 hex>``: HMAC-SHA256 of StudyInstanceUID and PatientID.

    The key is ``salt``, else the environment variable ``CARDIOTWIN_PSEUDONYM_SALT``, else
    the public :data:`DEFAULT_PSEUDONYM_SALT`. A site must set its own secret key: with the
    public one anyone can link an id back to a known patient. Keep the key fixed within a
    cohort, since the same study always maps to the same id only under the same key.
    """
    global _warned_default_salt
    key = salt if salt is not None else os.environ.get(PSEUDONYM_SALT_ENV, DEFAULT_PSEUDONYM_SALT)
    if key == DEFAULT_PSEUDONYM_SALT and not _warned_default_salt:
        _warned_default_salt = True
        logger.warning(
            "pseudonymous case ids use the public default key; set %s to a secret "
            "per-site value so ids cannot be linked back to patients",
            PSEUDONYM_SALT_ENV,
        )
    # A separator that cannot occur in a UID keeps ("1.2", "3") apart from ("1.23", "").
    message = f"{study_instance_uid.strip()}\x1f{patient_id.strip()}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    return f"case-{digest[:10]}"


# ---------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One series in a DICOM folder, described without patient data.

    ``series_uid`` is what :func:`load_volume` takes as ``series_uid=``. Free-text fields
    such as SeriesDescription are left out on purpose: they can carry identifiers.
    """

    series_uid: str
    series_number: int | None
    modality: str
    n_files: int


def list_dicom_series(folder: str | Path) -> list[DicomSeriesInfo]:
    """List the DICOM series directly inside ``folder`` (subfolders are not searched)."""
    folder = _existing_dicom_folder(folder)
    infos = []
    for uid in _series_uids(folder):
        files = _series_files(folder, uid)
        header = _read_header(Path(files[0]), ["SeriesNumber", "Modality"])
        number = header.get("SeriesNumber")
        infos.append(
            DicomSeriesInfo(
                series_uid=uid,
                series_number=None if number in (None, "") else int(number),
                modality=str(header.get("Modality", "") or ""),
                n_files=len(files),
            )
        )
    return infos


def load_volume(
    path: str | Path,
    *,
    series_uid: str | None = None,
    salt: str | None = None,
    check: bool = True,
) -> ImageVolume:
    """Read an image from a NIfTI file or a DICOM series into scanner RAS mm.

    ``path`` is a ``.nii``/``.nii.gz`` file, a folder holding one DICOM series (choose
    one with ``series_uid`` if it holds several; see :func:`list_dicom_series`), or one
    DICOM file, which stands for its whole series in the same folder. A DICOM volume's
    ``source`` is its pseudonymous case id (``salt`` as in :func:`pseudonymous_case_id`).
    With ``check`` (default) the result passes :func:`check_volume`.
    """
    path = Path(path)
    if path.is_dir():
        return _read_dicom_series(path, series_uid, salt, check)[0]
    if not path.is_file():
        raise _image_error(path, "does not exist", "Check the path and the config.")
    if _nifti_suffix(path) is not None:
        return load_nifti(path, check=check)
    if _is_dicom_file(path):
        file_series = str(_read_header(path, ["SeriesInstanceUID"]).get("SeriesInstanceUID", ""))
        if series_uid is not None and series_uid != file_series:
            raise _image_error(
                path,
                f"belongs to series {file_series}, not the requested {series_uid}",
                "Give the folder instead of a file, or drop series_uid.",
            )
        return _read_dicom_series(path.parent, file_series, salt, check)[0]
    raise _image_error(
        path,
        "is neither NIfTI (.nii, .nii.gz) nor a DICOM file or folder",
        "Convert it to NIfTI, or give the folder that holds the DICOM series.",
    )


def load_volume_with_identifiers(
    path: str | Path, *, series_uid: str | None = None, salt: str | None = None
) -> tuple[ImageVolume, frozenset[str]]:
    """:func:`load_volume`, and the identifier strings of a DICOM input (for
    :func:`check_output_path`; empty for NIfTI). The strings stay in memory: never log them."""
    path = Path(path)
    if path.is_dir():
        volume, identifiers = _read_dicom_series(path, series_uid, salt, True)
        return volume, frozenset(identifiers)
    if path.is_file() and _nifti_suffix(path) is None and _is_dicom_file(path):
        file_series = str(_read_header(path, ["SeriesInstanceUID"]).get("SeriesInstanceUID", ""))
        if series_uid is not None and series_uid != file_series:
            raise _image_error(
                path,
                f"belongs to series {file_series}, not the requested {series_uid}",
                "Give the folder instead of a file, or drop the series choice.",
            )
        volume, identifiers = _read_dicom_series(path.parent, file_series, salt, True)
        return volume, frozenset(identifiers)
    return load_volume(path, series_uid=series_uid, salt=salt), frozenset()


def dicom_to_nifti(
    folder: str | Path,
    out_path: str | Path,
    *,
    series_uid: str | None = None,
    salt: str | None = None,
) -> Path:
    """Convert one DICOM series to a de-identified NIfTI file; return the written path.

    If ``out_path`` is an existing folder the file is ``<case id>.nii.gz`` inside it.
    A path with the patient's name, an ID, the birth date, accession number, institution or
    a study date in any of its folders or its file name is refused
    (:func:`check_output_path`), so identifiers cannot leak through the name.
    """
    volume, identifiers = _read_dicom_series(Path(folder), series_uid, salt, check=True)
    out_path = Path(out_path)
    if out_path.is_dir():
        out_path = out_path / f"{volume.source}.nii.gz"
    check_output_path(out_path, identifiers, volume.source)
    save_nifti(volume, out_path)
    logger.info("wrote %s as %s", volume.source, out_path.name)
    return out_path


def _existing_dicom_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise _image_error(
            folder, "is not a folder", "Give the folder that holds the DICOM series."
        )
    return folder


def _series_uids(folder: Path) -> list[str]:
    import SimpleITK as sitk

    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        has_subfolders = any(p.is_dir() for p in folder.iterdir())
        raise _image_error(
            folder,
            "holds no readable DICOM series",
            "Give the folder that directly contains the series' files"
            + (" (subfolders are not searched)." if has_subfolders else "."),
        )
    return uids


def _series_files(folder: Path, uid: str) -> list[str]:
    import SimpleITK as sitk

    # GDCM sorts the files by position along the slice normal, not by name.
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))


def _is_dicom_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(132)[128:132] == b"DICM"


def _read_header(path: Path, tags: list[str], *, check_pixels: bool = False) -> dict[str, object]:
    """The given tags of one DICOM file; missing tags are absent.

    With ``check_pixels`` the whole file is read and uncompressed pixel data shorter than
    Rows x Columns x samples x frames says raise :class:`ImageError` (ITK zero-fills
    such a slice without complaint).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    fix = "Remove it from the series folder or copy it again from the scanner/PACS."
    try:
        if check_pixels:
            dataset = pydicom.dcmread(path)
        else:
            dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise _image_error(
            path, f"is not a readable DICOM file ({type(exc).__name__})", fix
        ) from None
    if check_pixels:
        if "PixelData" not in dataset:
            raise _image_error(path, "has no pixel data", fix)
        short = _short_pixel_data(dataset)
        if short:
            raise _image_error(path, short, fix)
    return {tag: dataset.get(tag) for tag in tags if tag in dataset}


def _short_pixel_data(dataset) -> str | None:
    """Why uncompressed pixel data is shorter than Rows x Columns x samples x frames say,
    or None (compressed data is not checked)."""
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed:
        return None
    expected_bytes = (
        int(dataset.get("Rows", 0))
        * int(dataset.get("Columns", 0))
        * int(dataset.get("SamplesPerPixel", 1))
        * int(dataset.get("NumberOfFrames", 1) or 1)
        * int(dataset.get("BitsAllocated", 16))
        // 8
    )
    if len(dataset.PixelData) < expected_bytes:
        return (
            f"has {len(dataset.PixelData)} of the {expected_bytes} bytes of pixel "
            "data its Rows/Columns/BitsAllocated call for (truncated or malformed)"
        )
    return None


def _stray_kind(path: Path) -> str:
    """What a DICOM file in no series is: "non-image" (a structured report, presentation
    state, key-object note or DICOMDIR: no pixel data), "image" or "unparsable"."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        if not any(tag in dataset for tag in ("PixelData", "FloatPixelData")):
            return "non-image"
        if "PixelData" in dataset and _short_pixel_data(dataset):
            return "unparsable"
    except Exception:  # pydicom raises many types on a damaged file; all mean "cannot parse"
        return "unparsable"
    return "image"


def _check_no_stray_dicom(folder: Path, series_file_names: set[str]) -> None:
    """Raise if files with the DICOM preamble are in no series: unreadable ones (e.g. cut
    short), or images SimpleITK left out. Non-image objects (reports, DICOMDIR) are skipped."""
    stray = sorted(
        path.name
        for path in folder.iterdir()
        if path.is_file() and path.name not in series_file_names and _is_dicom_file(path)
    )
    kinds = {name: _stray_kind(folder / name) for name in stray}

    def shown(names):
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    broken = [name for name in stray if kinds[name] == "unparsable"]
    if broken:
        raise _image_error(
            folder,
            f"has {len(broken)} DICOM file(s) that could not be parsed: {shown(broken)}",
            "They are probably truncated; copy the series again or remove them.",
        )
    left_out = [name for name in stray if kinds[name] == "image"]
    if left_out:
        raise _image_error(
            folder,
            f"has {len(left_out)} DICOM image file(s) that are in no readable series: "
            f"{shown(left_out)} (a slice without position or orientation, or an image "
            "SimpleITK cannot decode)",
            "Export the series again, or remove them if they do not belong to it.",
        )
    skipped = len(stray) - len(broken) - len(left_out)
    if skipped:
        logger.info(
            "skipped %d DICOM object(s) without pixel data (reports, presentation states, "
            "DICOMDIR)",
            skipped,
        )


def _read_dicom_series(
    folder: Path, series_uid: str | None, salt: str | None, check: bool
) -> tuple[ImageVolume, set[str]]:
    """Read one series; return the volume and lower-case identifier strings (in memory)."""
    import SimpleITK as sitk

    folder = _existing_dicom_folder(folder)
    uids = _series_uids(folder)
    if series_uid is None:
        if len(uids) > 1:
            raise _image_error(
                folder,
                f"holds {len(uids)} DICOM series: {', '.join(uids)}",
                "Choose one with --series UID (series_uid= from Python; cardiotwin import "
                "--dicom FOLDER lists each series' number, modality and file count).",
            )
        series_uid = uids[0]
    elif series_uid not in uids:
        raise _image_error(
            folder,
            f"has no DICOM series {series_uid}; it holds {', '.join(uids)}",
            "Give one of these with --series (series_uid= from Python).",
        )
    # A file GDCM cannot parse silently drops out of its series; at an end of the stack
    # that would go unnoticed by the spacing check.
    _check_no_stray_dicom(
        folder, {Path(f).name for uid in uids for f in _series_files(folder, uid)}
    )
    files = _series_files(folder, series_uid)
    tags = _GEOMETRY_TAGS + _PSEUDONYM_TAGS + _IDENTIFYING_TAGS
    headers = [_read_header(Path(f), tags, check_pixels=True) for f in files]
    _check_slice_geometry(folder, headers)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError:
        # ITK's message can quote header values; it is not passed on.
        raise _image_error(
            folder,
            f"series {series_uid} could not be read by SimpleITK (a truncated or "
            "compressed-but-unsupported file?)",
            "Copy the series again from the scanner/PACS, or export it uncompressed.",
        ) from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise _image_error(
            folder,
            f"series {series_uid} has {image.GetNumberOfComponentsPerPixel()} values per "
            "voxel (colour or vector image)",
            "Give a greyscale series such as the LGE magnitude or PSIR image.",
        )
    if image.GetDimension() != 3:
        raise _image_error(
            folder,
            f"series {series_uid} reads as a {image.GetDimension()}-D image (files of several "
            "frames each: multi-frame or cine)",
            "Export the LGE as one file per slice (classic MR image storage), a single 3-D volume.",
        )
    affine = _itk_geometry_to_ras_affine(
        image.GetOrigin(), image.GetDirection(), image.GetSpacing()
    )
    _check_itk_matches_headers(folder, affine, headers)
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))

    first = headers[0]
    study_uid = str(first.get("StudyInstanceUID", "") or "")
    patient_id = str(first.get("PatientID", "") or "")
    if not study_uid and not patient_id:
        logger.warning(
            "DICOM series has neither StudyInstanceUID nor PatientID; "
            "its case id is derived from the series UID"
        )
        study_uid = series_uid
    case_id = pseudonymous_case_id(study_uid, patient_id, salt=salt)
    if check:
        # Named by the folder the user gave, not with the case id beside it: a folder named
        # after the patient next to the pseudonym would link the two in a log.
        check_volume(ImageVolume(array, affine, f"the DICOM series in {folder}"))
    volume = ImageVolume(array, affine, case_id)
    logger.info(
        "read DICOM series as %s: modality %s, shape %s, spacing %s mm",
        case_id,
        first.get("Modality", "unknown"),
        array.shape,
        _fmt_mm(volume.spacing_mm),
    )
    return volume, _identifier_tokens(first)


def _identifier_tokens(header: dict[str, object]) -> set[str]:
    """Strings (names' parts, ids, dates, institution) that must not appear in output paths,
    lower-case with everything but letters and digits removed (see :func:`_normalised`)."""
    tokens: set[str] = set()
    for tag in _IDENTIFYING_TAGS:
        value = header.get(tag)
        if value in (None, ""):
            continue
        text = str(value)
        parts = [text, *text.replace("=", "^").split("^")] if tag == "PatientName" else [text]
        # Parts under 3 characters would match ordinary words by chance.
        tokens.update(_normalised(p) for p in parts if len(_normalised(p)) >= 3)
    return tokens


def _normalised(text: str) -> str:
    """Lower-case letters and digits only: "St_Elsewhere Hospital" -> "stelsewherehospital"."""
    return "".join(ch for ch in str(text).lower() if ch.isalnum())


def check_output_path(
    path: str | Path, identifiers: set[str] | frozenset[str], case_id: str
) -> None:
    """Refuse an output path any part of which holds an identifier of the input DICOM.

    Every folder and the file name of the path, as given and made absolute, are compared
    (letters and digits only, case ignored) with the patient's name parts, IDs, birth date,
    accession number, institution and study dates read from the series; the pseudonymous
    ``case_id`` itself is allowed. The message does not say which value matched.
    """
    if not identifiers:
        return
    path = Path(path)
    parts = list(path.parts) + list(path.absolute().parts)
    case = _normalised(case_id)
    for part in parts:
        text = _normalised(part).replace(case, "")
        if any(token in text for token in identifiers):
            raise _image_error(
                f"output for {case_id}",
                "the output path contains the patient's name, an ID, the institution or a "
                "date from the DICOM header (in a folder or file name)",
                f"Write into a folder without identifiers and name files after the "
                f"pseudonymous id, e.g. {case_id}.nii.gz.",
            )


def _check_slice_geometry(folder: Path, headers: list[dict[str, object]]) -> None:
    """Raise unless the slices share one orientation and are evenly stacked along its normal."""
    fix = "Export the complete series again; if it mixes several stacks, separate them into folders"
    if len(headers) < 2:
        raise _image_error(
            folder,
            f"series has {len(headers)} slice, expected a 3-D volume",
            "Give a series with at least 2 slices (multi-frame files are not supported).",
        )
    try:
        orientations = np.array([h["ImageOrientationPatient"] for h in headers], dtype=float)
        positions = np.array([h["ImagePositionPatient"] for h in headers], dtype=float)
    except KeyError:
        raise _image_error(
            folder,
            "series lacks ImagePositionPatient/ImageOrientationPatient on some slices",
            "Only series with slice geometry (e.g. MR, CT image storage) can be read.",
        ) from None
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        raise _image_error(folder, "series mixes slices of different orientation", fix + ".")
    normal = np.cross(orientations[0, :3], orientations[0, 3:])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    median = float(np.median(along))
    # DICOM decimal strings are often rounded to 0.01 mm; a missing slice doubles a step.
    tolerance = max(0.05, 0.02 * abs(median))
    if np.any(np.abs(along) < 1e-3):
        raise _image_error(
            folder, "series has two slices at the same position", fix + " (one stack only)."
        )
    if np.any(np.abs(along - median) > tolerance):
        raise _image_error(
            folder,
            f"series has uneven slice spacing: steps {_fmt_mm(np.sort(np.abs(along)))} mm "
            "(a missing or extra slice?)",
            fix + ".",
        )
    sideways = np.linalg.norm(steps - np.outer(along, normal), axis=1).max()
    if sideways > tolerance:
        raise _image_error(
            folder,
            f"series' slices are sheared: each is shifted {sideways:.3g} mm in-plane "
            "(gantry tilt?)",
            "Resample the series to an orthogonal grid before import.",
        )


def _check_itk_matches_headers(
    folder: Path, affine: np.ndarray, headers: list[dict[str, object]]
) -> None:
    """Guard against a reader change: ITK's grid must hit the first and last slice positions."""
    n_slices = len(headers)
    expected = (
        np.array(
            [headers[0]["ImagePositionPatient"], headers[-1]["ImagePositionPatient"]], dtype=float
        )
        @ _LPS_TO_RAS.T
    )
    got = _apply_affine(affine, np.array([[0, 0, 0], [0, 0, n_slices - 1]], dtype=float))
    slice_spacing_mm = float(np.linalg.norm(affine[:3, 2]))
    if np.abs(got - expected).max() > max(0.05, 0.02 * slice_spacing_mm):
        raise _image_error(
            folder,
            "SimpleITK's geometry disagrees with the slices' ImagePositionPatient",
            "Report this with the (de-identified) series; do not use its coordinates.",
        )
    # The in-plane scale: a reader falls back to 1 mm without PixelSpacing, and the
    # positions checked above cannot show that.
    spacing = headers[0].get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        raise _image_error(
            folder,
            "series has no PixelSpacing, so its in-plane voxel size is unknown",
            "Export the series with PixelSpacing (a secondary capture or screenshot cannot "
            "be used).",
        )
    # PixelSpacing is (row spacing, column spacing): along the columns (j), along a row (i)
    header_mm = np.array([float(spacing[1]), float(spacing[0])])
    itk_mm = np.linalg.norm(affine[:3, :2], axis=0)
    if np.abs(itk_mm - header_mm).max() > max(1e-3, 0.005 * header_mm.max()):
        raise _image_error(
            folder,
            f"SimpleITK's in-plane spacing {_fmt_mm(itk_mm)} mm disagrees with the header's "
            f"PixelSpacing {_fmt_mm(header_mm)} mm",
            "Report this with the (de-identified) series; do not use its coordinates.",
        )


def _itk_geometry_to_ras_affine(
    origin_lps_mm: tuple[float, ...],
    direction: tuple[float, ...],
    spacing_mm: tuple[float, ...],
) -> np.ndarray:
    """4x4 voxel (i, j, k) -> scanner RAS mm affine from ITK's LPS origin/direction/spacing."""
    affine = np.eye(4)
    direction_lps = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine[:3, :3] = _LPS_TO_RAS @ direction_lps @ np.diag(spacing_mm)
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(origin_lps_mm, dtype=np.float64)
    return affine
