"""Segmentation against phantom ground truth with drawn wall masks, channels, the atrial
surface method, the CLI end to end, and bad input."""

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from cardiotwin.pipeline.cli import main
from cardiotwin.pipeline.images import ImageError, ImageVolume, load_nifti, save_nifti
from cardiotwin.pipeline.phantoms import Acquisition, make_phantom, write_phantom
from cardiotwin.pipeline.segment import (
    DEFAULTS,
    SegmentationError,
    dice,
    segment,
    utah_stage,
)
from cardiotwin.pipeline.segmentation import channel_report, edges, resolve_chamber
from cardiotwin.pipeline.segmentation import channels as channel_steps
from cardiotwin.pipeline.segmentation.metrics import dense_pieces

# The acquisition: 1.5 x 1.5 mm pixels, 8 mm slices, the drawn (imperfect) wall
# mask. 1 mm anatomy sub-voxels keep the module fast (0.5 mm gives the same Dice +-0.02).
CLINICAL = (1.5, 1.5, 8.0)


def acquisition(snr, spacing=CLINICAL, fine_mm=1.0):
    return Acquisition(spacing_mm=spacing, snr=snr, fine_mm=fine_mm)


# (seed, SNR): one seed per scar variant (seed % 3: transmural, subendocardial, thinned)
# at both ends of SNR 8-20, none of them the seeds of data_samples/README.md's study.
VENTRICLE_CASES = [(30, 8.0), (31, 20.0), (32, 14.0), (33, 20.0), (34, 8.0), (35, 14.0)]


@pytest.fixture(scope="module")
def ventricles():
    cases = []
    for seed, snr in VENTRICLE_CASES:
        phantom = make_phantom("lv-infarct", seed, acquisition=acquisition(snr))
        cases.append((phantom, segment(phantom.lge, phantom.wall, DEFAULTS["fwhm"])))
    return cases


@pytest.mark.slow  # builds the six phantoms the next tests share (~30 s)
def test_dice_with_the_drawn_wall_mask(ventricles):
    dense, border = [], []
    for phantom, result in ventricles:
        labels, truth = result.labels.array, phantom.truth_labels.array
        dense.append(dice(labels == 3, truth == 3))
        border.append(dice(labels == 2, truth == 2))
        # Labels are on the LGE grid and only inside the given wall mask.
        assert result.labels.shape == phantom.lge.shape
        np.testing.assert_array_equal(result.labels.affine, phantom.lge.affine)
        assert not np.any((labels > 0) & (phantom.wall.array == 0))
    # Issue targets: dense >= 0.85, border zone >= 0.70 (means over seeds; minima in
    # data_samples/README.md). These six (the phantom's infarct grown to a 410 ms loop)
    # give dense 0.890 (0.830-0.946) and border zone 0.740 (0.691-0.766) with the fitted
    # endocardium; the blood-edge step alone of 2026-12-04 gives dense 0.855 (0.807-0.907).
    assert np.mean(dense) >= 0.85 and min(dense) >= 0.80
    assert np.mean(border) >= 0.70 and min(border) >= 0.65


def test_channels_survive_on_every_seed(ventricles):
    # Issue: the default method labels >= 80 % of the isthmus centreline border zone and
    # keeps the dense scar in the designed number of pieces (2 lobes).
    for phantom, result in ventricles:
        report = channel_report(result.labels.array, phantom.lge.affine, phantom.truth)
        assert report["centreline_border_zone_fraction"] >= 0.8, phantom.truth["seed"]
        assert report["dense_pieces"] == report["designed_dense_pieces"] == 2


def test_blood_edge_step_removes_blood_not_scar(ventricles):
    for phantom, result in ventricles:
        truth = phantom.truth_labels.array
        drawn = phantom.wall.array > 0
        kept = result.labels.array > 0
        removed = drawn & ~kept
        # What leaves the wall is mostly true blood or grey tissue outside the wall, and the
        # wall gets closer to the truth.
        assert np.count_nonzero(removed & (truth == 0)) >= 0.7 * np.count_nonzero(removed)
        assert dice(kept, truth > 0) > dice(drawn, truth > 0)


def test_fwhm_beats_nsd_on_channels(ventricles):
    # Why fwhm is the ventricular default: n-SD's own thresholds call the isthmus dense at
    # SNR >= 14, and only the channel step (once the fitted endocardium has separated the
    # dense pieces at the blood edge) gives it back; fwhm's thresholds keep it.
    phantom, _ = ventricles[1]
    fractions = {}
    for method in ("nsd", "fwhm"):
        settings = replace(DEFAULTS[method], keep_channels=False)
        labels = segment(phantom.lge, phantom.wall, settings).labels.array
        report = channel_report(labels, phantom.lge.affine, phantom.truth)
        fractions[method] = report["centreline_border_zone_fraction"]
    assert fractions["nsd"] < 0.5 and fractions["fwhm"] >= 0.8


