"""Must-shows of the ablation issue on the phantoms, end to end through the command line.

``cardiotwin phantom`` → ``segment`` (the pipeline's own segmentation) → ``mesh`` →
``prepare`` (fibres, coordinates, pacing sites) → ``induce`` → ``ablate``. They switch on by
themselves once the meshing stage's ``prepare`` command is registered in
``cardiotwin.pipeline.cli.COMMANDS`` (until then they are skipped, saying so). CI sizes: a
2 mm mesh, the fast Mitchell-Schaeffer phantom tissue of the induction tests, the pacing
sites nearest the isthmus (ventricle) or a few spread sites (atrium); the full-fidelity runs
are benchmarks/ablation_phantoms.py.

- ``lv-infarct``: the first lesion's centre lies within its radius of the designed isthmus
  centreline (``truth.json``); after ablation no paced site induces; random border-zone
  lesions of the same volume elsewhere leave it inducible (how often: the benchmark).
- ``la-fibrosis`` at a high burden: lesions at the drivers' critical sites leave fewer
  inducing sites than pulmonary vein isolation alone.
"""

import json

import numpy as np
import pytest
import yaml

from cardiotwin.pipeline.cli import COMMANDS, main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not {"mesh", "prepare", "induce"} <= set(COMMANDS),
        reason="needs the meshing stage's cardiotwin prepare (pacing sites), not merged yet",
    ),
]

EDGE_MM = 2.0
#: the fast phantom tissue (Mitchell-Schaeffer with published time constants, calibrated to
#: 0.6 / 0.22 m/s; border zone τ_in × 2.6, τ_close × 1.1, transverse σ × 0.1: the
#: induction tests' choice, see test_induction_phantoms.py)
VENTRICLE_TISSUE = {
    "model": "mitchell-schaeffer",
    "regions": {
        "healthy": {"tag": 1, "cv_m_per_s": [0.6, 0.22]},
        "border_zone": {
            "tag": 2,
            "sigma_scale": [1.0, 0.1],
            "relative_to": "healthy",
            "parameter_scale": {"tau_in": 2.6, "tau_close": 1.1},
        },
        "dense_scar": {"tag": 3, "conducting": False},
        "lesion": {"tag": 4, "conducting": False},
    },
}


def distance_to_polyline(point, polyline) -> float:
    points = np.asarray(polyline, dtype=float)
    p = np.asarray(point, dtype=float)
    a, b = points[:-1], points[1:]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
    return float(np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=1)))


def prepared_case(tmp_path, kind: str, *phantom_args: str):
    """phantom → segment → mesh → prepare; (case folder, prepared mesh, truth)."""
    from cardiotwin.meshing.io import read_mesh

    case = tmp_path / kind
    assert main(["phantom", kind, "--out", str(case), "--seed", "3", *phantom_args]) == 0
    labels = case / "labels.nii.gz"
    chamber = "atrium" if kind.startswith("la") else "ventricle"
    segment = ["segment", "--lge", str(case / "lge.nii.gz"), "--wall", str(case / "wall.nii.gz")]
    assert main([*segment, "--out", str(labels)]) == 0
    mesh_args = ["mesh", "--labels", str(labels), "--kind", chamber, "--edge-mm", str(EDGE_MM)]
    if chamber == "atrium":
        mesh_args += ["--lge", str(case / "lge.nii.gz"), "--blood", str(case / "blood.nii.gz")]
    assert main([*mesh_args, "--out", str(case / "mesh.vtu")]) == 0
    prepared = case / "prepared.vtu"
    assert main(["prepare", "--mesh", str(case / "mesh.vtu"), "--out", str(prepared)]) == 0
    truth = json.loads((case / "truth.json").read_text())
    return case, read_mesh(prepared), truth


def induce_and_ablate(case, settings: dict, sites: list[str], out: str) -> dict:
    config = case / f"{out}.yaml"
    config.write_text(yaml.safe_dump(settings))
    common = ["--mesh", str(case / "prepared.vtu"), "--config", str(config), "--no-progress"]
    induction = case / "induction"
    if not (induction / "induction.json").exists():
        assert main(["induce", *common, "--sites", ",".join(sites), "--out", str(induction)]) == 0
    assert main(["ablate", *common, "--induction", str(induction / "induction.json"),
                 "--out", str(case / out)]) == 0  # fmt: skip
    return json.loads((case / out / "ablation.json").read_text())


def test_lv_infarct_lesion_on_the_isthmus_makes_it_non_inducible(tmp_path):
    case, mesh, truth = prepared_case(tmp_path, "lv-infarct")
    centreline = truth["isthmus"]["centerline_mm"]
    names = [n for n in mesh.node_sets if n.startswith("AHA-")]
    distance = {
        n: distance_to_polyline(mesh.points_mm[mesh.node_sets[n][0]], centreline) for n in names
    }
    sites = sorted(names, key=distance.get)[:3]  # CI time: the sites nearest the isthmus
    settings = {
        "simulation": {"dt_ms": 0.1, "backend": "cpu"},
        "tissue": {"cache_dir": str(tmp_path / "cache"), "ventricle": VENTRICLE_TISSUE},
        "induction": {"pes": {"s1_count": 2}, "detection": {"sustained_after_ms": 1000}},
        "ablation": {"random_controls": 2},
    }
    report = induce_and_ablate(case, settings, sites, "ablation")
    assert report["input_inducible"], report["note"]
    first = report["lesions"][0]
    assert distance_to_polyline(first["center_mm"], centreline) <= first["radius_mm"]
    assert report["non_inducible_after"], report["note"]
    assert report["total_volume_ml"] > 0 and report["rounds"] >= 1
    # random lesions of the targeted volume elsewhere: not all of them stop it
    summary = report["controls_summary"]
    assert summary["placed"] >= 1 and summary["non_inducible_after"] < summary["placed"]


def test_la_fibrosis_driver_lesions_beat_pulmonary_vein_isolation(tmp_path):
    case, mesh, _ = prepared_case(tmp_path, "la-fibrosis", "--fibrosis-percent", "35")
    names = sorted(n for n in mesh.node_sets if n.startswith(("LA-", "RA-")))
    sites = names[:: max(1, len(names) // 4)][:4]  # CI time: four spread sites
    base = {
        "simulation": {"dt_ms": 0.1, "backend": "cpu"},
        "tissue": {"cache_dir": str(tmp_path / "cache")},
        "induction": {"detection": {"atrial_sustained_after_ms": 2000}},
    }
    pvi = induce_and_ablate(case, {**base, "ablation": {"strategy": "pvi"}}, sites, "pvi")
    targeted = induce_and_ablate(
        case, {**base, "ablation": {"strategy": "targeted"}}, sites, "drivers"
    )
    if not targeted["input_inducible"]:
        pytest.skip(f"the phantom induced no driver from {sites}: {targeted['note']}")

    def inducing_after(report):
        return len(report["per_round"][-1]["induction"]["sites_inducing"])

    assert inducing_after(targeted) < inducing_after(pvi) or (
        inducing_after(targeted) == 0 and inducing_after(pvi) == 0
    ), (inducing_after(targeted), inducing_after(pvi))
