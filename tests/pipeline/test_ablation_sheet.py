"""Ablation of a simulated figure-of-eight: induce, find the isthmus, ablate, re-induce.

The sheet of ablation_cases.py: programmed stimulation (the induction stage's own protocol
and detection, ``cardiotwin induce``) induces re-entry through the designed border-zone
isthmus from both sites; ``cardiotwin ablate`` must put its first lesion on the isthmus,
make the sheet non-inducible from every site in one round, and show with random
border-zone lesions of the same volume elsewhere that the place, not the volume, matters.
"""

import json

import numpy as np
import pytest
from ablation_cases import BAND_Y_MM, ISTHMUS_CENTRE_X_MM, config, sheet

from cardiotwin.meshing.io import read_mesh, write_mesh
from cardiotwin.meshing.tags import LESION
from cardiotwin.pipeline.cli import main

RADIUS_MM = 3.0
CONTROLS = 2


def distance_to_isthmus_mm(point) -> float:
    """Distance from ``point`` to the isthmus's centre line (x = 20 mm, y 11-19 mm), in the
    sheet's plane."""
    x, y = point[0], point[1]
    dy = max(BAND_Y_MM[0] - y, 0.0, y - BAND_Y_MM[1])
    return float(np.hypot(x - ISTHMUS_CENTRE_X_MM, dy))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sheet")
    write_mesh(sheet(), folder / "sheet.vtu")
    cfg = config(
        folder / "cache", ablation={"lesion_radius_mm": RADIUS_MM, "random_controls": CONTROLS}
    )
    (folder / "cfg.json").write_text(cfg.model_dump_json())
    common = [
        "--mesh",
        str(folder / "sheet.vtu"),
        "--config",
        str(folder / "cfg.json"),
        "--no-progress",
    ]
    assert main(["induce", *common, "--out", str(folder / "induction")]) == 0
    assert main(["ablate", *common, "--induction", str(folder / "induction" / "induction.json"),
                 "--out", str(folder / "ablation")]) == 0  # fmt: skip
    induction = json.loads((folder / "induction" / "induction.json").read_text())
    ablation = json.loads((folder / "ablation" / "ablation.json").read_text())
    return folder, induction, ablation


@pytest.mark.slow
def test_the_first_lesion_lies_on_the_designed_isthmus(study):
    _, induction, ablation = study
    assert induction["inducible"] and induction["sites_inducing"] == 2
    first = ablation["lesions"][0]
    assert first["radius_mm"] == RADIUS_MM
    assert distance_to_isthmus_mm(first["center_mm"]) <= RADIUS_MM
    target = ablation["per_round"][1]["targets"][0]
    assert target["anchors"] == ["dense scar", "dense scar"]  # joins the two scar blocks
    assert target["border_zone_fraction"] == 1.0
    # the cut lies where conduction is slowest: below the circuit's median
    assert target["cv_site_m_per_s"] < target["cv_median_m_per_s"]
    # both VTs (the circuit in either direction) are covered by the one line
    line = ablation["lesion_sets"][0]
    assert sorted(line["vt_ids"]) == sorted(vt["id"] for vt in induction["unique_vts"])
    assert len(ablation["lesion_sets"]) == 1
    # one transect: one piece of the line, whose ends are the cut's (the line's own)
    (piece,) = line["pieces"]
    assert piece["points"] == line["points"] and piece["ends_mm"] == line["line_ends_mm"]
    assert piece["volume_ml"] == pytest.approx(line["volume_ml"])


@pytest.mark.slow
def test_after_one_round_no_site_induces(study):
    _, _, ablation = study
    assert ablation["status"] == "non-inducible after ablation"
    assert ablation["non_inducible_after"] is True and ablation["rounds"] == 1
    after = ablation["per_round"][1]["induction"]
    assert after["complete"] and after["sites_paced"] == 2 and after["sites_inducing"] == []
    assert ablation["total_volume_ml"] == pytest.approx(
        sum(p["volume_ml"] for p in ablation["lesions"])
    )


@pytest.mark.slow
def test_random_border_zone_lesions_of_the_same_volume_do_not_stop_it(study):
    _, _, ablation = study
    summary = ablation["controls_summary"]
    assert summary["draws"] == CONTROLS and summary["placed"] == CONTROLS
    for control in ablation["controls"]:
        assert control["volume_ml"] >= ablation["total_volume_ml"]
        for point in control["lesions"]:
            assert distance_to_isthmus_mm(point["center_mm"]) > RADIUS_MM
    # the circuit survives lesions of at least the same volume away from the isthmus
    assert summary["non_inducible_after"] == 0


@pytest.mark.slow
def test_the_ablated_mesh_and_the_round_files(study):
    folder, _, ablation = study
    ablated = read_mesh(folder / "ablation" / "ablated.vtu")
    assert ablated.fingerprint() == ablation["ablated_mesh_fingerprint"]
    # the JSON gives ml to 5 decimals
    assert ablated.volume_ml(LESION) == pytest.approx(ablation["total_volume_ml"], abs=5.1e-6)
    assert read_mesh(folder / "sheet.vtu").fingerprint() == ablation["mesh_fingerprint"]
    round_one = json.loads((folder / "ablation" / "round-1-induction.json").read_text())
    assert round_one["mesh_fingerprint"] == ablated.fingerprint() and not round_one["inducible"]
    for k in range(1, CONTROLS + 1):
        control = json.loads((folder / "ablation" / f"control-{k}-induction.json").read_text())
        # every round's VTs are kept with their maps, on that round's ablated mesh (here the
        # control's lesion, not the target's)
        assert control["inducible"] and control["unique_vts"]
        for vt in control["unique_vts"]:
            assert vt["activation_map"] == f"control-{k}-vt-{vt['id']}.vtu"
            vt_map = read_mesh(folder / "ablation" / vt["activation_map"])
            lesion_ml = ablation["controls"][k - 1]["volume_ml"]
            assert vt_map.volume_ml(LESION) == pytest.approx(lesion_ml, abs=5.1e-6)
            assert np.isfinite(vt_map.point_data["activation_ms"]).any()


@pytest.mark.slow
def test_a_killed_ablation_resumes_its_rounds_from_their_journals(study, monkeypatch, tmp_path):
    import cardiotwin.pipeline.ablation.report as report

    folder, _, ablation = study
    assert not (folder / "ablation" / ".journal").exists()  # removed once written
    # killed as it reports, after every round had run: the journals stay
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["ablation"]["random_controls"] = 0
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    args = ["ablate", "--mesh", str(folder / "sheet.vtu"), "--config", str(tmp_path / "cfg.json"),
            "--no-progress", "--induction", str(folder / "induction" / "induction.json"),
            "--out", str(tmp_path / "out")]  # fmt: skip

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "build_report", killed)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (tmp_path / "out" / ".journal" / "round-1").is_dir()
    monkeypatch.undo()
    # a round file an earlier run left in the folder: not this run's answer, so removed
    (tmp_path / "out" / "round-7-induction.json").write_text("{}")
    # started again: the round's trials come from its journal, the answer is the same
    assert main(args) == 0
    assert not (tmp_path / "out" / "round-7-induction.json").exists()
    again = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert again["lesions"] == ablation["lesions"] and again["status"] == ablation["status"]
    round_one = json.loads((tmp_path / "out" / "round-1-induction.json").read_text())
    assert round_one["batch"]["trials_from_journal"] > 0
    assert not (tmp_path / "out" / ".journal").exists()
