"""P1 Laplace–Dirichlet solves on tetrahedral meshes: scipy sparse assembly + pyamg.

The anatomical coordinates and rule-based fibres are harmonic functions with values fixed on
named surfaces (Bayer et al. 2012, 2018). :func:`stiffness_matrix` assembles the P1 stiffness
(vectorised, one ``coo → csr`` conversion); :class:`DirichletLaplace` eliminates the fixed
nodes, builds one smoothed-aggregation AMG hierarchy for the free block and then solves any
number of right-hand sides with AMG-preconditioned CG (several fields that share their fixed
nodes, such as Bayer's φ_LV, φ_RV and φ_epi, pay for one hierarchy).

BLAS runs single-threaded inside the AMG setup and solve (``threadpoolctl``): pyamg's dense
work is level-1 vector operations, which threads do not speed up, and on a shared 2-core
machine OpenBLAS threads made a 21k-node solve 5-20× slower (setup 1.1-4.4 s against 0.1-0.3 s,
solve 0.6-0.7 s against 0.07 s, measured side by side).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from threadpoolctl import threadpool_limits

from cardiotwin.meshing.mesh import MeshError

#: relative residual at which a Laplace solve stops; coordinates need ~1e-6, 1e-10 is cheap
LAPLACE_TOLERANCE = 1e-10


def element_gradients(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the four P1 basis functions on each element, 1/mm, and element volumes,
    mm³: ``((m, 4, 3), (m,))``. ``tets`` must be positively oriented and non-degenerate."""
    x = np.asarray(points, dtype=np.float64)[np.asarray(tets)]
    e1, e2, e3 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
    # the inverse of [e1 e2 e3] by cross products (several times faster than np.linalg.inv)
    c23, c31, c12 = np.cross(e2, e3), np.cross(e3, e1), np.cross(e1, e2)
    det = np.einsum("ij,ij->i", e1, c23)
    grads = np.empty((len(x), 4, 3))
    grads[:, 1], grads[:, 2], grads[:, 3] = c23, c31, c12
    grads[:, 1:] /= det[:, None, None]
    grads[:, 0] = -grads[:, 1:].sum(axis=1)
    return grads, det / 6.0


def stiffness_matrix(points: np.ndarray, tets: np.ndarray, n_points: int | None = None):
    """P1 stiffness matrix K_ij = ∫ ∇φ_i · ∇φ_j dV (CSR, symmetric, mm)."""
    tets = np.asarray(tets, dtype=np.int64)
    grads, volumes = element_gradients(points, tets)
    local = (grads @ grads.transpose(0, 2, 1)) * volumes[:, None, None]
    rows = np.repeat(tets, 4, axis=1).ravel()
    cols = np.tile(tets, (1, 4)).ravel()
    n = len(points) if n_points is None else n_points
    matrix = sparse.csr_matrix((local.ravel(), (rows, cols)), shape=(n, n))
    matrix.sum_duplicates()
    return matrix


def gradient_per_element(grads: np.ndarray, tets: np.ndarray, field: np.ndarray) -> np.ndarray:
    """(m, 3) gradient of a P1 ``field`` (per node) on each element."""
    return np.einsum("eik,ei->ek", grads, np.asarray(field)[tets])


@contextmanager
def _seeded_numpy_random(seed: int = 0):
    """pyamg draws from NumPy's global generator (the start vector of its spectral-radius
    estimate), so two runs on one mesh differed by ~1e-12 in coordinates and fibres: seed it
    for the call and give the caller's state back."""
    state = np.random.get_state()  # noqa: NPY002 (pyamg uses the global generator)
    np.random.seed(seed)  # noqa: NPY002 (pyamg uses the global generator)
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002 (pyamg uses the global generator)


class DirichletLaplace:
    """Solver for ∇²u = 0 with u fixed on ``fixed`` nodes (zero flux elsewhere).

    ``active`` (default: every node an element uses) restricts the problem to a part of the
    mesh, e.g. the LV of a biventricular mesh; ``stiffness`` must then be assembled from that
    part's elements only. Every connected piece of the active mesh must hold a fixed node.
    """

    def __init__(self, stiffness, fixed: np.ndarray, active: np.ndarray | None = None):
        import pyamg

        n = stiffness.shape[0]
        fixed = np.asarray(fixed, dtype=bool)
        if active is None:
            active = np.asarray(np.abs(stiffness).sum(axis=1)).ravel() > 0
        active = np.asarray(active, dtype=bool)
        self.n = n
        self.fixed = fixed & active
        self.free = active & ~fixed
        self.active = active
        if not self.fixed.any():
            raise MeshError("a Laplace problem has no fixed nodes (no Dirichlet surface)")
        _, labels = csgraph.connected_components(stiffness[active][:, active], directed=False)
        pinned = np.zeros(labels.max() + 1, dtype=bool)
        pinned[labels[self.fixed[active]]] = True
        if not pinned.all():
            loose = int(np.sum(~pinned[labels]))
            raise MeshError(
                f"{int(np.sum(~pinned))} disconnected piece(s) of the mesh ({loose} nodes) touch "
                "no boundary surface, so their coordinates are undefined; remove the islands "
                "(meshing.quality drops them) or name their surfaces"
            )
        self._k_ff = stiffness[self.free][:, self.free].tocsr()
        self._k_fd = stiffness[self.free][:, self.fixed].tocsr()
        with threadpool_limits(limits=1, user_api="blas"), _seeded_numpy_random():
            self._solver = pyamg.smoothed_aggregation_solver(self._k_ff, symmetry="symmetric")

    def solve(self, fixed_values: np.ndarray, tolerance: float = LAPLACE_TOLERANCE) -> np.ndarray:
        """Solution at every node (NaN outside ``active``) for the values on the fixed nodes
        (an (n,) array read at the fixed nodes only)."""
        fixed_values = np.asarray(fixed_values, dtype=np.float64)
        u = np.full(self.n, np.nan)
        u[self.fixed] = fixed_values[self.fixed]
        rhs = -(self._k_fd @ u[self.fixed])
        residuals: list[float] = []
        with threadpool_limits(limits=1, user_api="blas"), _seeded_numpy_random():
            x = self._solver.solve(rhs, tol=tolerance, accel="cg", maxiter=500, residuals=residuals)
        scale = max(float(np.linalg.norm(rhs)), 1e-300)
        if residuals and residuals[-1] > 1e3 * tolerance * scale:
            raise MeshError(
                f"a Laplace solve did not converge (relative residual "
                f"{residuals[-1] / scale:.1e} after {len(residuals)} iterations); the mesh may "
                "hold inverted or degenerate elements (run meshing.quality)"
            )
        u[self.free] = x
        return u
