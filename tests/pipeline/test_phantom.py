"""Synthetic patients: anatomy, contrast, drawn masks, the circuit, truth, CLI, bad input."""

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from cardiotwin.pipeline import phantoms as phantom
from cardiotwin.pipeline.cli import main
from cardiotwin.pipeline.images import load_nifti
from cardiotwin.pipeline.phantoms import Acquisition, PhantomError, make_phantom, output
from cardiotwin.pipeline.phantoms import infarct as infarct_module
from cardiotwin.pipeline.segmentation.metrics import centreline_labels, dense_pieces

# Coarse anatomy sub-voxels keep the module fast; the shipped samples use 0.5 mm.
QUICK = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=15.0, fine_mm=2.0)
TEST = Acquisition(spacing_mm=(1.5, 1.5, 8.0), snr=15.0, fine_mm=1.0)
SEED = 9  # 9 % 3 == 0: the transmural variant


@pytest.fixture(scope="module")
def infarct():
    return make_phantom("lv-infarct", SEED, acquisition=TEST)


@pytest.fixture(scope="module")
def healthy():
    return make_phantom("lv-healthy", SEED, acquisition=TEST)


@pytest.fixture(scope="module")
def exact_mask():
    return make_phantom("lv-infarct", SEED, acquisition=TEST, wall_mask="true")


@pytest.fixture(scope="module")
def atrium():
    return make_phantom(
        "la-fibrosis",
        5,
        acquisition=Acquisition(fine_mm=1.25, spacing_mm=(1.25,) * 3),
        fibrosis_percent=25.0,
    )


