"""Must-shows of the ablation issue on the phantoms, end to end through the command line.

``cardiotwin phantom`` → ``segment`` (the pipeline's own segmentation) → ``mesh`` →
``prepare`` (fibres, coordinates, pacing sites) → ``induce`` → ``ablate``, with the
induction must-shows' pipeline, CI mesh (2 mm) and fast phantom tissues
(test_induction_phantoms.py). Each re-runs the whole induction once per round and per random
control (three or four studies of the 2 mm phantom: about an hour on the shared 2-core box,
where the induction must-show's one study took 56 min), so they live with the benchmarks
(``python -m pytest benchmarks/phantom_must_shows``), not in CI. The full-fidelity runs are
benchmarks/ablation_phantoms.py.

- ``lv-infarct``: the first lesion's centre lies within its radius of the designed isthmus
  centreline (``truth.json``); after ablation no paced site induces; random border-zone
  lesions of the same volume elsewhere leave it inducible (how often: the benchmark).
- ``la-fibrosis`` at a high burden (35 %): lesions at the drivers' critical sites leave
  fewer inducing sites than pulmonary vein isolation alone (sites the PVI rings cut off from
  the atrial body counted apart).
"""

import json

import pytest
import yaml
from test_induction_phantoms import (
    ATRIAL_SITES,
    ATRIAL_TISSUE,
    PHANTOM_TISSUE,
    _nearest_to_isthmus,
    _pipeline,
)

from cardiotwin.pipeline.cli import COMMANDS, main
from cardiotwin.pipeline.phantoms.infarct import distance_to_centreline_mm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not {"mesh", "prepare", "induce"} <= set(COMMANDS),
        reason="needs the meshing stage's cardiotwin prepare (pacing sites), not merged yet",
    ),
]


def ablate(tmp_path, case: str, settings: dict, ablation: dict, out: str) -> dict:
    """``cardiotwin ablate`` on the case ``_pipeline`` left in ``tmp_path/case``."""
    folder = tmp_path / case
    config = folder / f"{out}.yaml"
    tissue = {**settings["tissue"], "cache_dir": str(tmp_path / "cache")}
    config.write_text(yaml.safe_dump({**settings, "tissue": tissue, "ablation": ablation}))
    induction = folder / "induction" / "induction.json"
    args = ["ablate", "--mesh", folder / "mesh.vtu", "--config", config, "--no-progress",
            "--induction", induction, "--out", folder / out]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return json.loads((folder / out / "ablation.json").read_text())


#: the induction must-show's tissue and protocol with the pipeline's own sustained-VT
#: criterion, activity 2 s after the last stimulus (not 1 s, the induction must-show's CI
#: shortcut): after the channel is cut, AHA-7's S4 at 250 ms leaves a wave that wanders round
#: the scar for 1.8 s and dies (benchmarks/RESULTS.md, "A VT that dies is not sustained"),
#: which a 1 s window counts as a VT and ablation then chases
LV_ABLATION_TISSUE = {
    **PHANTOM_TISSUE,
    "induction": {
        **PHANTOM_TISSUE["induction"],
        "detection": {**PHANTOM_TISSUE["induction"]["detection"], "sustained_after_ms": 2000},
    },
}


def test_lv_infarct_lesion_on_the_isthmus_makes_it_non_inducible(tmp_path):
    settings = LV_ABLATION_TISSUE
    induction, truth = _pipeline(tmp_path, "lv-infarct", _nearest_to_isthmus, tissue=settings)
    assert induction["inducible"], induction["note"]
    report = ablate(tmp_path, "lv-infarct", settings, {"random_controls": 1}, "ablation")
    centreline = truth["isthmus"]["centerline_mm"]
    first = report["lesions"][0]
    assert distance_to_centreline_mm(first["center_mm"], centreline) <= first["radius_mm"]
    assert report["non_inducible_after"], report["note"]
    assert report["total_volume_ml"] > 0 and report["rounds"] >= 1
    # a random lesion of the targeted volume elsewhere does not stop it (how often: the
    # benchmark, with more draws)
    summary = report["controls_summary"]
    assert summary["placed"] == 1 and summary["non_inducible_after"] == 0


def test_la_fibrosis_driver_lesions_beat_pulmonary_vein_isolation(tmp_path):
    phantom = ("--fibrosis-percent", "35")
    induction, _ = _pipeline(
        tmp_path, "la-fibrosis", lambda mesh, truth: ATRIAL_SITES,
        tissue=ATRIAL_TISSUE, phantom=phantom,
    )  # fmt: skip
    assert induction["inducible"], induction["note"]
    case = "la-fibrosis" + "".join(phantom)
    pvi = ablate(tmp_path, case, ATRIAL_TISSUE, {"strategy": "pvi"}, "pvi")
    drivers = ablate(tmp_path, case, ATRIAL_TISSUE, {"strategy": "targeted"}, "drivers")

    def inducing_after(report) -> int:
        # sites inside a PVI ring are listed apart: pacing there does not test the substrate
        return len(report["per_round"][-1]["induction"]["sites_inducing_not_isolated"])

    counts = {"pvi": inducing_after(pvi), "drivers": inducing_after(drivers)}
    print(f"atrial sites still inducing after ablation: {counts}; lesions: PVI "
          f"{pvi['total_volume_ml']} ml, targeted {drivers['total_volume_ml']} ml")  # fmt: skip
    # the issue's must-show: driver-targeted lesions reduce the number of inducing sites more
    # than PVI alone. Seed 3, 2 mm, these 10 sites: 2 induce before ablation (LA-01, LA-15);
    # benchmarks/RESULTS.md, "Ablation of the atrial driver"
    assert counts["drivers"] < counts["pvi"], counts
