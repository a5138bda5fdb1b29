"""What the CUDA backend's sliced ELLPACK layout (SELL-32) costs on a mesh, without a GPU.

The device stores every sparse matrix as SELL-32 (``solvers/backends/cuda.py``,
``sliced_ell``): slices of 32 rows, each padded to its longest row. Padding is never used
in a product (a row stops at its own length), but it is stored, and a 32-byte sector that
holds a padded entry beside a live one is read whole. So two figures per matrix:

- **stored**: entries stored / non-zeros (device memory of the matrix);
- **read**: entries in the sectors a product touches / non-zeros, for fp64 values (4 rows
  per sector) and for int32 indices or fp32 values (8 rows per sector): the bandwidth a
  product spends on the matrix, relative to reading the non-zeros alone.

For the matrices a step multiplies by: the stiffness K (lumped mass, explicit diffusion)
and M + θ·dt·K (consistent mass, the CG system; θ = 1/2). Whether K drops entries depends
on the conductivity: an isotropic σ on a mesh of axis-aligned right-angled tetrahedra gives
exactly-zero entries that are dropped from the pattern, so rows vary in length more than
with fibres, and ``--isotropic`` shows that case. The values of σ do not matter otherwise
(healthy 0.2 / 0.08 S/m, border zone 0.2 / 0.02, dense scar non-conducting). Also printed:
SELL-32-256 (rows sorted by length within windows of 256, Kreutzer et al. 2014), as what
the sorted variant would store.

Usage (a mesh from ``cardiotwin mesh``, which gives it rule-based fibres):
    cardiotwin mesh --labels data_samples/lv-infarct/segmentation/labels_fwhm.nii.gz \\
        --kind ventricle --edge-mm 1 --out out/lv1.vtu
    python benchmarks/sell_padding.py out/lv1.vtu
    python benchmarks/sell_padding.py out/lv1.vtu --isotropic
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def group_reads(lengths: np.ndarray, rows: int) -> int:
    """Entries in groups of ``rows`` consecutive rows, each as long as its longest row."""
    padded = np.zeros(-(-lengths.size // rows) * rows, dtype=np.int64)
    padded[: lengths.size] = lengths
    return int(padded.reshape(-1, rows).max(axis=1).sum() * rows)


def sorted_within(lengths: np.ndarray, window: int) -> np.ndarray:
    """Row lengths after sorting (longest first) within windows of ``window`` rows."""
    padded = np.zeros(-(-lengths.size // window) * window, dtype=np.int64)
    padded[: lengths.size] = lengths
    return -np.sort(-padded.reshape(-1, window), axis=1).ravel()


def layout_costs(matrix) -> dict:
    """Stored and read entries of ``matrix`` in SELL-32, relative to its non-zeros."""
    from cardiotwin.solvers.backends.cuda import SLICE_ROWS, sliced_ell

    lengths = np.diff(matrix.indptr).astype(np.int64)
    nnz = int(lengths.sum())
    stored = len(sliced_ell(matrix, np.float64, SLICE_ROWS)[3])
    assert stored == group_reads(lengths, SLICE_ROWS)
    sorted_lengths = sorted_within(lengths, 256)
    return {
        "rows": int(lengths.size),
        "entries_per_row": round(nnz / lengths.size, 2),
        "row_lengths": [int(lengths.min()), int(lengths.max())],
        "stored": round(stored / nnz, 3),
        "read_fp64_values": round(group_reads(lengths, 4) / nnz, 3),
        "read_int32_or_fp32": round(group_reads(lengths, 8) / nnz, 3),
        "sell_32_256_stored": round(group_reads(sorted_lengths, SLICE_ROWS) / nnz, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mesh", help="a mesh cardiotwin reads (.vtu, openCARP)")
    parser.add_argument("--dt", type=float, default=0.02, help="time step, ms (for M + θ·dt·K)")
    parser.add_argument("--isotropic", action="store_true", help="σ_l = σ_t (no fibres)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    from cardiotwin.meshing.io import read_mesh
    from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY
    from cardiotwin.solvers.monodomain import MonodomainProblem

    mesh = read_mesh(args.mesh)
    if args.isotropic:
        sigma = {HEALTHY: (0.2, 0.2), BORDER_ZONE: (0.2, 0.2)}
    elif mesh.fibres is None:
        parser.error(f"{args.mesh} has no fibres: mesh it with --prepare, or pass --isotropic")
    else:
        sigma = {HEALTHY: (0.2, 0.08), BORDER_ZONE: (0.2, 0.02)}
    problem = MonodomainProblem(mesh, "aliev-panfilov", sigma, nonconducting_regions=(DENSE_SCAR,))
    stiffness = problem.stiffness
    system = (problem.consistent_mass + 0.5 * args.dt * stiffness).tocsr()
    system.sort_indices()
    out = {
        "mesh_nodes": int(mesh.n_points),
        "isotropic": bool(args.isotropic),
        "K (lumped mass)": layout_costs(stiffness),
        "M + dt/2 K (CG)": layout_costs(system),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        from cardiotwin.files import write_json_atomic

        write_json_atomic(out, args.json)


if __name__ == "__main__":
    main()
