"""What an atrial driver turns around: the phase winding of its activation map round each
opening of the atrium (pulmonary veins, mitral valve), and where its exit lies.

A re-entrant wave that circulates round an anatomical obstacle activates a closed loop round
that obstacle once per cycle: the activation phase, 2π (t mod CL) / CL, winds by ±2π along the
loop (winding ±1). Round an opening the wave does not circle, the phase goes up and comes back
down (winding 0). A functional rotor (a phase singularity in free wall) winds round its core,
not round an opening. This tells whether pulmonary vein isolation can be expected to stop a
driver (it cuts the tissue round each vein, so it stops circuits round a vein and those that
need the vein's sleeve) and where a targeted lesion must go instead.

The loop round an opening: the conducting nodes at a geodesic distance (through the tissue)
of ``--band`` mm from the opening's nodes, ordered by their angle round the opening's axis
(the normal of the plane fitted to its nodes) and binned in ``--bins`` sectors; the phase of a
sector is the circular mean of its nodes' phases. Sectors without tissue are skipped, and a
loop that misses more than a quarter of the sectors is reported as open (no winding given).

``cardiotwin induce`` now reports the winding round each opening itself (``induction.json``:
``unique_vts[].opening_winding``, :mod:`cardiotwin.pipeline.induction.anatomy`, whose loop
and winding this uses); this adds the rotation centres in the wall and the fibrosis round
the exit.

Usage (after ``cardiotwin induce`` on an atrial mesh):
    python benchmarks/atrial_driver_anatomy.py --mesh f35/mesh.vtu \
        --induction f35/ind10/induction.json --config f35/config.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import dijkstra

from cardiotwin.meshing.io import read_mesh
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR
from cardiotwin.pipeline.ablation import TissueGraph
from cardiotwin.pipeline.ablation.inputs import round_from_file
from cardiotwin.pipeline.config import Config, load_config
from cardiotwin.pipeline.induction.anatomy import opening_axis, winding


def rotation_centres(
    points_mm: np.ndarray,
    phase: np.ndarray,
    outward_from: np.ndarray,
    band_mm: tuple[float, float],
    bins: int = 16,
    stride: int = 3,
    link_mm: float = 6.0,
) -> list[dict]:
    """Where the wave turns: tissue nodes (every ``stride``-th) round which the phase winds
    once along the loop of tissue ``band_mm`` away (Euclidean, in the local wall plane, its
    normal pointing away from ``outward_from``), grouped into clusters (single linkage at
    ``link_mm``). A phase-singularity detector sees a core at the mesh's scale; this sees
    one the size of the band, e.g. a line of block inside a fibrotic patch. Per cluster:
    nodes, centre (mm), mean winding (+1: anticlockwise seen from outside)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial import cKDTree

    finite = np.isfinite(phase)
    tree = cKDTree(points_mm)
    found, turns = [], []
    for i in range(0, len(points_mm), stride):
        near = np.asarray(tree.query_ball_point(points_mm[i], band_mm[1]), dtype=np.int64)
        if near.size < 4:
            continue
        _, normal = opening_axis(points_mm[near])
        if normal @ (points_mm[i] - outward_from) < 0:
            normal = -normal
        d = np.linalg.norm(points_mm[near] - points_mm[i], axis=1)
        ring = near[(d >= band_mm[0]) & finite[near]]
        if ring.size < bins:
            continue
        w = winding(points_mm[ring], phase[ring], points_mm[i], normal, bins)
        if w is not None and abs(w) > 0.5:
            found.append(i)
            turns.append(w)
    if not found:
        return []
    centres = points_mm[found]
    label = fcluster(linkage(centres, "single"), link_mm, "distance") if len(found) > 1 else [1]
    label, turns = np.asarray(label), np.asarray(turns)
    out = []
    for k in np.unique(label):
        m = label == k
        out.append(
            {
                "nodes": int(m.sum()),
                "centre_mm": np.round(centres[m].mean(axis=0), 1).tolist(),
                "mean_winding": round(float(turns[m].mean()), 2),
            }
        )
    return sorted(out, key=lambda c: -c["nodes"])