def test_nsd_thresholds_follow_the_rule(ventricles):
    phantom, _ = ventricles[0]
    result = segment(phantom.lge, phantom.wall, replace(DEFAULTS["nsd"], dense_sd=5.0))
    reference, thresholds = result.report["remote_reference"], result.report["thresholds"]
    assert thresholds["border_zone"] == pytest.approx(reference["mean"] + 2 * reference["sd"])
    assert thresholds["dense_scar"] == pytest.approx(reference["mean"] + 5 * reference["sd"])
    # The remote reference is healthy myocardium: its mean is that of remote in the image.
    healthy_mean = phantom.lge.array[phantom.truth_labels.array == 1].mean()
    assert reference["mean"] == pytest.approx(healthy_mean, rel=0.3, abs=0.03)


@pytest.mark.parametrize("snr", [8.0, 20.0])
def test_healthy_control_has_no_scar(snr):
    control = make_phantom("lv-healthy", 30, acquisition=acquisition(snr))
    report = segment(control.lge, control.wall, DEFAULTS["fwhm"]).report
    # Negative control with the drawn mask: no dense scar, and only scattered border zone
    # along the edges where the contour errs into grey tissue (0.54 % and 0 % of the wall
    # here; the study in data_samples/README.md has the worst seed). Without a floor on the
    # FWHM maximum (the blood's median) a wall cleared of blood takes its noise for the
    # maximum and calls healthy wall border zone.
    assert report["scar_volume_ml"] < 0.2
    assert report["scar_percent"] + report["border_zone_percent"] < 1.5
    json.dumps(report, allow_nan=False)  # no infinite or NaN number without scar


def test_chamber_detection_and_iir_refused_on_a_ventricle(ventricles):
    phantom, _ = ventricles[0]
    method, chamber, info = resolve_chamber(None, None, phantom.wall)
    assert (method, chamber) == ("fwhm", "ventricle") and info["mean_wall_thickness_mm"] > 5
    for atrial in ("iir", "iir-surface"):
        with pytest.raises(SegmentationError, match="ventricle") as caught:
            resolve_chamber(atrial, None, phantom.wall)
        assert "--method fwhm" in str(caught.value)
    atrium = make_phantom("la-fibrosis", 2, acquisition=acquisition(15.0, (1.5, 1.5, 2.5)))
    assert resolve_chamber(None, None, atrium.wall)[:2] == ("iir-surface", "atrium")


# ---------------------------------------------------------------------------------------
# Channel and blood-edge steps on hand-made label maps
# ---------------------------------------------------------------------------------------


def _two_blocks(gap_voxels=4):
    labels = np.zeros((40, 30, 3), np.uint8)
    labels[5:35, 5:25, :] = 1
    labels[8:18, 8:22, :] = 3
    labels[18 + gap_voxels : 28 + gap_voxels, 8:22, :] = 3
    return labels


SPACING = np.array([1.5, 1.5, 8.0])


def test_dim_bridge_between_pieces_is_opened_bright_one_kept():
    labels = _two_blocks(gap_voxels=4)
    intensity = np.where(labels == 3, 1.0, 0.3)
    labels[18:22, 14, :] = 3  # a one-voxel-wide dense bridge across the channel
    dim = intensity.copy()
    dim[18:22, 14, :] = 0.6
    opened, report = channel_steps.open_channels(
        labels, dim, SPACING, neck_mm=1.5, min_piece_ml=0.1
    )
    # The bridge is cut (what the opening removes goes back to border zone).
    assert np.all(opened[19:21, 14, :] == 2) and report["bridges_opened"] >= 1
    assert dense_pieces(opened, np.diag([*SPACING, 1.0])) == 2
    bright = intensity.copy()
    bright[18:22, 14, :] = 1.2
    kept, _ = channel_steps.open_channels(labels, bright, SPACING, neck_mm=1.5, min_piece_ml=0.1)
    assert np.all(kept[18:22, 14, :] == 3)


def test_dim_channel_between_pieces_becomes_border_zone():
    labels = _two_blocks(gap_voxels=5)  # a 7.5 mm channel left healthy by thresholding
    corridor = channel_steps.corridor_between_pieces(
        labels, SPACING, max_gap_mm=18.0, min_piece_ml=0.1
    )
    assert np.all(corridor[18:23, 8:22, :])
    assert not corridor[30:35, 5:8, :].any(), "no corridor outside the gap"
    wide = _two_blocks(gap_voxels=14)  # 21 mm apart: two infarcts, not a channel
    assert not channel_steps.corridor_between_pieces(
        wide, SPACING, max_gap_mm=18.0, min_piece_ml=0.1
    )[20:30].any()


def test_dense_specks_become_border_zone():
    labels = _two_blocks()
    labels[20, 20, 1] = 3
    out, count = channel_steps.demote_dense_specks(labels, SPACING, 0.1)
    assert out[20, 20, 1] == 2 and count == 1 and np.count_nonzero(out == 3) > 500


