"""The lv-infarct must-show's induction from three label maps of the same phantom image.

The induction and ablation must-shows (``benchmarks/phantom_must_shows``) pace the sample
infarct (phantom seed 3) at CI fidelity: the pipeline's own FWHM segmentation, a 2 mm mesh,
Mitchell–Schaeffer, the 3 AHA sites nearest the isthmus, a VT sustained 2 s after the last
stimulus (the ablation must-show's criterion). This runs that induction from

- ``default``: the default segmentation (FWHM with the fitted endocardium since 2026-12-05),
- ``fitted``: FWHM with the fitted endocardium (``--fit-endocardium``; the default now),
- ``blood-edge``: FWHM with the blood-edge step alone (``--no-fit-endocardium``, the default
  until 2026-12-05),
- ``truth``: the phantom's true labels,

so that what the induction finds can be told apart from what the segmentation adds.
About 5 minutes per label map on a quiet 2-core box (RESULTS.md, "The sample's VT at CI fidelity").

Usage (``--min-loop-ms 400``: the phantom with the longer circuit, RESULTS.md):
    python benchmarks/induction_by_labels.py truth --out out/by_labels/truth
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "phantom_must_shows"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("labels", choices=("default", "fitted", "blood-edge", "truth"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--min-loop-ms", type=float, help="the phantom's circuit: cardiotwin phantom --min-loop-ms"
    )
    parser.add_argument(
        "--sites", help="all, or NAME,...; default: the 3 AHA sites nearest the isthmus"
    )
    args = parser.parse_args()
    from test_ablation_phantoms import LV_ABLATION_TISSUE
    from test_induction_phantoms import EDGE_MM, _nearest_to_isthmus

    from cardiotwin.meshing.io import read_mesh
    from cardiotwin.pipeline.cli import main as cli
    from cardiotwin.pipeline.images import load_nifti, save_nifti
    from cardiotwin.pipeline.segmentation import DEFAULTS, segment

    case = args.out / "lv-infarct"
    argv = ["phantom", "lv-infarct", "--out", str(case), "--seed", str(args.seed)]
    if args.min_loop_ms is not None:
        argv += ["--min-loop-ms", str(args.min_loop_ms)]
    assert cli(argv) == 0
    labels = case / "labels.nii.gz"
    if args.labels == "truth":
        shutil.copy(case / "truth_labels.nii.gz", labels)
    else:
        settings = DEFAULTS["fwhm"]
        if args.labels == "fitted":
            settings = replace(settings, fit_endocardium=True, maximum_at_least_blood=True)
        elif args.labels == "blood-edge":
            settings = replace(settings, fit_endocardium=False, maximum_at_least_blood=False)
        lge, wall = load_nifti(case / "lge.nii.gz"), load_nifti(case / "wall.nii.gz")
        save_nifti(segment(lge, wall, settings).labels, labels)
    mesh = case / "mesh.vtu"
    argv = ["mesh", "--labels", str(labels), "--kind", "ventricle", "--edge-mm", str(EDGE_MM)]
    assert cli([*argv, "--out", str(mesh)]) == 0
    config = dict(LV_ABLATION_TISSUE)
    config["tissue"] = {**config["tissue"], "cache_dir": str(args.out / "cache")}
    (case / "config.yaml").write_text(yaml.safe_dump(config))
    truth = json.loads((case / "truth.json").read_text())
    sites = args.sites or ",".join(_nearest_to_isthmus(read_mesh(mesh), truth))
    argv = ["induce", "--mesh", str(mesh), "--config", str(case / "config.yaml")]
    argv += ["--out", str(case / "induction"), "--sites", sites, "--no-progress"]
    assert cli(argv) == 0
    report = json.loads((case / "induction" / "induction.json").read_text())
    cycle_lengths = [round(vt["cycle_length_ms"], 1) for vt in report["unique_vts"]]
    print(json.dumps({"labels": args.labels, "sites": sites, "inducible": report["inducible"],
                      "note": report["note"], "cycle_lengths_ms": cycle_lengths}))  # fmt: skip


if __name__ == "__main__":
    main()
