"""Cost of ``prepare`` on analytic meshes: surfaces, coordinates, fibres and sites.

For each (kind, edge) the analytic mesh (:mod:`cardiotwin.meshing.ellipsoid`: the adult LV,
the biventricular variant, the atrial shell) is built, stripped of its surfaces and prepared
in a fresh process, so each row's peak memory (``ru_maxrss``) is its own. Reported per row:
nodes, elements, wall time of the mesh build, of ``identify_surfaces``, of the coordinates
(Laplace solves), of the fibres, of the sites, of the whole ``prepare``, and the peak RSS.

A benchmark, not a test: nothing is asserted. On a shared machine, note the load.

    .venv/bin/python benchmarks/bench_prepare.py --json out/bench/prepare.json
    .venv/bin/python benchmarks/bench_prepare.py --rows lv:2 lv:1 biv:1.5 atrium:1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

from bench_cell import cpu_model_name, threading_environment


def _row(kind: str, edge_mm: float, queue) -> None:
    from cardiotwin.meshing import coordinates, fibres, sites
    from cardiotwin.meshing.ellipsoid import atrial_shell, biv_ellipsoid, lv_ellipsoid
    from cardiotwin.meshing.mesh import Mesh
    from cardiotwin.meshing.prepare import prepare
    from cardiotwin.pipeline.config import AnatomyConfig

    config = AnatomyConfig(septum_point_mm=(10.0, 0.0, 0.0))
    build = {"lv": lv_ellipsoid, "biv": biv_ellipsoid, "atrium": atrial_shell}[kind]
    start = time.perf_counter()
    analytic = build(edge_mm)
    timings = {"build_s": time.perf_counter() - start}
    bare = Mesh(analytic.points_mm, analytic.tets)
    chamber = "atrium" if kind == "atrium" else "ventricle"
    start = time.perf_counter()
    found, _ = coordinates.identify_surfaces(bare, chamber, feature_angle_deg=50.0)
    timings["surfaces_s"] = time.perf_counter() - start
    with_surfaces = Mesh(bare.points_mm, bare.tets, surfaces=found)
    start = time.perf_counter()
    if chamber == "ventricle":
        fields = coordinates.ventricular_coordinates(with_surfaces, septum_point_mm=(10, 0, 0))
        timings["coordinates_s"] = time.perf_counter() - start
        start = time.perf_counter()
        fibres.ventricular_fibres(with_surfaces, fibres.FibreAngles(60, -60, 0, 0), fields)
    else:
        fields = coordinates.atrial_coordinates(with_surfaces)
        timings["coordinates_s"] = time.perf_counter() - start
        start = time.perf_counter()
        fibres.atrial_fibres(with_surfaces, fields)
    timings["fibres_s"] = time.perf_counter() - start
    start = time.perf_counter()
    prepared, _ = prepare(bare, chamber, config)
    timings["prepare_s"] = time.perf_counter() - start
    start = time.perf_counter()
    if chamber == "ventricle":
        sites.ventricular_sites(prepared, placement="endo", radius_mm=2.0)
    else:
        sites.atrial_sites(prepared, 20, placement="endo", radius_mm=2.0)
    timings["sites_s"] = time.perf_counter() - start
    queue.put(
        {
            "kind": kind,
            "edge_mm": edge_mm,
            "nodes": analytic.n_points,
            "elements": analytic.n_elements,
            **{k: round(v, 3) for k, v in timings.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rows",
        nargs="+",
        default=["lv:2", "lv:1.5", "lv:1", "biv:2", "biv:1.5", "atrium:1.5", "atrium:1"],
        help="kind:edge_mm pairs (kind: lv, biv, atrium)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    rows = []
    header = "kind    edge  nodes     elements  build  surf   coords fibres sites  prepare  RSS MB"
    print(header)
    for item in args.rows:
        kind, edge = item.split(":")
        queue = context.Queue()
        process = context.Process(target=_row, args=(kind, float(edge), queue))
        process.start()
        process.join()
        if process.exitcode != 0:  # the traceback is on stderr; keep going
            print(f"{kind:7s} {float(edge):4.1f}  failed (exit code {process.exitcode})")
            rows.append({"kind": kind, "edge_mm": float(edge), "failed": process.exitcode})
            continue
        row = queue.get()
        rows.append(row)
        print(
            f"{row['kind']:7s} {row['edge_mm']:4.1f}  {row['nodes']:8d}  {row['elements']:8d}  "
            f"{row['build_s']:5.2f}  {row['surfaces_s']:5.2f}  {row['coordinates_s']:5.2f}  "
            f"{row['fibres_s']:5.2f}  {row['sites_s']:5.2f}  {row['prepare_s']:6.2f}  "
            f"{row['peak_rss_mb']:7.0f}"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": cpu_model_name(),
            "load_average": os.getloadavg(),
            "threads": threading_environment(),
            "command": " ".join([sys.executable, *sys.argv]),
            "rows": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
