"""The N-version slab benchmark (Niederer et al. 2011, Phil Trans R Soc A 369:4331–4351).

Set-up (../shared/NVERSION.md §1): slab 20 × 7 × 3 mm with a corner at the origin, fibres
along x, no-flux boundaries; ten Tusscher–Panfilov 2006 epicardial cells from the published
initial state (``tp06-epi``'s defaults); monodomain σ_l / σ_t = 0.1334 / 0.01761 S/m (harmonic
means of the bidomain values), χ = 1400 cm⁻¹, C_m = 1 µF/cm²; stimulus on the cube
0 ≤ x, y, z ≤ 1.5 mm, 50 000 µA/cm³ / χ = 35.71 µA/µF for 2 ms from t = 0. Output: the
activation time (first upward crossing of 0 mV, interpolated in time) at P1 (0, 0, 0),
P8 (20, 7, 3), P9 (10, 3.5, 1.5), at all eight corners and along the P1→P8 diagonal
(21.40 mm), interpolated linearly within the elements where the points are not nodes.
"""

from __future__ import annotations

import logging
import math
import numbers
import time

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker, NanGuard, ProgressTracker

log = logging.getLogger(__name__)

SLAB_MM = (20.0, 7.0, 3.0)
SIGMA_L_S_PER_M = 0.1334
SIGMA_T_S_PER_M = 0.01761
CHI_PER_CM = 1400.0
CM_UF_PER_CM2 = 1.0
STIMULUS_BOX_MM = ((0.0, 0.0, 0.0), (1.5, 1.5, 1.5))
#: 50 000 µA/cm³ divided by χ = 1400 cm⁻¹ and C_m = 1 µF/cm²
STIMULUS_UA_PER_UF = 50_000.0 / CHI_PER_CM / CM_UF_PER_CM2
STIMULUS_DURATION_MS = 2.0
POINTS_MM = {"P1": (0.0, 0.0, 0.0), "P8": (20.0, 7.0, 3.0), "P9": (10.0, 3.5, 1.5)}
DIAGONAL_SAMPLES = 101


def interpolate_at_points(points_mm, tets, values, query_mm, candidates: int = 16):
    """P1 interpolation of nodal ``values`` (n,) at ``query_mm`` (k, 3); NaN outside the mesh.

    Candidate elements are the ``candidates`` nearest by centroid (a k-d tree); the one with
    all barycentric coordinates ≥ −1e-9 holds the point.
    """
    from scipy.spatial import cKDTree

    query = np.atleast_2d(np.asarray(query_mm, dtype=np.float64))
    x = points_mm[tets]
    centroids = x.mean(axis=1)
    k = min(candidates, tets.shape[0])
    _, near = cKDTree(centroids).query(query, k=k)
    near = near.reshape(query.shape[0], k)
    out = np.full(query.shape[0], np.nan)
    for q in range(query.shape[0]):  # a few hundred points: host work outside any time loop
        cand = near[q]
        x0 = x[cand, 0]
        edges = (x[cand, 1:] - x0[:, None, :]).transpose(0, 2, 1)  # columns x_i − x_0
        lam = np.linalg.solve(edges, (query[q] - x0)[:, :, None])[:, :, 0]
        bary = np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)
        inside = np.nonzero(bary.min(axis=1) >= -1e-9)[0]
        if inside.size:
            e = inside[0]
            out[q] = float(bary[e] @ values[tets[cand[e]]])
    return out


def nversion_problem(dx_mm: float, model: str = "tp06-epi") -> MonodomainProblem:
    """The N-version slab as a :class:`MonodomainProblem` at mesh spacing ``dx_mm``."""
    mesh = box_mesh(SLAB_MM, dx_mm)
    stimulus = Stimulus(
        start_ms=0.0,
        duration_ms=STIMULUS_DURATION_MS,
        strength_ua_per_uf=STIMULUS_UA_PER_UF,
        box_mm=STIMULUS_BOX_MM,
    )
    return MonodomainProblem(
        mesh=mesh,
        model=model,
        conductivities_s_per_m={1: (SIGMA_L_S_PER_M, SIGMA_T_S_PER_M)},
        stimuli=[stimulus],
        chi_per_cm=CHI_PER_CM,
        cm_uf_per_cm2=CM_UF_PER_CM2,
    )


