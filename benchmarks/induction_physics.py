"""Is re-entry physically possible? CV, ERP and circuits with the default (published) tissue.

Measures, with the configuration's default ventricular tissue (TP06 endo/M/epi, border zone
g_Na×0.38, g_CaL×0.31, g_Kr×0.30, g_Ks×0.20, transverse σ×0.1, healthy σ calibrated to
0.6 / 0.22 m/s) and numerics (dt, lumped mass, explicit diffusion), at mesh spacing ``--dx``:

- ``cv``: conduction velocity along and across the fibres in healthy (epi) and border-zone
  tissue, on strips of that spacing, from cells pre-paced at 600 ms;
- ``erp``: effective refractory period of each cell type in a strip after ``--s1-count`` S1
  at each of ``--erp-cycle-lengths``: the shortest S2 coupling interval whose wave reaches
  the far end (all coupling intervals of a scan run as one batch, branched from the S1
  snapshot);
- ``aerp``: the same for the default atrium's healthy (AF-remodelled) and fibrotic tissue,
  at each of ``--atrial-cycle-lengths``;
- ``ring``: the shortest anatomical circuit that sustains re-entry: rings of the given
  perimeters (fibres along the ring, 3 mm wide) with a border-zone arc of ``--arc-mm``, paced
  next to one end of the arc with the full PES (cardiotwin's induction pipeline); for each,
  inducible or not and the VT cycle length;
- ``phantom``: the circuit of an ``lv-infarct`` phantom (its ``truth.json``): conduction time
  around the loop with the measured velocities, against the refractory periods;
- ``apd``: single-cell APD90 of every parameter set the pipeline builds for the default
  ventricle (at each of ``--erp-cycle-lengths``; epi only: the cells' mesh has no
  transmural coordinate) and atrium (``--atrial-cycle-lengths``), after ``--apd-beats``
  beats from the model's initial state;
- ``peaks``: how high premature beats rise in healthy and border-zone strips (σ along and
  across the fibres), S2 from just below the shortest capturing coupling interval after
  ``--s1-count`` S1 at the first of ``--erp-cycle-lengths``: each node's peak V in bands,
  and whether the wave reached the far end as counted at 0 mV and at the configured
  ventricular levels (−40 / −60 mV).

``--dt`` replaces the configuration's time step (the clinical step's study:
``cv erp apd --dx 0.5 --dt 0.01``, then ``--dt 0.02``).

Usage (prints a table, writes JSON with ``--json``):
    python benchmarks/induction_physics.py cv erp --dx 0.4
    python benchmarks/induction_physics.py ring --perimeters 150 200 250 --json out/ring.json
    python benchmarks/induction_physics.py phantom --truth data_samples/lv-infarct/truth.json
    python benchmarks/induction_physics.py cv erp apd --dx 0.5 --dt 0.02 --json out/dt002.json
    python benchmarks/induction_physics.py peaks --dx 0.5 --dt 0.02 --json out/peaks.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.pipeline.config import Config
from cardiotwin.solvers.beats import MemberWatch, TrialMonitor
from cardiotwin.solvers.checkpoint import branch, take_snapshot
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import Tracker


def _tissue_sets(config: Config):
    """Parameter vectors (healthy endo/M/epi, border zone epi) of the default tissue."""
    regions = config.tissue.ventricle.regions
    sets = {}
    for variant in ("endo", "m", "epi"):
        sets[f"healthy/{variant}"] = get_model(f"tp06-{variant}").default_parameters()
    bz = get_model("tp06-epi").default_parameters()
    model = get_model("tp06-epi")
    for name, factor in regions["border_zone"].parameter_scale.items():
        bz[model.parameter_index(name)] *= factor
    sets["border_zone/epi"] = bz
    return sets


def _sigmas(config: Config, dx: float, cache: Path) -> dict:
    """σ (along, across) of healthy and border zone as the pipeline sets them on a mesh of
    spacing ``dx`` (pipeline.tissue.build_tissue on a two-region slab)."""
    from cardiotwin.meshing.tags import BORDER_ZONE, HEALTHY
    from cardiotwin.pipeline.tissue import build_tissue

    slab = box_mesh((4 * dx, 2 * dx, dx), dx)
    slab.region[slab.element_centres_mm()[:, 0] > 2 * dx] = BORDER_ZONE
    settings = config.model_copy(
        update={"tissue": config.tissue.model_copy(update={"cache_dir": str(cache)})}
    )
    tissue = build_tissue(slab, settings.tissue.ventricle, settings.tissue, settings.simulation,
                          bcl_ms=600.0, prepace=False)  # fmt: skip
    sigma = tissue.conductivities_s_per_m
    return {"healthy": sigma[HEALTHY], "border_zone": sigma[BORDER_ZONE],
            "record": tissue.record["conductivity"]}  # fmt: skip


def _atrial_tissue(config: Config, dx: float, cache: Path) -> tuple[dict, dict]:
    """Parameter vectors and σ (along, across) of the default atrial tissue's healthy
    (AF-remodelled) and fibrotic regions, as the pipeline sets them at spacing ``dx``."""
    from cardiotwin.meshing.tags import BORDER_ZONE, HEALTHY
    from cardiotwin.pipeline.tissue import build_tissue

    slab = box_mesh((4 * dx, 2 * dx, dx), dx)
    slab.region[slab.element_centres_mm()[:, 0] > 2 * dx] = BORDER_ZONE  # tag 2: fibrosis
    settings = config.tissue.model_copy(update={"cache_dir": str(cache)})
    tissue = build_tissue(slab, settings.atrium, settings, config.simulation, bcl_ms=500.0,
                          prepace=False)  # fmt: skip
    table = tissue.parameters.as_array()
    sets = {f"atrium/{name}": table[:, k] for k, name in enumerate(tissue.set_names)}
    sigma = tissue.conductivities_s_per_m
    return sets, {"healthy": sigma[HEALTHY], "fibrosis": sigma[BORDER_ZONE]}


def _prepaced(
    config: Config, parameters: np.ndarray, bcl: float, cache: Path, model: str = "tp06-epi"
) -> np.ndarray:
    from cardiotwin.pipeline.tissue import prepaced_states

    states, _ = prepaced_states(
        get_model(model),
        parameters[:, None],
        bcl,
        config.simulation.dt_ms,
        config.tissue.prepacing,
        cache,
    )
    return states[:, 0]


def _strip_problem(parameters, sigma, dx, length_mm, stimuli, batch=1, model="tp06-epi"):
    mesh = box_mesh((length_mm, dx, dx), dx)
    model = get_model(model)
    table = model.parameter_table()
    s = table.add_values(**dict(zip(model.parameter_names, parameters, strict=True)))
    return MonodomainProblem(
        mesh,
        model,
        {1: (sigma, sigma)},
        stimuli=stimuli,
        parameters=table,
        parameter_set=np.full(mesh.n_points, s, dtype=np.int32),
        batch_size=batch,
    )


def measure_cv(config: Config, dx: float, cache: Path) -> dict:
    """CV (m/s) along and across the fibres, healthy epi and border zone, on strips."""
    sets, sigmas = _tissue_sets(config), _sigmas(config, dx, cache)
    out = {}
    for region, key in (("healthy", "healthy/epi"), ("border_zone", "border_zone/epi")):
        state = _prepaced(config, sets[key], 600.0, cache)
        for direction, sigma in zip(("along", "across"), sigmas[region], strict=True):
            length = 12.0
            stimulus = Stimulus(0.0, 2.0, 60.0, box_mm=((0, 0, 0), (1.0, dx, dx)))
            problem = _strip_problem(sets[key], sigma, dx, length, [stimulus])
            y0 = np.repeat(state[:, None], problem.n_nodes, axis=1)
            stepper = SplitStepper(
                problem,
                config.simulation.dt_ms,
                state=y0,
                mass=config.simulation.mass,
                diffusion=config.simulation.diffusion,
            )
            monitor = TrialMonitor(None, keep=1)
            stepper.run(length / 0.02, [monitor])  # down to 0.02 m/s
            x = problem.points_mm[:, 0]
            t = monitor.last_ms[:, 0]
            window = (x >= 0.3 * length) & (x <= 0.8 * length) & np.isfinite(t)
            cv = 1.0 / np.polyfit(x[window], t[window], 1)[0] if window.sum() > 3 else 0.0
            out[f"{region}_{direction}_m_per_s"] = round(float(cv), 4)
            out[f"{region}_{direction}_sigma_s_per_m"] = round(float(sigma), 5)
    return out


def measure_erp(
    config: Config,
    dx: float,
    cache: Path,
    cycle_lengths,
    s1_count: int,
    atrium: bool = False,
) -> dict:
    """ERP (ms) per cell type after ``s1_count`` S1 at each cycle length (strip, 16 mm): the
    default ventricle's healthy endo/M/epi and border zone, or (``atrium``) the default
    atrium's healthy (AF-remodelled) and fibrotic tissue. A wave reaches the far end when
    V crosses the chamber's activation threshold there (``induction.detection``: −40 mV in
    both chambers since 2026-12-05; the ventricles used 0 mV before, see ``peaks``)."""
    if atrium:
        model = "courtemanche"
        sets, region_sigmas = _atrial_tissue(config, dx, cache)
        sigmas = {name: region_sigmas["healthy" if "healthy" in name else "fibrosis"][0]
                  for name in sets}  # fmt: skip
    else:
        model = "tp06-epi"
        sets, region_sigmas = _tissue_sets(config), _sigmas(config, dx, cache)
        sigmas = {name: region_sigmas["border_zone" if name.startswith("border") else
                                      "healthy"][0] for name in sets}  # fmt: skip
    dt = config.simulation.dt_ms
    out = {}
    for name, parameters in sets.items():
        sigma = sigmas[name]
        for bcl in cycle_lengths:
            state = _prepaced(config, parameters, bcl, cache, model)
            length = 16.0
            site = ((0, 0, 0), (1.0, dx, dx))
            s1 = Stimulus(0.0, 2.0, 60.0, box_mm=site, period_ms=bcl, count=s1_count)
            prefix = _strip_problem(parameters, sigma, dx, length, [s1], model=model)
            y0 = np.repeat(state[:, None], prefix.n_nodes, axis=1)
            stepper = SplitStepper(
                prefix,
                dt,
                state=y0,
                mass=config.simulation.mass,
                diffusion=config.simulation.diffusion,
            )
            last = (s1_count - 1) * bcl
            couplings = np.arange(120.0, 0.95 * bcl, 5.0)
            snap_t = last + couplings[0] - 5.0
            stepper.run(snap_t)
            snapshot = take_snapshot(stepper)
            b = couplings.size
            stimuli = [s1] + [
                Stimulus(last + c, 2.0, 60.0, box_mm=site, members=(k,))
                for k, c in enumerate(couplings)
            ]
            problem = _strip_problem(parameters, sigma, dx, length, stimuli, batch=b, model=model)
            trial = branch(problem, snapshot, [0] * b, source_problem=prefix)
            far = np.nonzero(problem.points_mm[:, 0] >= length - 1e-9)[0]
            watches = [MemberWatch((last + c,), far) for c in couplings]
            threshold, rearm = config.induction.detection.levels_mv(
                "atrium" if atrium else "ventricle"
            )
            monitor = TrialMonitor(
                watches,
                keep=2,
                capture_window_ms=length / 0.1,
                threshold_mv=threshold,
                rearm_mv=rearm,
            )
            trial.run(last + couplings[-1] + length / 0.1 + 10.0, [monitor])
            reached = [bool(c[0]) for c in monitor.captured]
            erp = next((c for c, ok in zip(couplings, reached, strict=True) if ok), None)
            out[f"{name}@{bcl:g}"] = None if erp is None else float(erp)
    return out


class _PeakVoltage(Tracker):
    """Each node's peak V (mV) per member from ``after_ms`` on (host copies)."""

    updates_every_step = True

    def __init__(self, after_ms: float) -> None:
        self.after_ms = float(after_ms)
        self.peak_mv = None

    def start(self, sim) -> None:
        if self.peak_mv is None:
            self.peak_mv = np.full((sim.n_nodes, sim.batch_size), -np.inf)

    def update(self, sim) -> None:
        if sim.t_ms >= self.after_ms:
            np.maximum(self.peak_mv, sim.voltage_mv, out=self.peak_mv)


