"""The device's two sparse layouts, sliced ELLPACK and CSR, give bit-identical products and
CG iterates (a subprocess script for test_cuda_layouts.py).

Usage: [NUMBA_ENABLE_CUDASIM=1] python cudasim_layouts.py OUT.npz

On an irregular mesh matrix (the P1 stiffness of a box with jittered nodes numbered at
random, rows of 5-15 entries, 140 rows: five slices, the last one partial) a product through
each layout for batches of 1 and 3, and for the batch of 3 (three reduction chunks) a CG
solve through each, with the start kernel's right-hand side formed from the mass matrix.
Written: each result per layout, scipy's product, and the solves' residuals' ingredients.
"""

import sys

import numpy as np
import scipy.sparse as sp

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.backends import cuda as backend
from cardiotwin.solvers.fem import consistent_mass_matrix, stiffness_matrix


def matrices():
    mesh = box_mesh((3.0, 2.0, 1.5), 0.5)
    rng = np.random.default_rng(11)
    points = mesh.points_mm + rng.uniform(-0.1, 0.1, mesh.points_mm.shape)
    order = rng.permutation(len(points))  # scatter the rows' lengths over the slices
    inverse = np.argsort(order)
    points = points[order]
    tets = inverse[mesh.tets]
    fibres = np.tile([1.0, 0.2, 0.0], (len(tets), 1))
    stiffness = stiffness_matrix(points, tets, 0.13, 0.02, fibres)
    return sp.csr_matrix(stiffness), sp.csr_matrix(consistent_mass_matrix(points, tets))


def main(out: str) -> None:
    stiffness, mass = matrices()
    n = stiffness.shape[0]
    system = (mass + 0.05 * stiffness).tocsr()
    rng = np.random.default_rng(5)
    results = {"lengths": np.diff(stiffness.indptr)}
    for n_cols in (1, 3):
        x = rng.standard_normal((n, n_cols))
        results[f"scipy_{n_cols}"] = stiffness @ x
        for layout in ("sell", "csr"):
            matrix = backend.CSRMatrix(stiffness, layout=layout)
            results[f"stored_{layout}"] = np.array([matrix.stored, matrix.stride])
            out_d = backend.zeros((n, n_cols))
            backend.spmm(matrix, backend.asarray(x), out_d)
            results[f"spmm_{layout}_{n_cols}"] = backend.to_host(out_d)
            if n_cols == 1:
                continue  # the CG once, with 3 row chunks (their bounds on slice edges)
            backend.SPMV_LAYOUT = layout  # the solver builds its own matrices
            solver = backend.ConjugateGradient(backend, system, n_cols, 1e-8, 500)
            rhs = backend.CSRMatrix(mass, layout=layout)
            x_d = backend.zeros((n, n_cols))
            iterations = solver.solve_product(rhs, backend.asarray(x), x_d)
            results[f"cg_{layout}_{n_cols}"] = backend.to_host(x_d)
            results[f"cg_iterations_{layout}_{n_cols}"] = np.array([iterations])
            results[f"cg_rhs_{n_cols}"] = mass @ x
            results[f"cg_system_times_x_{layout}_{n_cols}"] = (
                system @ results[f"cg_{layout}_{n_cols}"]
            )
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
