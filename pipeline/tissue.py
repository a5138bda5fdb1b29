"""Tissue: element tags -> ionic model variant, parameter sets per node, conductivities.

From a tagged mesh and the ``tissue`` section of the configuration
(:class:`~cardiotwin.pipeline.config.ChamberTissueConfig`), :func:`build_tissue` makes
everything a :class:`~cardiotwin.solvers.monodomain.MonodomainProblem` needs besides stimuli:

- **Cell variants and remodelling.** One ionic model per chamber. With the model family
  ``tp06`` and a mesh that has the ``transmural`` point field (0 endo .. 1 epi), nodes take
  the endocardial, M or epicardial variant of ten Tusscher–Panfilov 2006 by that coordinate
  (thresholds in the config); each region's ``parameter_scale`` (e.g. border zone g_Na×0.38)
  multiplies the variant's defaults. One parameter set per (region, variant) pair.
- **Nodes between tissues** (:func:`node_regions`, the one place this is decided): elements
  carry tags, the cell model lives on nodes. A node touching several conducting tissues
  takes, by default (``node_rule: majority``), the tissue with the largest element volume
  around it, ties going to the region listed first in ``node_priority`` (border zone before
  healthy); with ``node_rule: priority`` it takes the first region of ``node_priority`` that
  any of its elements has (the remodelled cells then extend one node layer into healthy
  tissue). Nodes touching only non-conducting elements carry no tissue (the engine drops
  them).
- **Conductivities** per region, monodomain (along, across the fibre) in S/m: calibrated on a
  strip discretised like the mesh so that a planar wave runs at the target CV
  (:func:`calibrated_sigma`, like openCARP's tuneCV), given, or scaled from another region
  (border zone: transverse σ × 0.1). Non-conducting regions (dense scar, lesions) are dropped
  from the system, not given a tiny σ.
- **Initial state**: each parameter set's single cell paced to steady state at the S1 cycle
  length (:func:`prepaced_states`); every node starts from its set's state.

Calibrations and pre-paced states are cached on disk (``tissue.cache_dir``, default
``$CARDIOTWIN_CACHE_DIR`` or ``~/.cache/cardiotwin``) per model, parameters, mesh spacing,
time step and numerics: the next run on a mesh of the same resolution starts at once.

Mesh spacing (:func:`mesh_spacing_mm`): (6 V̄)^(1/3) of the mean volume V̄ of the
conducting and lesion elements (a lesion was conducting before ablation, so an ablated mesh
keeps its spacing and σ), exactly the spacing of the box meshes the calibration strip is
made of; for unstructured meshes with mean element edge ℓ it is ≈ 0.8–0.9 ℓ (both are reported).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cardiotwin.files import write_json_atomic
from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.tags import LESION
from cardiotwin.solvers.ionic import IonicModel, ParameterTable, UnknownNameError, get_model
from cardiotwin.solvers.precision import PrecisionError, state_layout

if TYPE_CHECKING:  # the configuration model (pydantic) is not needed to run
    from cardiotwin.pipeline.config import ChamberTissueConfig, SimulationConfig, TissueConfig

log = logging.getLogger(__name__)

#: the model family whose transmural variants are chosen per node
TP06_VARIANTS = {"endo": "tp06-endo", "m": "tp06-m", "epi": "tp06-epi"}
TRANSMURAL_FIELD = "transmural"
#: 2: calibration strips time activation at −40 mV (was 0 mV: remodelled atrial cells never
#: reached it)
CACHE_FORMAT = 2
#: slowest conduction a calibration strip waits for (m/s)
MIN_CV_M_PER_S = 0.01
#: absolute floor of the steady-state test of pre-pacing (state units: mV, mM, 1)
PREPACING_ATOL = 1e-6


class TissueError(ValueError):
    """A tissue set-up that cannot be built; the message names the region, tag or key."""


@dataclass
class Tissue:
    """What a simulation needs from the tissue of one mesh (see the module docstring).

    ``parameter_set`` (n_mesh_nodes,) int32 (−1 on nodes without tissue), ``set_names`` e.g.
    ``"border_zone/epi"``, ``conductivities_s_per_m`` tag → (σ_l, σ_t), ``initial_states``
    (n_states, n_sets) (pre-paced) or None, ``node_region`` (n_mesh_nodes,) region name index
    into ``region_names`` (−1: none), and a record of how each value was obtained.
    """

    model: IonicModel
    parameters: ParameterTable
    parameter_set: np.ndarray
    set_names: list[str]
    conductivities_s_per_m: dict[int, tuple[float, float]]
    nonconducting_tags: tuple[int, ...]
    region_names: list[str]
    node_region: np.ndarray
    spacing_mm: float
    mean_edge_mm: float
    initial_states: np.ndarray | None = None
    record: dict = field(default_factory=dict)

    def problem_kwargs(self) -> dict:
        """Keyword arguments for :class:`~cardiotwin.solvers.monodomain.MonodomainProblem`
        (model, conductivities, non-conducting tags, parameter table and sets)."""
        return {
            "model": self.model,
            "conductivities_s_per_m": dict(self.conductivities_s_per_m),
            "nonconducting_regions": self.nonconducting_tags,
            "parameters": self.parameters,
            "parameter_set": np.where(self.parameter_set < 0, 0, self.parameter_set),
        }

    def initial_state(self, problem) -> np.ndarray:
        """(n_states, N·B) initial state of ``problem``'s tissue nodes: each node its
        parameter set's pre-paced state (the model's default state without pre-pacing)."""
        if self.initial_states is None:
            return problem.initial_state()
        sets = problem.parameter_sets()
        return np.ascontiguousarray(self.initial_states[:, sets])

    def region_of_tag(self, tag: int) -> str | None:
        return self.record["tags"].get(int(tag))


# --- nodes between tissues ---------------------------------------------------------------------


def node_regions(
    mesh: Mesh,
    region_of_tag: dict[int, int],
    conducting: Sequence[bool],
    rule: str = "majority",
    priority: Sequence[int] = (),
) -> np.ndarray:
    """The region (an index) of every mesh node from its elements' tags; −1 for nodes that
    touch no conducting element.

    ``region_of_tag``: element tag → region index; ``conducting[r]``: whether region r
    conducts; ``priority``: region indices, first wins (ties of ``majority``; the whole rule
    for ``priority``). ``majority``: the conducting region with the largest summed volume of
    the elements around the node.
    """
    tags = np.unique(mesh.region)
    unknown = [int(t) for t in tags if int(t) not in region_of_tag]
    if unknown:
        raise TissueError(f"mesh element tags {unknown} are not in any tissue region")
    n_regions = len(conducting)
    element_region = np.zeros(mesh.n_elements, dtype=np.int64)
    for tag, r in region_of_tag.items():
        element_region[mesh.region == tag] = r
    keep = np.asarray(conducting, dtype=bool)[element_region]
    volume = np.abs(mesh.signed_volumes_mm3())[keep]
    corners = mesh.tets[keep]
    weight = np.zeros((mesh.n_points, n_regions))
    np.add.at(
        weight, (corners.reshape(-1), np.repeat(element_region[keep], 4)), np.repeat(volume, 4)
    )
    rank = np.full(n_regions, n_regions, dtype=np.int64)  # regions not listed rank last
    for position, r in enumerate(priority):
        rank[r] = min(rank[r], position)
    touched = weight > 0
    if rule == "majority":
        # largest volume; among equal volumes (to 1e-9) the best-ranked region
        best = weight.max(axis=1, keepdims=True)
        candidates = touched & (weight >= best * (1 - 1e-9))
    elif rule == "priority":
        candidates = touched
    else:
        raise TissueError(f"node_rule must be 'majority' or 'priority', got {rule!r}")
    score = np.where(candidates, rank[None, :] * (n_regions + 1) + np.arange(n_regions), np.inf)
    out = np.argmin(score, axis=1)
    out[~touched.any(axis=1)] = -1
    return out.astype(np.int64)


# --- mesh spacing, caches ----------------------------------------------------------------------


def mesh_spacing_mm(mesh: Mesh, elements: np.ndarray | None = None) -> tuple[float, float]:
    """(spacing, mean element edge) of the (conducting) ``elements`` (a mask), mm.

    Spacing: (6 V̄)^(1/3) for the mean element volume V̄, the spacing of a box mesh of Kuhn
    tetrahedra (6 per cube) with elements of that volume. Exact for box meshes (the
    calibration strip is one), 0.89 ℓ for regular tetrahedra of edge ℓ, and free of the
    boundary bias of a volume-per-node measure on thin walls.
    """
    keep = np.ones(mesh.n_elements, dtype=bool) if elements is None else np.asarray(elements)
    tets = mesh.tets[keep]
    if tets.size == 0:
        raise TissueError("the mesh has no conducting elements")
    mean_volume = float(np.abs(mesh.signed_volumes_mm3()[keep]).mean())
    x = mesh.points_mm
    pairs = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    edge_sum = sum(
        float(np.linalg.norm(x[tets[:, a]] - x[tets[:, b]], axis=1).sum()) for a, b in pairs
    )
    return (6.0 * mean_volume) ** (1.0 / 3.0), edge_sum / (6 * tets.shape[0])


def cache_dir(config: TissueConfig) -> Path:
    if config.cache_dir:
        return Path(config.cache_dir)
    env = os.environ.get("CARDIOTWIN_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cardiotwin"


def _key(*items) -> str:
    return hashlib.sha256(repr(items).encode()).hexdigest()[:24]


def _read_json_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and data.get("format") == CACHE_FORMAT else {}
    except (OSError, ValueError):
        return {}  # absent or damaged: recompute (the cache is only a cache)


# --- conductivity ------------------------------------------------------------------------------


def _cv_bracket(runs: list[tuple[float, float]], target: float):
    """The closest propagating runs (σ, CV) on either side of ``target``, or None."""
    below = [r for r in runs if r[1] < target]
    above = [r for r in runs if r[1] > target]
    if not below or not above:
        return None
    low, high = max(below, key=lambda r: r[0]), min(above, key=lambda r: r[0])
    return (low, high) if low[0] < high[0] else None


def _inside(bracket, target: float) -> float:
    """σ inside a bracket: log CV interpolated linearly in log σ, kept off the ends (at
    least a fifth of the bracket from each, in log σ) so that it shrinks every run even
    where CV(σ) bends sharply."""
    (s0, c0), (s1, c1) = bracket
    t = math.log(target / c0) / math.log(c1 / c0)
    t = min(0.8, max(0.2, t))
    return s0 * (s1 / s0) ** t


def calibrated_sigma(
    model: str,
    target_cv_m_per_s: float,
    spacing_mm: float,
    simulation: SimulationConfig,
    *,
    rel_tol: float = 0.02,
    cache: Path | None = None,
    max_runs: int = 12,
) -> dict:
    """σ (S/m) giving ``target_cv_m_per_s`` on a strip of spacing ``spacing_mm`` with the
    simulation's dt, mass and diffusion scheme, cached per (model, spacing, dt, numerics,
    target).

    Each strip run is :func:`~cardiotwin.solvers.calibration.strip_conduction_velocity`. The
    update is a secant step in log σ – log CV: CV ∝ σ^p with p = ½ only when the upstroke is
    resolved; on coarse lumped meshes p is larger (0.88 measured for TP06 at 0.4 mm), and the
    fixed ½ of :func:`~cardiotwin.solvers.calibration.calibrate_conductivity` then converges
    too slowly to reach 2 % in 10 runs. The exponent is measured from the last two runs.
    Once runs on both sides of the target exist and the secant would leave that bracket,
    the next σ is interpolated inside it instead: just above block CV climbs steeply with σ
    (at 0.5 mm, dt 0.02 ms the border zone's transverse CV grows as σ^3.4), and the secant
    stepped over the target from side to side until the runs ran out.
    """
    from cardiotwin.solvers.calibration import strip_conduction_velocity

    dx = round(float(spacing_mm), 4)
    key = _key(
        model,
        dx,
        simulation.dt_ms,
        simulation.mass,
        simulation.diffusion,
        round(target_cv_m_per_s, 6),
        rel_tol,
        MIN_CV_M_PER_S,
    )
    path = None if cache is None else cache / "cv_calibration.json"
    stored = {} if path is None else _read_json_cache(path)
    if key in stored.get("entries", {}):
        return stored["entries"][key]
    sigma = 0.1334 * (target_cv_m_per_s / 0.6) ** 2  # N-version σ gives ~0.6 m/s when resolved
    propagating: list[tuple[float, float]] = []  # (σ, CV)
    failing: list[float] = []  # σ whose wave did not reach the end of the strip
    reached = False
    for _ in range(max_runs):
        try:
            cv = strip_conduction_velocity(
                model, sigma, dx, simulation.dt_ms, mass=simulation.mass,
                diffusion=simulation.diffusion, min_cv_m_per_s=MIN_CV_M_PER_S,
            )  # fmt: skip
        except RuntimeError:  # the wave failed: σ too low for this mesh
            cv = 0.0
        if cv <= 0.0:
            failing.append(sigma)
            lowest = min((s for s, _ in propagating), default=None)
            sigma = 4.0 * sigma if lowest is None else math.sqrt(sigma * lowest)
            continue
        propagating.append((sigma, cv))
        if abs(cv / target_cv_m_per_s - 1.0) <= rel_tol:
            reached = True
            break
        block = max(failing, default=0.0)
        if cv > target_cv_m_per_s and block and sigma / block < 1.03:
            break  # slower than this, the wave blocks on this mesh: the target is not reachable
        exponent = 0.5
        if len(propagating) >= 2:
            (s0, c0), (s1, c1) = propagating[-2], propagating[-1]
            if s0 != s1:
                exponent = min(1.5, max(0.3, math.log(c1 / c0) / math.log(s1 / s0)))
        proposal = sigma * min(4.0, max(0.25, (target_cv_m_per_s / cv) ** (1.0 / exponent)))
        bracket = _cv_bracket(propagating, target_cv_m_per_s)
        if bracket is not None and not bracket[0][0] < proposal < bracket[1][0]:
            sigma = _inside(bracket, target_cv_m_per_s)  # the secant left the bracket
        else:
            sigma = proposal if proposal > block else math.sqrt(sigma * block)
    if not reached:
        slowest = min(propagating, key=lambda p: p[1], default=None)
        if slowest is None or slowest[1] < target_cv_m_per_s or not failing:
            raise TissueError(
                f"CV calibration of {model} did not reach {target_cv_m_per_s} m/s within "
                f"{rel_tol:.0%} in {max_runs} strip runs at {dx} mm (runs: "
                f"{[(round(s, 5), round(c, 4)) for s, c in propagating]}; blocked at "
                f"{[round(s, 5) for s in failing]})"
            )
        # the slowest conduction this mesh can carry is faster than the target: take it
        sigma, cv = min((p for p in propagating if p[0] > max(failing)), key=lambda p: p[0])
        log.warning(
            "%s: %.3g m/s is slower than a %.3g mm mesh conducts (it blocks below σ %.4g "
            "S/m); using the slowest conduction it carries, %.3g m/s", model,
            target_cv_m_per_s, dx, sigma, cv,
        )  # fmt: skip
    entry = {
        "model": model,
        "spacing_mm": dx,
        "dt_ms": simulation.dt_ms,
        "mass": simulation.mass,
        "diffusion": simulation.diffusion,
        "target_cv_m_per_s": target_cv_m_per_s,
        "sigma_s_per_m": sigma,
        "cv_m_per_s": cv,
        "reached": reached,
        "strip_runs": len(propagating) + len(failing),
    }
    log.info(
        "calibrated %s: CV %.3f m/s at %.3g mm, dt %g ms -> sigma %.4g S/m (%d runs)",
        model,
        cv,
        dx,
        simulation.dt_ms,
        sigma,
        len(propagating) + len(failing),
    )
    if path is not None:
        stored = _read_json_cache(path) or {"format": CACHE_FORMAT, "entries": {}}
        stored["entries"][key] = entry
        write_json_atomic(stored, path)
    return entry


# --- pre-pacing --------------------------------------------------------------------------------


def prepaced_states(
    model: IonicModel,
    parameters: np.ndarray,
    bcl_ms: float,
    dt_ms: float,
    config,
    cache: Path | None = None,
) -> tuple[np.ndarray, list[int]]:
    """(n_states, n_sets) state of each parameter set's single cell paced at ``bcl_ms`` to
    steady state (no state changes by more than ``rel_tol`` × (|y| + 1e-6) over
    ``block_beats`` beats, at most ``max_beats``), taken just before the next stimulus; and
    the beats used. A cell in alternans compares like beats when ``block_beats`` is even.

    With ``hold_slow_states`` the model's ``slow_states`` (Courtemanche: Na_i, K_i) are put
    back to their initial values after every block and left out of the test: they drift
    for many minutes of pacing (the fibrotic atrial cell until it no longer fires), far
    longer than any tissue run, while the other states settle in tens of beats.

    Cached per (model, parameters, bcl, dt, settings)."""
    from cardiotwin.solvers.cell import pace_cell, stimulus_threshold

    parameters = np.ascontiguousarray(parameters, dtype=np.float64)
    held_names = model.slow_states if config.hold_slow_states else ()
    held = np.array([model.state_index(name) for name in held_names], dtype=np.intp)
    tested = np.setdiff1d(np.arange(model.n_states), held)
    key = _key(
        model.name,
        model.module,
        parameters.tobytes().hex(),
        float(bcl_ms),
        float(dt_ms),
        config.block_beats,
        config.max_beats,
        config.rel_tol,
        PREPACING_ATOL,
        *((("held",) + held_names) if held_names else ()),  # keys without: unchanged
    )
    path = None if cache is None else cache / f"prepaced-{key}.npz"
    if path is not None and path.is_file():
        try:
            with np.load(path) as data:
                return data["states"], [int(b) for b in data["beats"]]
        except (OSError, ValueError, KeyError):
            pass  # damaged cache entry: pace again
    n_sets = parameters.shape[1]
    if held_names:
        log.info(
            "pre-pacing %s at %g ms holds %s at their initial values",
            model.name, bcl_ms, ", ".join(held_names),
        )  # fmt: skip
    states = np.empty((model.n_states, n_sets))
    beats_used = []
    for s in range(n_sets):
        p = parameters[:, s]
        y = model.initial_state(1)[:, 0]
        amplitude = 2.0 * stimulus_threshold(model, dt_ms=dt_ms, parameters=p, initial_state=y)
        beats = 0
        while beats < config.max_beats:
            n = min(config.block_beats, config.max_beats - beats)
            run = pace_cell(
                model,
                beats=n,
                bcl_ms=bcl_ms,
                dt_ms=dt_ms,
                stim_amplitude=amplitude,
                parameters=p,
                initial_state=y,
            )
            final = run.final_state
            final[held] = y[held]
            # relative change, with an absolute floor so that tiny states (gates near 0,
            # Ca_i ~1e-4 mM) do not decide alone
            change = np.abs(final - y)[tested] / (np.abs(y[tested]) + PREPACING_ATOL)
            y = final
            beats += n
            if not np.all(np.isfinite(y)):
                raise TissueError(
                    f"pre-pacing parameter set {s} of {model.name} at {bcl_ms} ms diverged "
                    f"after {beats} beats; check the parameter scaling or lower dt"
                )
            if change.max() <= config.rel_tol:
                break
        else:
            log.warning(
                "parameter set %d of %s: not at steady state after %d beats "
                "(largest relative change per block %.2g)",
                s,
                model.name,
                beats,
                float(change.max()),
            )
        states[:, s] = y
        beats_used.append(beats)
    if path is not None:
        from cardiotwin.files import write_atomic

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, states=states, beats=np.array(beats_used))

        write_atomic(path, write)
    return states, beats_used


# --- the whole tissue --------------------------------------------------------------------------


def _chamber_model(chamber: ChamberTissueConfig, has_transmural: bool):
    """(base model, {layer name: variant model}) of the chamber's model setting."""
    if chamber.model == "tp06":
        if has_transmural and chamber.transmural.enabled:
            return get_model("tp06-epi"), {k: get_model(v) for k, v in TP06_VARIANTS.items()}
        return get_model("tp06-epi"), {"epi": get_model("tp06-epi")}
    try:
        model = get_model(chamber.model)
    except UnknownNameError as exc:
        raise TissueError(f"tissue model: {exc} (or 'tp06' for endo/M/epi variants)") from None
    return model, {"all": model}


def _layer_of_nodes(mesh: Mesh, layers: dict, chamber: ChamberTissueConfig) -> np.ndarray:
    names = list(layers)
    if names == ["epi"] or names == ["all"]:
        return np.zeros(mesh.n_points, dtype=np.int64)
    t = np.asarray(mesh.point_data[TRANSMURAL_FIELD], dtype=np.float64).reshape(-1)
    low, high = chamber.transmural.endo_below, chamber.transmural.epi_from
    if not low <= high:
        raise TissueError(
            f"tissue transmural: endo_below ({low}) must not exceed epi_from ({high})"
        )
    layer = np.full(mesh.n_points, names.index("m"), dtype=np.int64)
    layer[t < low] = names.index("endo")
    layer[t >= high] = names.index("epi")
    return layer


def build_tissue(
    mesh: Mesh,
    chamber: ChamberTissueConfig,
    tissue_config: TissueConfig,
    simulation: SimulationConfig,
    *,
    bcl_ms: float,
    prepace: bool | None = None,
) -> Tissue:
    """The tissue of ``mesh`` for ``chamber`` (see the module docstring). ``bcl_ms``: the S1
    cycle length to pre-pace at; ``prepace`` overrides ``tissue.prepacing.enabled``."""
    names = list(chamber.regions)
    regions = [chamber.regions[n] for n in names]
    region_of_tag: dict[int, int] = {}
    for i, r in enumerate(regions):
        if r.tag in region_of_tag:
            other = names[region_of_tag[r.tag]]
            raise TissueError(f"tissue regions {other!r} and {names[i]!r} share tag {r.tag}")
        region_of_tag[r.tag] = i
    conducting = [r.conducting for r in regions]
    present = {int(t) for t in np.unique(mesh.region)}
    missing = sorted(present - set(region_of_tag))
    if missing:
        raise TissueError(
            f"mesh element tags {missing} have no tissue region; add them to "
            f"tissue.<chamber>.regions (known tags: {sorted(region_of_tag)})"
        )
    if not any(conducting[region_of_tag[t]] for t in present):
        raise TissueError(
            "the mesh has no conducting tissue: every element is tagged "
            + ", ".join(f"{names[region_of_tag[t]]} ({t})" for t in sorted(present))
        )
    priority = [names.index(n) for n in tissue_config.node_priority if n in names]
    node_region = node_regions(mesh, region_of_tag, conducting, tissue_config.node_rule, priority)

    has_transmural = TRANSMURAL_FIELD in mesh.point_data
    model, layers = _chamber_model(chamber, has_transmural)
    try:  # before calibrating: a precision the model cannot run is a configuration error
        state_layout(model, simulation.precision, simulation.dt_ms)
    except PrecisionError as exc:
        raise TissueError(f"simulation.precision: {exc}") from None
    layer = _layer_of_nodes(mesh, layers, chamber)
    table = model.parameter_table()
    set_index = {}
    set_names = []
    parameter_set = np.full(mesh.n_points, -1, dtype=np.int32)
    used_regions = sorted({int(r) for r in np.unique(node_region) if r >= 0})
    for r in used_regions:
        for li, (layer_name, variant) in enumerate(layers.items()):
            nodes = (node_region == r) & (layer == li)
            if not nodes.any():
                continue
            values = variant.default_parameters()
            for name, factor in regions[r].parameter_scale.items():
                try:
                    values[variant.parameter_index(name)] *= float(factor)
                except UnknownNameError as exc:
                    raise TissueError(
                        f"tissue region {names[r]!r}: parameter_scale names {name!r}, but "
                        f"{exc}. Set parameter_scale for this model"
                    ) from None
            s = table.add_values(**dict(zip(model.parameter_names, values, strict=True)))
            label = names[r] if layer_name == "all" else f"{names[r]}/{layer_name}"
            if s not in set_index:
                set_index[s] = label
            parameter_set[nodes] = s
    set_names = [set_index.get(s, "default") for s in range(len(table))]

    keep = np.isin(mesh.region, [t for t, r in region_of_tag.items() if conducting[r]])
    # Lesions were conducting tissue before ablation: counting them keeps an ablated mesh at
    # its own spacing, so it is simulated with the σ its induction had (not recalibrated at a
    # spacing shifted by the elements the lesions took).
    spacing, mean_edge = mesh_spacing_mm(mesh, keep | (mesh.region == LESION))
    cache = cache_dir(tissue_config)
    sigma = _region_sigmas(names, regions, model, layers, spacing, simulation, tissue_config, cache)
    conductivities = {
        r.tag: tuple(sigma[n]["sigma_s_per_m"])
        for n, r in zip(names, regions, strict=True)
        if r.conducting and r.tag in present
    }

    do_prepace = tissue_config.prepacing.enabled if prepace is None else prepace
    states, beats = None, []
    if do_prepace:
        states, beats = prepaced_states(
            model, table.as_array(), bcl_ms, simulation.dt_ms, tissue_config.prepacing, cache
        )
    record = {
        "model": model.name,
        "variants": {k: v.name for k, v in layers.items()},
        "tags": {int(t): names[r] for t, r in region_of_tag.items()},
        "parameter_sets": [
            {"name": set_names[s], "prepaced_beats": beats[s] if beats else 0}
            for s in range(len(table))
        ],
        "node_rule": tissue_config.node_rule,
        "nodes_per_region": {
            names[r]: int(np.count_nonzero(node_region == r)) for r in used_regions
        },
        "spacing_mm": spacing,
        "mean_edge_mm": mean_edge,
        "conductivity": sigma,
        "prepacing_bcl_ms": bcl_ms if do_prepace else None,
    }
    return Tissue(
        model=model,
        parameters=table,
        parameter_set=parameter_set,
        set_names=set_names,
        conductivities_s_per_m=conductivities,
        nonconducting_tags=tuple(sorted(r.tag for r in regions if not r.conducting)),
        region_names=names,
        node_region=node_region,
        spacing_mm=spacing,
        mean_edge_mm=mean_edge,
        initial_states=states,
        record=record,
    )


def _cell_model(variant: IonicModel, scale: dict) -> str:
    """A registered model name for ``variant`` with ``scale`` applied (for strip runs)."""
    from cardiotwin.solvers.ionic import register

    values = variant.default_parameters()
    for name, factor in scale.items():
        values[variant.parameter_index(name)] *= float(factor)
    name = f"cell-{_key(variant.module, values.tobytes().hex())[:12]}"
    overrides = dict(zip(variant.parameter_names, map(float, values), strict=True))
    register(name, variant.module.rsplit(".", 1)[1], overrides)
    return name


def strip_cv(model: str, sigma: float, spacing_mm: float, simulation, cache: Path | None):
    """CV (m/s) on a calibration strip (0 where the wave fails), cached."""
    from cardiotwin.solvers.calibration import strip_conduction_velocity

    dx = round(float(spacing_mm), 4)
    key = "cv:" + _key(
        model, dx, simulation.dt_ms, simulation.mass, simulation.diffusion, float(sigma),
        MIN_CV_M_PER_S,
    )  # fmt: skip
    path = None if cache is None else cache / "cv_calibration.json"
    stored = {} if path is None else _read_json_cache(path)
    if key in stored.get("entries", {}):
        return stored["entries"][key]
    try:
        cv = strip_conduction_velocity(
            model, sigma, dx, simulation.dt_ms, mass=simulation.mass,
            diffusion=simulation.diffusion, min_cv_m_per_s=MIN_CV_M_PER_S,
        )  # fmt: skip
    except RuntimeError:  # no propagation
        cv = 0.0
    if path is not None:
        stored = _read_json_cache(path) or {"format": CACHE_FORMAT, "entries": {}}
        stored["entries"][key] = cv
        write_json_atomic(stored, path)
    return cv


def _region_sigmas(names, regions, model, layers, spacing, simulation, config, cache) -> dict:
    """σ (along, across) of every conducting region with how it was obtained.

    A region given as ``sigma_scale`` × another region's σ: with ``scaled_sigma:
    match_cv`` (default) the scale is applied at ``reference_spacing_mm`` (a resolved
    mesh), the region's CV measured there with its own cells, and its σ on this mesh
    calibrated to that CV. On coarse meshes CV is not ∝ √σ (the upstroke is not resolved):
    scaling σ directly there slows conduction more than the scale means, down to block
    (border zone across the fibres, σ × 0.1, blocks at 0.4 mm with TP06 but conducts at
    0.05 m/s at 0.1 mm). ``scaled_sigma: scale`` applies the factor on the mesh as given.
    """
    out: dict[str, dict] = {}
    memo: dict[tuple, list[float]] = {}
    base_variant = layers.get("epi", next(iter(layers.values())))
    cells = {}

    def cell(i: int) -> str:
        if i not in cells:
            cells[i] = _cell_model(base_variant, regions[i].parameter_scale)
        return cells[i]

    def calibrate(i: int, targets, dx: float) -> list[float]:
        return [
            calibrated_sigma(cell(i), cv, dx, simulation, rel_tol=config.cv_rel_tol, cache=cache)[
                "sigma_s_per_m"
            ]
            for cv in targets
        ]

    def sigma_at(i: int, dx: float, seen: tuple[str, ...]) -> list[float]:
        name, r = names[i], regions[i]
        if (name, dx) in memo:
            return memo[(name, dx)]
        given = [
            k for k in ("cv_m_per_s", "sigma_s_per_m", "sigma_scale") if getattr(r, k) is not None
        ]
        if len(given) != 1:
            raise TissueError(
                f"tissue region {name!r} conducts and needs exactly one of cv_m_per_s, "
                f"sigma_s_per_m, sigma_scale (+ relative_to); got {given or 'none'}"
            )
        if r.sigma_s_per_m is not None:
            value = [float(v) for v in r.sigma_s_per_m]
        elif r.cv_m_per_s is not None:
            if not config.calibrate_cv:
                raise TissueError(
                    f"tissue region {name!r} gives cv_m_per_s but calibrate_cv is off; give "
                    "sigma_s_per_m instead"
                )
            value = calibrate(i, r.cv_m_per_s, dx)
        else:
            if r.relative_to not in names:
                raise TissueError(
                    f"tissue region {name!r}: relative_to {r.relative_to!r} is not a region "
                    f"(regions: {', '.join(names)})"
                )
            if r.relative_to in seen:
                raise TissueError(f"tissue regions refer to each other: {' -> '.join(seen)}")
            base = names.index(r.relative_to)
            reference = config.reference_spacing_mm
            if (
                config.scaled_sigma == "scale"
                or abs(dx - reference) < 1e-9
                or not (config.calibrate_cv)
            ):
                value = [
                    b * f
                    for b, f in zip(sigma_at(base, dx, (*seen, name)), r.sigma_scale, strict=True)
                ]
            else:
                scaled = [
                    b * f
                    for b, f in zip(
                        sigma_at(base, reference, (*seen, name)), r.sigma_scale, strict=True
                    )
                ]
                targets = [strip_cv(cell(i), s, reference, simulation, cache) for s in scaled]
                if min(targets) <= 0:
                    raise TissueError(
                        f"tissue region {name!r}: σ {scaled} S/m does not conduct even at "
                        f"{reference} mm; raise sigma_scale"
                    )
                out.setdefault(name, {})["reference_cv_m_per_s"] = targets
                value = calibrate(i, targets, dx)
        if not all(np.isfinite(v) and v > 0 for v in value):
            raise TissueError(f"tissue region {name!r}: σ must be positive, got {value}")
        memo[(name, dx)] = value
        return value

    for i, r in enumerate(regions):
        if not r.conducting:
            continue
        name = names[i]
        value = sigma_at(i, spacing, (name,))
        entry = out.setdefault(name, {})
        entry["sigma_s_per_m"] = value
        if r.sigma_s_per_m is not None:
            entry["how"] = "given"
        elif r.cv_m_per_s is not None:
            entry["how"] = f"calibrated to {list(r.cv_m_per_s)} m/s on a {spacing:.3g} mm strip"
        elif "reference_cv_m_per_s" in entry:
            entry["how"] = (
                f"{list(r.sigma_scale)} x {r.relative_to} at {config.reference_spacing_mm} mm, "
                f"then calibrated to that CV on a {spacing:.3g} mm strip"
            )
        else:
            entry["how"] = f"{list(r.sigma_scale)} x {r.relative_to}"
        if config.calibrate_cv:  # what the mesh conducts at, measured (cached) on its strip
            entry["strip_cv_m_per_s"] = [
                strip_cv(cell(i), v, spacing, simulation, cache) for v in value
            ]
    return out
