"""DICOM from the command line: import and segment a series, and nothing identifying leaks.

A phantom's LGE is written as an MR series with a planted patient name, ID, birth date and
institution, in a folder named after the patient ID; ``cardiotwin import`` and
``cardiotwin segment --lge DIR`` must run on it, and none of the planted strings may appear
in a written file (bytes, decompressed), a path written, a log message or the terminal.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cardiotwin.pipeline.cli import main
from cardiotwin.pipeline.images import load_nifti
from cardiotwin.pipeline.phantoms import Acquisition, make_phantom, write_phantom

PLANTED = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-99887766",
    "PatientBirthDate": "19650412",
    "InstitutionName": "Mercywood Kinsella Hospital",
}
PLANTED_STRINGS = ["Doe", "Jane", "MRN-99887766", "99887766", "19650412", "Mercywood", "Kinsella"]
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
SCALE = 1000.0  # stored value per unit of the phantom's signal (blood = 1)


def write_series(folder: Path, volume, *, series_uid: str, study_uid: str, number: int = 5):
    """Write ``volume`` (an ImageVolume in scanner RAS) as a one-file-per-slice MR series."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ volume.affine[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    row_dir, col_dir = lps[:, 0] / spacing[0], lps[:, 1] / spacing[1]
    voxels = np.clip(np.rint(volume.array * SCALE), 0, 4095).astype(np.uint16)
    frame_uid = generate_uid()
    for k in range(voxels.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        position = lps[:, 3] + k * lps[:, 2]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(voxels[:, :, k].T).astype("<u2").tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """(DICOM folder named after the patient ID, phantom folder) of one lv-infarct case."""
    root = tmp_path_factory.mktemp("site")
    phantom = make_phantom("lv-infarct", 4, acquisition=Acquisition(fine_mm=2.0))
    write_phantom(phantom, root / "phantom")
    dicom = root / PLANTED["PatientID"]
    write_series(
        dicom, phantom.lge, series_uid=generate_uid(), study_uid="1.2.826.0.1.3680043.8.498.77"
    )
    return dicom, root / "phantom"


def _assert_clean(text: str, where: str) -> None:
    for planted in PLANTED_STRINGS:
        assert planted.lower() not in text.lower(), f"{planted!r} leaked into {where}"


def test_import_and_segment_from_dicom_leak_nothing(patient, tmp_path, caplog, capfd):
    dicom, phantom_dir = patient
    caplog.set_level(logging.DEBUG)
    imported_dir = tmp_path / "imported"
    imported_dir.mkdir()
    assert main(["import", "--dicom", str(dicom), "--out", str(imported_dir)]) == 0
    seg_dir = tmp_path / "segmented"
    seg_dir.mkdir()
    argv = ["segment", "--lge", str(dicom), "--wall", str(phantom_dir / "wall.nii.gz")]
    argv += ["--out", str(seg_dir), "--qc", str(seg_dir / "qc"), "--resample-iso", "2"]
    assert main(argv) == 0

    # The import is the phantom's image, on the phantom's grid, named by the case id.
    (nifti,) = list(imported_dir.iterdir())
    assert nifti.name.startswith("case-") and nifti.name.endswith(".nii.gz")
    case_id = nifti.name[: -len(".nii.gz")]
    imported, original = load_nifti(nifti), load_nifti(phantom_dir / "lge.nii.gz")
    np.testing.assert_allclose(imported.affine, original.affine, atol=1e-3)
    np.testing.assert_allclose(imported.array, np.rint(original.array * SCALE), atol=0.5)
    # segment --lge DIR: outputs named by the case, report without any input path.
    names = sorted(p.name for p in seg_dir.rglob("*") if p.is_file())
    assert f"{case_id}_labels_fwhm.nii.gz" in names and f"{case_id}_labels_fwhm.json" in names
    report = json.loads((seg_dir / f"{case_id}_labels_fwhm.json").read_text())
    assert report["inputs"]["lge"]["case_id"] == case_id
    assert str(tmp_path) not in json.dumps(report) and "phantom" not in json.dumps(report)

    written = [p for p in [*imported_dir.rglob("*"), *seg_dir.rglob("*")] if p.is_file()]
    assert len(written) >= 6
    for path in written:
        _assert_clean(str(path.relative_to(tmp_path)), "a path written")
        raw = path.read_bytes()
        content = gzip.decompress(raw) if path.suffix == ".gz" else raw
        for planted in PLANTED_STRINGS:
            for blob in (raw, content):
                assert planted.encode() not in blob, f"{planted!r} in {path.name}"
                assert planted.lower().encode() not in blob.lower(), f"{planted!r} in {path.name}"
    captured = capfd.readouterr()
    _assert_clean(captured.out + captured.err, "stdout/stderr")
    ours = [r for r in caplog.records if r.name.startswith("cardiotwin")]
    _assert_clean("\n".join(r.getMessage() for r in ours), "log messages")
    assert any(case_id in r.getMessage() for r in ours)


def test_output_under_a_folder_named_like_the_patient_is_refused(patient, tmp_path, capsys):
    dicom, phantom_dir = patient
    bad = tmp_path / "results" / "doe_jane"
    assert main(["import", "--dicom", str(dicom), "--out", str(bad / "lge.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "identif" in err or "patient" in err
    argv = ["segment", "--lge", str(dicom), "--wall", str(phantom_dir / "wall.nii.gz")]
    assert main(argv + ["--out", str(tmp_path / "19650412" / "labels.nii.gz")]) == 2
    assert not (tmp_path / "results").exists() and not (tmp_path / "19650412").exists()


def test_several_series_are_listed_and_one_is_chosen(patient, tmp_path, capsys):
    dicom, _ = patient
    folder = tmp_path / "study"
    folder.mkdir()
    for path in dicom.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    other_uid = generate_uid()
    small = make_phantom("lv-healthy", 2, acquisition=Acquisition(fine_mm=2.0))
    write_series(tmp_path / "tmp", small.lge, series_uid=other_uid, study_uid="1.2.3.4", number=9)
    for path in (tmp_path / "tmp").iterdir():
        path.rename(folder / f"B{path.name}")
    out = tmp_path / "out.nii.gz"
    assert main(["import", "--dicom", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 DICOM series" in err and other_uid in err and "--series" in err
    assert not out.exists()
    assert main(["import", "--dicom", str(folder), "--out", str(out), "--series", other_uid]) == 0
    assert load_nifti(out).shape == small.lge.shape


def test_redacted_errors_name_the_option_not_the_patients_folder(patient, tmp_path, capsys):
    """The workflow runs segment and mesh with --redact-inputs: their logs sit under the
    case's pseudonymous folder, so a DICOM folder named after the patient must not reach
    them through an error message."""
    dicom, phantom = patient
    folder = tmp_path / dicom.name  # named after the patient ID, like the fixture's
    folder.mkdir()
    for path in dicom.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    write_series(folder / "second", phantom_lge(), series_uid=generate_uid(), study_uid="1.2.3")
    for path in (folder / "second").iterdir():
        path.rename(folder / f"B{path.name}")
    (folder / "second").rmdir()
    out = tmp_path / "case-a" / "labels.nii.gz"
    argv = ["segment", "--lge", str(folder), "--wall", str(phantom / "wall.nii.gz"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    assert dicom.name in capsys.readouterr().err  # at the terminal the path helps
    assert main(["--redact-inputs", *argv]) == 2
    err = capsys.readouterr().err
    assert "<--lge> holds 2 DICOM series" in err and "--series" in err
    _assert_clean(err, "the redacted error")


def phantom_lge():
    return make_phantom("lv-healthy", 2, acquisition=Acquisition(fine_mm=2.0)).lge


def test_an_atrium_meshes_with_its_lge_as_a_dicom_folder(tmp_path):
    # the cohort sheet may give an atrium's LGE as a DICOM folder: the mesher reads it too
    # (de-identified), with the same fibrosis tags as from the NIfTI of the same image
    from cardiotwin.meshing.io import read_mesh
    from cardiotwin.pipeline.images import ImageVolume, save_nifti

    sample = Path(__file__).resolve().parents[2] / "data_samples" / "la-fibrosis"
    lge = load_nifti(sample / "lge.nii.gz")
    lge = ImageVolume(np.rint(lge.array * SCALE) / SCALE, lge.affine, "lge")  # as stored
    save_nifti(lge, tmp_path / "lge.nii.gz")
    dicom = tmp_path / "PAT-99887766"
    write_series(dicom, lge, series_uid=generate_uid(), study_uid=generate_uid())
    labels = sample / "segmentation" / "labels_iir-surface.nii.gz"
    common = ["mesh", "--labels", str(labels), "--kind", "atrium",
              "--blood", str(sample / "blood.nii.gz"), "--edge-mm", "2"]  # fmt: skip
    assert main([*common, "--lge", str(dicom), "--out", str(tmp_path / "a.vtu")]) == 0
    assert (
        main([*common, "--lge", str(tmp_path / "lge.nii.gz"), "--out", str(tmp_path / "b.vtu")])
        == 0
    )
    a, b = read_mesh(tmp_path / "a.vtu"), read_mesh(tmp_path / "b.vtu")
    assert a.n_elements == b.n_elements and (a.region == b.region).mean() > 0.999
    for path in tmp_path.glob("a*"):
        if path.suffix == ".json":
            assert "99887766" not in path.read_text(), path


def test_a_second_series_of_one_study_does_not_replace_the_first(patient, tmp_path, capsys):
    # the case id is the study's: two of its series would both be <case>.nii.gz
    dicom, _ = patient
    out = tmp_path / "out"
    out.mkdir()
    assert main(["import", "--dicom", str(dicom), "--out", str(out)]) == 0
    (first,) = out.iterdir()
    before = first.read_bytes()
    assert main(["import", "--dicom", str(dicom), "--out", str(out)]) == 0  # the same again
    other = make_phantom("lv-healthy", 2, acquisition=Acquisition(fine_mm=2.0))
    study = "1.2.826.0.1.3680043.8.498.77"  # the patient fixture's study
    write_series(tmp_path / "psir", other.lge, series_uid=generate_uid(), study_uid=study)
    assert main(["import", "--dicom", str(tmp_path / "psir"), "--out", str(out)]) == 2
    assert "holds another image" in capsys.readouterr().err
    assert first.read_bytes() == before and len(list(out.iterdir())) == 1
