"""The ablation must-shows on a phantom at any fidelity, from an induction already run.

Give the phantom folder (its ``truth.json``), the prepared mesh, the ``induction.json`` that
``cardiotwin induce`` wrote for it, and the configuration it ran with (TP06 at ≤ 0.5 mm for
the full-fidelity figures; benchmarks/README.md "Induction" says how to get there). Then:

- ventricle (``lv-infarct``): ``cardiotwin ablate`` with ``--controls`` random border-zone
  controls; prints the first lesion's distance to the designed isthmus centreline against
  its radius, whether the mesh is non-inducible from every site afterwards, rounds, total
  lesion volume, and how many controls left it inducible;
- atrium (``la-fibrosis``): ``cardiotwin ablate`` twice, ``strategy: pvi`` and ``strategy:
  targeted``; prints the inducing sites before, after PVI alone and after the driver-targeted
  lesions (those cut off from the atrial body by the lesions, e.g. inside a PVI ring, apart).

Usage:
    python benchmarks/ablation_phantoms.py --phantom data_samples/lv-infarct \
        --mesh out/lv/prepared.vtu --induction out/lv/induction/induction.json \
        --config out/lv/config.yaml --controls 5 --out out/lv/ablation --json out/lv/ab.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from cardiotwin.pipeline.cli import main as cardiotwin
from cardiotwin.pipeline.phantoms.infarct import distance_to_centreline_mm


def ablate(args, ablation: dict, out: Path) -> tuple[dict, float]:
    settings = yaml.safe_load(args.config.read_text()) or {}
    settings["ablation"] = {**settings.get("ablation", {}), **ablation}
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    started = time.perf_counter()
    command = ["ablate", "--mesh", args.mesh, "--induction", args.induction, "--config", config,
               "--out", out] + (["--backend", args.backend] if args.backend else [])  # fmt: skip
    assert cardiotwin([str(a) for a in command]) == 0
    return json.loads((out / "ablation.json").read_text()), time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", type=Path, required=True, help="folder with truth.json")
    parser.add_argument("--mesh", type=Path, required=True, help="the prepared mesh")
    parser.add_argument("--induction", type=Path, required=True, help="its induction.json")
    parser.add_argument("--config", type=Path, required=True, help="the induction's config")
    parser.add_argument("--controls", type=int, default=5, help="random controls (ventricle)")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    truth = json.loads((args.phantom / "truth.json").read_text())
    induction = json.loads(args.induction.read_text())
    result = {
        "chamber": induction["chamber"],
        "sites_paced": induction["sites_paced"],
        "sites_inducing_before": induction["sites_inducing"],
        "unique_vts_before": len(induction["unique_vts"]),
    }
    if induction["chamber"] == "ventricle":
        report, wall = ablate(args, {"random_controls": args.controls}, args.out / "targeted")
        centreline = truth["isthmus"]["centerline_mm"]
        first = report["lesions"][0] if report["lesions"] else None
        placed = [c for c in report["controls"] if c.get("placed")]
        result.update(
            status=report["status"],
            non_inducible_after=report["non_inducible_after"],
            rounds=report["rounds"],
            total_volume_ml=report["total_volume_ml"],
            lesion_points=len(report["lesions"]),
            first_lesion_mm=None if first is None else first["center_mm"],
            first_lesion_radius_mm=None if first is None else first["radius_mm"],
            first_lesion_to_isthmus_mm=None
            if first is None
            else round(distance_to_centreline_mm(first["center_mm"], centreline), 2),
            controls_placed=len(placed),
            controls_still_inducible=sum(1 for c in placed if not c["non_inducible_after"]),
            wall_s=round(wall, 1),
        )
    else:
        for strategy in ("pvi", "targeted"):
            report, wall = ablate(args, {"strategy": strategy}, args.out / strategy)
            after = report["per_round"][-1].get("induction", {})
            result[strategy] = {
                "status": report["status"],
                "rounds": report["rounds"],
                "total_volume_ml": report["total_volume_ml"],
                "sites_inducing_after": len(after.get("sites_inducing", [])),
                # sites inside a PVI ring (cut off from the atrial body) are counted apart
                "sites_inducing_not_isolated_after": len(
                    after.get("sites_inducing_not_isolated", [])
                ),
                "sites_isolated_after": after.get("sites_isolated", []),
                "sites_in_lesions_after": after.get("sites_in_lesions", []),
                "wall_s": round(wall, 1),
            }
    for key, value in result.items():
        print(f"{key:30s} {value}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
