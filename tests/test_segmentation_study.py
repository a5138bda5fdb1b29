"""benchmarks/segmentation_study.py: the true-endocardium mask it measures the drawn one against."""

import importlib.util
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.images import ImageVolume

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "segmentation_study.py"
spec = importlib.util.spec_from_file_location("segmentation_study", PATH)
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def _annulus(shape, inner_px, outer_px):
    i, j = np.indices(shape[:2]) - (np.array(shape[:2])[:, None, None] - 1) / 2.0
    r = np.hypot(i, j)
    ring = (r >= inner_px) & (r < outer_px)
    return np.repeat(ring[:, :, None], shape[2], axis=2)


def test_true_endocardium_keeps_the_drawn_epicardium_and_takes_the_true_cavity():
    shape = (41, 41, 3)
    truth = np.where(_annulus(shape, 8.0, 14.0), 1, 0).astype(np.uint8)
    truth[20, 28:34, :] = 3  # a dense patch in the wall: labels other than 1 count as wall
    # Drawn: 2 pixels into the blood and 1 beyond the epicardium.
    drawn = ImageVolume(_annulus(shape, 6.0, 15.0).astype(np.uint8), np.diag([1.5, 1.5, 8, 1]), "w")
    out = study.true_endocardium(drawn, truth)
    expected = _annulus(shape, 8.0, 15.0)
    np.testing.assert_array_equal(out.array > 0, expected)
    np.testing.assert_array_equal(out.affine, drawn.affine)
    # Drawn short of the true cavity (1 pixel into the wall): the true cavity's edge wins
    # there too, so the wall grows back to it.
    short = ImageVolume(_annulus(shape, 9.0, 13.0).astype(np.uint8), drawn.affine, "w")
    np.testing.assert_array_equal(
        study.true_endocardium(short, truth).array > 0, _annulus(shape, 8.0, 13.0)
    )
