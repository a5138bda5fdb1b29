"""Surfaces from masks and image sampling along normals, against an analytic sphere."""

import numpy as np
import pytest

from cardiotwin.meshing.surfaces import (
    mask_surface,
    mm_to_voxel,
    sample_along_normals,
    vertex_normals,
    voxel_to_mm,
)

#: an oblique, anisotropic, left-handed voxel grid placed away from the origin
AFFINE = np.array(
    [[0.0, -1.2, 0.0, 40.0], [1.0, 0.0, 0.3, -20.0], [0.0, 0.0, -1.5, 10.0], [0, 0, 0, 1]]
)


def sphere_mask(radius_mm: float, centre_mm: np.ndarray, shape=(48, 48, 40)):
    ijk = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), axis=-1).reshape(-1, 3)
    distance = np.linalg.norm(voxel_to_mm(AFFINE, ijk) - centre_mm, axis=1)
    return (distance <= radius_mm).reshape(shape), distance.reshape(shape)


def test_voxel_mm_round_trip():
    ijk = np.array([[0.0, 0.0, 0.0], [3.5, 2.0, 7.25]])
    np.testing.assert_allclose(mm_to_voxel(AFFINE, voxel_to_mm(AFFINE, ijk)), ijk, atol=1e-12)


def test_sphere_surface_radius_and_outward_normals():
    centre = voxel_to_mm(AFFINE, np.array([[24.0, 24.0, 20.0]]))[0]
    mask, _ = sphere_mask(15.0, centre)
    points, triangles = mask_surface(mask, AFFINE)
    radii = np.linalg.norm(points - centre, axis=1)
    # the blurred 0.5 level of a voxelised ball lies within a voxel of the true radius
    assert abs(np.median(radii) - 15.0) < 0.6
    normals = vertex_normals(points, triangles)
    radial = (points - centre) / radii[:, None]
    assert np.mean(np.einsum("ij,ij->i", normals, radial)) > 0.97  # outward, nearly radial


def test_sampling_finds_a_bright_shell_outside_the_surface():
    # a bright shell between 15 and 17 mm around a dark ball: sampling 0..4 mm outward from
    # the ball's surface finds it (max ≈ 1); sampling inward (−4..0) does not (≈ 0)
    centre = voxel_to_mm(AFFINE, np.array([[24.0, 24.0, 20.0]]))[0]
    mask, distance = sphere_mask(13.0, centre)
    image = ((distance > 15.0) & (distance < 17.0)).astype(float)
    points, triangles = mask_surface(mask, AFFINE)
    normals = vertex_normals(points, triangles)
    outward = sample_along_normals(image, AFFINE, points, normals, band_mm=(0.0, 5.0))
    inward = sample_along_normals(image, AFFINE, points, normals, band_mm=(-4.0, 0.0))
    assert np.nanmean(outward) > 0.9 and np.nanmax(inward) < 0.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        mask_surface(np.zeros((4, 4, 4), bool), np.eye(4))
    with pytest.raises(ValueError, match="band_mm"):
        sample_along_normals(np.zeros((4, 4, 4)), np.eye(4), np.zeros((1, 3)), np.ones((1, 3)),
                             band_mm=(2.0, 1.0))  # fmt: skip