#: peak-V bands (mV) of :func:`measure_peaks`, upper bounds exclusive
PEAK_BANDS_MV = ((-np.inf, -60.0), (-60.0, -40.0), (-40.0, -20.0), (-20.0, 0.0), (0.0, np.inf))


def measure_peaks(
    config: Config, dx: float, cache: Path, bcl: float, s1_count: int, extra_ms: float = 70.0
) -> dict:
    """How high premature beats rise, against the ventricular activation levels.

    On 16 mm strips of healthy epi and border zone tissue (σ along and across the fibres as
    the pipeline sets them at ``dx``), after ``s1_count`` S1 at ``bcl``, one S2 per member at
    coupling intervals from 5 ms below the region's shortest capturing one up to
    ``extra_ms`` beyond it, in 5 ms steps. Per coupling: each node's peak V after the S2
    (nodes 2 mm and more from the pacing site), counted in :data:`PEAK_BANDS_MV`, and
    whether the premature wave reached the far end as counted at 0 mV (rearm −40 mV, the
    ventricular levels before 2026-12-05) and at the configured levels."""
    sets, region_sigmas = _tissue_sets(config), _sigmas(config, dx, cache)
    dt = config.simulation.dt_ms
    threshold, rearm = config.induction.detection.levels_mv("ventricle")
    levels = {"0": (0.0, -40.0), "configured": (threshold, rearm)}
    out = {"levels_mv": {k: list(v) for k, v in levels.items()},
           "bands_mv": [list(b) for b in PEAK_BANDS_MV]}  # fmt: skip
    length, site = 16.0, ((0, 0, 0), (1.0, dx, dx))
    last = (s1_count - 1) * bcl
    for name in ("healthy/epi", "border_zone/epi"):
        parameters = sets[name]
        state = _prepaced(config, parameters, bcl, cache)
        region = "border_zone" if name.startswith("border") else "healthy"
        for direction, sigma in zip(("along", "across"), region_sigmas[region], strict=True):
            s1 = Stimulus(0.0, 2.0, 60.0, box_mm=site, period_ms=bcl, count=s1_count)
            prefix = _strip_problem(parameters, sigma, dx, length, [s1])
            stepper = SplitStepper(prefix, dt, state=np.repeat(state[:, None], prefix.n_nodes, 1),
                                   mass=config.simulation.mass,
                                   diffusion=config.simulation.diffusion)  # fmt: skip
            # the shortest coupling whose S2 leaves the site, found coarsely first
            couplings = np.arange(150.0, 0.95 * bcl, 5.0)
            stepper.run(last + couplings[0] - 5.0)
            snapshot = take_snapshot(stepper)
            travel_ms = length / (0.02 if direction == "across" else 0.1)

            def s2_batch(couplings, parameters=parameters, sigma=sigma, s1=s1, prefix=prefix,
                         snapshot=snapshot):  # fmt: skip
                """One member per S2 coupling interval, branched from the S1 snapshot."""
                stimuli = [s1] + [Stimulus(last + c, 2.0, 60.0, box_mm=site, members=(k,))
                                  for k, c in enumerate(couplings)]  # fmt: skip
                problem = _strip_problem(parameters, sigma, dx, length, stimuli, couplings.size)
                return branch(problem, snapshot, [0] * couplings.size, source_problem=prefix)

            trial = s2_batch(couplings)
            x = trial.problem.points_mm[:, 0]
            probe = np.nonzero(np.abs(x - 2.0) < 1e-9)[0]
            watches = [MemberWatch((last + c,), probe) for c in couplings]
            monitor = TrialMonitor(watches, keep=2, capture_window_ms=60.0,
                                   threshold_mv=threshold, rearm_mv=rearm)  # fmt: skip
            trial.run(last + couplings[-1] + 70.0, [monitor])
            captured = [bool(c[0]) for c in monitor.captured]
            first = next((c for c, ok in zip(couplings, captured, strict=True) if ok), None)
            if first is None:
                out[f"{name}/{direction}"] = {"sigma_s_per_m": float(sigma), "captured": False}
                continue
            couplings = np.arange(first - 5.0, first + extra_ms + 1e-9, 5.0)
            trial = s2_batch(couplings)
            far = np.nonzero(x >= length - 1e-9)[0]
            monitors = {k: TrialMonitor([MemberWatch((last + c,), far) for c in couplings],
                                        keep=2, capture_window_ms=travel_ms,
                                        threshold_mv=t, rearm_mv=r)
                        for k, (t, r) in levels.items()}  # fmt: skip
            peaks = _PeakVoltage(last + couplings[0] + 3.0)
            trial.run(last + couplings[-1] + travel_ms + 10.0, [*monitors.values(), peaks])
            inner = x >= 2.0 - 1e-9
            rows = []
            for k, c in enumerate(couplings):
                peak = peaks.peak_mv[inner, k]
                counts = [int(((peak >= lo) & (peak < hi)).sum()) for lo, hi in PEAK_BANDS_MV]
                rows.append({
                    "coupling_ms": float(c),
                    "peak_band_counts": counts,
                    "lowest_peak_mv": round(float(peak.min()), 2),
                    "far_end": {key: bool(m.captured[k][0]) for key, m in monitors.items()},
                })  # fmt: skip
            out[f"{name}/{direction}"] = {"sigma_s_per_m": float(sigma), "nodes": int(inner.sum()),
                                          "trials": rows}  # fmt: skip
            print(name, direction, json.dumps(rows), flush=True)
    return out