def run_nversion(
    dx_mm: float,
    dt_ms: float,
    backend: str = "auto",
    mass: str = "lumped",
    diffusion: str = "explicit",
    *,
    splitting: str = "godunov",
    max_time_ms: float = 300.0,
    progress: bool = False,
    model: str = "tp06-epi",
    cell_tables: bool = True,
    precision: str = "fp64",
) -> dict:
    """Run the N-version benchmark; returns activation times (ms) and run facts.

    Stops once every node has activated (checked every 0.5 ms) or at ``max_time_ms``.
    ``cell_tables``: gate rates from voltage lookup tables (the default; ``False``: exact
    rates; see ``SplitStepper``).
    Keys: ``activation_ms`` {P1, P8, P9}, ``corners`` [{point_mm, activation_ms}],
    ``diagonal_mm`` / ``diagonal_ms`` (distance from P1 and time), ``nodes``, ``elements``,
    ``wall_s`` (time stepping), ``setup_s``, ``backend``, ``dx_mm``, ``dt_ms``, ``mass``,
    ``diffusion``, ``splitting``, ``substeps``, ``all_activated``, ``t_end_ms``,
    ``node_steps_per_s``, ``cell_tables``, ``precision`` (and ``storage``: which states are
    float32 and which float64), ``backend_requested`` and ``fallback_reason`` (why ``auto``
    did not take a GPU). ``setup_s`` includes assembly, the stability bound and compiling the
    cell kernel.
    """
    for name, value in (("dx", dx_mm), ("dt", dt_ms)):
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and value > 0):  # numpy scalars included
            unit = "mm" if name == "dx" else "ms"
            raise ValueError(f"{name} must be a positive number of {unit}, got {value}")
    started = time.perf_counter()
    problem = nversion_problem(dx_mm, model)
    stepper = SplitStepper(
        problem,
        dt_ms,
        backend=backend,
        mass=mass,
        diffusion=diffusion,
        splitting=splitting,
        cell_tables=cell_tables,
        precision=precision,
    )
    log.info(
        "N-version dx %g mm, dt %g ms: %d nodes, backend %s, %s mass, %s diffusion "
        "(%d substeps)",
        dx_mm, dt_ms, problem.n_nodes, stepper.backend, mass, diffusion, stepper.substeps,
    )  # fmt: skip
    activation = ActivationTracker(stop_when_all_activated=True, interval_ms=0.5)
    trackers = [activation, NanGuard(interval_ms=1.0)]
    if progress:
        trackers.append(ProgressTracker(interval_ms=1.0))
    setup_s = time.perf_counter() - started
    summary = stepper.run(max_time_ms, trackers)
    times = activation.first_ms[:, 0]
    all_activated = bool(np.all(np.isfinite(times)))
    if not all_activated:
        log.warning(
            "%d of %d nodes did not activate within %g ms",
            int(np.isnan(times).sum()), times.size, max_time_ms,
        )  # fmt: skip

    def at(points):
        return interpolate_at_points(problem.points_mm, problem.tets, times, points)

    named = at(np.array(list(POINTS_MM.values())))
    corners_mm = np.array([[x, y, z] for z in (0, 3.0) for y in (0, 7.0) for x in (0, 20.0)])
    corner_ms = at(corners_mm)
    end = np.array(POINTS_MM["P8"])
    fraction = np.linspace(0.0, 1.0, DIAGONAL_SAMPLES)
    diagonal_ms = at(fraction[:, None] * end[None, :])

    def clean(values):
        return [None if not np.isfinite(v) else round(float(v), 6) for v in values]

    return {
        "activation_ms": dict(zip(POINTS_MM, clean(named), strict=True)),
        "corners": [
            {"point_mm": p.tolist(), "activation_ms": t}
            for p, t in zip(corners_mm, clean(corner_ms), strict=True)
        ],
        "diagonal_mm": [round(float(d), 6) for d in fraction * np.linalg.norm(end)],
        "diagonal_ms": clean(diagonal_ms),
        "nodes": problem.n_nodes,
        "elements": int(problem.tets.shape[0]),
        "wall_s": round(summary.wall_s, 3),
        "setup_s": round(setup_s, 3),
        "node_steps_per_s": float(f"{summary.node_steps_per_s:.4g}"),
        "backend": stepper.backend,
        "dx_mm": dx_mm,
        "dt_ms": dt_ms,
        "mass": mass,
        "diffusion": diffusion,
        "splitting": splitting,
        "substeps": stepper.substeps,
        "all_activated": all_activated,
        "t_end_ms": round(summary.t_ms, 9),
        "model": problem.model.name,
        "cell_tables": stepper.cell_tables,
        "precision": stepper.precision,
        "storage": stepper.layout.describe(),
        "backend_requested": backend,
        "fallback_reason": _fallback_reason(backend, stepper.backend),
    }


def _fallback_reason(requested: str, used: str) -> str | None:
    """Why the backend used is not the one asked for (``auto`` on a machine without a GPU)."""
    if requested != "auto" or used == "cuda":
        return None
    from cardiotwin.solvers.stepping import cuda_unavailable_reason

    return cuda_unavailable_reason() or "the CUDA backend is not supported here"