def test_blood_edge_trims_an_overshoot_only_where_the_edge_is_seen():
    # One slice: blood (1.0) outside x < 10, a 1-voxel blood overshoot inside the mask at
    # x = 10, then dark myocardium (0.1), except rows 20-29 where scar as bright as blood
    # fills the wall.
    shape = (40, 40, 1)
    image = np.full(shape, 0.1)
    image[:11] = 1.0
    image[11:14, 20:30] = 1.0
    wall = np.zeros(shape, bool)
    wall[10:20] = True
    outside = ~wall & (image > 0.5)
    trimmed, report = edges.trim_blood_edge(
        image, wall, outside, np.array([1.5, 1.5, 8.0]), low=0.55, high=1.2, max_mm=3.0, dark=0.3
    )
    assert not trimmed[10, :20].any() and not trimmed[10, 30:].any()  # overshoot removed
    # Where the edge is hidden by scar, the overshoot seen nearby (1 voxel) is removed too,
    # and no more: the scar behind it stays.
    assert trimmed[11:14, 22:28].all()
    assert report["median_seen_overshoot_layers"] == 1.0


# ---------------------------------------------------------------------------------------
# Atria: fibrosis on the surface
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, snr, burden, spacing",
    [
        (40, 12.0, 15.0, (1.25, 1.25, 1.25)),
        (41, 18.0, 35.0, (1.25, 1.25, 1.25)),
        (42, 15.0, 8.0, (1.5, 1.5, 2.5)),
        (43, 10.0, 25.0, (1.5, 1.5, 2.5)),
    ],
)
def test_surface_fibrosis_within_three_points(seed, snr, burden, spacing):
    atrium = make_phantom(
        "la-fibrosis",
        seed,
        acquisition=acquisition(snr, spacing, fine_mm=spacing[0]),
        fibrosis_percent=burden,
    )
    result = segment(atrium.lge, atrium.wall, DEFAULTS["iir-surface"], blood=atrium.blood)
    report = result.report
    truth = atrium.truth["fibrosis"]["true_percent_surface"]
    # Issue: fibrosis % within 3 points of the truth, at 1.25 mm isotropic and 1.5 x 1.5 x 2.5.
    assert report["fibrosis_percent"] == pytest.approx(truth, abs=3.0)
    assert report["utah_stage"] == utah_stage(report["fibrosis_percent"])
    # IIR per vertex with the Benito 2017 cut-offs against the blood-pool mean.
    blood_mean = report["blood_pool"]["mean_intensity"]
    assert report["thresholds"]["border_zone"] == pytest.approx(1.20 * blood_mean)
    surface = result.surface
    assert np.all(surface.classes[surface.has_wall & (surface.iir >= 1.32)] == 3)
    # The label map on the LGE grid is the surface projected onto the wall.
    labels = result.labels.array
    np.testing.assert_array_equal(labels > 0, atrium.wall.array > 0)


def test_volumetric_iir_is_still_an_option():
    atrium = make_phantom("la-fibrosis", 3, acquisition=acquisition(15.0), fibrosis_percent=20)
    strict = replace(DEFAULTS["iir"], fibrosis_iir=1.5, dense_iir=2.0)
    loose = segment(atrium.lge, atrium.wall, DEFAULTS["iir"]).report["fibrosis_percent"]
    assert segment(atrium.lge, atrium.wall, strict).report["fibrosis_percent"] < loose
    with pytest.raises(SegmentationError, match="dense-iir"):
        segment(atrium.lge, atrium.wall, replace(DEFAULTS["iir"], dense_iir=1.0))


@pytest.mark.parametrize(
    "percent, stage",
    [(0.0, "I"), (9.99, "I"), (10.0, "II"), (19.9, "II"), (20.0, "III"), (30.0, "IV")],
)
def test_utah_stage(percent, stage):
    # Utah stages (Oakes 2009; DECAAF): I < 10, II 10-20, III 20-30, IV >= 30 % of the wall.
    assert utah_stage(percent) == stage


# ---------------------------------------------------------------------------------------
# Command line, end to end
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    write_phantom(make_phantom("lv-infarct", 4, acquisition=acquisition(15.0, fine_mm=2.0)), folder)
    return folder


def test_cli_fit_endocardium_is_the_default_can_be_turned_off_and_is_refused_for_an_atrium(
    case_dir, tmp_path, capsys
):
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz"), "--wall"]
    argv += [str(case_dir / "wall.nii.gz"), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "labels.json").read_text())
    assert report["settings"]["fit_endocardium"] is True
    assert report["blood_edge"] and report["fitted_endocardium"]["slices_fitted"] > 0
    assert main([*argv, "--no-fit-endocardium"]) == 0
    report = json.loads((tmp_path / "labels.json").read_text())
    assert report["settings"]["fit_endocardium"] is False
    assert not report.get("fitted_endocardium")
    capsys.readouterr()
    assert main([*argv, "--chamber", "atrium", "--method", "iir", "--fit-endocardium"]) != 0
    assert "--fit-endocardium" in capsys.readouterr().err