def measure_apd(config: Config, cycle_lengths, atrial_cycle_lengths, beats: int) -> dict:
    """APD90 (ms) of each parameter set of the default ventricular and atrial tissue, keyed
    ``"<tissue>/<set>@<cycle length>"`` (None where the beat did not repolarise or capture)."""
    from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR
    from cardiotwin.pipeline.tissue import build_tissue
    from cardiotwin.solvers.cell import action_potential_metrics, pace_cell

    mesh = box_mesh((8.0, 4.0, 1.0), 0.5)  # every region tag, for the sets; σ is not used
    x = mesh.element_centres_mm()[:, 0]
    mesh.region[x > 3] = BORDER_ZONE
    mesh.region[x > 6] = DENSE_SCAR
    uncalibrated = config.tissue.model_copy(update={"calibrate_cv": False})
    out = {}
    for kind, lengths in (("ventricle", cycle_lengths), ("atrium", atrial_cycle_lengths)):
        tissue_config = getattr(config.tissue, kind)
        regions = {
            name: region.model_copy(update={"cv_m_per_s": None, "sigma_s_per_m": (0.1, 0.1)})
            if region.cv_m_per_s is not None else region
            for name, region in tissue_config.regions.items()
        }  # fmt: skip
        tissue_config = tissue_config.model_copy(update={"regions": regions})
        tissue = build_tissue(
            mesh, tissue_config, uncalibrated, config.simulation, bcl_ms=lengths[0],
            prepace=False,
        )  # fmt: skip
        table = tissue.parameters.as_array()
        for k, record in enumerate(tissue.record["parameter_sets"]):
            for bcl in lengths:
                run = pace_cell(
                    tissue.model, beats=beats, bcl_ms=bcl, dt_ms=config.simulation.dt_ms,
                    parameters=table[:, k],
                )  # fmt: skip
                apd = action_potential_metrics(run)["apd90_ms"]
                key = f"{kind}/{record['name']}@{bcl:g}"
                out[key] = None if math.isnan(apd) else round(apd, 2)
    return out


