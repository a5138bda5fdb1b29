"""A stand-in LV mesh from a phantom's label map, until the meshing stage's mesher lands.

Voxels of the wall (labels 1-3) resampled to ``--spacing`` mm (shape-based label
interpolation, :func:`cardiotwin.pipeline.images.resample_isotropic`) become cubes of 6 Kuhn
tetrahedra tagged with their label, in scanner mm (the image affine). Added like the meshing
stage would:

- ``transmural`` (0 endo .. 1 epi): d_cavity / (d_cavity + d_outside) from Euclidean distance
  transforms of the blood pool and of the outside;
- fibres: rule-based (Bayer 2012 in spirit): helix angle from +60° at the endocardium to −60°
  at the epicardium about the transmural direction, starting from the circumferential
  direction around the phantom's long axis (truth.json ``ventricle``);
- pacing sites ``AHA-1`` .. ``AHA-17``: the 17 AHA segments (basal/mid/apical thirds of the
  wall along the long axis, 6/6/4 sectors from the septum, apex) by the phantom's frame, each
  site the mid-wall conducting node nearest its segment's centroid, with the conducting nodes
  within 2 mm (centre first); ``aha_segment`` point data.

The staircase boundary and the septum direction (opposite the anterior-lateral infarct's
frame, taken as −anterior × long axis) make it a rough mesh; it serves the physics and speed
benchmarks of induction, not the must-shows on the pipeline's own mesh.

Usage: python benchmarks/phantom_voxel_mesh.py data_samples/lv-infarct --spacing 1.5 --out lv.vtu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.pipeline.images import load_nifti, resample_isotropic

KUHN = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def voxel_mesh(labels: np.ndarray, affine: np.ndarray) -> tuple[Mesh, np.ndarray]:
    """Kuhn tetrahedra of the voxels with label > 0 (tags = labels); also the voxel index of
    each node grid point used (i, j, k corners)."""
    wall = np.argwhere(labels > 0)
    unit = np.eye(3, dtype=np.int64)
    tets, tags = [], []
    for order in KUHN:
        corners = [np.zeros(3, dtype=np.int64)]
        for axis in order:
            corners.append(corners[-1] + unit[axis])
        a, b, c = unit[order[0]], unit[order[0]] + unit[order[1]], np.ones(3)
        swap = np.linalg.det(np.stack([a, b, c])) < 0
        verts = [wall + corner for corner in corners]
        if swap:
            verts[1], verts[2] = verts[2], verts[1]
        tets.append(np.stack(verts, axis=1))
        tags.append(labels[tuple(wall.T)])
    tets = np.concatenate(tets)  # (m, 4, 3) corner grid indices
    tags = np.concatenate(tags)
    flat = tets.reshape(-1, 3)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    # corner (i, j, k) sits at voxel index (i, j, k) - 0.5
    points = (unique - 0.5) @ affine[:3, :3].T + affine[:3, 3]
    mesh = Mesh(points, inverse.reshape(-1, 4), region=tags.astype(np.int32))
    if np.any(mesh.signed_volumes_mm3() < 0):  # a left-handed affine flips every element
        mesh.tets[:, [1, 2]] = mesh.tets[:, [2, 1]]
    return mesh, unique


def _sample(field: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Mean of ``field`` over the (up to) 8 voxels around each corner index."""
    total = np.zeros(len(corners))
    count = np.zeros(len(corners))
    for di in (0, 1):
        for dj in (0, 1):
            for dk in (0, 1):
                idx = corners - np.array([di, dj, dk])
                ok = np.all((idx >= 0) & (idx < np.array(field.shape)), axis=1)
                values = field[tuple(idx[ok].T)]
                good = np.isfinite(values)
                total[np.nonzero(ok)[0][good]] += values[good]
                count[np.nonzero(ok)[0][good]] += 1
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def build(folder: Path, spacing: float, labels_file: str = "truth_labels.nii.gz") -> Mesh:
    truth = json.loads((folder / "truth.json").read_text())
    labels = resample_isotropic(load_nifti(folder / labels_file), spacing, kind="labels")
    blood = resample_isotropic(load_nifti(folder / "blood.nii.gz"), spacing, kind="labels")
    mesh, corners = voxel_mesh(labels.array, labels.affine)
    voxel = labels.spacing_mm
    wall = labels.array > 0
    d_cavity = ndimage.distance_transform_edt(blood.array == 0, sampling=voxel)
    d_outside = ndimage.distance_transform_edt(
        (labels.array > 0) | (blood.array > 0), sampling=voxel
    )
    t = np.where(wall, d_cavity / np.maximum(d_cavity + d_outside, 1e-9), np.nan)
    transmural = np.clip(np.nan_to_num(_sample(t, corners), nan=0.5), 0.0, 1.0)
    mesh.point_data["transmural"] = transmural

    v = truth["ventricle"]
    axis = np.asarray(v["long_axis_unit"], dtype=float)  # apex -> base
    apex = np.asarray(v["apex_mm"], dtype=float)
    centre = np.asarray(v["ellipsoid_centre_mm"], dtype=float)
    anterior = np.asarray(v["anterior_unit"], dtype=float)
    septum = np.cross(anterior, axis)  # right-handed: anterior = axis × septum
    septum /= np.linalg.norm(septum)

    # fibres per element: helix rule about the transmural (radial) direction
    c = mesh.element_centres_mm()
    rel = c - centre
    radial = rel - np.outer(rel @ axis, axis)
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    circumferential = np.cross(axis, radial)
    t_elem = transmural[mesh.tets].mean(axis=1)
    alpha = np.radians(60.0 - 120.0 * t_elem)
    fibres = np.cos(alpha)[:, None] * circumferential + np.sin(alpha)[:, None] * axis
    mesh.fibres = fibres / np.linalg.norm(fibres, axis=1, keepdims=True)

    # AHA segments by height along the axis and angle from the septum
    p = mesh.points_mm
    height = (p - apex) @ axis
    base = float((np.asarray(v["base_centre_mm"]) - apex) @ axis)
    rel = p - centre
    angle = np.degrees(np.arctan2(rel @ anterior, rel @ septum))  # 0 septum, +90 anterior
    cavity_apex = base - 0.8 * v["long_axis_length_mm"]  # below ~ the cavity: apex cap
    third = (base - cavity_apex) / 3.0
    segment = np.zeros(p.shape[0], dtype=np.int32)
    basal = height >= base - third
    mid = (height < base - third) & (height >= base - 2 * third)
    apical = (height < base - 2 * third) & (height >= cavity_apex)
    sector6 = np.floor(((angle + 180.0) % 360.0) / 60.0).astype(int)
    by6 = np.array([5, 4, 3, 2, 1, 6])
    segment[basal] = by6[sector6[basal]]
    segment[mid] = by6[sector6[mid]] + 6
    sector4 = np.floor(((angle + 225.0) % 360.0) / 90.0).astype(int)
    segment[apical] = np.array([16, 15, 14, 13])[sector4[apical]]
    segment[height < cavity_apex] = 17
    mesh.point_data["aha_segment"] = segment
    conducting = np.zeros(p.shape[0], dtype=bool)
    conducting[mesh.tets[mesh.region != 3].ravel()] = True
    for s in range(1, 18):
        pool = np.nonzero((segment == s) & conducting & (np.abs(transmural - 0.5) < 0.25))[0]
        if pool.size == 0:
            pool = np.nonzero((segment == s) & conducting)[0]
        if pool.size == 0:
            continue
        middle = p[pool].mean(axis=0)
        centre_node = pool[np.argmin(np.linalg.norm(p[pool] - middle, axis=1))]
        d = np.linalg.norm(p - p[centre_node], axis=1)
        near = np.nonzero((d <= 2.0) & conducting)[0]
        near = near[np.argsort(d[near], kind="stable")]
        mesh.node_sets[f"AHA-{s}"] = np.concatenate(
            [[centre_node], near[near != centre_node]]
        ).astype(np.int64)
    mesh.affine = labels.affine
    return mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phantom", type=Path, help="phantom folder (truth.json, labels, blood)")
    parser.add_argument("--spacing", type=float, default=1.5, help="voxel size, mm")
    parser.add_argument("--labels", default="truth_labels.nii.gz", help="label file in it")
    parser.add_argument("--out", type=Path, required=True, help="mesh file (.vtu)")
    args = parser.parse_args()
    from cardiotwin.meshing.io import write_mesh

    mesh = build(args.phantom, args.spacing, args.labels)
    write_mesh(mesh, args.out)
    counts = {int(t): int(np.count_nonzero(mesh.region == t)) for t in np.unique(mesh.region)}
    print(
        f"{mesh.n_points} nodes, {mesh.n_elements} elements, tags {counts}, "
        f"{len(mesh.node_sets)} sites; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
