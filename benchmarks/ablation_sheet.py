"""Ablation of the figure-of-eight sheet, end to end through the command line, with many
random controls: how well the critical site is found and how often a random lesion works.

The sheet and its tissue are those of the tests (tests/pipeline/ablation_cases.py: a 5 mm
border-zone isthmus between two scar blocks, 4 mm healthy gaps at the sides, Mitchell-
Schaeffer test tissue, 2 pacing sites, a short PES). ``cardiotwin induce`` then ``cardiotwin
ablate`` run with ``--controls`` random border-zone lesions of the targeted volume; the
script prints (and writes with ``--json``): nodes, the first lesion's distance to the
isthmus centre line, rounds, lesion volume, non-inducibility after ablation, how many random
controls left the sheet inducible, and the wall time of each stage.

Usage:
    python benchmarks/ablation_sheet.py --dx 1.0 --controls 10 --json out/ablation_sheet.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipeline"))  # the sheet lives with the tests

from ablation_cases import config, sheet  # noqa: E402
from test_ablation_sheet import distance_to_isthmus_mm  # noqa: E402

from cardiotwin.meshing.io import write_mesh  # noqa: E402
from cardiotwin.pipeline.cli import main  # noqa: E402


def run(dx: float, controls: int, radius: float, seed: int, folder: Path) -> dict:
    mesh = sheet(dx)
    write_mesh(mesh, folder / "sheet.vtu")
    settings = config(
        folder / "cache",
        ablation={"lesion_radius_mm": radius, "random_controls": controls, "seed": seed},
    )
    (folder / "cfg.json").write_text(settings.model_dump_json())
    common = ["--mesh", str(folder / "sheet.vtu"), "--config", str(folder / "cfg.json")]
    started = time.perf_counter()
    assert main(["induce", *common, "--no-progress", "--out", str(folder / "induction")]) == 0
    induce_s = time.perf_counter() - started
    started = time.perf_counter()
    induction_json = str(folder / "induction" / "induction.json")
    assert main(["ablate", *common, "--no-progress", "--induction", induction_json,
                 "--out", str(folder / "ablation")]) == 0  # fmt: skip
    ablate_s = time.perf_counter() - started
    induction = json.loads((folder / "induction" / "induction.json").read_text())
    ablation = json.loads((folder / "ablation" / "ablation.json").read_text())
    first = ablation["lesions"][0] if ablation["lesions"] else None
    placed = [c for c in ablation["controls"] if c.get("placed")]
    target = ablation["per_round"][1]["targets"][0] if len(ablation["per_round"]) > 1 else {}
    return {
        "dx_mm": dx,
        "nodes": int(mesh.n_points),
        "radius_mm": radius,
        "sites_inducing_before": induction["sites_inducing"],
        "unique_vts": len(induction["unique_vts"]),
        "status": ablation["status"],
        "rounds": ablation["rounds"],
        "lesion_points": len(ablation["lesions"]),
        "total_volume_ml": ablation["total_volume_ml"],
        "first_lesion_mm": None if first is None else first["center_mm"],
        "first_lesion_to_isthmus_mm": None
        if first is None
        else round(distance_to_isthmus_mm(first["center_mm"]), 3),
        "site_cv_m_per_s": target.get("cv_site_m_per_s"),
        "circuit_median_cv_m_per_s": target.get("cv_median_m_per_s"),
        "non_inducible_after": ablation["non_inducible_after"],
        "controls_placed": len(placed),
        "controls_still_inducible": sum(1 for c in placed if not c["non_inducible_after"]),
        "control_volumes_ml": [c["volume_ml"] for c in placed],
        "induce_wall_s": round(induce_s, 1),
        "ablate_wall_s": round(ablate_s, 1),
        "ablate_inductions": 1 + ablation["rounds"] + len(placed),
    }


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dx", type=float, default=1.0, help="mesh spacing, mm")
    parser.add_argument("--controls", type=int, default=10, help="random control draws")
    parser.add_argument("--radius", type=float, default=3.0, help="lesion radius, mm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--keep", type=Path, help="keep the run's files in this folder")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.dx, args.controls, args.radius, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.dx, args.controls, args.radius, args.seed, Path(tmp))
    for key, value in result.items():
        print(f"{key:30s} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