def ring_mesh(perimeter_mm: float, arc_mm: float, dx: float, width_mm: float = 3.0):
    from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR

    r_mid = perimeter_mm / (2 * math.pi)
    r_in, r_out = r_mid - width_mm / 2, r_mid + width_mm / 2
    size = 2 * r_out + 2 * dx
    size = math.ceil(size / dx) * dx
    mesh = box_mesh((size, size, dx), dx, origin_mm=(-size / 2, -size / 2, 0.0))
    c = mesh.element_centres_mm()
    r = np.hypot(c[:, 0], c[:, 1])
    angle = np.arctan2(c[:, 1], c[:, 0])
    half_arc = 0.5 * arc_mm / r_mid
    mesh.region[(r < r_in) | (r > r_out)] = DENSE_SCAR
    mesh.region[(r >= r_in) & (r <= r_out) & (np.abs(angle) < half_arc)] = BORDER_ZONE
    tangent = np.stack([-c[:, 1], c[:, 0], np.zeros(len(c))], axis=1)
    mesh.fibres[:] = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    # the site: 3 mm beyond the arc's end, in healthy tissue
    site_angle = half_arc + 3.0 / r_mid
    centre = r_mid * np.array([math.cos(site_angle), math.sin(site_angle)])
    distance = np.linalg.norm(mesh.points_mm[:, :2] - centre, axis=1)
    nodes = np.nonzero(distance <= 1.5)[0]
    mesh.node_sets["AHA-1"] = nodes[np.argsort(distance[nodes], kind="stable")]
    return mesh


