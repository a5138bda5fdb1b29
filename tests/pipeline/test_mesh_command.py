"""``cardiotwin mesh``: files written, read back, and bad input refused with nothing written."""

import json
from pathlib import Path

import numpy as np
import pytest

from cardiotwin.meshing.io import read_mesh
from cardiotwin.pipeline.cli import main
from cardiotwin.pipeline.images import ImageVolume, load_nifti, save_nifti

SAMPLES = Path(__file__).resolve().parents[2] / "data_samples"
LV_LABELS = SAMPLES / "lv-infarct" / "segmentation" / "labels_fwhm.nii.gz"


def test_ventricle_mesh_and_quality_json(tmp_path):
    out = tmp_path / "mesh" / "lv.vtu"
    assert main(["mesh", "--labels", str(LV_LABELS), "--kind", "ventricle",
                 "--edge-mm", "2", "--out", str(out)]) == 0  # fmt: skip
    mesh = read_mesh(out)
    assert set(np.unique(mesh.region)) == {1, 2, 3}
    np.testing.assert_allclose(mesh.affine, load_nifti(LV_LABELS).affine)
    quality = json.loads((tmp_path / "mesh" / "lv.quality.json").read_text())
    assert quality["elements"] == mesh.n_elements and quality["inverted_elements"] == 0
    assert quality["input"]["edge_mm_requested"] == 2.0
    assert not list(out.parent.glob(".*tmp*")), "no temporary file left behind"
    # prepared by default: ready to simulate (the contract induction relies on)
    assert {"endo", "epi", "base"} <= set(mesh.surfaces)
    assert {f"AHA-{k}" for k in range(1, 18)} <= set(mesh.node_sets)
    assert {"transmural", "apicobasal", "rotational", "aha_segment"} <= set(mesh.point_data)
    endo = np.unique(mesh.surfaces["endo"])
    epi = np.unique(mesh.surfaces["epi"])
    np.testing.assert_allclose(mesh.point_data["transmural"][endo], 0.0, atol=1e-9)
    np.testing.assert_allclose(mesh.point_data["transmural"][epi], 1.0, atol=1e-9)
    # the base found is the truncation plane of the phantom (truth.json: base centre, axis)
    truth = json.loads((SAMPLES / "lv-infarct" / "truth.json").read_text())["ventricle"]
    base_points = mesh.points_mm[np.unique(mesh.surfaces["base"])]
    height = (base_points - truth["base_centre_mm"]) @ np.asarray(truth["long_axis_unit"])
    # within half a slice (8 mm slices): where in its slice the image cut the wall is unknown
    assert np.abs(height).max() < 4.0
    provenance = quality["provenance"]
    assert provenance["stage"] == "mesh" and len(provenance["inputs_sha256"]["labels"]) == 64


def test_atrium_opencarp_set_with_named_openings(tmp_path):
    case = SAMPLES / "la-fibrosis"
    out = tmp_path / "la.elem"
    assert main(["mesh", "--labels", str(case / "segmentation" / "labels_iir-surface.nii.gz"),
                 "--kind", "atrium", "--lge", str(case / "lge.nii.gz"),
                 "--blood", str(case / "blood.nii.gz"), "--wall", str(case / "wall.nii.gz"),
                 "--edge-mm", "2", "--out", str(out)]) == 0  # fmt: skip
    mesh = read_mesh(out)
    assert {"endo", "epi", "mitral", "vein-1"} <= set(mesh.surfaces)
    assert (tmp_path / "la.endo.surf").exists() and (tmp_path / "la.quality.json").exists()


def test_atrium_without_a_usable_blood_pool_is_refused(tmp_path, capsys):
    # the sample atrium is open at four veins and the mitral valve: the cavity its wall
    # encloses slice by slice is only part of the blood pool, so the mesh would be partial
    case = SAMPLES / "la-fibrosis"
    out = tmp_path / "la.vtu"
    rc = main(["mesh", "--labels", str(case / "segmentation" / "labels_iir-surface.nii.gz"),
               "--kind", "atrium", "--edge-mm", "2", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--blood" in err and "of the wall's volume" in err
    assert not out.exists()


def _write_labels(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 8.0)) -> Path:
    save_nifti(ImageVolume(array.astype(np.uint8), np.diag([*spacing, 1.0])), path)
    return path


@pytest.mark.parametrize(
    "case, edge, message",
    [
        ("empty", "2", "has no wall"),
        ("fragments", "1", "in fragments"),
        ("lv", "30", "too large to resolve the wall"),
        ("lv", "0.01", "far below the voxel size"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, case, edge, message):
    if case == "lv":
        labels = LV_LABELS
    elif case == "empty":
        labels = _write_labels(tmp_path / "empty.nii.gz", np.zeros((20, 20, 6)))
    else:
        array = np.zeros((40, 40, 6))
        array[2:12, 2:12, 1:3] = 1
        array[25:38, 25:38, 3:5] = 1
        labels = _write_labels(tmp_path / "frag.nii.gz", array)
    out = tmp_path / "out" / "m.vtu"
    rc = main(["mesh", "--labels", str(labels), "--kind", "ventricle", "--edge-mm", edge,
               "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and message in err and labels.name in err
    assert len(err.strip().splitlines()[-1]) > 20 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_output_name(tmp_path, capsys):
    rc = main(["mesh", "--labels", str(LV_LABELS), "--kind", "ventricle",
               "--out", str(tmp_path / "m.stl")])  # fmt: skip
    assert rc == 2 and "*.vtu" in capsys.readouterr().err


def test_a_ventricle_meshed_as_an_atrium_is_refused(tmp_path, capsys):
    """It ran and gave a plausible-looking atrial shell of the LV (a new user's trial)."""
    out = tmp_path / "out" / "m.vtu"
    rc = main(["mesh", "--labels", str(LV_LABELS), "--kind", "atrium", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "use --kind ventricle" in err and "mm thick on average" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "ventricle", "--blood", "{labels}"], "--blood is not read for --kind"),
        (["--kind", "atrium", "--septum-mm", "1", "2", "3"], "--septum-mm is not read for --kind"),
        (["--kind", "ventricle", "--no-prepare", "--septum-mm", "1", "2", "3"],
         "--septum-mm orients what prepare adds"),
    ],
)  # fmt: skip
def test_options_the_kind_does_not_read_are_refused(tmp_path, capsys, extra, message):
    """They were accepted and ignored without a word."""
    out = tmp_path / "out" / "m.vtu"
    extra = [part.format(labels=LV_LABELS) for part in extra]
    assert main(["mesh", "--labels", str(LV_LABELS), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
