"""Synthetic patients: anatomy, ground truth consistent with the label map, CLI, bad input."""

import json

import numpy as np
import pytest
from scipy import ndimage

from cardiotwin.pipeline import phantom
from cardiotwin.pipeline.cli import main
from cardiotwin.pipeline.images import load_nifti
from cardiotwin.pipeline.phantom import Acquisition, PhantomError, make_phantom

# Coarse anatomy sub-voxels keep the module fast; the shipped samples use 0.5 mm.
TEST_ACQUISITION = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=15.0, fine_mm=1.0)
QUICK_ACQUISITION = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=15.0, fine_mm=2.0)


@pytest.fixture(scope="module")
def infarct():
    return make_phantom("lv-infarct", 11, acquisition=TEST_ACQUISITION)


@pytest.fixture(scope="module")
def healthy():
    return make_phantom("lv-healthy", 11, acquisition=TEST_ACQUISITION)


@pytest.fixture(scope="module")
def atrium():
    return make_phantom("la-fibrosis", 5, acquisition=TEST_ACQUISITION, fibrosis_percent=25.0)


def scanner_to_voxel(points_mm, affine):
    points_mm = np.asarray(points_mm, dtype=float)
    return np.rint((points_mm - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)


def test_same_seed_same_patient_other_seed_other_patient():
    a = make_phantom("lv-infarct", 3, acquisition=QUICK_ACQUISITION)
    b = make_phantom("lv-infarct", 3, acquisition=QUICK_ACQUISITION)
    c = make_phantom("lv-infarct", 4, acquisition=QUICK_ACQUISITION)
    np.testing.assert_array_equal(a.lge.array, b.lge.array)
    np.testing.assert_array_equal(a.truth_labels.array, b.truth_labels.array)
    assert a.truth == b.truth
    assert a.truth["ventricle"]["apex_mm"] != c.truth["ventricle"]["apex_mm"]


def test_anatomy_does_not_depend_on_snr():
    # Separate random streams: the noise level must not move the heart.
    low = make_phantom("lv-infarct", 3, acquisition=QUICK_ACQUISITION)
    high = make_phantom(
        "lv-infarct", 3, acquisition=Acquisition(snr=40.0, fine_mm=QUICK_ACQUISITION.fine_mm)
    )
    np.testing.assert_array_equal(low.truth_labels.array, high.truth_labels.array)
    assert not np.array_equal(low.lge.array, high.lge.array)


def test_ventricle_has_adult_size_and_an_oblique_pose(infarct):
    lv = infarct.truth["ventricle"]
    # Adult LV (issue): ~50 mm cavity, 80-90 mm long axis, 8-12 mm wall.
    assert 46.0 <= lv["cavity_diameter_mm"] <= 54.0
    assert 80.0 <= lv["long_axis_length_mm"] <= 92.0
    assert 8.0 <= lv["wall_thickness_mm"] <= 12.0
    affine = infarct.lge.affine
    np.testing.assert_allclose(infarct.lge.spacing_mm, [1.5, 1.5, 8.0], atol=1e-9)
    # Oblique short-axis stack: the slice axis is not a scanner axis, the origin is not 0.
    slice_direction = affine[:3, 2] / 8.0
    assert np.max(np.abs(slice_direction)) < 0.95
    assert np.linalg.norm(affine[:3, 3]) > 10.0
    # The apex lies on the long axis, apex-to-base distance matches the stated length.
    apex, base = np.array(lv["apex_mm"]), np.array(lv["base_centre_mm"])
    np.testing.assert_allclose(
        (base - apex) / np.linalg.norm(base - apex), lv["long_axis_unit"], atol=1e-4
    )
    # The short-axis slices are within a few degrees of the long axis.
    assert abs(slice_direction @ np.array(lv["long_axis_unit"])) > np.cos(np.radians(6))
    # Wall volume of an adult LV: roughly 90-180 ml of myocardium.
    assert 90.0 <= infarct.truth["wall_volume_ml"] <= 180.0


def test_truth_labels_live_on_the_wall_and_the_lge_grid(infarct):
    labels, wall = infarct.truth_labels.array, infarct.wall.array
    assert labels.shape == infarct.lge.shape == wall.shape
    np.testing.assert_array_equal(infarct.truth_labels.affine, infarct.lge.affine)
    np.testing.assert_array_equal(labels > 0, wall > 0)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert not np.any((infarct.blood.array > 0) & (wall > 0))


def test_volumes_in_truth_json_equal_label_counts(infarct):
    truth = infarct.truth
    voxel_ml = abs(np.linalg.det(infarct.lge.affine[:3, :3])) / 1000.0
    labels = infarct.truth_labels.array
    assert truth["scar_volume_ml"] == pytest.approx(np.count_nonzero(labels == 3) * voxel_ml)
    assert truth["border_zone_volume_ml"] == pytest.approx(np.count_nonzero(labels == 2) * voxel_ml)
    # Large enough for a re-entrant circuit: several ml of scar and of border zone.
    assert truth["scar_volume_ml"] > 3.0 and truth["border_zone_volume_ml"] > 3.0
    # The acquisition-grid volumes stay close to the designed (fine-grid) ones.
    designed = truth["designed_fine_grid_ml"]
    assert truth["scar_volume_ml"] == pytest.approx(designed["dense_scar"], rel=0.25)


def test_infarct_extent_is_realistic(infarct):
    extent = infarct.truth["infarct"]["extent_mm"]
    assert 30.0 <= extent["circumferential"] <= 55.0
    assert 30.0 <= extent["longitudinal"] <= 55.0
    centre = scanner_to_voxel([infarct.truth["infarct"]["centre_mm"]], infarct.lge.affine)[0]
    assert infarct.truth_labels.array[tuple(centre)] in (2, 3)


def test_isthmus_centreline_is_border_zone_through_dense_scar(infarct):
    isthmus = infarct.truth["isthmus"]
    assert 3.0 <= isthmus["width_mm"] <= 5.0
    assert isthmus["length_mm"] >= 20.0
    centreline = np.asarray(isthmus["centerline_mm"])
    steps = np.linalg.norm(np.diff(centreline, axis=0), axis=1)
    assert np.all(steps < 1.5)
    labels = infarct.truth_labels.array
    at_centreline = labels[tuple(scanner_to_voxel(centreline, infarct.lge.affine).T)]
    assert np.all(at_centreline == 2), "every centreline voxel is border zone"
    # The channel cuts the dense core in two: two separate dense components of > 1 ml.
    components, n = ndimage.label(labels == 3, structure=np.ones((3, 3, 3)))
    sizes_ml = np.bincount(components.ravel())[1:] * infarct.truth["voxel_volume_ml"]
    assert np.sum(sizes_ml > 1.0) == 2
    # The centreline runs along the long axis, i.e. across slices (resolvable in plane).
    run = centreline[-1] - centreline[0]
    long_axis = np.array(infarct.truth["ventricle"]["long_axis_unit"])
    assert abs(run @ long_axis) / np.linalg.norm(run) > np.cos(np.radians(20))


def test_image_intensities_follow_lge_contrast(infarct):
    lge, labels = infarct.lge.array, infarct.truth_labels.array
    mean = {value: lge[labels == value].mean() for value in (1, 2, 3)}
    blood = lge[infarct.blood.array > 0].mean()
    # Nulled healthy myocardium < border zone < blood <= dense scar (roughly).
    assert mean[1] < 0.3 * blood
    assert mean[1] < mean[2] < blood
    assert mean[3] > 0.9 * blood
    assert infarct.lge.array.dtype == np.float32 and np.all(lge >= 0)  # Rician magnitude


def test_noise_follows_snr():
    def blood_sd(snr):
        p = make_phantom(
            "lv-healthy", 2, acquisition=Acquisition(snr=snr, fine_mm=2.0, bias_fraction=0.0)
        )
        pool = ndimage.binary_erosion(p.blood.array > 0, iterations=2)
        return p.lge.array[pool].std()

    # SNR = blood / sigma; deep in the blood pool (signal >> sigma) Rician SD ~ sigma.
    assert blood_sd(10.0) == pytest.approx(0.1, rel=0.25)
    assert blood_sd(20.0) == pytest.approx(0.05, rel=0.25)


def test_healthy_control_is_the_same_ventricle_without_scar(healthy, infarct):
    assert healthy.truth["kind"] == "lv-healthy"
    assert set(np.unique(healthy.truth_labels.array)) == {0, 1}
    assert healthy.truth["scar_volume_ml"] == 0.0
    assert healthy.truth["border_zone_volume_ml"] == 0.0
    assert healthy.truth["isthmus"] is None
    np.testing.assert_array_equal(healthy.wall.array, infarct.wall.array)
    assert healthy.truth["ventricle"] == infarct.truth["ventricle"]


def test_atrium_has_thin_wall_veins_and_the_requested_burden(atrium):
    la = atrium.truth["atrium"]
    assert 2.0 <= la["wall_thickness_mm"] <= 3.0
    assert set(la["pulmonary_veins"]) == {"LSPV", "LIPV", "RSPV", "RIPV"}
    assert 24.0 <= la["mitral_opening"]["diameter_mm"] <= 28.0
    fibrosis = atrium.truth["fibrosis"]
    assert fibrosis["true_percent_fine_grid"] == pytest.approx(25.0, abs=0.5)
    labels = atrium.truth_labels.array
    percent = 100.0 * np.count_nonzero(labels >= 2) / np.count_nonzero(labels)
    assert atrium.truth["fibrosis_percent"] == pytest.approx(percent, abs=1e-3)
    assert atrium.truth["utah_stage"] == "III" and fibrosis["utah_stage_fine_grid"] == "III"
    assert atrium.blood.array.sum() > 100


def test_cli_writes_all_files(tmp_path):
    out = tmp_path / "lv"
    rc = main(["phantom", "lv-infarct", "--out", str(out), "--seed", "7", "--fine-mm", "2"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(phantom.PHANTOM_FILES)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["kind"] == "lv-infarct"
    assert truth["acquisition"]["spacing_mm"] == [1.5, 1.5, 8.0]
    assert {"centerline_mm", "width_mm"} <= set(truth["isthmus"])
    lge, labels = load_nifti(out / "lge.nii.gz"), load_nifti(out / "truth_labels.nii.gz")
    np.testing.assert_allclose(lge.affine, labels.affine, atol=1e-4)
    np.testing.assert_allclose(lge.affine, truth["acquisition"]["affine"], atol=1e-4)


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--snr", "0"], "SNR"),
        (["--spacing", "1.5", "1.5", "0"], "spacing"),
        (["--spacing", "1.5", "1.5", "25"], "spacing"),
        (["--fibrosis-percent", "120"], "fibrosis percent"),
    ],
)
def test_cli_refuses_bad_settings_and_writes_nothing(tmp_path, capsys, extra, word):
    out = tmp_path / "bad"
    rc = main(["phantom", "la-fibrosis", "--out", str(out), "--seed", "1", *extra])
    assert rc == 2
    assert word in capsys.readouterr().err
    assert not out.exists()


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    p = make_phantom("lv-healthy", 1, acquisition=QUICK_ACQUISITION)
    real_save = phantom.save_nifti

    def failing_save(volume, path, **kwargs):
        if "truth_labels" in str(path):
            raise OSError("disk full")
        return real_save(volume, path, **kwargs)

    monkeypatch.setattr(phantom, "save_nifti", failing_save)
    out = tmp_path / "case"
    with pytest.raises(OSError, match="disk full"):
        phantom.write_phantom(p, out)
    assert not out.exists(), "the folder made for the outputs is removed again"
    out.mkdir()
    with pytest.raises(OSError):
        phantom.write_phantom(p, out)
    assert list(out.iterdir()) == [], "no partial or temporary file is left"


def test_unknown_kind_is_refused():
    with pytest.raises(PhantomError, match="unknown phantom kind"):
        make_phantom("rv-infarct", 1)
