"""Conduction-velocity calibration: the conductivity that gives a target CV on *this* mesh.

CV depends on the discretisation (mesh spacing, time step, mass lumping, diffusion scheme)
as well as on σ: the N-version benchmark converges from far below on coarse meshes
(../shared/NVERSION.md §1, §3). Like openCARP's tuneCV, we therefore calibrate on a thin
strip discretised exactly as the patient mesh will be: a planar wave travels along a strip
``dx`` thick and wide, its CV is measured from activation times, and σ is updated by
σ ← σ · (CV_target / CV)² (CV ∝ √σ when the upstroke is resolved) until within tolerance.

Units: σ in S/m, CV in m/s (= mm/ms), lengths in mm, times in ms.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker

log = logging.getLogger(__name__)

#: stimulus on the strip's first ``STIMULUS_LENGTH_MM``, strong enough for every model here
STIMULUS_LENGTH_MM = 1.0
STIMULUS_UA_PER_UF = 60.0
STIMULUS_DURATION_MS = 2.0
#: activation = upward crossing of this on the strip, mV. Not 0 mV: remodelled cells never
#: reach it in tissue (Courtemanche with AF remodelling peaks at about +3 mV on a strip paced
#: at 500 ms, −2 to −8 mV at 220–200 ms; with fibrotic remodelling on top at −9 mV, and
#: −25 to −37 mV during a burst), and a steady planar wave's CV does not depend on which
#: level of its upstroke is timed
THRESHOLD_MV = -40.0


@dataclass(frozen=True)
class Calibration:
    """Result of :func:`calibrate_conductivity`."""

    sigma_s_per_m: float
    cv_m_per_s: float  # CV measured with ``sigma_s_per_m``
    target_cv_m_per_s: float
    iterations: int
    history: tuple[tuple[float, float], ...]  # (σ S/m, CV m/s) per strip run


def strip_conduction_velocity(
    model: str,
    sigma_s_per_m: float,
    dx_mm: float,
    dt_ms: float,
    *,
    length_mm: float = 10.0,
    mass: str = "lumped",
    diffusion: str = "explicit",
    backend: str = "cpu",
    cell_tables: bool = True,
    min_cv_m_per_s: float = 0.05,
) -> float:
    """CV (m/s) of a planar wave along a ``length_mm`` × dx × dx strip with conductivity σ.

    Measured by a least-squares line through the activation times (upward crossings of
    ``THRESHOLD_MV``) of the nodes between 30 % and 80 % of the strip, away from the stimulus
    and the far end.
    """
    if not (sigma_s_per_m > 0 and math.isfinite(sigma_s_per_m)):
        raise ValueError(f"conductivity must be positive, got {sigma_s_per_m} S/m")
    cells = max(8, round(length_mm / dx_mm))
    length_mm = cells * dx_mm
    mesh = box_mesh((length_mm, dx_mm, dx_mm), dx_mm)
    stimulus = Stimulus(
        0.0,
        STIMULUS_DURATION_MS,
        STIMULUS_UA_PER_UF,
        box_mm=((0.0, 0.0, 0.0), (max(STIMULUS_LENGTH_MM, dx_mm), dx_mm, dx_mm)),
    )
    problem = MonodomainProblem(
        mesh, model, {1: (sigma_s_per_m, sigma_s_per_m)}, stimuli=[stimulus]
    )
    stepper = SplitStepper(
        problem, dt_ms, backend=backend, mass=mass, diffusion=diffusion, cell_tables=cell_tables
    )
    activation = ActivationTracker(threshold_mv=THRESHOLD_MV, stop_when_all_activated=True)
    # the run lasts long enough for a wave of min_cv_m_per_s (border zone across the fibres
    # conducts at ~0.05 m/s)
    stepper.run(STIMULUS_DURATION_MS + length_mm / min_cv_m_per_s, [activation])
    x = problem.points_mm[:, 0]
    t = activation.first_ms[:, 0]
    window = (x >= 0.3 * length_mm) & (x <= 0.8 * length_mm)
    if not np.all(np.isfinite(t[window])):
        raise RuntimeError(
            f"no propagation along the strip with sigma = {sigma_s_per_m:g} S/m, "
            f"dx = {dx_mm} mm ({model}): the conductivity is too low for this mesh"
        )
    slope_ms_per_mm = np.polyfit(x[window], t[window], 1)[0]
    return float(1.0 / slope_ms_per_mm)


def calibrate_conductivity(
    model: str,
    target_cv_m_per_s: float,
    dx_mm: float,
    dt_ms: float,
    *,
    sigma_start_s_per_m: float = 0.1334,
    rel_tol: float = 0.01,
    max_iterations: int = 10,
    **strip_options,
) -> Calibration:
    """σ (S/m) that gives ``target_cv_m_per_s`` on a strip discretised like the target mesh.

    ``strip_options`` go to :func:`strip_conduction_velocity` (mass, diffusion, backend,
    length_mm, cell_tables). Stops when |CV/target − 1| ≤ ``rel_tol``.
    """
    if not (target_cv_m_per_s > 0 and math.isfinite(target_cv_m_per_s)):
        raise ValueError(f"target CV must be a positive number of m/s, got {target_cv_m_per_s}")
    sigma = float(sigma_start_s_per_m)
    history = []
    for iteration in range(1, max_iterations + 1):
        cv = strip_conduction_velocity(model, sigma, dx_mm, dt_ms, **strip_options)
        history.append((sigma, cv))
        log.info("calibration %d: sigma %.5g S/m -> CV %.4g m/s", iteration, sigma, cv)
        if abs(cv / target_cv_m_per_s - 1.0) <= rel_tol:
            return Calibration(sigma, cv, target_cv_m_per_s, iteration, tuple(history))
        # CV ∝ √σ; the factor is bounded so one poor measurement cannot throw σ far off
        sigma *= min(4.0, max(0.25, (target_cv_m_per_s / cv) ** 2))
    raise RuntimeError(
        f"CV calibration did not reach {target_cv_m_per_s} m/s within {rel_tol:.0%} in "
        f"{max_iterations} strip runs (last: sigma {history[-1][0]:.4g} S/m, CV "
        f"{history[-1][1]:.4g} m/s); the mesh may be too coarse to resolve the upstroke"
    )