def test_cli_end_to_end(case_dir, tmp_path):
    out = tmp_path / "seg" / "labels.nii.gz"
    qc_dir = tmp_path / "qc"
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz"), "--wall"]
    argv += [str(case_dir / "wall.nii.gz"), "--out", str(out), "--qc", str(qc_dir)]
    argv += ["--resample-iso", "1.5", "--reference", str(case_dir / "truth_labels.nii.gz")]
    assert main(argv) == 0
    labels, truth = load_nifti(out), load_nifti(case_dir / "truth_labels.nii.gz")
    assert labels.shape == truth.shape
    np.testing.assert_allclose(labels.affine, truth.affine, atol=1e-4)
    report = json.loads((tmp_path / "seg" / "labels.json").read_text())
    assert report["method"] == "fwhm" and report["chamber"]["chamber"] == "ventricle"
    assert report["reference"]["dice_dense_scar"] == pytest.approx(
        dice(labels.array == 3, truth.array == 3)
    )
    # Inputs are recorded by content, never by path.
    text = json.dumps(report)
    assert str(case_dir) not in text and "lge.nii.gz" not in text
    assert len(report["inputs"]["lge"]["sha256"]) == 64
    iso = load_nifti(tmp_path / "seg" / "labels_iso1.5mm.nii.gz")
    assert iso.spacing_mm.max() / iso.spacing_mm.min() < 1.5
    assert sorted(p.name for p in qc_dir.iterdir()) == ["labels_3d.png", "labels_montage.png"]
    assert not list(tmp_path.rglob("*.tmp*"))


def test_cli_atrium_surface_by_default(tmp_path):
    folder = tmp_path / "la"
    write_phantom(
        make_phantom("la-fibrosis", 4, acquisition=acquisition(15.0, (1.5, 1.5, 2.5)),
                     fibrosis_percent=12), folder
    )  # fmt: skip
    out = tmp_path / "res"
    out.mkdir()
    argv = ["segment", "--lge", str(folder / "lge.nii.gz"), "--wall", str(folder / "wall.nii.gz")]
    argv += ["--blood", str(folder / "blood.nii.gz"), "--out", str(out), "--qc", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "labels_iir-surface.json").read_text())
    truth = json.loads((folder / "truth.json").read_text())
    assert report["method"] == "iir-surface"
    assert report["fibrosis_percent"] == pytest.approx(
        truth["fibrosis"]["true_percent_surface"], abs=3.0
    )
    assert {"labels_iir-surface.nii.gz", "labels_iir-surface_surface.vtp"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "labels_iir-surface_3d.png").stat().st_size > 10_000


