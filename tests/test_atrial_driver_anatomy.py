"""benchmarks/atrial_driver_anatomy.py: the phase winding round an opening, on analytic maps."""

import importlib.util
from pathlib import Path

import numpy as np

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "atrial_driver_anatomy.py"
spec = importlib.util.spec_from_file_location("atrial_driver_anatomy", PATH)
anatomy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(anatomy)


def _ring(n=400, seed=0):
    """Points in a tilted annulus (r 8-14 mm) round the axis through (5, -3, 2) mm."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi, np.pi, n)
    r = rng.uniform(8.0, 14.0, n)
    normal = np.array([1.0, 1.0, 2.0]) / np.sqrt(6.0)
    u = np.cross(normal, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    centre = np.array([5.0, -3.0, 2.0])
    points = centre + r[:, None] * (np.cos(angle)[:, None] * u + np.sin(angle)[:, None] * v)
    return points, angle, centre, normal


def test_a_wave_circling_the_opening_winds_once_and_a_passing_wave_not_at_all():
    points, angle, centre, normal = _ring()
    # the opening's plane fitted to points on it gives the axis (up to its sign)
    _, fitted = anatomy.opening_axis(points)
    assert abs(abs(fitted @ normal) - 1.0) < 1e-9
    circling = np.mod(angle, 2 * np.pi)  # activation time grows with the angle: re-entry
    turns = anatomy.winding(points, circling, centre, normal, 24)
    assert abs(abs(turns) - 1.0) < 1e-9
    backwards = anatomy.winding(points, -circling, centre, normal, 24)
    assert abs(backwards + turns) < 1e-9  # the other chirality
    passing = 1.2 * np.abs(angle)  # a wave that splits round the opening and collides
    assert abs(anatomy.winding(points, passing, centre, normal, 24)) < 1e-9


def test_a_loop_with_a_gap_is_not_given_a_winding():
    points, angle, centre, normal = _ring()
    keep = np.abs(angle) < 0.6 * np.pi  # 40 % of the loop has no tissue
    assert anatomy.winding(points[keep], angle[keep], centre, normal, 24) is None


def test_rotation_centres_find_the_core_of_a_spiral_and_its_chirality():
    # a 40 x 40 mm sheet (z = 0), phase = the angle round (5, -3): one core there, turning
    # anticlockwise seen from +z (outward_from below the sheet)
    g = np.arange(-20.0, 20.01, 1.0)
    x, y = np.meshgrid(g, g)
    points = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    phase = np.mod(np.arctan2(points[:, 1] + 3.0, points[:, 0] - 5.0), 2 * np.pi)
    centres = anatomy.rotation_centres(points, phase, np.array([0.0, 0.0, -50.0]), (4.0, 8.0))
    assert len(centres) == 1
    assert np.linalg.norm(np.subtract(centres[0]["centre_mm"], [5.0, -3.0, 0.0])) < 2.0
    assert centres[0]["mean_winding"] == 1.0
    flipped = anatomy.rotation_centres(points, -phase, np.array([0.0, 0.0, -50.0]), (4.0, 8.0))
    assert flipped[0]["mean_winding"] == -1.0
    planar = anatomy.rotation_centres(points, 0.1 * points[:, 0], np.zeros(3) - 50.0, (4.0, 8.0))
    assert planar == []  # a plane wave turns round nothing
