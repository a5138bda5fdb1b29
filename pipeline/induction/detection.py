"""Re-entry detection and VT characterisation from per-beat activation times.

Input per trial: the last ``keep`` activation times of every tissue node (a
:class:`~cardiotwin.solvers.beats.TrialMonitor` ring), the time of the last stimulus, the end
of the observation and whether the tissue came to rest. All analysis is host work after the
run.

- **Induced** (:func:`analyse_trial`): activity lasted ``sustained_after_ms`` after the last
  stimulus (the tissue never came to rest, *and* a wave still moved at the end: some node
  activated within one mean edge at ``moving_wave_cv_m_per_s`` of the end; a wave that died
  just before the end leaves tissue repolarising, which is not re-entry) *and* the nodes
  that were active at the end had at least ``min_cycles`` re-entrant beats after the paced
  one. **Cycle length**: median over those nodes of the interval between their last two
  beats; the circuit is **stable** (monomorphic) when, counting re-entrant beats only, the
  last two intervals agree within 10 % at ≥ 80 % of the nodes (None: too few beats observed
  to say).
- **One cycle's activation map**: a re-entrant cycle has no start. It is cut where the healthy
  tissue is quietest (the wave is then inside the border zone or scar channel): the phase
  (mod CL) at which the fewest healthy nodes activate. Each node's activation in the cycle
  ending at that cut gives the map (ms from the cycle's start).
- **Exit site**: the healthy node activated first in that cycle — where the wave breaks out of
  the channel into healthy tissue (``exit_adjacent_to_border_zone``: within two mean edges of
  border zone; a functional rotor in healthy tissue has none).
- **Slowest segment**: local conduction velocity per element, 1/|∇t| of the cycle's map
  (elements whose nodes activated within half a cycle of each other); the largest connected
  group of the slowest 5 % (above 0.02 m/s, below that is block), its centroid.
- **Phase singularities** (:func:`phase_singularities`): phase from activation times,
  φ = 2π (t − t_n)/(t_{n+1} − t_n) between consecutive beats, sampled 8 times over one cycle
  ending 1.2 cycle lengths before the run's end (:func:`phase_window`: every node's next
  beat after each sample is then on record; over the last cycle the nodes just activated at
  the core have none, and the singularity could be missed) on the surface triangles; a
  triangle whose phase winds by ±2π holds a singularity;
  its chirality is the sense the wave turns, +1 counter-clockwise seen from outside the
  tissue (along the triangles' outward normals). Singularities
  seen in at least half of the samples are reported. A circuit around scar (anatomical
  re-entry) winds around a hole and shows none; a functional rotor shows one.
- **Unique VTs** (:func:`cluster_vts`): induced trials are the same VT when their exits lie
  within ``same_vt_exit_mm``, cycle lengths within ``same_vt_cycle_length`` and the circular
  correlation of their phase maps |⟨exp(i(φ_a − φ_b))⟩| is at least
  ``same_vt_map_similarity`` (shift-invariant; a circuit turning the other way differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cardiotwin.meshing.mesh import boundary_triangles
from cardiotwin.solvers.fem import element_gradients

if TYPE_CHECKING:  # the configuration model (pydantic) is not needed to run
    from cardiotwin.pipeline.config import DetectionConfig

#: samples of the last cycle for phase singularities
PHASE_SAMPLES = 8
#: slower than this (m/s) is conduction block, not slow conduction
BLOCK_CV_M_PER_S = 0.02


@dataclass
class Geometry:
    """The tissue of one problem as detection needs it (tissue-node numbering)."""

    points_mm: np.ndarray
    tets: np.ndarray
    healthy: np.ndarray  # (N,) bool
    border: np.ndarray  # (N,) bool
    adjacency: sp.csr_matrix
    triangles: np.ndarray  # surface triangles, outward normals
    gradients: np.ndarray  # (m, 4, 3) 1/mm
    centres_mm: np.ndarray  # (m, 3)
    spacing_mm: float  # mean element edge

    @classmethod
    def of(cls, problem, tissue) -> Geometry:
        region = tissue.node_region[problem.tissue_nodes]
        names = tissue.region_names
        healthy = np.isin(region, [names.index("healthy")] if "healthy" in names else [])
        # remodelled tissue that conducts: in an atrium dense fibrosis ("dense_scar") is
        # among it (a ventricle's tissue has no dense scar: it does not conduct)
        remodelled = [
            i for i, n in enumerate(names) if n in ("border_zone", "fibrosis", "dense_scar")
        ]
        border = np.isin(region, remodelled)
        tets = problem.tets
        n = problem.n_nodes
        pairs = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
        rows = np.concatenate([tets[:, a] for a, b in pairs] + [tets[:, b] for a, b in pairs])
        cols = np.concatenate([tets[:, b] for a, b in pairs] + [tets[:, a] for a, b in pairs])
        adjacency = sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
        adjacency.data[:] = 1
        triangles, _ = boundary_triangles(tets)
        gradients, _ = element_gradients(problem.points_mm, tets)
        return cls(
            points_mm=problem.points_mm,
            tets=tets,
            healthy=healthy,
            border=border,
            adjacency=adjacency,
            triangles=triangles,
            gradients=gradients,
            centres_mm=problem.points_mm[tets].mean(axis=1),
            spacing_mm=float(tissue.mean_edge_mm),
        )


@dataclass
class TrialAnalysis:
    """Re-entry facts of one trial (times in the trial's ms); see the module docstring."""

    induced: bool
    reason: str
    cycle_length_ms: float | None = None
    stable: bool | None = None
    reentrant_beats: int = 0
    activation_ms: np.ndarray | None = None  # (N,) one cycle, from its start; NaN: none
    cycle_start_ms: float | None = None
    exit_node: int | None = None
    exit_mm: list | None = None
    exit_adjacent_to_border_zone: bool | None = None
    exit_to_border_zone_mm: float | None = None
    slowest_mm: list | None = None
    slowest_cv_m_per_s: float | None = None
    phase_singularities: list = field(default_factory=list)
    beats_ms: np.ndarray | None = None  # (N, keep) the trial's kept activation times

    def phase(self) -> np.ndarray:
        """(N,) complex unit phase of the cycle's map (0 where a node has none)."""
        if self.activation_ms is None or not self.cycle_length_ms:
            return np.zeros(0, dtype=complex)
        phi = 2 * np.pi * self.activation_ms / self.cycle_length_ms
        return np.where(np.isnan(phi), 0.0, np.exp(1j * np.nan_to_num(phi)))


def _beat_in(beats: np.ndarray, low: float, high: float) -> np.ndarray:
    """(N,) the (last) activation time in [low, high) per node, NaN where none."""
    inside = (beats >= low) & (beats < high)
    masked = np.where(inside, beats, -np.inf)
    out = masked.max(axis=1)
    return np.where(np.isfinite(out), out, np.nan)


def analyse_trial(
    beats_ms: np.ndarray,
    last_onset_ms: float,
    end_ms: float,
    came_to_rest: bool,
    geometry: Geometry,
    config: DetectionConfig,
    sustained_after_ms: float,
) -> TrialAnalysis:
    """Whether the trial induced sustained re-entry, and its VT's features (module doc)."""
    if came_to_rest:
        return TrialAnalysis(False, "the tissue came to rest after the last stimulus")
    if end_ms < last_onset_ms + sustained_after_ms - 1e-6:
        return TrialAnalysis(False, "observation ended before the sustained-activity time")
    after = np.where(beats_ms > last_onset_ms, beats_ms, np.nan)
    latest = float(np.nanmax(after)) if np.isfinite(after).any() else last_onset_ms
    silent_ms = end_ms - latest
    moving_ms = geometry.spacing_mm / config.moving_wave_cv_m_per_s  # mm / (mm/ms)
    if silent_ms > moving_ms:
        return TrialAnalysis(
            False,
            f"the wave had stopped: no node activated in the last {silent_ms:.0f} ms of the "
            f"observation (> {moving_ms:.0f} ms, one mean edge at "
            f"{config.moving_wave_cv_m_per_s} m/s); the tissue was repolarising",
        )
    n_after = np.count_nonzero(~np.isnan(after), axis=1)
    last = np.nanmax(np.where(np.isnan(after), -np.inf, after), axis=1)
    # nodes active in the final part of the observation
    recent = np.isfinite(last) & (last >= end_ms - 0.5 * sustained_after_ms)
    if not recent.any():
        return TrialAnalysis(False, "activity at the end but no node activated recently")
    reentrant = int(np.median(n_after[recent])) - 1
    if reentrant < config.min_cycles:
        return TrialAnalysis(
            False,
            f"activity lasted, but the active nodes had {reentrant} re-entrant beat(s) after "
            f"the paced one (< {config.min_cycles})",
            reentrant_beats=max(reentrant, 0),
        )
    # intervals between re-entrant beats only (the first beat after the last stimulus is the
    # paced one): the cycle length from the last two, stability from the last three
    ordered = np.sort(np.where(np.isnan(after), -np.inf, after), axis=1)
    with np.errstate(invalid="ignore"):
        d_last = ordered[:, -1] - ordered[:, -2]
        d_prev = ordered[:, -2] - ordered[:, -3]
    both = recent & (n_after >= 3) & np.isfinite(d_last)
    if not both.any():
        both = recent & (n_after >= 2) & np.isfinite(d_last)
    cl = float(np.median(d_last[both]))
    three = both & (n_after >= 4) & np.isfinite(d_prev)
    stable = None
    if three.sum() >= 0.5 * both.sum() and three.any():
        stable = bool(np.mean(np.abs(d_last[three] - d_prev[three]) <= 0.1 * cl) >= 0.8)
    result = TrialAnalysis(True, "sustained re-entry", cl, stable, reentrant, beats_ms=beats_ms)
    _cycle_map(result, beats_ms, end_ms, geometry)
    _slowest(result, geometry)
    result.phase_singularities = phase_singularities(beats_ms, *phase_window(end_ms, cl), geometry)
    return result


def _cycle_map(result: TrialAnalysis, beats_ms, end_ms: float, geometry: Geometry) -> None:
    cl = result.cycle_length_ms
    # cut the cycle where the healthy tissue is quietest (the wave inside the channel)
    window_start = end_ms - cl
    last = _beat_in(beats_ms, window_start, end_ms)
    pool = geometry.healthy if geometry.healthy.any() else np.ones(last.size, dtype=bool)
    phases = (last[pool & ~np.isnan(last)] - window_start) / cl
    bins = 40
    if phases.size:
        counts = np.bincount(np.clip((phases * bins).astype(int), 0, bins - 1), minlength=bins)
        smooth = sum(np.roll(counts, k) for k in (-1, 0, 1))
        cut = window_start + (int(np.argmin(smooth)) + 0.5) / bins * cl
    else:
        cut = end_ms
    start = cut - cl
    activation = _beat_in(beats_ms, start, cut)
    result.cycle_start_ms = float(start)
    result.activation_ms = activation - start
    candidates = np.nonzero(pool & ~np.isnan(activation))[0]
    if candidates.size == 0:
        return
    exit_node = int(candidates[np.argmin(activation[candidates])])
    result.exit_node = exit_node
    result.exit_mm = [round(float(v), 3) for v in geometry.points_mm[exit_node]]
    if geometry.border.any():
        distance = np.linalg.norm(
            geometry.points_mm[geometry.border] - geometry.points_mm[exit_node], axis=1
        ).min()
        result.exit_to_border_zone_mm = round(float(distance), 3)
        result.exit_adjacent_to_border_zone = bool(distance <= 2.0 * geometry.spacing_mm)
    else:
        result.exit_adjacent_to_border_zone = False


def _slowest(result: TrialAnalysis, geometry: Geometry) -> None:
    t = result.activation_ms
    if t is None:
        return
    te = t[geometry.tets]
    valid = np.all(~np.isnan(te), axis=1)
    spread = np.where(valid[:, None], te, 0.0)
    valid &= (spread.max(axis=1) - spread.min(axis=1)) < 0.5 * result.cycle_length_ms
    if not valid.any():
        return
    grad = np.einsum("mk,mkj->mj", te[valid], geometry.gradients[valid])
    speed = 1.0 / np.maximum(np.linalg.norm(grad, axis=1), 1e-12)  # mm/ms = m/s
    elements = np.nonzero(valid)[0]
    conducting = speed >= BLOCK_CV_M_PER_S
    if not conducting.any():
        return
    threshold = np.percentile(speed[conducting], 5)
    slow = elements[conducting & (speed <= threshold)]
    # largest group of slow elements sharing nodes
    m = slow.size
    node_of = sp.csr_matrix(
        (np.ones(4 * m), (np.repeat(np.arange(m), 4), geometry.tets[slow].ravel())),
        shape=(m, geometry.points_mm.shape[0]),
    )
    link = (node_of @ node_of.T).tocsr()
    _, labels = sp.csgraph.connected_components(link, directed=False)
    biggest = np.argmax(np.bincount(labels))
    group = slow[labels == biggest]
    result.slowest_mm = [round(float(v), 3) for v in geometry.centres_mm[group].mean(axis=0)]
    result.slowest_cv_m_per_s = round(float(np.median(speed[np.isin(elements, group)])), 4)


def phase_window(end_ms: float, cycle_length_ms: float) -> tuple[float, float]:
    """The cycle the phase is sampled over: [end − 2.2 CL, end − 1.2 CL). Every sample then
    has each node's next beat on record (a local cycle up to 10 % longer than CL: the
    stability criterion's tolerance) and the one before it."""
    return end_ms - 2.2 * cycle_length_ms, end_ms - 1.2 * cycle_length_ms


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def phase_singularities(
    beats_ms: np.ndarray, start_ms: float, end_ms: float, geometry: Geometry
) -> list[dict]:
    """Phase singularities on the surface triangles over [start, end) (module docstring)."""
    triangles = geometry.triangles
    if triangles.size == 0 or not np.isfinite(start_ms):
        return []
    hits: list[tuple[np.ndarray, int]] = []
    for t in np.linspace(start_ms, end_ms, PHASE_SAMPLES, endpoint=False):
        before = np.where(beats_ms <= t, beats_ms, -np.inf).max(axis=1)
        after = np.where(beats_ms > t, beats_ms, np.inf).min(axis=1)
        ok = np.isfinite(before) & np.isfinite(after)
        phase = np.where(ok, 2 * np.pi * (t - before) / np.where(ok, after - before, 1.0), np.nan)
        p = phase[triangles]
        usable = ~np.isnan(p).any(axis=1)
        winding = (
            _wrap(p[:, 1] - p[:, 0]) + _wrap(p[:, 2] - p[:, 1]) + _wrap(p[:, 0] - p[:, 2])
        ) / (2 * np.pi)
        charge = np.rint(np.where(usable, winding, 0.0)).astype(int)
        # the phase falls along the direction the wave turns (later-activated nodes are
        # earlier in their cycle): a wave turning counter-clockwise winds the phase by −2π
        for tri in np.nonzero(charge != 0)[0]:
            hits.append(
                (geometry.points_mm[triangles[tri]].mean(axis=0), -int(np.sign(charge[tri])))
            )
    # group hits closer than 3 mm with the same chirality; keep the stable ones
    groups: list[dict] = []
    for position, chirality in hits:
        for g in groups:
            if g["chirality"] == chirality and np.linalg.norm(g["_sum"] / g["n"] - position) < 3.0:
                g["_sum"] += position
                g["n"] += 1
                break
        else:
            groups.append({"chirality": chirality, "_sum": position.copy(), "n": 1})
    out = []
    for g in groups:
        if g["n"] >= PHASE_SAMPLES // 2:
            centre = g["_sum"] / g["n"]
            out.append(
                {
                    "position_mm": [round(float(v), 3) for v in centre],
                    "chirality": g["chirality"],
                    "samples": g["n"],
                }
            )
    return out


@dataclass
class VT:
    """A unique VT: the first induced trial that showed it and the others that match it."""

    id: int
    analysis: TrialAnalysis
    trials: list = field(default_factory=list)  # (site name, coupling intervals or key)
    #: atria: phase winding (turns) round each opening (:mod:`.anatomy`); None: no loop
    openings: dict = field(default_factory=dict)


def same_vt(a: TrialAnalysis, b: TrialAnalysis, config: DetectionConfig) -> bool:
    """Whether two induced trials show the same VT (module docstring)."""
    if a.exit_mm is None or b.exit_mm is None:
        return False
    if np.linalg.norm(np.subtract(a.exit_mm, b.exit_mm)) > config.same_vt_exit_mm:
        return False
    if abs(a.cycle_length_ms - b.cycle_length_ms) > config.same_vt_cycle_length * max(
        a.cycle_length_ms, b.cycle_length_ms
    ):
        return False
    pa, pb = a.phase(), b.phase()
    both = (pa != 0) & (pb != 0)
    if not both.any():
        return False
    similarity = abs(np.mean(pa[both] * np.conj(pb[both])))
    return bool(similarity >= config.same_vt_map_similarity)


def cluster_vts(induced: list[tuple[str, object, TrialAnalysis]], config: DetectionConfig):
    """Group induced trials (site name, trial label, analysis) into unique VTs, in order."""
    vts: list[VT] = []
    for site, label, analysis in induced:
        for vt in vts:
            if same_vt(vt.analysis, analysis, config):
                vt.trials.append((site, label))
                break
        else:
            vts.append(VT(len(vts) + 1, analysis, [(site, label)]))
    return vts
