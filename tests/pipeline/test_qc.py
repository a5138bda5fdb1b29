"""Quality-control pictures: they exist, are PNGs, and show the labels in their colours."""

import logging

import numpy as np
import pytest
from matplotlib.image import imread

from cardiotwin.pipeline.phantoms import Acquisition, make_phantom
from cardiotwin.pipeline.segmentation import DEFAULTS, qc, segment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def case():
    # The truth labels stand in for a segmentation: the pictures must show what is there.
    return make_phantom("lv-infarct", 3, acquisition=Acquisition(snr=15.0, fine_mm=2.0))


@pytest.fixture(scope="module")
def atrial_surface():
    atrium = make_phantom(
        "la-fibrosis",
        3,
        acquisition=Acquisition(spacing_mm=(1.5, 1.5, 2.5), snr=15.0, fine_mm=1.5),
        fibrosis_percent=30.0,
    )
    return segment(atrium.lge, atrium.wall, DEFAULTS["iir-surface"], blood=atrium.blood).surface


def colour_fraction(png_path, rgb, tolerance=0.12):
    image = imread(str(png_path))[:, :, :3]
    return np.mean(np.all(np.abs(image - np.asarray(rgb)) < tolerance, axis=-1))


def blended(colour, alpha, grey):
    return (1 - alpha) * grey + alpha * np.asarray(colour)


def test_montage_shows_slices_with_label_colours(case, tmp_path):
    path = qc.save_montage(
        case.lge, case.truth_labels, tmp_path / "m.png", title="t", reference=case.truth_labels
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(str(path))
    assert image.shape[0] > 300 and image.shape[1] > 600
    # Scar blended over bright LGE is red-dominant; border zone over grey is yellow.
    pixels = image[:, :, :3].reshape(-1, 3)
    red = (pixels[:, 0] > 0.6) & (pixels[:, 1] < 0.45) & (pixels[:, 2] < 0.45)
    yellow = (pixels[:, 0] > 0.5) & (pixels[:, 1] > 0.45) & (pixels[:, 2] < 0.35)
    blue = (pixels[:, 2] > pixels[:, 0] + 0.15) & (pixels[:, 2] > pixels[:, 1])
    assert red.mean() > 1e-3 and yellow.mean() > 1e-3 and blue.mean() > 1e-2


def test_montage_of_a_healthy_wall_has_no_scar_colour(tmp_path):
    control = make_phantom("lv-healthy", 3, acquisition=Acquisition(snr=15.0, fine_mm=2.0))
    path = qc.save_montage(control.lge, control.truth_labels, tmp_path / "h.png")
    pixels = imread(str(path))[:, :, :3].reshape(-1, 3)
    red = (pixels[:, 0] > 0.6) & (pixels[:, 1] < 0.3) & (pixels[:, 2] < 0.3)
    # Only the legend's small red patch.
    assert red.mean() < 2e-3


def test_render_is_an_offscreen_vtk_picture_of_scar_and_border_zone(case, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cardiotwin.pipeline.segmentation.qc"):
        path = qc.save_render(case.truth_labels, tmp_path / "r.png", title="t")
    assert "fallback" not in caplog.text and "failed" not in caplog.text
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(str(path))
    assert image.shape[:2] == (720, 900)
    # White background, red scar and yellow border zone surfaces are all visible.
    assert colour_fraction(path, (1, 1, 1), 0.02) > 0.3
    pixels = image[:, :, :3].reshape(-1, 3)
    red = (pixels[:, 0] > 0.45) & (pixels[:, 1] < 0.25) & (pixels[:, 2] < 0.25)
    yellow = (pixels[:, 0] > 0.5) & (pixels[:, 1] > 0.4) & (pixels[:, 2] < 0.25)
    assert red.mean() > 0.01 and yellow.mean() > 0.002


def test_render_falls_back_to_matplotlib(case, tmp_path, monkeypatch, caplog):
    def no_opengl(*args, **kwargs):
        raise RuntimeError("no OpenGL context")

    monkeypatch.setattr(qc, "_render_pyvista", no_opengl)
    with caplog.at_level(logging.WARNING, logger="cardiotwin.pipeline.segmentation.qc"):
        path = qc.save_render(case.truth_labels, tmp_path / "f.png")
    assert "matplotlib" in caplog.text
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_surface_render_shows_fibrosis_on_the_atrium(atrial_surface, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cardiotwin.pipeline.segmentation.qc"):
        path = qc.save_surface_render(atrial_surface, tmp_path / "s.png", title="la")
    assert "failed" not in caplog.text
    image = imread(str(path))
    assert image.shape[:2] == (560, 1200)
    pixels = image[:, :, :3].reshape(-1, 3)
    # Fibrotic (yellow/red) and healthy (blue) wall both visible on a 30 % burden.
    warm = (pixels[:, 0] > 0.5) & (pixels[:, 2] < 0.3)
    blue = (pixels[:, 2] > pixels[:, 0] + 0.15) & (pixels[:, 2] > pixels[:, 1])
    assert warm.mean() > 0.01 and blue.mean() > 0.02
