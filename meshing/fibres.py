"""Rule-based fibre and sheet directions per element, vectorised numpy.

**Ventricles**: the Laplace–Dirichlet rule-based method of Bayer, Blake, Plank & Trayanova
2012 (Ann Biomed Eng 40:2243). From the Laplace fields of
:func:`cardiotwin.meshing.coordinates.ventricular_coordinates` (ψ apex → base; φ_epi, φ_LV,
φ_RV), on every element:

1. ``axis(∇ψ, v)``: the orthonormal frame Q = [e0 e1 e2] with e1 = ∇ψ/|∇ψ| (longitudinal,
   apex → base), e2 = v made orthogonal to e1 (transmural) and e0 = e1 × e2
   (circumferential, counter-clockwise seen from the base on the LV free wall).
2. ``orient(Q, α, β)``: Q rotated by α about e2 (helix angle; the fibre is
   cos α e0 + sin α e1, so α > 0 is a right-handed helix rising towards the base) and then by
   β about the new fibre axis (sheet angle; β = 0 keeps the sheet transmural).
3. Septal depth d = φ_RV / (φ_LV + φ_RV), transmural depth e = φ_epi, and the rule angles
   α_w(e) = α_endo (1 − e) + α_epi e, β_w(e) likewise.
   Q_LV = orient(axis(∇ψ, −∇φ_LV), α_s, β_s), Q_RV = orient(axis(∇ψ, ∇φ_RV), α_s, β_s) with
   α_s = (1 − 2d) α_w(e), β_s = (1 − 2d) β_w(e); Q_endo = bislerp(Q_LV, Q_RV, d).
4. Q_epi = orient(axis(∇ψ, ∇φ_epi), α_w(e), β_w(e)); the result is bislerp(Q_endo, Q_epi, e).

``bislerp`` is Bayer's quaternion slerp between the closest of the eight quaternions that give
the same fibre, sheet and normal lines (q and q·{1, i, j, k}, either sign).

One deliberate difference from the paper: Bayer's septal angle is α_s(d) = α_endo (1 − 2d),
fixed through the wall, while Q_epi carries α_w(e); interpolating the two with weight e makes
the helix angle quadratic through the free wall (α_endo (1 − e²) + α_epi e², +30° at mid-wall
for ±60°), and for end angles more than 90° apart the closest-quaternion choice would turn the
wrong way round. Scaling the septal rule by α_w(e) instead of α_endo gives both frames of the
last bislerp the same angle wherever they share their axes (the free walls), so the helix
angle is exactly α_w(e) there (linear from α_endo to α_epi, as the rule is stated), and is
Bayer's α_s(d) in the septum (e ≈ 0). The RV frame's transmural axis points into the RV
cavity, so (1 − 2d) = −1 there gives the RV free wall the same rule seen from outside.

Output: ``fibres`` (unit fibre direction) and ``sheets`` (unit sheet direction: the
transmural direction e2, turned by β about the fibre; openCARP's second ``.lon`` vector) per
element.

**Border zone along the scar** (:func:`scar_border_fibres`, ventricles, on by default:
``anatomy.border_zone_fibres``): in border-zone elements within ``reach_mm`` of dense scar the
fibre is turned into the wall's plane *along* the scar's border (perpendicular to the
direction towards the nearest scar and to the transmural direction). Surviving myocyte bundles
in healed infarcts run in parallel strands along the channels between scar (de Bakker et al.
1988, Circulation 77:589; 1993, Circulation 88:915), so a channel conducts along its length.
With the rule-based fibres alone a channel running apex to base lies across the circumferential
mid-wall fibres, and with the border zone's σ across the fibres × 0.1 it is a near-block line
(0.03 m/s, ``benchmarks/RESULTS.md``) whatever its width. The direction is the principal axis
of the structure tensor of ∇(distance to scar), averaged over each element's neighbours, so
it is defined on a channel's midline too, where the two lobes' gradients cancel.

**Atria**: a simple documented rule from the atrial coordinates, not a published atlas. The
fibre runs along the iso-lines of ``valve_vein`` (the Laplace field 0 on the valve rim, 1 on
the vein rims) in the wall's tangent plane: fibre = e_t × ∇(valve_vein) with e_t the
transmural direction, sheet = e_t. This reproduces the dominant circumferential orientation
round the mitral annulus and round each vein ostium (the "circular" bundles of the rule-based
LA models of Krueger et al. 2011, FIMH LNCS 6666:223, and Roney et al. 2021, Interface Focus
11:20200057) and leaves out Bachmann's bundle, the septopulmonary and septoatrial bundles,
the appendage ring, the right atrium's crista terminalis and pectinate muscles, and the
different endocardial and epicardial layers of bilayer models (Labarthe et al. 2014).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.coordinates import (
    AtrialFields,
    VentricularFields,
    atrial_coordinates,
    ventricular_coordinates,
)
from cardiotwin.meshing.laplace import element_gradients, gradient_per_element
from cardiotwin.meshing.mesh import Mesh

log = logging.getLogger(__name__)


# --- quaternions (w, x, y, z), vectorised -------------------------------------------------


def rotation_to_quaternion(rotations: np.ndarray) -> np.ndarray:
    """(m, 4) unit quaternions of (m, 3, 3) rotation matrices (Shepperd's method: the
    largest of the four candidate denominators, so no cancellation)."""
    r = np.asarray(rotations, dtype=np.float64)
    trace = np.trace(r, axis1=1, axis2=2)
    candidates = np.stack([trace, r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], axis=1)
    pick = np.argmax(candidates, axis=1)
    q = np.empty((len(r), 4))
    for k in range(4):
        sel = pick == k
        m = r[sel]
        if k == 0:
            s = 2.0 * np.sqrt(1.0 + trace[sel])
            q[sel] = np.stack(
                [0.25 * s, (m[:, 2, 1] - m[:, 1, 2]) / s, (m[:, 0, 2] - m[:, 2, 0]) / s,
                 (m[:, 1, 0] - m[:, 0, 1]) / s], axis=1)  # fmt: skip
        else:
            i = k - 1
            j, l = (i + 1) % 3, (i + 2) % 3
            s = 2.0 * np.sqrt(1.0 + m[:, i, i] - m[:, j, j] - m[:, l, l])
            out = np.empty((len(m), 4))
            out[:, 0] = (m[:, l, j] - m[:, j, l]) / s
            out[:, 1 + i] = 0.25 * s
            out[:, 1 + j] = (m[:, j, i] + m[:, i, j]) / s
            out[:, 1 + l] = (m[:, l, i] + m[:, i, l]) / s
            q[sel] = out
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def quaternion_to_rotation(q: np.ndarray) -> np.ndarray:
    """(m, 3, 3) rotation matrices of (m, 4) unit quaternions (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1),
        ],
        axis=1,
    )


