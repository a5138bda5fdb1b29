"""The lv-infarct circuit measured on the mesh: path lengths, CVs, loop time, refractoriness.

The induction issue's first must-show asks, for the phantom circuit, for its path length, the
CV in healthy tissue and in the isthmus *measured on the mesh*, the conduction time around the
circuit against the refractory period, and the resulting cycle length. ``truth.json`` gives the
designed numbers (an eikonal estimate on the unrolled map); this measures them on a mesh with
the tissue of a configuration (the must-shows': Mitchell–Schaeffer on 2 mm), from cells
pre-paced at the S1 cycle length:

- **isthmus time**: a stimulus at one channel opening (``truth.json`` ``openings_mm``), the
  earliest activation at the other opening; the activation times along the centreline;
- **return time**: the same with the channel cut (every element within 3 mm of the
  centreline's middle along it and within half its width + 10 mm across it made
  non-conducting: lobe to lobe, as the label map's channel is wider than the design's on an
  8 mm slice grid), so the wave must go round a lobe;
- **loop** = isthmus + return (each the mean of both directions);
- **CV** from the activation map of that beat: per element 1 / |∇t| (linear elements),
  the median over healthy elements and over the channel's elements, and along the centreline
  (its length over the time between its ends);
- **refractoriness** after S1 at the cycle length (one batch of S2 intervals branched from the
  S1's start): ``ERP healthy`` (an S2 at the opening captures: the wave reaches 8-10 mm away),
  ``ERP channel`` (an S2 *inside* the channel's middle), and ``channel entry``: for an S2 at
  the opening, whether and how fast the wave crosses the channel (time to its middle and far
  end; slower than the S1's means decremental conduction, none means block).

A re-entrant wave must find the tissue ahead of it recovered one loop after it left:
``loop > refractory period``. Usage (a case folder from ``induction_by_labels.py``, or any
folder with ``mesh.vtu``, ``config.yaml`` and ``truth.json``)::

    python benchmarks/induction_by_labels.py truth --out out/by_labels/truth --sites AHA-1
    python benchmarks/circuit_on_mesh.py out/by_labels/truth/lv-infarct --json out/circuit.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cardiotwin.meshing.io import read_mesh
from cardiotwin.meshing.tags import BORDER_ZONE, HEALTHY, LESION
from cardiotwin.pipeline.config import load_config
from cardiotwin.pipeline.phantoms.infarct import distance_to_centreline_mm
from cardiotwin.pipeline.tissue import build_tissue
from cardiotwin.solvers.beats import TrialMonitor
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

#: stimulus (ms, µA/µF) and the radius of the stimulated node set (mm)
STIMULUS_MS, STRENGTH, SITE_MM = 2.0, 60.0, 4.0


class Case:
    def __init__(self, folder: Path) -> None:
        self.mesh = read_mesh(folder / "mesh.vtu")
        self.config = load_config(folder / "config.yaml")
        truth = json.loads((folder / "truth.json").read_text())
        self.isthmus = truth["isthmus"]
        self.centreline = np.asarray(self.isthmus["centerline_mm"], dtype=float)
        self.openings = np.asarray(self.isthmus["openings_mm"], dtype=float)
        self.bcl = self.config.induction.pes.s1_cycle_length_ms
        sim = self.config.simulation
        self.tissue = build_tissue(self.mesh, self.config.tissue.ventricle, self.config.tissue,
                                   sim, bcl_ms=self.bcl)  # fmt: skip
        points = self.mesh.points_mm
        self.centres = points[self.mesh.tets].mean(axis=1)
        self.element_to_centreline = np.array(
            [distance_to_centreline_mm(c, self.centreline) for c in self.centres]
        )
        self.node_to_centreline = np.array(
            [distance_to_centreline_mm(p, self.centreline) for p in points]
        )

    def cut(self, half_length_mm: float, half_width_mm: float) -> np.ndarray:
        """Elements within ``half_length_mm`` of the centreline's middle along it and within
        ``half_width_mm`` of it across (the centreline is sampled every ~1 mm)."""
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(self.centreline).query(self.centres)
        steps = np.linalg.norm(np.diff(self.centreline, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(steps)])
        middle = 0.5 * along[-1]
        return (np.abs(along[nearest] - middle) <= half_length_mm) & (
            self.element_to_centreline <= half_width_mm
        )

    def near(self, point, radius_mm: float) -> np.ndarray:
        return np.flatnonzero(np.linalg.norm(self.mesh.points_mm - point, axis=1) <= radius_mm)

    def run(self, stimuli, t_end_ms: float, batch: int = 1, region=None):
        """Activation counts and last activation times (mesh nodes × members; NaN: none)."""
        mesh = self.mesh if region is None else replace(self.mesh, region=region)
        kwargs = self.tissue.problem_kwargs()
        problem = MonodomainProblem(mesh, **kwargs, stimuli=stimuli, batch_size=batch)
        state = self.tissue.initial_state(MonodomainProblem(mesh, **kwargs))
        sim = self.config.simulation
        stepper = SplitStepper(problem, sim.dt_ms, state=np.tile(state, (1, batch)),
                               mass=sim.mass, diffusion=sim.diffusion)  # fmt: skip
        monitor = TrialMonitor(None, keep=4)
        stepper.run(t_end_ms, [monitor])
        count = np.zeros((self.mesh.n_points, batch), dtype=np.int64)
        last = np.full((self.mesh.n_points, batch), np.nan)
        count[problem.tissue_nodes] = monitor.count.reshape(-1, batch)
        last[problem.tissue_nodes] = monitor.last_ms.reshape(-1, batch)
        return count, last


def _median_cv(case: Case, times_ms: np.ndarray, elements: np.ndarray) -> float | None:
    """Median of 1/|∇t| (m/s) over ``elements`` with every node activated."""
    tets = case.mesh.tets[elements]
    t = times_ms[tets]
    ok = np.isfinite(t).all(axis=1)
    if ok.sum() < 10:
        return None
    p = case.mesh.points_mm[tets[ok]]
    edges = p[:, 1:] - p[:, :1]  # (m, 3, 3)
    dt = t[ok, 1:] - t[ok, :1]
    gradient = np.linalg.solve(edges, dt[..., None])[..., 0]  # ms/mm
    speed = 1.0 / np.maximum(np.linalg.norm(gradient, axis=1), 1e-9)  # mm/ms = m/s
    return round(float(np.median(speed)), 3)


def conduction(case: Case) -> dict:
    """Isthmus and return times both ways, CVs, activation along the centreline."""
    width = case.isthmus["width_mm"]
    channel = (case.element_to_centreline <= 0.5 * width) & (case.mesh.region == BORDER_ZONE)
    closed = case.mesh.region.copy()
    closed[case.cut(3.0, 0.5 * width + 10.0) & np.isin(closed, (HEALTHY, BORDER_ZONE))] = LESION
    healthy = np.flatnonzero(case.mesh.region == HEALTHY)
    out: dict = {"directions": []}
    for a in (0, 1):
        b = 1 - a
        site = case.near(case.openings[a], SITE_MM)
        stimulus = [Stimulus(0.0, STIMULUS_MS, STRENGTH, nodes=site)]
        _, open_lat = case.run(stimulus, 500.0)
        _, closed_lat = case.run(stimulus, 800.0, region=closed)
        other = case.near(case.openings[b], SITE_MM)
        ends = case.centreline[[0, -1]] if a == 0 else case.centreline[[-1, 0]]
        t_ends = [float(np.nanmin(open_lat[case.near(p, 2.5), 0])) for p in ends]
        along = np.flatnonzero(case.node_to_centreline <= 2.5)
        entry = {
            "from_opening": a,
            "isthmus_ms": round(float(np.nanmin(open_lat[other, 0])), 1),
            "return_ms": round(float(np.nanmin(closed_lat[other, 0])), 1),
            "centreline_cv_m_per_s": round(
                float(np.sum(np.linalg.norm(np.diff(case.centreline, axis=0), axis=1)))
                / max(t_ends[1] - t_ends[0], 1e-9),
                3,
            ),
            "cv_healthy_median_m_per_s": _median_cv(case, open_lat[:, 0], healthy),
            "cv_channel_median_m_per_s": _median_cv(case, open_lat[:, 0], np.flatnonzero(channel)),
            "channel_nodes_activated": round(float(np.isfinite(open_lat[along, 0]).mean()), 3),
        }
        out["directions"].append(entry)
        print(json.dumps(entry), flush=True)
    mean = {k: np.mean([d[k] for d in out["directions"]]) for k in ("isthmus_ms", "return_ms")}
    out["loop_ms"] = round(float(mean["isthmus_ms"] + mean["return_ms"]), 1)
    return out


def refractoriness(case: Case, couplings_ms: np.ndarray) -> dict:
    """ERP at the opening (healthy) and in the channel's middle; an S2 entering the channel."""
    middle = case.centreline[len(case.centreline) // 2]
    far_end = case.centreline[-1]
    out: dict = {"couplings_ms": [float(c) for c in couplings_ms]}

    def s2_scan(site_nodes):
        stimuli = [Stimulus(0.0, STIMULUS_MS, STRENGTH, nodes=site_nodes)]
        stimuli += [
            Stimulus(float(c), STIMULUS_MS, STRENGTH, nodes=site_nodes, members=(k,))
            for k, c in enumerate(couplings_ms)
        ]
        return case.run(stimuli, float(couplings_ms.max()) + 300.0, batch=len(couplings_ms))

    def erp(count, site_point, where: np.ndarray) -> float | None:
        """Shortest S2 whose wave re-excites > 30 % of the ``where`` nodes 8-10 mm away."""
        d = np.linalg.norm(case.mesh.points_mm - site_point, axis=1)
        ring = np.flatnonzero((d >= 8.0) & (d <= 10.0) & where)
        captured = [c for k, c in enumerate(couplings_ms) if np.mean(count[ring, k] >= 2) > 0.3]
        return float(min(captured)) if captured else None

    # in the channel's middle, activation checked along the channel
    count, _ = s2_scan(case.near(middle, 2.5))
    out["erp_channel_ms"] = erp(count, middle, case.node_to_centreline <= 3.0)
    # at the opening: capture in the tissue round it that S1 reached, then how S2 crosses
    # the channel
    count, last = s2_scan(case.near(case.openings[0], SITE_MM))
    out["erp_opening_ms"] = erp(count, case.openings[0], count.max(axis=1) >= 1)
    rows = []
    for k, c in enumerate(couplings_ms):
        row = {"coupling_ms": float(c)}
        for name, point in (("middle", middle), ("far_end", far_end)):
            nodes = case.near(point, 3.0)
            hit = count[nodes, k] >= 2
            row[f"{name}_ms"] = (
                round(float(np.nanmin(last[nodes, k][hit])) - float(c), 1) if hit.any() else None
            )
        rows.append(row)
    out["s2_from_opening"] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", type=Path, help="folder with mesh.vtu, config.yaml, truth.json")
    parser.add_argument(
        "--couplings",
        type=float,
        nargs=3,
        default=[250.0, 480.0, 10.0],
        metavar=("FIRST", "LAST", "STEP"),
        help="S2 intervals scanned (ms)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    case = Case(args.case)
    first, last, step = args.couplings
    result = {
        "case": str(args.case),
        "designed": {
            "path_length_mm": case.isthmus["loop"]["path_length_mm"],
            "width_mm": case.isthmus["width_mm"],
            "conduction_time_ms": case.isthmus["loop"]["conduction_time_ms"],
        },
        "tissue_nodes": int((case.mesh.region != 0).sum()),
        "s1_cycle_length_ms": case.bcl,
        "conduction": conduction(case),
        "refractoriness": refractoriness(case, np.arange(first, last + 0.5 * step, step)),
    }
    result["wall_s"] = round(time.perf_counter() - started, 1)
    summary = {k: result["refractoriness"][k] for k in ("erp_opening_ms", "erp_channel_ms")}
    print(json.dumps({"loop_ms": result["conduction"]["loop_ms"], **summary}))
    if args.json:
        from cardiotwin.files import write_json_atomic

        write_json_atomic(result, args.json)


if __name__ == "__main__":
    main()