def test_cli_refuses_iir_on_a_ventricle(case_dir, tmp_path, capsys):
    out = tmp_path / "l.nii.gz"
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz"), "--wall"]
    argv += [str(case_dir / "wall.nii.gz"), "--out", str(out), "--method", "iir"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ventricle" in err and "--chamber atrium" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# Bad input: one clear error naming the file, nothing written
# ---------------------------------------------------------------------------------------


def _save(array, affine, path):
    save_nifti(ImageVolume(array, affine, path.name), path)
    return path


def _bad_inputs(case_dir, tmp_path):
    lge = load_nifti(case_dir / "lge.nii.gz")
    wall = load_nifti(case_dir / "wall.nii.gz")
    good_lge, good_wall = case_dir / "lge.nii.gz", case_dir / "wall.nii.gz"
    shifted = lge.affine.copy()
    shifted[:3, 3] += 5.0
    stretched = lge.affine.copy()
    stretched[:3, 0] *= 1.2
    huge = lge.affine.copy()
    huge[:3, :3] *= 25.0 / 8.0
    tiny = lge.affine.copy()
    tiny[:3, :3] /= 1000.0  # metres written as mm
    nan_lge = lge.array.copy()
    nan_lge[3, 3, 3] = np.nan
    truncated = tmp_path / "truncated.nii.gz"
    data = good_lge.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not an image")
    return {
        "unreadable": (garbage, good_wall, "garbage.nii.gz", "cannot be read"),
        "truncated": (truncated, good_wall, "truncated.nii.gz", "truncated"),
        "shape": (
            good_lge,
            _save(wall.array[:-1], wall.affine, tmp_path / "small_wall.nii.gz"),
            "small_wall.nii.gz",
            "shape",
        ),
        "spacing": (
            good_lge,
            _save(wall.array, stretched, tmp_path / "stretched_wall.nii.gz"),
            "stretched_wall.nii.gz",
            "spacing",
        ),
        "affine": (
            good_lge,
            _save(wall.array, shifted, tmp_path / "shifted_wall.nii.gz"),
            "shifted_wall.nii.gz",
            "placed differently",
        ),
        "empty": (
            good_lge,
            _save(np.zeros_like(wall.array), wall.affine, tmp_path / "empty_wall.nii.gz"),
            "empty_wall.nii.gz",
            "empty",
        ),
        "nan": (
            _save(nan_lge, lge.affine, tmp_path / "nan_lge.nii.gz"),
            good_wall,
            "nan_lge.nii.gz",
            "NaN",
        ),
        "absurd spacing": (
            _save(lge.array, huge, tmp_path / "huge_lge.nii.gz"),
            _save(wall.array, huge, tmp_path / "huge_wall.nii.gz"),
            "huge_lge.nii.gz",
            "above 20 mm",
        ),
        "tiny spacing": (
            _save(lge.array, tiny, tmp_path / "tiny_lge.nii.gz"),
            _save(wall.array, tiny, tmp_path / "tiny_wall.nii.gz"),
            "tiny_lge.nii.gz",
            "below 0.05 mm",
        ),
        "lge as the wall mask": (good_lge, good_lge, "lge.nii.gz", "is not a mask"),
    }


BAD_CASES = [
    "unreadable",
    "truncated",
    "shape",
    "spacing",
    "affine",
    "empty",
    "nan",
    "absurd spacing",
    "tiny spacing",
    "lge as the wall mask",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_clear_error_and_writes_nothing(case, case_dir, tmp_path, capsys):
    lge, wall, name, words = _bad_inputs(case_dir, tmp_path)[case]
    out_dir = tmp_path / "out"
    rc = main(
        ["segment", "--lge", str(lge), "--wall", str(wall), "--out", str(out_dir / "l.nii.gz")]
        + ["--method", "fwhm", "--qc", str(out_dir / "qc")]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, "one line for a person"
    assert name in err and words in err
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--method", "fwhm", "--bz-sd", "2"], "--bz-sd is a threshold of --method nsd, not"),
        (["--method", "nsd", "--fibrosis-iir", "1.2"], "--fibrosis-iir is a threshold of"),
        (["--method", "nsd", "--bz-sd", "-3"], "--bz-sd must be a number of at least 0"),
        (["--method", "fwhm", "--fwhm-fraction", "1.5"], "--fwhm-fraction must be a number"),
    ],
)  # fmt: skip
def test_a_threshold_is_refused_by_its_option_name(case_dir, tmp_path, capsys, options, message):
    """A threshold of another method was ignored without a word (exit 0), and a bad value
    was named by its setting (border-zone-sd), not the option the user typed."""
    out = tmp_path / "out" / "l.nii.gz"
    lge, wall = case_dir / "lge.nii.gz", case_dir / "wall.nii.gz"
    argv = ["segment", "--lge", str(lge), "--wall", str(wall), "--out", str(out), *options]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.parent.exists()


def test_tiny_resampling_is_refused_before_allocating(case_dir, tmp_path, capsys):
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz"), "--wall"]
    argv += [str(case_dir / "wall.nii.gz"), "--out", str(tmp_path / "o" / "l.nii.gz")]
    assert main(argv + ["--resample-iso", "0.001"]) == 2
    assert "voxels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_iir_without_blood_pool_says_pass_blood(tmp_path, capsys):
    # A solid blob has no cavity, so there is no blood pool to divide by.
    shape = (20, 20, 6)
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    noise = np.random.default_rng(0).uniform(0.5, 1.5, size=shape).astype(np.float32)
    lge = _save(noise, affine, tmp_path / "blob_lge.nii.gz")
    blob = np.zeros(shape, np.uint8)
    blob[5:15, 5:15, 1:5] = 1
    wall = _save(blob, affine, tmp_path / "blob_wall.nii.gz")
    out = tmp_path / "out" / "labels.nii.gz"
    argv = ["segment", "--lge", str(lge), "--wall", str(wall), "--out", str(out)]
    assert main(argv + ["--method", "iir", "--chamber", "atrium"]) == 2
    err = capsys.readouterr().err
    assert "blob_wall.nii.gz" in err and "no blood pool" in err and "--blood" in err
    assert not out.parent.exists()


def test_blood_mask_on_another_grid_is_refused(case_dir):
    lge = load_nifti(case_dir / "lge.nii.gz")
    wall = load_nifti(case_dir / "wall.nii.gz")
    blood = ImageVolume(np.ones((4, 4, 4), np.uint8), np.eye(4), "other_blood.nii.gz")
    with pytest.raises(ImageError, match="other_blood.nii.gz"):
        segment(lge, wall, DEFAULTS["fwhm"], blood=blood)


def test_failure_while_writing_leaves_no_partial_output(case_dir, tmp_path, monkeypatch):
    from cardiotwin.pipeline.segmentation import qc

    def broken_render(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(qc, "save_render", broken_render)
    out_dir = tmp_path / "out"
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz")]
    argv += ["--wall", str(case_dir / "wall.nii.gz"), "--out", str(out_dir / "l.nii.gz")]
    argv += ["--method", "nsd", "--qc", str(out_dir / "qc")]
    with pytest.raises(RuntimeError, match="renderer crashed"):
        main(argv)
    assert not out_dir.exists(), "labels, JSON and montage are not left half-done"


def test_out_must_be_nifti(case_dir, tmp_path, capsys):
    argv = ["segment", "--lge", str(case_dir / "lge.nii.gz")]
    argv += ["--wall", str(case_dir / "wall.nii.gz"), "--out", str(tmp_path / "labels.png")]
    assert main(argv + ["--method", "fwhm"]) == 2
    assert ".nii" in capsys.readouterr().err


def test_float_and_label_wall_masks_are_read_as_masks(case_dir):
    lge = load_nifti(case_dir / "lge.nii.gz")
    wall = load_nifti(case_dir / "wall.nii.gz")
    as_float = ImageVolume(wall.array.astype(np.float32), wall.affine, "float_wall.nii.gz")
    a = segment(lge, wall, DEFAULTS["fwhm"]).labels.array
    b = segment(lge, as_float, DEFAULTS["fwhm"]).labels.array
    np.testing.assert_array_equal(a, b)


def test_nifti_header_round_trip_keeps_grid(case_dir):
    from cardiotwin.pipeline.segmentation import check_inputs

    img = nib.load(str(case_dir / "lge.nii.gz"))
    assert img.header.get_xyzt_units()[0] == "mm"
    check_inputs(
        load_nifti(case_dir / "lge.nii.gz"),
        load_nifti(case_dir / "wall.nii.gz"),
        load_nifti(case_dir / "blood.nii.gz"),
    )


def test_constant_wall_is_refused(case_dir):
    lge = load_nifti(case_dir / "lge.nii.gz")
    wall = load_nifti(case_dir / "wall.nii.gz")
    flat = ImageVolume(np.full(lge.shape, 7.0, np.float32), lge.affine, "flat_lge.nii.gz")
    with pytest.raises(ImageError, match="flat_lge.nii.gz: all .* same intensity"):
        segment(flat, wall, DEFAULTS["fwhm"])


def test_inputs_in_a_patient_named_folder_never_reach_the_outputs(tmp_path):
    # an upper-case NIfTI name is NIfTI (it was taken for a DICOM folder: the output went
    # into the input's folder, named after its path); the --blood path is not stored
    import shutil
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "data_samples" / "lv-infarct"
    patient = tmp_path / "PAT12345_DOE"
    patient.mkdir()
    shutil.copy(sample / "lge.nii.gz", patient / "LGE.NII.GZ")
    shutil.copy(sample / "wall.nii.gz", patient / "wall.nii.gz")
    shutil.copy(sample / "blood.nii.gz", patient / "blood.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["segment", "--lge", str(patient / "LGE.NII.GZ"), "--wall",
               str(patient / "wall.nii.gz"), "--blood", str(patient / "blood.nii.gz"),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in patient.iterdir()) == [
        "LGE.NII.GZ",
        "blood.nii.gz",
        "wall.nii.gz",
    ]
    written = sorted(p.name for p in out.iterdir())
    assert "labels_fwhm.nii.gz" in written and "labels_fwhm.json" in written
    for path in out.iterdir():
        if path.suffix == ".json":
            assert "PAT12345" not in path.read_text()
    stats = json.loads((out / "labels_fwhm.json").read_text())
    assert stats["provenance"]["stage"] == "segmentation" and stats["provenance"]["libraries"]


def test_atrial_methods_refuse_the_channel_step():
    from cardiotwin.pipeline.segmentation import DEFAULTS, SegmentationError

    for method in ("iir", "iir-surface"):
        with pytest.raises(SegmentationError, match="keep-channels is for ventricular scar"):
            replace(DEFAULTS[method], keep_channels=True).validate()


def test_a_wall_that_encloses_no_blood_pool_is_not_trimmed_by_the_chest(caplog):
    # an open arc of wall (no cavity, no --blood): the "blood" statistics would come from
    # air, lung and chest, so the blood-edge step is skipped, and says so
    shape = (48, 48, 4)
    i, j = np.indices(shape[:2]) - 23.5
    r, angle = np.hypot(i, j), np.arctan2(j, i)
    arc = (r > 14) & (r < 20) & (angle > -1.5) & (angle < 1.5)
    rng = np.random.default_rng(0)
    image = np.where(arc, 20.0, np.where(r < 14, 300.0, 60.0))[:, :, None] + rng.normal(0, 5, shape)
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    wall = np.repeat(arc[:, :, None], shape[2], axis=2).astype(np.uint8)
    result = segment(
        ImageVolume(image, affine, "lge"), ImageVolume(wall, affine, "wall"), DEFAULTS["fwhm"]
    )
    assert "skipped" in result.report["blood_edge"]
    assert np.count_nonzero(result.labels.array) == np.count_nonzero(wall)  # nothing trimmed
    assert "encloses no blood pool" in caplog.text


def test_a_label_map_as_the_wall_is_refused_unless_its_wall_label_is_named(tmp_path, capsys):
    # ACDC-style: blood pool 1, myocardium 2; taken whole, the blood pool would be "wall"
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "data_samples" / "lv-infarct"
    wall, blood = load_nifti(sample / "wall.nii.gz"), load_nifti(sample / "blood.nii.gz")
    both = np.where(wall.array > 0, 2, np.where(blood.array > 0, 1, 0)).astype(np.uint8)
    save_nifti(ImageVolume(both, wall.affine, "labels"), tmp_path / "acdc.nii.gz")
    common = ["segment", "--lge", str(sample / "lge.nii.gz")]
    rc = main(
        [*common, "--wall", str(tmp_path / "acdc.nii.gz"), "--out", str(tmp_path / "a.nii.gz")]
    )
    assert rc != 0
    assert "is a label map with 2 labels" in capsys.readouterr().err
    assert not (tmp_path / "a.nii.gz").exists()
    rc = main([*common, "--wall", str(tmp_path / "acdc.nii.gz"), "--wall-label", "2",
               "--out", str(tmp_path / "b.nii.gz")])  # fmt: skip
    assert rc == 0
    rc = main([*common, "--wall", str(sample / "wall.nii.gz"), "--out", str(tmp_path / "c.nii.gz")])
    assert rc == 0
    np.testing.assert_array_equal(
        load_nifti(tmp_path / "b.nii.gz").array, load_nifti(tmp_path / "c.nii.gz").array
    )


def test_scar_pieces_and_channel_steps_agree_on_the_slice_axis_of_a_near_cube():
    # a 3-D acquisition's spacing differs in the last digits: pieces must not then connect
    # across another axis than the one the channel steps treat as the slices
    from cardiotwin.pipeline.segmentation.inputs import slice_axis
    from cardiotwin.pipeline.segmentation.metrics import piece_structure

    for spacing in ([1.25, 1.25, 1.25], [1.2500001, 1.25, 1.25], [1.25, 1.25000002, 1.25]):
        structure = piece_structure(spacing)
        axis = slice_axis(spacing)
        in_plane_diagonal = [0, 0, 0]
        in_plane_diagonal[axis] = 1
        assert structure[tuple(in_plane_diagonal)]  # 8-neighbours within a slice
        across_diagonal = [1, 0, 1]
        across_diagonal[axis] = 0
        across_diagonal[(axis + 1) % 3] = 1
        assert not structure[tuple(across_diagonal)]  # not diagonally across slices


OVERSHOOT_PX, SCAR_DEPTH_PX = 1.0, 1.75


def _ring_with_subendocardial_scar(sector_deg=150.0, n_slices=3, seed=0, depth=SCAR_DEPTH_PX):
    """Short-axis slices (1.5 mm pixels) of a circular cavity of radius 14 px (blood 1.0),
    a 7 px wall (myocardium 0.1) with scar as bright as the blood in its inner ``depth`` px
    over ``sector_deg`` degrees, grey tissue (0.3) outside; the wall mask drawn
    ``OVERSHOOT_PX`` into the blood all round. Pixels average 5 x 5 sub-pixels; noise SD
    0.04."""
    n, radius, centre = 64, 14.0, np.array([32.3, 31.7])
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    fine_i = (i[:, :, None, None] + sub[:, None]).astype(float) - centre[0]
    fine_j = (j[:, :, None, None] + sub[None, :]).astype(float) - centre[1]
    r_fine = np.hypot(fine_i, fine_j)
    angle_fine = np.degrees(np.arctan2(fine_j, fine_i)) % 360.0
    scar_fine = (r_fine >= radius) & (r_fine < radius + depth) & (angle_fine < sector_deg)
    value = np.where(r_fine < radius, 1.0, np.where(r_fine < radius + 7, 0.1, 0.3))
    value = np.where(scar_fine, 1.0, value)
    section = value.mean(axis=(2, 3))
    rng = np.random.default_rng(seed)
    image = np.repeat(section[:, :, None], n_slices, axis=2)
    image = image + rng.normal(0.0, 0.04, image.shape)
    r = np.hypot(i - centre[0], j - centre[1])
    angle = np.degrees(np.arctan2(j - centre[1], i - centre[0])) % 360.0
    drawn = (r >= radius - OVERSHOOT_PX) & (r < radius + 7)
    wall = np.repeat(drawn[:, :, None], n_slices, axis=2)
    cavity = np.repeat((r < radius - OVERSHOOT_PX)[:, :, None], n_slices, axis=2)
    geometry = {"r": r, "angle": angle, "radius": radius}
    return image, wall, cavity, geometry


def test_the_fitted_endocardium_separates_blood_from_scar_as_bright_as_blood():
    image, wall, cavity, g = _ring_with_subendocardial_scar()
    spacing = np.array([1.5, 1.5, 8.0])
    inside, fitted, report = edges.fitted_cavity(image, wall, cavity, spacing, low=0.55)
    assert report["slices_fitted"] == 3 and fitted.all()
    r, angle, radius = g["r"], g["angle"], g["radius"]
    over_scar = angle < 150.0
    blood = wall[:, :, 0] & (r < radius - 0.5)  # the drawn contour's overshoot
    scar = wall[:, :, 0] & (r > radius + 0.5) & (r < radius + SCAR_DEPTH_PX) & over_scar
    assert blood.sum() > 30 and scar.sum() > 10
    for k in range(3):
        # Over the scar the image cannot tell the overshoot from scar; the fit, anchored
        # where the edge is seen (blood against dark wall), still can.
        assert inside[:, :, k][blood & over_scar].all()
        assert inside[:, :, k][blood & ~over_scar].all()
        assert not inside[:, :, k][scar].any()
        assert not inside[:, :, k][wall[:, :, k] & (r > radius + 0.5)].any()
    # Behind the thin scar an edge is found at its far side, 1.75 px out, on 150 of 360
    # degrees: a plain median fit is pulled outward into the scar; the low quantile and
    # the outlier cut are what keep it out.
    naive, _, _ = edges.fitted_cavity(
        image, wall, cavity, spacing, low=0.55, quantile=0.5, outlier_px=100.0
    )
    assert naive[:, :, 0][scar].any()


def test_a_slice_whose_edge_is_nowhere_seen_is_not_fitted():
    image, wall, cavity, _ = _ring_with_subendocardial_scar(sector_deg=360.0, depth=3.0)
    inside, fitted, report = edges.fitted_cavity(
        image, wall, cavity, np.array([1.5, 1.5, 8.0]), low=0.55
    )
    # Scar 3 px deep all round: within 3 px of the contour no ray sees blood against dark
    # wall, so there is no fit (and nothing is called cavity) rather than one through noise.
    assert report["slices_fitted"] == 0 and report["slices_not_fitted"] == 3
    assert not inside.any() and not fitted.any()


def test_a_healthy_wall_cleared_of_blood_is_not_called_enhanced():
    # lv-healthy seed 411 at SNR 20 (found in the study of seeds 400-419): once the fitted
    # endocardium has taken the blood out of the wall, the wall's own maximum is healthy
    # myocardium, a little brighter in the basal slice; FWHM on it called 8.1 ml of
    # healthy wall enhanced. With the maximum at least the blood's median: under 2.5 ml.
    control = make_phantom("lv-healthy", 411, acquisition=acquisition(20.0))
    report = segment(control.lge, control.wall, DEFAULTS["fwhm"]).report
    enhanced = report["scar_volume_ml"] + report["border_zone_volume_ml"]
    assert enhanced < 2.5
    assert report["thresholds"]["maximum"] >= report["blood_pool"]["median_intensity"]
    wall_only = replace(DEFAULTS["fwhm"], maximum_at_least_blood=False)
    report = segment(control.lge, control.wall, wall_only).report
    assert report["scar_volume_ml"] + report["border_zone_volume_ml"] > 5.0


def test_a_biventricular_wall_keeps_its_septum_and_rv():
    # A wall mask with the RV's free wall too encloses two cavities in a slice: the LV's
    # disc and the RV's crescent. Each piece is fitted from its own centroid, and only
    # where that lies inside it: the crescent gets no fit and keeps the blood-edge step.
    image, wall, cavity, g = _ring_with_subendocardial_scar(sector_deg=0.0, n_slices=1)
    r, angle, radius = g["r"], g["angle"], g["radius"]
    sector = (angle > 60.0) & (angle < 200.0)
    rv_cavity = sector & (r >= radius + 7) & (r < radius + 12)
    rv_wall = sector & (r >= radius + 12) & (r < radius + 15)
    image[:, :, 0] = np.where(rv_cavity, 1.0, np.where(rv_wall, 0.1, image[:, :, 0]))
    wall[:, :, 0] |= rv_wall
    cavity[:, :, 0] |= rv_cavity
    inside, fitted, report = edges.fitted_cavity(
        image, wall, cavity, np.array([1.5, 1.5, 8.0]), low=0.55
    )
    assert report["slices_fitted"] == 1
    lv_overshoot = wall[:, :, 0] & (r < radius - 0.5)
    assert inside[:, :, 0][lv_overshoot].all()
    assert not inside[:, :, 0][wall[:, :, 0] & (r > radius + 0.5)].any()  # septum, RV wall
    assert not fitted[:, :, 0][rv_cavity].any() and fitted[:, :, 0][r < radius].all()
