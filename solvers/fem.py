"""Linear (P1) tetrahedral finite elements: anisotropic stiffness, lumped and consistent mass.

All assembly is vectorised over elements (numpy, chunks of elements, no Python loop over
them) and returns ``scipy.sparse`` CSR matrices. Lengths are mm and diffusivities mm²/ms, so
the stiffness ``K`` is in mm³/ms, the mass ``M`` in mm³ and ``M⁻¹K`` in 1/ms: the semi-discrete
diffusion is ``M dV/dt = −K V``.

On element e with barycentric gradients ``g_i`` (1/mm) and volume ``V_e`` (mm³):

- stiffness ``K_e[i, j] = V_e g_iᵀ D_e g_j`` with the transversely isotropic tensor
  ``D_e = D_t I + (D_l − D_t) f fᵀ`` (f: unit fibre of the element);
- consistent mass ``M_e[i, j] = V_e (1 + δ_ij) / 20``;
- lumped mass: row sums of the consistent mass, ``V_e / 4`` to each of the 4 nodes.

Conductivity to diffusivity (monodomain, χ C_m ∂V/∂t = ∇·(σ∇V) + …, divided by χ C_m):
``D [mm²/ms] = 1000 · σ [S/m] / (χ [cm⁻¹] · C_m [µF/cm²])``, because
S/m ÷ (cm⁻¹ · µF/cm²) = S·m²/F = m²/s = 1000 mm²/ms. Example (Niederer et al. 2011):
0.1334 S/m, χ = 1400 cm⁻¹, C_m = 1 µF/cm² → 0.0953 mm²/ms.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: elements per assembly chunk: bounds the temporary COO arrays to ~16 × CHUNK entries
ASSEMBLY_CHUNK = 500_000


def diffusivity_mm2_per_ms(sigma_s_per_m, chi_per_cm: float, cm_uf_per_cm2: float):
    """Monodomain diffusivity σ / (χ C_m) in mm²/ms from σ in S/m, χ in cm⁻¹, C_m in µF/cm²."""
    return 1000.0 * np.asarray(sigma_s_per_m, dtype=np.float64) / (chi_per_cm * cm_uf_per_cm2)


def element_gradients(points_mm: np.ndarray, tets: np.ndarray):
    """Barycentric gradients (m, 4, 3) in 1/mm and signed volumes (m,) in mm³.

    With edges e_k = x_k − x_0 and det = e_1·(e_2 × e_3) = 6 V: ∇λ_1 = e_2 × e_3 / det,
    ∇λ_2 = e_3 × e_1 / det, ∇λ_3 = e_1 × e_2 / det, ∇λ_0 = −(∇λ_1 + ∇λ_2 + ∇λ_3).
    """
    x = points_mm[tets]
    e1, e2, e3 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
    c23, c31, c12 = np.cross(e2, e3), np.cross(e3, e1), np.cross(e1, e2)
    det = np.einsum("ij,ij->i", e1, c23)
    grads = np.empty((tets.shape[0], 4, 3))
    grads[:, 1], grads[:, 2], grads[:, 3] = c23, c31, c12
    grads[:, 1:] /= det[:, None, None]
    grads[:, 0] = -grads[:, 1:].sum(axis=1)
    return grads, det / 6.0


def _assemble(tets: np.ndarray, values: np.ndarray, n: int, total):
    rows = np.broadcast_to(tets[:, :, None], values.shape).ravel()
    cols = np.broadcast_to(tets[:, None, :], values.shape).ravel()
    part = sp.csr_matrix((values.ravel(), (rows, cols)), shape=(n, n))
    return part if total is None else total + part


def stiffness_matrix(
    points_mm: np.ndarray,
    tets: np.ndarray,
    d_long_mm2_per_ms,
    d_trans_mm2_per_ms,
    fibres: np.ndarray | None = None,
    n_nodes: int | None = None,
) -> sp.csr_matrix:
    """P1 stiffness K (n, n) for D_e = D_t I + (D_l − D_t) f fᵀ; units mm³/ms (D in mm²/ms).

    ``d_*`` are scalars or per-element (m,) arrays; ``fibres`` (m, 3) (normalised here) may
    be omitted only where D_l = D_t. Symmetric, rows sum to zero; entries that are exactly
    zero (e.g. the diagonal edges of axis-aligned Kuhn cubes) are dropped from the pattern.
    """
    n = points_mm.shape[0] if n_nodes is None else n_nodes
    m = tets.shape[0]
    d_l = np.broadcast_to(np.asarray(d_long_mm2_per_ms, dtype=np.float64), (m,))
    d_t = np.broadcast_to(np.asarray(d_trans_mm2_per_ms, dtype=np.float64), (m,))
    anisotropic = np.any(d_l != d_t)
    if anisotropic:
        if fibres is None:
            raise ValueError(
                "an anisotropic conductivity (sigma_l != sigma_t) needs fibre directions; "
                "give the mesh per-element fibres"
            )
        norms = np.linalg.norm(fibres, axis=1)
        if np.any(~np.isfinite(norms) | (norms < 1e-12)):
            raise ValueError("fibre vectors must be finite and non-zero (see meshing.check_mesh)")
    total = None
    for start in range(0, m, ASSEMBLY_CHUNK):
        sl = slice(start, min(start + ASSEMBLY_CHUNK, m))
        grads, vol = element_gradients(points_mm, tets[sl])
        # isotropic part D_t g_i·g_j plus the fibre part (D_l − D_t)(g_i·f)(g_j·f)
        ke = np.einsum("mia,mja->mij", grads, grads) * (d_t[sl] * vol)[:, None, None]
        if anisotropic:
            f = fibres[sl] / np.linalg.norm(fibres[sl], axis=1)[:, None]
            gf = np.einsum("mia,ma->mi", grads, f)
            ke += gf[:, :, None] * gf[:, None, :] * ((d_l[sl] - d_t[sl]) * vol)[:, None, None]
        total = _assemble(tets[sl], ke, n, total)
    if total is None:
        total = sp.csr_matrix((n, n))
    total.eliminate_zeros()
    total.sort_indices()
    return total.tocsr()


def consistent_mass_matrix(
    points_mm: np.ndarray, tets: np.ndarray, n_nodes: int | None = None
) -> sp.csr_matrix:
    """P1 consistent mass M (n, n) in mm³: M_e = V_e (1 + δ_ij) / 20."""
    n = points_mm.shape[0] if n_nodes is None else n_nodes
    m = tets.shape[0]
    local = (np.ones((4, 4)) + np.eye(4)) / 20.0
    total = None
    for start in range(0, m, ASSEMBLY_CHUNK):
        sl = slice(start, min(start + ASSEMBLY_CHUNK, m))
        _, vol = element_gradients(points_mm, tets[sl])
        total = _assemble(tets[sl], vol[:, None, None] * local, n, total)
    if total is None:
        total = sp.csr_matrix((n, n))
    total.sort_indices()
    return total.tocsr()


def lumped_mass_vector(
    points_mm: np.ndarray, tets: np.ndarray, n_nodes: int | None = None
) -> np.ndarray:
    """Lumped (row-sum) mass per node (n,) in mm³: V_e / 4 from each adjacent element."""
    n = points_mm.shape[0] if n_nodes is None else n_nodes
    _, vol = element_gradients(points_mm, tets)
    return np.bincount(tets.ravel(), weights=np.repeat(vol / 4.0, 4), minlength=n)


def gershgorin_bound(stiffness: sp.csr_matrix, lumped_mass: np.ndarray) -> float:
    """Upper bound (1/ms) on the eigenvalues of M_L⁻¹K: the largest absolute row sum
    (Gershgorin). Rigorous and cheap; 1.53× the true value on the N-version box meshes."""
    rows = np.asarray(abs(stiffness).sum(axis=1)).ravel()
    return float((rows / lumped_mass).max())


#: λ_max(M_C⁻¹K) ≤ 5 λ_max(M_L⁻¹K): per element M_e − L_e/5 = V_e/20·11ᵀ ⪰ 0 (L_e = V_e/4·I
#: the lumped element mass), so M_C ⪰ M_L/5. On the N-version box meshes the ratio is 4.33.
CONSISTENT_OVER_LUMPED_EIGENVALUE = 5.0


def largest_eigenvalue(stiffness: sp.csr_matrix, mass, rel_tol: float = 1e-6) -> float:
    """Largest eigenvalue (1/ms) of M⁻¹K by Lanczos (``scipy.sparse.linalg.eigsh``).

    ``mass``: the lumped mass vector (n,) — then the symmetric form M^-½ K M^-½ is used — or
    the consistent mass matrix (then the generalized problem K x = λ M x, with M⁻¹ applied by
    conjugate gradients). Lanczos approaches the extreme eigenvalue from below; callers
    keep a safety margin.
    """
    from scipy.sparse.linalg import LinearOperator, cg, eigsh

    n = stiffness.shape[0]
    if n == 1:
        return 0.0
    rng = np.random.default_rng(0)  # a fixed start vector keeps the bound reproducible
    v0 = rng.standard_normal(n)
    if sp.issparse(mass):
        diag_inv = 1.0 / mass.diagonal()
        precond = LinearOperator((n, n), matvec=lambda x: diag_inv * x.ravel())

        def solve(b):
            x, info = cg(mass, b.ravel(), rtol=1e-12, atol=0.0, M=precond, maxiter=1000)
            return x

        minv = LinearOperator((n, n), matvec=solve)
        if n <= 3:
            import scipy.linalg

            lam = scipy.linalg.eigh(stiffness.toarray(), mass.toarray(), eigvals_only=True)
            return float(lam.max())
        lam = eigsh(stiffness, k=1, M=mass, Minv=minv, which="LA", tol=rel_tol, v0=v0)[0]
    else:
        scale = sp.diags(1.0 / np.sqrt(np.asarray(mass, dtype=np.float64)))
        sym = (scale @ stiffness @ scale).tocsr()
        if n <= 3:
            return float(np.linalg.eigvalsh(sym.toarray()).max())
        lam = eigsh(sym, k=1, which="LA", tol=rel_tol, v0=v0)[0]
    return float(lam[0])