def ring_scan(config: Config, dx: float, perimeters, arc_mm: float, progress: bool) -> list:
    from cardiotwin.pipeline.induction import run_induction

    out = []
    for perimeter in perimeters:
        started = time.perf_counter()
        study = run_induction(ring_mesh(perimeter, arc_mm, dx), config, progress=progress)
        site = study.sites[0]
        a = site.analysis
        out.append(
            {
                "perimeter_mm": perimeter,
                "arc_mm": arc_mm,
                "induced": site.induced,
                "coupling_intervals_ms": site.coupling_intervals_ms,
                "cycle_length_ms": None if a is None else round(a.cycle_length_ms, 1),
                "trials": len(site.trials),
                "trial_outcomes": [
                    {k: t[k] for k in ("coupling_intervals_ms", "captured", "outcome", "reason")}
                    for t in site.trials
                ],
                "wall_s": round(time.perf_counter() - started, 1),
                "node_steps_per_s": study.stats["node_steps_per_s"],
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def phantom_circuit(truth_path: Path, cv: dict, erp: dict) -> dict:
    """Loop conduction time of a phantom's designed circuit with the measured velocities."""
    truth = json.loads(truth_path.read_text())
    isthmus = truth.get("isthmus") or {}
    loop = isthmus.get("reentry_loop_mm")
    length = isthmus.get("length_mm")
    if loop is None or length is None:
        return {"error": f"{truth_path} has no isthmus / reentry_loop_mm"}
    return_mm = loop - length
    out = {"loop_mm": loop, "isthmus_mm": length, "width_mm": isthmus.get("width_mm")}

    def at(angle_deg: float, along: float, across: float) -> float:
        """CV at ``angle_deg`` to the fibres (elliptic: the eikonal of anisotropic tissue)."""
        a = math.radians(angle_deg)
        return 1.0 / math.sqrt((math.cos(a) / along) ** 2 + (math.sin(a) / across) ** 2)

    healthy = cv["healthy_along_m_per_s"]
    for angle in (0.0, 30.0, 60.0, 90.0):
        bz = at(angle, cv["border_zone_along_m_per_s"], cv["border_zone_across_m_per_s"])
        out[f"loop_ms (isthmus at {angle:g} deg to the fibres)"] = round(
            length / bz + return_mm / healthy, 1
        )
    out["erp_ms"] = erp
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = ("cv", "erp", "aerp", "ring", "phantom", "apd", "peaks")
    parser.add_argument("parts", nargs="+", choices=parts)
    parser.add_argument("--dx", type=float, default=0.4, help="mesh spacing, mm")
    parser.add_argument("--dt", type=float, help="time step, ms (default: the configuration's)")
    parser.add_argument("--config", type=Path, help="configuration (default: the defaults)")
    parser.add_argument("--cache", type=Path, default=Path("out/cache"))
    parser.add_argument("--erp-cycle-lengths", type=float, nargs="+", default=[600.0, 400.0])
    parser.add_argument("--s1-count", type=int, default=6)
    parser.add_argument("--atrial-cycle-lengths", type=float, nargs="+", default=[500.0, 300.0])
    parser.add_argument("--apd-beats", type=int, default=60)
    parser.add_argument("--perimeters", type=float, nargs="+", default=[150.0, 200.0, 250.0])
    parser.add_argument("--arc-mm", type=float, default=20.0, help="border-zone arc, mm")
    parser.add_argument("--truth", type=Path, help="a phantom's truth.json")
    parser.add_argument("--measured", type=Path, help="cv/erp of an earlier --json run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    from cardiotwin.pipeline.config import load_config

    config = load_config(args.config)
    if args.dt is not None:
        simulation = config.simulation.model_copy(update={"dt_ms": args.dt})
        config = config.model_copy(update={"simulation": simulation})
    results: dict = {"dx_mm": args.dx, "dt_ms": config.simulation.dt_ms}
    if args.measured:
        earlier = json.loads(args.measured.read_text())
        results.update({k: earlier[k] for k in ("cv", "erp") if k in earlier})
    if ("cv" in args.parts or "phantom" in args.parts) and "cv" not in results:
        results["cv"] = measure_cv(config, args.dx, args.cache)
        print(json.dumps(results["cv"], indent=1), flush=True)
    if ("erp" in args.parts or "phantom" in args.parts) and "erp" not in results:
        results["erp"] = measure_erp(
            config, args.dx, args.cache, args.erp_cycle_lengths, args.s1_count
        )
        print(json.dumps(results["erp"], indent=1), flush=True)
    if "aerp" in args.parts:
        results["atrial_erp"] = measure_erp(
            config, args.dx, args.cache, args.atrial_cycle_lengths, args.s1_count, atrium=True
        )
        print(json.dumps(results["atrial_erp"], indent=1), flush=True)
    if "apd" in args.parts:
        results["apd"] = measure_apd(
            config, args.erp_cycle_lengths, args.atrial_cycle_lengths, args.apd_beats
        )
        print(json.dumps(results["apd"], indent=1), flush=True)
    if "peaks" in args.parts:
        results["peaks"] = measure_peaks(
            config, args.dx, args.cache, args.erp_cycle_lengths[0], args.s1_count
        )
    if "ring" in args.parts:
        results["ring"] = ring_scan(config, args.dx, args.perimeters, args.arc_mm, args.progress)
    if "phantom" in args.parts:
        results["phantom"] = phantom_circuit(args.truth, results["cv"], results["erp"])
        print(json.dumps(results["phantom"], indent=1))
    if args.json:
        from cardiotwin.files import write_json_atomic

        write_json_atomic(results, args.json)


if __name__ == "__main__":
    main()
