"""The Snakemake workflow: configuration and cohort checks, lint, dry runs, reruns."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiotwin.pipeline.commands.config import SCHEMA_PATH, schema_text
from cardiotwin.pipeline.config import ConfigError
from cardiotwin.pipeline.workflow import CohortError, check_execution, read_cohort, setup

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data_samples"
HEADER = "case_id\tkind\tlge\twall\tblood\n"
#: the smallest work that still goes through every stage (coarse mesh)
TEST_SETTINGS = "mesh:\n  edge_mm: 2.5\n"


def snakemake(*args, cwd: Path, check=True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def make_cohort(folder: Path, cases=("lv-infarct", "lv-healthy")) -> Path:
    rows = [
        f"{c}\tventricle\t{SAMPLES / c / 'lge.nii.gz'}\t{SAMPLES / c / 'wall.nii.gz'}\t-\n"
        for c in cases
    ]
    sheet = folder / "cohort.tsv"
    sheet.write_text(HEADER + "".join(rows))
    return sheet


def test_checked_in_schema_is_the_models():
    # the Snakefile validates against the checked-in file; it must be the model's schema
    assert (ROOT / SCHEMA_PATH).read_text() == schema_text(), (
        "configs/schema/config.schema.json is stale: run `cardiotwin config schema`"
    )


def test_cohort_sheet_errors_name_the_row(tmp_path):
    lge, wall = SAMPLES / "lv-infarct" / "lge.nii.gz", SAMPLES / "lv-infarct" / "wall.nii.gz"
    sheet = tmp_path / "c.tsv"
    sheet.write_text(
        HEADER
        + f"p1\tventricle\t{lge}\t{wall}\t-\n"
        + f"p1\tventricle\t{lge}\t{wall}\t-\n"
        + f"p2\theart\t{lge}\t{tmp_path / 'missing.nii.gz'}\t-\n"
        + f"John Smith\tventricle\t{lge}\t{wall}\t-\n"
    )
    with pytest.raises(CohortError) as info:
        read_cohort(sheet)
    message = str(info.value)
    assert "line 3 (case 'p1'): duplicate case id" in message
    assert "line 4 (case 'p2'): kind 'heart' is not one of ventricle, atrium" in message
    assert "line 4 (case 'p2'): wall file" in message and "missing.nii.gz does not exist" in message
    assert "line 5 (case 'John Smith'): case ids are" in message
    sheet.write_text("case\tkind\tlge\twall\n")
    with pytest.raises(
        CohortError, match=r"unknown columns \['case'\]; missing columns \['case_id'\]"
    ):
        read_cohort(sheet)


def test_setup_refuses_a_bad_config_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'simulation.time_step'"):
        setup({"config_version": 1, "simulation": {"time_step": 0.1}}, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_gpu_backend_without_a_gpu_is_refused_before_any_job(tmp_path):
    sheet = make_cohort(tmp_path, cases=("lv-infarct",))
    config = _config(tmp_path, sheet)
    config.write_text(config.read_text() + "simulation:\n  backend: cuda\n")
    result = snakemake("--cores", "1", "--configfile", str(config), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "has no usable CUDA GPU" in result.stdout + result.stderr
    assert not (tmp_path / "results" / "lv-infarct").exists()  # no job ran
    # on a cluster the jobs run on GPU nodes: not refused here
    done = setup(
        {
            "config_version": 1,
            "workflow": {"cohort": str(sheet)},
            "simulation": {"backend": "cuda"},
        },
        tmp_path,
    )
    check_execution(done, "slurm", gpu_usable=False)
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):
        check_execution(done, "local", gpu_usable=False)


def test_lint_and_dry_run(tmp_path):
    sheet = make_cohort(tmp_path)
    result = snakemake("--lint", "--config", f"workflow={{'cohort': '{sheet}'}}", cwd=ROOT)
    assert "Congratulations" in result.stdout + result.stderr
    dry = snakemake("-n", "--configfile", str(_config(tmp_path, sheet)), cwd=tmp_path)
    counts = _job_counts(dry.stdout)
    # one segment and one report per case, one cohort summary
    assert counts["segment"] == 2 and counts["report"] == 2 and counts["cohort_summary"] == 1


def _config(folder: Path, sheet: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(
        f"config_version: 1\nworkflow:\n  cohort: {sheet}\n  results: {folder / 'results'}\n"
        + TEST_SETTINGS
    )
    return path


def _job_counts(stdout: str) -> dict[str, int]:
    counts, table = {}, False
    for line in stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            table = True
            continue
        if table:
            parts = line.split()
            if line.startswith("total"):
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.slow
def test_run_rerun_one_patient_and_keep_going(tmp_path):
    # copy the inputs so touching and breaking them does not touch the repository
    for case in ("lv-infarct", "lv-healthy"):
        shutil.copytree(SAMPLES / case, tmp_path / "in" / case)
    sheet = tmp_path / "cohort.tsv"
    sheet.write_text(
        HEADER
        + "".join(
            f"{c}\tventricle\tin/{c}/lge.nii.gz\tin/{c}/wall.nii.gz\t-\n"
            for c in ("lv-infarct", "lv-healthy")
        )
    )
    config = _config(tmp_path, sheet)
    run = snakemake("--cores", "2", "--configfile", str(config), cwd=tmp_path)
    assert "cardiotwin: reports written:" in run.stdout + run.stderr
    for case in ("lv-infarct", "lv-healthy"):
        assert (tmp_path / "results" / case / "report" / "report.pdf").stat().st_size > 10_000
    assert (tmp_path / "results" / "cohort" / "summary.tsv").read_text().count("\n") == 3

    # a newer input with the same content changes nothing (Snakemake compares checksums) ...
    lge = tmp_path / "in" / "lv-healthy" / "lge.nii.gz"
    os.utime(lge, (lge.stat().st_atime + 60, lge.stat().st_mtime + 60))
    assert "Nothing to be done" in snakemake("-n", "--configfile", str(config), cwd=tmp_path).stdout
    # ... a changed input re-runs only that patient (and the cohort summary)
    image = nib.load(lge)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) * 1.01, image.affine, image.header), lge)
    counts = _job_counts(snakemake("-n", "--configfile", str(config), cwd=tmp_path).stdout)
    assert counts == {"segment": 1, "mesh": 1, "report": 1, "cohort_summary": 1, "all": 1}

    # a failing patient does not lose the other's results (--keep-going)
    (tmp_path / "in" / "lv-healthy" / "wall.nii.gz").write_bytes(b"not a nifti")
    failed = snakemake(
        "--cores", "2", "--keep-going", "--configfile", str(config), cwd=tmp_path, check=False
    )
    assert failed.returncode != 0
    assert (tmp_path / "results" / "lv-infarct" / "report" / "report.html").is_file()
    # the failed job left no half output; the message names the broken file
    assert not (tmp_path / "results" / "lv-healthy" / "segmentation" / "labels.nii.gz").exists()
    log = (tmp_path / "results" / "lv-healthy" / "logs" / "segment.log").read_text()
    assert "wall.nii.gz" in log