def analyse(
    mesh_path: Path,
    induction_path: Path,
    band_mm: tuple[float, float],
    bins: int,
    config_path: Path | None = None,
):
    mesh = read_mesh(mesh_path)
    study = round_from_file(induction_path, mesh)
    report = json.loads(Path(induction_path).read_text())
    # what conducts: the tissue configuration's rule for the study's chamber (in an atrium
    # dense fibrosis conducts)
    config = load_config(config_path) if config_path else Config()
    blocking = getattr(config.tissue, report["chamber"]).nonconducting_tags()
    graph = TissueGraph.of(mesh, blocking)
    openings = sorted(n for n in mesh.surfaces if n.startswith(("vein-", "mitral")))
    distance = {}
    for name in openings:
        local = graph.local[np.unique(mesh.surfaces[name])]
        local = local[local >= 0]
        distance[name] = dijkstra(graph.adjacency(), directed=False, indices=local, min_only=True)
    border = np.zeros(mesh.n_points, dtype=bool)  # touches fibrosis or dense fibrosis
    border[mesh.tets[np.isin(mesh.region, (BORDER_ZONE, DENSE_SCAR))].ravel()] = True
    conducting = np.zeros(mesh.n_points, dtype=bool)
    conducting[graph.nodes] = True
    rows = []
    for circuit, vt in zip(study.circuits, report["unique_vts"], strict=True):
        t = circuit.activation_ms[graph.nodes]
        finite = np.isfinite(t)
        phase = (
            2
            * np.pi
            * np.mod(t - np.nanmin(t), circuit.cycle_length_ms)
            / (circuit.cycle_length_ms)
        )
        row = {
            "vt": circuit.id,
            "cycle_length_ms": circuit.cycle_length_ms,
            "sites": list(circuit.sites),
            "activated_fraction": float(finite.mean()),
            "phase_singularities": len(vt.get("phase_singularities", [])),
            "openings": {},
        }
        exit_mm = vt.get("exit_site_mm")
        if exit_mm is not None:
            exit_node = int(np.argmin(np.linalg.norm(graph.points_mm - exit_mm, axis=1)))
            near = np.linalg.norm(mesh.points_mm - exit_mm, axis=1) <= 10.0
            row["exit_site_mm"] = exit_mm
            row["fibrosis_within_10mm"] = float(border[near & conducting].mean())
        for name in openings:
            d = distance[name]
            ring = finite & (d >= band_mm[0]) & (d <= band_mm[1])
            nodes = graph.nodes[np.isfinite(d) & (d <= 1e-9)]
            centre, normal = opening_axis(mesh.points_mm[nodes])
            turns = (
                winding(graph.points_mm[ring], phase[ring], centre, normal, bins)
                if ring.sum() >= bins
                else None
            )
            row["openings"][name] = {
                "winding_turns": None if turns is None else round(turns, 2),
                "exit_distance_mm": None if exit_mm is None else round(float(d[exit_node]), 1),
            }
        row["rotation_centres"] = rotation_centres(
            graph.points_mm, np.where(finite, phase, np.nan), mesh.points_mm.mean(axis=0),
            (4.0, 8.0),
        )  # fmt: skip
        for centre in row["rotation_centres"]:
            if exit_mm is not None:
                gap = np.linalg.norm(np.asarray(centre["centre_mm"]) - exit_mm)
                centre["exit_distance_mm"] = round(float(gap), 1)
        rows.append(row)
    return {
        "mesh": str(mesh_path),
        "band_mm": list(band_mm),
        "fibrosis_fraction_of_tissue_nodes": float(border[conducting].mean()),
        "vts": rows,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", type=Path, required=True)
    parser.add_argument("--induction", type=Path, required=True)
    parser.add_argument(
        "--band", type=float, nargs=2, default=(8.0, 14.0), metavar=("FROM", "TO"),
        help="geodesic distance from the opening of the loop, mm (default 8 14)",
    )  # fmt: skip
    parser.add_argument("--bins", type=int, default=24, help="sectors round the loop")
    parser.add_argument("--config", type=Path, help="the induction's configuration (default: "
                        "the default tissue) for which tissue conducts")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    result = analyse(args.mesh, args.induction, tuple(args.band), args.bins, args.config)
    print(f"fibrosis: {result['fibrosis_fraction_of_tissue_nodes']:.1%} of tissue nodes")
    for row in result["vts"]:
        print(
            f"driver {row['vt']}: CL {row['cycle_length_ms']:.0f} ms, sites {row['sites']}, "
            f"{row['activated_fraction']:.0%} of tissue activated per cycle, "
            f"{row['phase_singularities']} phase singularities"
        )
        if "exit_site_mm" in row:
            print(f"  exit {np.round(row['exit_site_mm'], 1).tolist()} mm, fibrosis within "
                  f"10 mm {row['fibrosis_within_10mm']:.0%}")  # fmt: skip
        for name, o in row["openings"].items():
            turns = "open loop" if o["winding_turns"] is None else f"{o['winding_turns']:+.2f}"
            away = o["exit_distance_mm"]
            print(f"  round {name:8s} winding {turns:>9s} turns, exit {away} mm away")
        for c in row["rotation_centres"]:
            print(
                f"  turns round {c['centre_mm']} mm ({c['nodes']} nodes wind, mean "
                f"{c['mean_winding']:+.2f}), {c.get('exit_distance_mm')} mm from the exit"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
