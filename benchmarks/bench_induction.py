"""Speed of a whole induction study: batched (trials as batch members) vs site by site.

Runs the configured protocol from ``--sites`` of a mesh twice: **batched** (the default:
all sites' S1 trains in one batch, every site's extrastimulus trials sharing the batch,
``speculative_intervals`` coupling intervals side by side, finished trials compacted away)
and **site by site** (one site after another, one trial at a time: ``max_members`` 1,
``speculative_intervals`` 1; still branching from each site's S1 snapshot). Prints and
writes wall time, node-steps/s, trials and the ratio, and checks that both modes reach
the same answer per site (inducible, coupling intervals).

The mesh: ``--mesh`` a ``.vtu`` (meshing.io) or an ``.npz`` written by ``--save-npz`` (numpy
only: the GPU machine has no meshio/pyvista). The configuration: ``--config`` (YAML/JSON,
needs pydantic) or ``--config-json`` (the whole configuration dumped by ``--save-config``,
read without pydantic), so the same run goes to a machine with a bare numpy/numba stack.

    python benchmarks/phantom_voxel_mesh.py data_samples/lv-infarct --spacing 2 --out out/lv2.vtu
    python benchmarks/bench_induction.py --mesh out/lv2.vtu --config configs/x.yaml \\
        --save-npz out/lv2.npz --save-config out/x.json --sites AHA-7,AHA-13 --json out/ind.json
    python benchmarks/bench_induction.py --mesh out/lv2.npz --config-json out/x.json \\
        --backend cuda --sites all --modes batched --json out/ind_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: configuration keys whose values are mappings, not sections
_MAPPINGS = {"regions", "parameter_scale"}


def namespace(data, key: str = ""):
    """A configuration dump (JSON) as attribute-accessible objects (no pydantic needed)."""
    if isinstance(data, dict):
        if key in _MAPPINGS:
            return {k: namespace(v, k if key == "parameter_scale" else "") for k, v in data.items()}
        return SimpleNamespace(**{k: namespace(v, k) for k, v in data.items()})
    if isinstance(data, list):
        return tuple(namespace(v) for v in data)
    return data


def load_mesh(path: Path):
    from cardiotwin.meshing.mesh import Mesh

    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            sets = {k[4:]: data[k] for k in data.files if k.startswith("set:")}
            fields = {k[6:]: data[k] for k in data.files if k.startswith("field:")}
            fibres = data["fibres"] if "fibres" in data.files else None
            return Mesh(
                data["points_mm"],
                data["tets"],
                data["region"],
                fibres=fibres,
                node_sets=sets,
                point_data=fields,
            )
    from cardiotwin.meshing.io import read_mesh

    return read_mesh(path)


def save_npz(mesh, path: Path) -> None:
    arrays = {"points_mm": mesh.points_mm, "tets": mesh.tets, "region": mesh.region}
    if mesh.fibres is not None:
        arrays["fibres"] = mesh.fibres
    arrays.update({f"set:{k}": v for k, v in mesh.node_sets.items()})
    arrays.update({f"field:{k}": v for k, v in mesh.point_data.items()})
    np.savez_compressed(path, **arrays)


def with_batch(config, **batch):
    """A copy of ``config`` with batch settings changed (pydantic model or namespace)."""
    if hasattr(config, "model_copy"):
        induction = config.induction.model_copy(
            update={"batch": config.induction.batch.model_copy(update=batch)}
        )
        return config.model_copy(update={"induction": induction})
    new = namespace(json.loads(json.dumps(config, default=vars)))
    for k, v in batch.items():
        setattr(new.induction.batch, k, v)
    return new


def run(mesh, config, sites, backend: str, progress: bool) -> dict:
    from cardiotwin.pipeline.induction import run_induction

    started = time.perf_counter()
    study = run_induction(mesh, config, backend=backend, sites=sites, progress=progress)
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "stats": study.stats,
        "trials": sum(len(o.trials) for o in study.sites),
        "sites": {
            o.site.name: {
                "status": o.status,
                "induced": o.induced,
                "coupling_intervals_ms": o.coupling_intervals_ms,
                "vt_id": o.vt_id,
                "trials": len(o.trials),
            }
            for o in study.sites
        },
        "unique_vts": [
            {
                "id": vt.id,
                "cycle_length_ms": round(vt.analysis.cycle_length_ms, 1),
                "exit_mm": vt.analysis.exit_mm,
                "sites": sorted({s for s, _ in vt.trials}),
            }
            for vt in study.vts
        ],
        "tissue": {k: study.tissue.record[k] for k in ("model", "spacing_mm", "conductivity")},
        "backend": study.backend,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mesh", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--config-json", type=Path)
    parser.add_argument("--save-npz", type=Path)
    parser.add_argument("--save-config", type=Path)
    parser.add_argument("--sites", default="all")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["batched", "site-by-site"],
        choices=("batched", "site-by-site"),
    )
    parser.add_argument(
        "--speculative",
        type=int,
        help="batched mode: induction.batch.speculative_intervals (default: the config's)",
    )
    parser.add_argument(
        "--compact-fraction",
        type=float,
        help="batched mode: induction.batch.compact_fraction (default: the config's)",
    )
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    mesh = load_mesh(args.mesh)
    if args.save_npz:
        save_npz(mesh, args.save_npz)
    if args.config_json:
        config = namespace(json.loads(args.config_json.read_text()))
    else:
        from cardiotwin.pipeline.config import load_config

        config = load_config(args.config)
        if args.save_config:
            args.save_config.write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    from cardiotwin.pipeline.induction.sites import chamber_of, site_names

    chamber = config.induction.chamber
    chamber = chamber_of(mesh) if chamber == "auto" else chamber
    names = site_names(mesh, chamber) if args.sites == "all" else args.sites.split(",")
    results = {
        "mesh_nodes": mesh.n_points,
        "sites": names,
        "machine": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "command": " ".join(os.sys.argv),
    }
    for mode in args.modes:
        if mode == "batched":
            changes = {
                k: v
                for k, v in (
                    ("speculative_intervals", args.speculative),
                    ("compact_fraction", args.compact_fraction),
                )
                if v is not None
            }
            settings = with_batch(config, **changes) if changes else config
        else:
            settings = with_batch(config, max_members=1, speculative_intervals=1)
        results[mode] = run(mesh, settings, names, args.backend, args.progress)
        print(
            mode,
            json.dumps({k: results[mode][k] for k in ("wall_s", "trials")}),
            results[mode]["stats"]["node_steps_per_s"],
            flush=True,
        )
    if "batched" in results and "site-by-site" in results:
        a, b = results["batched"], results["site-by-site"]
        results["speed_up"] = round(b["wall_s"] / a["wall_s"], 3)
        results["same_answer"] = all(
            a["sites"][n]["induced"] == b["sites"][n]["induced"]
            and a["sites"][n]["coupling_intervals_ms"] == b["sites"][n]["coupling_intervals_ms"]
            for n in names
        )
        print("speed-up", results["speed_up"], "same answer", results["same_answer"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