def _times_ijk(q: np.ndarray) -> np.ndarray:
    """(4, m, 4): q, q·i, q·j, q·k (right products turn the frame by 180° about its axes)."""
    w, x, y, z = q.T
    return np.stack(
        [
            q,
            np.stack([-x, w, z, -y], 1),
            np.stack([-y, -z, w, x], 1),
            np.stack([-z, y, -x, w], 1),
        ]
    )


def slerp(qa: np.ndarray, qb: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions with weights ``t`` (0 → qa)."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    dot = np.clip(np.einsum("ij,ij->i", qa, qb), -1.0, 1.0)[:, None]
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    close = sin_theta < 1e-6
    safe = np.where(close, 1.0, sin_theta)
    a = np.where(close, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    b = np.where(close, t, np.sin(t * theta) / safe)
    q = a * qa + b * qb
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def bislerp(rotations_a: np.ndarray, rotations_b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Bayer 2012's bislerp of frames (m, 3, 3) with weights ``t``: slerp from qa to the one of
    ±qb·{1, i, j, k} closest to qa (the frames whose axes are the same lines)."""
    qa = rotation_to_quaternion(rotations_a)
    candidates = _times_ijk(rotation_to_quaternion(rotations_b))  # (4, m, 4)
    dots = np.einsum("kmj,mj->km", candidates, qa)
    best = np.argmax(np.abs(dots), axis=0)
    rows = np.arange(len(qa))
    qb = candidates[best, rows] * np.sign(dots[best, rows])[:, None]
    return quaternion_to_rotation(slerp(qa, qb, t))


# --- frames ---------------------------------------------------------------------------------


def _unit_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(v, axis=1)
    return v / np.maximum(norm, 1e-300)[:, None], norm


def axis_frame(longitudinal: np.ndarray, transmural: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bayer's ``axis``: frames [e0 e1 e2] (m, 3, 3; columns) from ∇ψ and a transmural
    vector, and a mask of the elements whose inputs vanish or are parallel (they get an
    arbitrary but valid frame)."""
    e1, n1 = _unit_rows(longitudinal)
    e2 = transmural - np.einsum("ij,ij->i", e1, transmural)[:, None] * e1
    e2, n2 = _unit_rows(e2)
    bad = (n1 < 1e-12) | (n2 < 1e-6 * np.maximum(np.linalg.norm(transmural, axis=1), 1e-300))
    if bad.any():
        # any right-handed frame: e1 kept when it exists, e2 perpendicular to it
        fallback_e1 = np.where((n1 < 1e-12)[:, None], np.array([0.0, 0.0, 1.0]), e1[:])
        helper = np.where(
            (np.abs(fallback_e1[:, 0]) < 0.9)[:, None], np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        )
        fallback_e2, _ = _unit_rows(np.cross(fallback_e1, helper))
        e1 = np.where(bad[:, None], fallback_e1, e1)
        e2 = np.where(bad[:, None], fallback_e2, e2)
    e0 = np.cross(e1, e2)
    return np.stack([e0, e1, e2], axis=2), bad


def orient(frames: np.ndarray, alpha_rad, beta_rad) -> np.ndarray:
    """Bayer's ``orient``: each frame turned by α about its e2 axis, then by β about the new
    first (fibre) axis. ``alpha_rad`` / ``beta_rad``: scalars or (m,) arrays."""
    m = len(frames)
    a = np.broadcast_to(np.asarray(alpha_rad, dtype=np.float64), (m,))
    b = np.broadcast_to(np.asarray(beta_rad, dtype=np.float64), (m,))
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    zeros, ones = np.zeros(m), np.ones(m)
    r_alpha = np.stack(
        [
            np.stack([ca, -sa, zeros], 1),
            np.stack([sa, ca, zeros], 1),
            np.stack([zeros, zeros, ones], 1),
        ],
        axis=1,
    )
    r_beta = np.stack(
        [
            np.stack([ones, zeros, zeros], 1),
            np.stack([zeros, cb, sb], 1),
            np.stack([zeros, -sb, cb], 1),
        ],
        axis=1,
    )
    return frames @ r_alpha @ r_beta


# --- ventricles -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FibreAngles:
    """Bayer 2012 angles, degrees: helix α and sheet β at the endo- and epicardium (the
    defaults, +60°/−60° and 0°, live in the configuration: ``AnatomyConfig``)."""

    alpha_endo_deg: float
    alpha_epi_deg: float
    beta_endo_deg: float
    beta_epi_deg: float


@dataclass
class FibreResult:
    fibres: np.ndarray
    sheets: np.ndarray
    degenerate_elements: int


def ventricular_fibres(
    mesh: Mesh, angles: FibreAngles, fields: VentricularFields | None = None
) -> FibreResult:
    """Per-element fibre and sheet directions by Bayer 2012's rules (module docstring).

    ``fields``: the output of :func:`ventricular_coordinates` when already computed (the
    Laplace solves are the expensive part).
    """
    if fields is None:
        fields = ventricular_coordinates(mesh)
    grads, _ = element_gradients(mesh.points_mm, mesh.tets)
    tets = mesh.tets

    def grad(values):
        return gradient_per_element(grads, tets, values)

    def mean(values):
        return np.asarray(values)[tets].mean(axis=1)

    grad_psi = grad(fields.psi)
    phi_epi, phi_lv, phi_rv = mean(fields.phi_epi), mean(fields.phi_lv), mean(fields.phi_rv)
    depth = np.divide(
        phi_rv, phi_lv + phi_rv, out=np.zeros_like(phi_rv), where=phi_lv + phi_rv > 1e-12
    )
    a_endo, a_epi = math.radians(angles.alpha_endo_deg), math.radians(angles.alpha_epi_deg)
    b_endo, b_epi = math.radians(angles.beta_endo_deg), math.radians(angles.beta_epi_deg)
    transmural = np.clip(phi_epi, 0.0, 1.0)
    alpha_w = a_endo * (1.0 - transmural) + a_epi * transmural
    beta_w = b_endo * (1.0 - transmural) + b_epi * transmural
    alpha_s = (1.0 - 2.0 * depth) * alpha_w
    beta_s = (1.0 - 2.0 * depth) * beta_w
    frame_lv, bad_lv = axis_frame(grad_psi, -grad(fields.phi_lv))
    q_endo = orient(frame_lv, alpha_s, beta_s)
    frame_epi, bad_epi = axis_frame(grad_psi, grad(fields.phi_epi))
    q_epi = orient(frame_epi, alpha_w, beta_w)
    # a frame counts as degenerate only where its weight in the bislerps is not zero
    degenerate = (bad_lv & (depth < 1.0)) | (bad_epi & (transmural > 0.0))
    septal = depth > 0
    if septal.any():
        frame_rv, bad_rv = axis_frame(grad_psi[septal], grad(fields.phi_rv)[septal])
        q_rv = orient(frame_rv, alpha_s[septal], beta_s[septal])
        q_endo[septal] = bislerp(q_endo[septal], q_rv, depth[septal])
        degenerate[np.nonzero(septal)[0][bad_rv]] = True
    frames = bislerp(q_endo, q_epi, transmural)
    degenerate = int(degenerate.sum())
    if degenerate:
        log.info("%d elements had no well-defined fibre frame (apex, insertion lines)", degenerate)
    return FibreResult(frames[:, :, 0].copy(), frames[:, :, 2].copy(), degenerate)


# --- atria ----------------------------------------------------------------------------------


def atrial_fibres(mesh: Mesh, fields: AtrialFields | None = None) -> FibreResult:
    """Per-element fibres along the iso-lines of ``valve_vein`` in the wall (module
    docstring), sheets transmural."""
    if fields is None:
        fields = atrial_coordinates(mesh)
    grads, _ = element_gradients(mesh.points_mm, mesh.tets)
    transmural, n_t = _unit_rows(gradient_per_element(grads, mesh.tets, fields.transmural))
    g = gradient_per_element(grads, mesh.tets, fields.valve_vein)
    g -= np.einsum("ij,ij->i", g, transmural)[:, None] * transmural
    fibres, n_f = _unit_rows(np.cross(transmural, g))
    scale = np.median(np.linalg.norm(g, axis=1))
    bad = (n_t < 1e-12) | (n_f < 1e-3 * scale)
    if bad.any():  # a saddle of valve_vein (between veins): any direction in the wall
        frames, _ = axis_frame(np.tile([0.0, 0.0, 1.0], (int(bad.sum()), 1)), transmural[bad])
        fibres[bad] = frames[:, :, 0]
    return FibreResult(fibres, transmural, int(bad.sum()))


# --- border zone: fibres along the scar's border --------------------------------------------


def scar_border_fibres(
    mesh: Mesh,
    fibres: np.ndarray,
    sheets: np.ndarray,
    *,
    border_tags: tuple[int, ...],
    scar_tags: tuple[int, ...],
    reach_mm: float,
) -> tuple[np.ndarray, int]:
    """Fibres of border-zone elements turned along the scar's border (module docstring).

    ``border_tags`` / ``scar_tags``: element tags of the border zone and of the dense scar;
    ``reach_mm``: border-zone elements whose centre lies within this distance of dense-scar
    nodes are turned. ``sheets`` (the transmural direction) are unchanged: the new fibres
    lie in their plane. Returns the new fibres and the number of elements turned.
    """
    from scipy.sparse import csr_matrix
    from scipy.spatial import cKDTree

    out = np.array(fibres, dtype=np.float64, copy=True)
    scar = np.isin(mesh.region, scar_tags)
    border = np.isin(mesh.region, border_tags)
    if not scar.any() or not border.any():
        return out, 0
    scar_nodes = np.unique(mesh.tets[scar])
    distance, _ = cKDTree(mesh.points_mm[scar_nodes]).query(mesh.points_mm)
    grads, volumes = element_gradients(mesh.points_mm, mesh.tets)
    g = gradient_per_element(grads, mesh.tets, distance)
    s = np.asarray(sheets, dtype=np.float64)
    s = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-300)
    g -= np.einsum("ij,ij->i", g, s)[:, None] * s  # in the wall's plane
    # structure tensor g gᵀ (sign-free), volume-weighted over the elements around each node,
    # then back to the elements: smooth across a channel's midline
    tensor = (g[:, :, None] * g[:, None, :]).reshape(-1, 9)
    m, n = mesh.n_elements, mesh.n_points
    incidence = csr_matrix(
        (np.repeat(np.abs(volumes), 4), (mesh.tets.ravel(), np.repeat(np.arange(m), 4))),
        shape=(n, m),
    )
    weight = np.asarray(incidence.sum(axis=1)).ravel()
    nodal = (incidence @ tensor) / np.maximum(weight, 1e-300)[:, None]
    centre_distance = distance[mesh.tets].mean(axis=1)
    chosen = np.nonzero(border & (centre_distance <= reach_mm))[0]
    if chosen.size == 0:
        return out, 0
    smooth = nodal[mesh.tets[chosen]].mean(axis=1).reshape(-1, 3, 3)
    values, vectors = np.linalg.eigh(smooth)
    across = vectors[:, :, -1]  # towards / away from the nearest scar
    along = np.cross(s[chosen], across)
    norm = np.linalg.norm(along, axis=1)
    # a clear direction only: the in-plane gradient dominates its cross-direction spread
    clear = (norm > 0.5) & (values[:, -1] > 0.1) & (values[:, -1] > 2.0 * values[:, -2])
    out[chosen[clear]] = along[clear] / norm[clear, None]
    return out, int(np.count_nonzero(clear))
