"""The whole workflow on a DICOM series with a planted name, ID and birth date: none of them
reaches an output file (bytes, decompressed, or the PDF's text), a log or a file/folder name."""

import gzip
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from test_dicom_cli import PLANTED_STRINGS, write_series
from test_workflow import ROOT, TEST_SETTINGS

from cardiotwin.pipeline.phantoms import Acquisition, make_phantom, write_phantom

pytestmark = pytest.mark.slow


#: files read as text: every planted string is searched, in any case
TEXT_SUFFIXES = {".json", ".log", ".html", ".tsv", ".txt", ".yaml"}


def _contents(path: Path) -> tuple[list[str], list[bytes]]:
    """(texts to search for every planted string, binary blobs to search for the long ones).

    Base64 and compressed streams (VTU, PNG, PDF) hold any three letters by chance, so
    short strings ("Doe") are searched in text only: text files (embedded pictures cut
    out), the PDF's extracted text, decompressed NIfTI headers.
    """
    raw = path.read_bytes()
    texts, blobs = [], [raw]
    if path.suffix in TEXT_SUFFIXES:
        texts.append(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", raw.decode("utf-8")))
    if path.suffix == ".gz":
        blobs.append(gzip.decompress(raw))
        texts.append(gzip.decompress(raw)[:348].decode("latin-1"))  # the NIfTI header
    if path.suffix == ".pdf":
        from pypdf import PdfReader

        texts.append("\n".join(p.extract_text() or "" for p in PdfReader(path).pages))
    return texts, blobs


def test_no_identifier_leaves_the_workflow(tmp_path):
    phantom = make_phantom("lv-infarct", 4, acquisition=Acquisition(fine_mm=2.0))
    write_phantom(phantom, tmp_path / "inputs")
    dicom = tmp_path / "inputs" / "study-1"  # the folder name is the user's choice
    chosen, study = generate_uid(), generate_uid()
    write_series(dicom, phantom.lge, series_uid=chosen, study_uid=study)
    # a second series of the same study in the same folder (a localiser, say): the cohort
    # sheet's series column picks the LGE
    other = make_phantom("lv-healthy", 2, acquisition=Acquisition(fine_mm=2.0))
    write_series(dicom / "b", other.lge, series_uid=generate_uid(), study_uid=study, number=9)
    for path in (dicom / "b").iterdir():
        path.rename(dicom / f"B{path.name}")
    (dicom / "b").rmdir()
    (tmp_path / "inputs" / "lge.nii.gz").unlink()  # only the DICOM carries the image
    sheet = tmp_path / "cohort.tsv"
    sheet.write_text(
        "case_id\tkind\tlge\twall\tblood\tseries\n"
        f"case-a\tventricle\tinputs/study-1\tinputs/wall.nii.gz\t-\t{chosen}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "config_version: 1\nworkflow:\n  cohort: cohort.tsv\n  results: results\n" + TEST_SETTINGS
    )
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--cores", "2",
         "--configfile", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    written = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    written += [p for p in (tmp_path / ".snakemake" / "log").rglob("*") if p.is_file()]
    assert any(p.name == "report.pdf" for p in written) and len(written) > 10
    for path in written:
        name = str(path.relative_to(tmp_path)).lower()
        for planted in PLANTED_STRINGS:
            assert planted.lower() not in name, f"{planted!r} in the path {name}"
        texts, blobs = _contents(path)
        for planted in PLANTED_STRINGS:
            for text in texts:
                assert planted.lower() not in text.lower(), f"{planted!r} in {path}"
            if len(planted) >= 8:
                for blob in blobs:
                    assert planted.encode() not in blob, f"{planted!r} in {path}"
    for planted in PLANTED_STRINGS:
        assert planted.lower() not in (run.stdout + run.stderr).lower()
