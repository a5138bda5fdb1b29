"""The critical-site finder on the lv-infarct phantom's own mesh, with a synthetic circuit map.

Not the must-show (that needs a simulated VT:
benchmarks/phantom_must_shows/test_ablation_phantoms.py and ``cardiotwin induce``); this checks
the minimum cut on realistic geometry (the pipeline's segmentation and mesh, scar from the LGE
image, not the truth labels) and its cost at patient size. The map: a wave leaving a
cross-section of the designed isthmus (at a fraction ``--at`` of its centreline from the apical
end) downstream, running through all the tissue it can reach (first arrival: graph distance
through the tissue at ``--cv`` m/s) and coming back to the cross-section from upstream; the
cross-section is the map's wrap (its edges within 10 mm of the centreline point are cut). Every
path from the front round the circuit back to it is a path of the figure-of-eight, so the cut
must lie across the isthmus (the narrowest passage of both loops) wherever along it the wrap was
put.

Prints, per wrap position: nodes, the cut's size, anchors, the distance of the site's centre
and of the first lesion point from the designed centreline (``truth.json``), the lesion's
points and volume, and the wall time of the graph, the cut and the lesion.

Usage:
    cardiotwin mesh --labels data_samples/lv-infarct/segmentation/labels_fwhm.nii.gz \
        --kind ventricle --edge-mm 1 --out out/lv/mesh1.vtu
    python benchmarks/ablation_critical_site_lv.py --mesh out/lv/mesh1.vtu \
        --truth data_samples/lv-infarct/truth.json --json out/lv/critical.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import dijkstra

from cardiotwin.meshing.io import read_mesh
from cardiotwin.pipeline.ablation import (
    Circuit,
    TissueGraph,
    anchors,
    apply_lesions,
    find_critical_site,
    plan_lesion,
)
from cardiotwin.pipeline.phantoms.infarct import distance_to_centreline_mm


def circuit_map(graph: TissueGraph, centreline: np.ndarray, at: float, cv_m_per_s: float):
    """(n_mesh,) one cycle of the synthetic circuit and its cycle length (module doc)."""
    k = int(round(at * (len(centreline) - 1)))
    k = min(max(k, 1), len(centreline) - 2)
    point = centreline[k]
    direction = centreline[k + 1] - centreline[k - 1]
    direction /= np.linalg.norm(direction)
    side = (graph.points_mm - point) @ direction
    near = np.linalg.norm(graph.points_mm - point, axis=1) < 10.0
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    crossing = (np.sign(side[i]) != np.sign(side[j])) & near[i] & near[j]
    front = np.nonzero(near & (side >= 0) & (side < graph.max_edge_mm))[0]
    distance = dijkstra(graph.adjacency(~crossing), directed=False, indices=front, min_only=True)
    t = distance / cv_m_per_s  # mm / (mm/ms) = ms
    cycle = float(np.max(t[np.isfinite(t)])) + 5.0
    activation = np.full(graph.mesh.n_points, np.nan)
    activation[graph.nodes] = np.where(np.isfinite(t), t, np.nan)
    return activation, cycle, point


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--at", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--cv", type=float, default=0.5, help="synthetic CV, m/s")
    parser.add_argument("--radius", type=float, default=4.0, help="lesion radius, mm")
    parser.add_argument(
        "--isthmus-lines",
        choices=("middle", "ends"),
        default="middle",
        help="one transect (middle, as RESULTS.md's table) or both ends (the config default)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    mesh = read_mesh(args.mesh)
    centreline = np.asarray(json.loads(args.truth.read_text())["isthmus"]["centerline_mm"])
    started = time.perf_counter()
    graph = TissueGraph.of(mesh)
    anchor_set = anchors(graph)
    graph_s = time.perf_counter() - started
    rows = []
    for at in args.at:
        activation, cycle, wrap_point = circuit_map(graph, centreline, at, args.cv)
        started = time.perf_counter()
        site = find_critical_site(
            graph,
            anchor_set,
            Circuit(1, cycle, activation),
            radius_mm=args.radius,
            isthmus_lines=args.isthmus_lines,
        )
        cut_s = time.perf_counter() - started
        started = time.perf_counter()
        lesion = plan_lesion(graph, site, args.radius)
        ablated = apply_lesions(mesh, [lesion])
        lesion_s = time.perf_counter() - started
        rows.append(
            {
                "wrap_at": at,
                "wrap_point_mm": [round(float(v), 2) for v in wrap_point],
                "cycle_ms": round(cycle, 1),
                "cut_nodes": int(site.cut_nodes.size),
                "anchors": site.anchors,
                "border_zone_fraction": round(site.border_zone_fraction, 3),
                "cross_section_mm2": round(site.cross_section_mm2, 1),
                "centre_to_centreline_mm": round(
                    distance_to_centreline_mm(site.centre_mm, centreline), 2
                ),
                "first_point_to_centreline_mm": round(
                    distance_to_centreline_mm(lesion.points[0].centre_mm, centreline), 2
                ),
                "cut_max_to_centreline_mm": round(
                    max(
                        distance_to_centreline_mm(p, centreline)
                        for p in graph.points_mm[site.cut_nodes]
                    ),
                    2,
                ),
                "points": len(lesion.points),
                "volume_ml": round(lesion.volume_ml, 3),
                "lesion_volume_check_ml": round(ablated.volume_ml(4), 3),
                "cut_s": round(cut_s, 1),
                "lesion_s": round(lesion_s, 1),
            }
        )
        print(json.dumps(rows[-1]))
    result = {
        "mesh_nodes": int(mesh.n_points),
        "tissue_nodes": graph.n,
        "elements": int(mesh.n_elements),
        "anchors": anchor_set.names,
        "graph_s": round(graph_s, 1),
        "radius_mm": args.radius,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