def scanner_to_voxel(points_mm, affine):
    points_mm = np.asarray(points_mm, dtype=float)
    return np.rint((points_mm - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(int)


def test_same_seed_same_patient_other_seed_other_patient():
    a = make_phantom("lv-infarct", 3, acquisition=QUICK)
    b = make_phantom("lv-infarct", 3, acquisition=QUICK)
    c = make_phantom("lv-infarct", 4, acquisition=QUICK)
    np.testing.assert_array_equal(a.lge.array, b.lge.array)
    np.testing.assert_array_equal(a.wall.array, b.wall.array)
    assert a.truth == b.truth
    assert a.truth["ventricle"]["apex_mm"] != c.truth["ventricle"]["apex_mm"]
    # Tissue intensities are drawn per seed (issue 11), not fixed.
    assert (
        a.truth["contrast"]["signal_relative_to_blood"]
        != c.truth["contrast"]["signal_relative_to_blood"]
    )


def test_anatomy_does_not_depend_on_snr():
    # Separate random streams: the noise level must not move the heart.
    low = make_phantom("lv-infarct", 3, acquisition=QUICK)
    high = make_phantom("lv-infarct", 3, acquisition=Acquisition(snr=40.0, fine_mm=2.0))
    np.testing.assert_array_equal(low.truth_labels.array, high.truth_labels.array)
    np.testing.assert_array_equal(low.wall.array, high.wall.array)
    assert not np.array_equal(low.lge.array, high.lge.array)


def test_ventricle_has_adult_size_an_oblique_pose_and_a_wide_field_of_view(infarct):
    lv = infarct.truth["ventricle"]
    # Adult LV: ~50 mm cavity, 80-90 mm long axis, 8-12 mm wall.
    assert 46.0 <= lv["cavity_diameter_mm"] <= 54.0
    assert 80.0 <= lv["long_axis_length_mm"] <= 92.0
    assert 8.0 <= lv["wall_thickness_mm"] <= 12.0
    affine = infarct.lge.affine
    np.testing.assert_allclose(infarct.lge.spacing_mm, [1.5, 1.5, 8.0], atol=1e-9)
    slice_direction = affine[:3, 2] / 8.0
    assert np.max(np.abs(slice_direction)) < 0.95
    assert abs(slice_direction @ np.array(lv["long_axis_unit"])) > np.cos(np.radians(6))
    # RV (3-5 mm free wall) and two papillary muscles are part of the anatomy.
    assert 3.0 <= lv["right_ventricle"]["free_wall_thickness_mm"] <= 5.0
    assert len(lv["papillary_muscles"]) == 2
    # Wider field of view: in-plane >= 40 mm of chest beyond the wall on every side.
    wall_ijk = np.argwhere(infarct.truth_labels.array > 0)
    shape = np.array(infarct.lge.shape)
    for axis in (0, 1):
        margin_mm = 1.5 * min(wall_ijk[:, axis].min(), shape[axis] - 1 - wall_ijk[:, axis].max())
        assert margin_mm >= 40.0
    assert 90.0 <= infarct.truth["wall_volume_ml"] <= 180.0


def test_image_shows_the_rv_blood_pool_and_the_lungs(infarct):
    # Bright RV blood beside the septum, outside the LV, and dark lung in the field of view.
    lge = infarct.lge.array
    lv = np.zeros(lge.shape, bool)
    for k in range(lge.shape[2]):
        lv[:, :, k] = ndimage.binary_fill_holes(infarct.truth_labels.array[:, :, k] > 0)
    beyond_lv = ~ndimage.binary_dilation(lv, iterations=2)
    rv_voxels = np.count_nonzero(beyond_lv & (lge > 0.7))
    voxel_ml = 1.5 * 1.5 * 8.0 / 1000
    assert 20.0 <= rv_voxels * voxel_ml <= 200.0  # an RV blood pool of tens of ml
    lung = infarct.truth["contrast"]["signal_relative_to_blood"]["lung"]
    assert np.count_nonzero(np.abs(lge - lung) < 0.05) > 1000


def test_truth_labels_live_on_the_true_wall(infarct, exact_mask):
    labels = infarct.truth_labels.array
    assert labels.shape == infarct.lge.shape == infarct.wall.shape
    np.testing.assert_array_equal(infarct.truth_labels.affine, infarct.lge.affine)
    np.testing.assert_array_equal(labels > 0, exact_mask.wall.array > 0)
    np.testing.assert_array_equal(labels, exact_mask.truth_labels.array)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert not np.any((exact_mask.blood.array > 0) & (exact_mask.wall.array > 0))


def test_drawn_wall_mask_errs_by_one_or_two_voxels_towards_the_blood(infarct, exact_mask):
    drawn, true = infarct.wall.array > 0, exact_mask.wall.array > 0
    record = infarct.truth["wall_mask"]
    assert record["kind"] == "drawn" and exact_mask.truth["wall_mask"]["kind"] == "true"
    # Errors of at most 2 voxels in-plane (issue: smooth errors of +-1-2 voxels).
    cross = np.zeros((3, 3, 3), bool)
    cross[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    grown = ndimage.binary_dilation(true, cross, iterations=3)
    shrunk = ndimage.binary_erosion(true, cross, iterations=3)
    assert not np.any(drawn & ~grown)
    assert not np.any(shrunk & ~drawn)
    assert 0.85 <= record["dice_vs_true"] < 0.99
    # Endocardial bias: more of the LV blood pool is taken in than wall is left out.
    blood = exact_mask.blood.array > 0
    assert np.count_nonzero(drawn & blood) > 1.3 * np.count_nonzero(true & ~drawn)


def test_volumes_in_truth_json_equal_label_counts(infarct):
    truth = infarct.truth
    voxel_ml = abs(np.linalg.det(infarct.lge.affine[:3, :3])) / 1000.0
    labels = infarct.truth_labels.array
    assert truth["scar_volume_ml"] == pytest.approx(np.count_nonzero(labels == 3) * voxel_ml)
    assert truth["border_zone_volume_ml"] == pytest.approx(np.count_nonzero(labels == 2) * voxel_ml)
    designed = truth["designed_fine_grid_ml"]
    assert truth["scar_volume_ml"] == pytest.approx(designed["dense_scar"], rel=0.25)


def test_infarct_is_lad_sized_with_two_lobes_and_a_border_zone_isthmus(infarct):
    truth = infarct.truth
    assert truth["infarct"]["variant"] == "transmural"
    # LAD-territory infarcts cover 20-40 % of the LV (brief); scar + border zone here.
    enhanced = truth["scar_percent"] + truth["border_zone_percent"]
    assert 15.0 <= enhanced <= 45.0
    isthmus = truth["isthmus"]
    assert 5.0 <= isthmus["width_mm"] <= 15.0  # clinical isthmus widths (issue)
    assert isthmus["length_mm"] >= 20.0
    centreline = np.asarray(isthmus["centerline_mm"])
    steps = np.linalg.norm(np.diff(centreline, axis=0), axis=1)
    assert np.all(steps < 1.5)
    along = centreline_labels(infarct.truth_labels.array, infarct.lge.affine, centreline)
    assert np.mean(along == 2) >= 0.95, "the centreline is border zone"
    assert dense_pieces(infarct.truth_labels.array, infarct.lge.affine) == 2
    assert truth["infarct"]["dense_pieces"] == 2
    run = centreline[-1] - centreline[0]
    long_axis = np.array(truth["ventricle"]["long_axis_unit"])
    assert abs(run @ long_axis) / np.linalg.norm(run) > np.cos(np.radians(20))


def test_circuit_is_slow_enough_for_reentry(infarct):
    # The induction brief: one loop must outlast the refractory period of the isthmus, the
    # border zone's (TP06 remodelled: 410 ms at a 600 ms cycle), at published velocities.
    loop = infarct.truth["isthmus"]["loop"]
    assert loop["fast_loop_ms"] >= infarct_module.MIN_FAST_LOOP_MS == 410.0
    assert loop["nominal_loop_ms"] >= 450.0
    # Independent lower bound: no path is faster than its length at the fastest speed.
    lengths = loop["path_length_mm"]
    fast = loop["cv_mm_per_ms"]["fast"]
    v_bz = fast["border_zone"] * fast["healthy_circumferential"]
    bound = (
        lengths["isthmus"] / fast["healthy_circumferential"]
        + min(lengths["return_left_lobe"], lengths["return_right_lobe"])
        / fast["healthy_circumferential"]
    )
    assert loop["fast_loop_ms"] >= bound
    assert loop["conduction_time_ms"]["fast"]["isthmus"] >= lengths["isthmus"] / v_bz * 0.6
    assert infarct.truth["isthmus"]["reentry_loop_mm"] >= 120.0


def test_a_shorter_circuit_asked_for_grows_the_same_infarct_less(infarct):
    # --min-loop-ms 300 (the healthy refractory period, the design before the border zone's
    # was taken): the same seed's infarct, grown less; everything else stays the seed's
    smaller = make_phantom("lv-infarct", SEED, acquisition=TEST, min_loop_ms=300.0)
    default, short = infarct.truth["isthmus"]["loop"], smaller.truth["isthmus"]["loop"]
    assert default["min_fast_loop_ms"] == infarct_module.MIN_FAST_LOOP_MS == 410.0
    assert default["requirement_met"] and default["fast_loop_ms"] >= 410.0
    assert short["min_fast_loop_ms"] == 300.0 and short["requirement_met"]
    assert short["fast_loop_ms"] < default["fast_loop_ms"] - 30.0
    grown = (default["lobes_widened_by"], default["heightened_by"])
    assert grown > (short["lobes_widened_by"], short["heightened_by"])
    # grown in turn: wider first, never more than one step ahead of taller
    steps_w, steps_h = (round(math.log(f) / math.log(infarct_module.GROWTH_FACTOR)) for f in grown)
    assert steps_w - steps_h in (0, 1)
    assert (
        infarct.truth["infarct"]["extent_mm"]["circumferential"]
        > (smaller.truth["infarct"]["extent_mm"]["circumferential"])
    )
    assert smaller.truth["isthmus"]["width_mm"] == infarct.truth["isthmus"]["width_mm"]
    assert smaller.truth["scar_percent"] < infarct.truth["scar_percent"]
    assert smaller.truth["infarct"]["dense_pieces"] == 2
    np.testing.assert_array_equal(smaller.truth["ventricle"]["apex_mm"],
                                  infarct.truth["ventricle"]["apex_mm"])  # fmt: skip


@pytest.mark.parametrize(
    "kind, extra, word",
    [
        ("lv-healthy", ["--min-loop-ms", "400"], "lv-infarct only"),
        ("lv-infarct", ["--min-loop-ms", "0"], "loop time"),
        ("lv-infarct", ["--min-loop-ms", "nan"], "loop time"),
    ],
)
def test_cli_refuses_a_loop_time_it_cannot_use(tmp_path, capsys, kind, extra, word):
    out = tmp_path / "bad"
    rc = main(["phantom", kind, "--out", str(out), "--seed", "1", "--fine-mm", "2", *extra])
    assert rc == 2
    assert word in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("v_x, v_y, worst", [(0.65, 0.30, 0.055), (0.70, 0.50, 0.026)])
def test_travel_times_match_the_anisotropic_metric(v_x, v_y, worst):
    # Homogeneous map: the exact eikonal time is sqrt((dx/vx)^2 + (dy/vy)^2). A graph search
    # can only overestimate it; with 32 directions by at most a few per cent.
    passable = np.ones((121, 121), bool)
    slow_x, slow_y = np.full(passable.shape, 1 / v_x), np.full(passable.shape, 1 / v_y)
    times = infarct_module._travel_times(passable, slow_x, slow_y, (60, 60), 1.0)
    ii, jj = np.meshgrid(np.arange(121) - 60, np.arange(121) - 60, indexing="ij")
    ring = (np.hypot(ii, jj) > 20) & (np.hypot(ii, jj) < 55)
    ratio = times[ring] / np.hypot(ii[ring] / v_x, jj[ring] / v_y)
    assert ratio.min() >= 1 - 1e-9 and ratio.max() <= 1 + worst


def test_scar_variants_by_seed_and_their_shapes():
    rng = np.random.default_rng(0)
    design = infarct_module.draw_infarct(rng, "subendocardial")
    infarct_map = infarct_module.build_map(
        design, rng, lambda y: np.full(np.shape(y), 90.0), (-60.0, 60.0)
    )
    # Outside a lobe but within the subendocardial extension: dense at the endocardium,
    # not at the epicardium (the wavefront phenomenon).
    lobe = np.argwhere(infarct_map.dense)
    far = lobe[np.argmax(np.abs(lobe[:, 0] - lobe[:, 0].mean()))]
    step = np.sign(far[0] - lobe[:, 0].mean())
    x = infarct_map.x0 + 0.5 * far[0] + step * 0.5 * design.skirt_mm
    y = infarct_map.y0 + 0.5 * far[1]
    endo = infarct_map.classify(np.array([x]), np.array([y]), np.array([0.0]))
    epi = infarct_map.classify(np.array([x]), np.array([y]), np.array([1.0]))
    assert endo[0] == 3 and epi[0] != 3
    thinned = infarct_module.draw_infarct(np.random.default_rng(0), "thinned")
    assert 0.35 <= thinned.thinning <= 0.55 and thinned.skirt_mm == 0
    assert [make_phantom("lv-infarct", s, acquisition=QUICK).truth["infarct"]["variant"]
            for s in (3, 4, 5)] == list(infarct_module.VARIANTS)  # fmt: skip


def test_contrast_is_physiological(infarct):
    signal = infarct.truth["contrast"]["signal_relative_to_blood"]
    # Bright-blood LGE: scar about as bright as blood (Kellman 2016), remote nulled.
    assert 0.8 <= signal["dense_scar"] <= 2.0
    assert signal["remote_myocardium"] < 0.3
    assert signal["remote_myocardium"] < signal["border_zone_at_f_0.35"] < signal["dense_scar"]
    lge, labels = infarct.lge.array, infarct.truth_labels.array
    mean = {value: lge[labels == value].mean() for value in (1, 2, 3)}
    assert mean[1] < mean[2] < mean[3]
    assert infarct.lge.array.dtype == np.float32 and np.all(lge >= 0)  # Rician magnitude


def test_noise_follows_snr():
    def blood_sd(snr):
        p = make_phantom(
            "lv-healthy",
            2,
            acquisition=Acquisition(snr=snr, fine_mm=2.0, bias_fraction=0.0),
            wall_mask="true",
        )
        pool = ndimage.binary_erosion(p.blood.array > 0, iterations=3)
        return p.lge.array[pool].std()

    # SNR = blood / sigma; deep in the blood pool Rician SD ~ sigma, plus 3 % blood texture.
    assert blood_sd(10.0) == pytest.approx(math.hypot(0.1, 0.03), rel=0.3)
    assert blood_sd(20.0) == pytest.approx(math.hypot(0.05, 0.03), rel=0.3)


def test_healthy_control_is_the_same_ventricle_without_scar(healthy, infarct):
    assert healthy.truth["kind"] == "lv-healthy"
    assert set(np.unique(healthy.truth_labels.array)) == {0, 1}
    assert healthy.truth["scar_volume_ml"] == 0.0
    assert healthy.truth["isthmus"] is None
    np.testing.assert_array_equal(healthy.wall.array, infarct.wall.array)
    assert healthy.truth["ventricle"] == infarct.truth["ventricle"]
    assert healthy.truth["contrast"] == infarct.truth["contrast"]


def test_atrium_has_thin_wall_veins_and_the_requested_burden(atrium):
    la = atrium.truth["atrium"]
    assert 2.0 <= la["wall_thickness_mm"] <= 3.0
    assert set(la["pulmonary_veins"]) == {"LSPV", "LIPV", "RSPV", "RIPV"}
    np.testing.assert_allclose(atrium.lge.spacing_mm, 1.25, atol=1e-9)  # 3-D LGE default
    fibrosis = atrium.truth["fibrosis"]
    assert fibrosis["true_percent_fine_grid"] == pytest.approx(25.0, abs=1.5)
    # The surface truth measures the same patches: at mid-wall within 3 points of the
    # volume; through the wall (what a maximum projection sees) only more.
    assert fibrosis["true_percent_surface_mid_wall"] == pytest.approx(
        fibrosis["true_percent_fine_grid"], abs=3.0
    )
    assert fibrosis["true_percent_surface"] >= fibrosis["true_percent_surface_mid_wall"]
    labels = atrium.truth_labels.array
    percent = 100.0 * np.count_nonzero(labels >= 2) / np.count_nonzero(labels)
    assert atrium.truth["fibrosis_percent"] == pytest.approx(percent, abs=1e-3)
    assert atrium.truth["utah_stage"] == "III"
    # an AF patient's LA (118 +- 42 ml, Chrispin 2016), not a normal one (~50 ml): the
    # image's own blood pool holds the body cavity plus the vein lumens (a few ml)
    cavity_ml = la["body_cavity_volume_ml"]
    assert 90.0 <= cavity_ml <= 150.0
    blood_ml = np.count_nonzero(atrium.blood.array) * np.prod(atrium.blood.spacing_mm) / 1000
    assert cavity_ml - 3.0 < blood_ml < cavity_ml + 20.0, (blood_ml, cavity_ml)


def test_cli_writes_all_files(tmp_path):
    out = tmp_path / "lv"
    argv = ["phantom", "lv-infarct", "--out", str(out), "--seed", "7", "--fine-mm", "2"]
    assert main(argv + ["--variant", "thinned"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(phantom.PHANTOM_FILES)
    truth = json.loads((out / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["kind"] == "lv-infarct"
    assert truth["infarct"]["variant"] == "thinned"
    assert truth["acquisition"]["spacing_mm"] == [1.5, 1.5, 8.0]
    assert {"centerline_mm", "width_mm", "loop"} <= set(truth["isthmus"])
    lge, labels = load_nifti(out / "lge.nii.gz"), load_nifti(out / "truth_labels.nii.gz")
    np.testing.assert_allclose(lge.affine, labels.affine, atol=1e-4)
    np.testing.assert_allclose(lge.affine, truth["acquisition"]["affine"], atol=1e-4)


@pytest.mark.parametrize(
    "extra, word",
    [
        (["--snr", "0"], "SNR"),
        (["--spacing", "1.5", "1.5", "0"], "spacing"),
        (["--spacing", "1.5", "1.5", "25"], "spacing"),
        (["--spacing", "0.01", "0.01", "0.01"], "spacing"),
        (["--spacing", "0.1", "0.1", "0.1"], "voxels"),
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
    p = make_phantom("lv-healthy", 1, acquisition=QUICK)
    real_save = output.save_nifti

    def failing_save(volume, path, **kwargs):
        if "truth_labels" in str(path):
            raise OSError("disk full")
        return real_save(volume, path, **kwargs)

    monkeypatch.setattr(output, "save_nifti", failing_save)
    out = tmp_path / "case"
    with pytest.raises(OSError, match="disk full"):
        phantom.write_phantom(p, out)
    assert not out.exists(), "the folder made for the outputs is removed again"
    out.mkdir()
    with pytest.raises(OSError):
        phantom.write_phantom(p, out)
    assert list(out.iterdir()) == [], "no partial or temporary file is left"


def test_unknown_kind_and_variant_are_refused():
    with pytest.raises(PhantomError, match="unknown phantom kind"):
        make_phantom("rv-infarct", 1)
    with pytest.raises(PhantomError, match="unknown scar variant"):
        make_phantom("lv-infarct", 1, variant="patchy", acquisition=QUICK)


def test_distance_to_the_isthmus_centreline_is_point_to_polyline():
    from cardiotwin.pipeline.phantoms.infarct import distance_to_centreline_mm

    # an L of two 10 mm legs: beside a leg (3 mm off), past an end (a 3-4-5 triangle),
    # at the corner's outside (equal to the corner distance), on the line (0)
    line = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 0.0]]
    assert distance_to_centreline_mm([5.0, 3.0, 0.0], line) == pytest.approx(3.0)
    assert distance_to_centreline_mm([-3.0, 0.0, 4.0], line) == pytest.approx(5.0)
    assert distance_to_centreline_mm([12.0, -2.0, 0.0], line) == pytest.approx(8**0.5)
    assert distance_to_centreline_mm([10.0, 6.0, 0.0], line) == 0.0
