"""The patient report: HTML that renders in a real browser, the same page as PDF, results.json."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cardiotwin.pipeline.report.build import CaseInputs, ReportError, write_report
from cardiotwin.pipeline.report.cohort import write_summary
from cardiotwin.pipeline.report.results import CaseResults

ROOT = Path(__file__).resolve().parents[2]
SEGMENTATION = ROOT / "data_samples" / "lv-infarct" / "segmentation"
CHROMIUM = "/usr/bin/chromium"


def _inputs(case_id="demo-1") -> CaseInputs:
    return CaseInputs(
        case_id=case_id,
        kind="ventricle",
        segmentation_json=SEGMENTATION / "labels_fwhm.json",
        pictures={
            "montage": SEGMENTATION / "labels_fwhm_montage.png",
            "scar_3d": SEGMENTATION / "labels_fwhm_3d.png",
        },
    )


def test_report_files_and_results_schema(tmp_path):
    written = write_report(_inputs(), tmp_path)
    results = CaseResults.model_validate_json(written["results"].read_text())
    stats = json.loads((SEGMENTATION / "labels_fwhm.json").read_text())
    assert results.segmentation.scar_volume_ml == stats["scar_volume_ml"]
    html = written["html"].read_text()
    assert html.count("data:image/png;base64,") == 2  # both pictures embedded
    assert 'src="file:' not in html and 'src="/' not in html  # nothing outside the file
    assert written["pdf"].read_bytes()[:5] == b"%PDF-"


def test_missing_stage_output_is_named(tmp_path):
    inputs = _inputs()
    inputs.induction_json = tmp_path / "nope" / "induction.json"
    with pytest.raises(ReportError, match=r"induction\.json does not exist"):
        write_report(inputs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _ensure_chromium() -> str:
    """Debian's chromium, installed when absent and this is a root Debian box (CI)."""
    if (
        not Path(CHROMIUM).exists()
        and shutil.which("apt-get")
        and hasattr(__import__("os"), "geteuid")
    ):
        import os

        if os.geteuid() == 0:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env,
                           timeout=900)  # fmt: skip
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed and cannot be installed here (not root)")
    return CHROMIUM


def test_report_renders_in_a_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = _ensure_chromium()
    inputs = _inputs()  # with the induction and ablation stages, so every kind of picture shows
    inputs.induction_json, inputs.ablation_json, _, ablation = _inducible_study(tmp_path)
    lesion = ablation["lesions"][0]
    _stage_meshes(tmp_path, lesion["center_mm"], lesion["radius_mm"])
    written = write_report(inputs, tmp_path, pdf=False)
    write_summary([written["results"]], tmp_path / "cohort")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        try:
            for page_path in (written["html"], tmp_path / "cohort" / "summary.html"):
                page = browser.new_page(viewport={"width": 1000, "height": 1400})
                problems = []
                page.on(
                    "console", lambda m, p=problems: p.append(m.text) if m.type == "error" else None
                )
                page.on("pageerror", lambda e, p=problems: p.append(str(e)))
                page.goto(page_path.as_uri())
                images = page.evaluate(
                    "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
                )
                assert images and all(done and width > 0 for done, width in images), images
                if page_path == written["html"]:  # montage, 3-D scar, bullseye, VT map, lesions
                    assert len(images) == 5
                assert problems == []
                page.screenshot(path=str(page_path.with_suffix(".png")), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_bullseye_layout_follows_the_aha_standard(tmp_path):
    # Cerqueira et al. 2002: anterior at the top, septum on the left, seen from the apex
    from cardiotwin.pipeline.report.figures import bullseye_png, segment_wedge

    def centre(segment):
        inner, outer, start, end = segment_wedge(segment)
        return (start + end) / 2 % 360, (inner + outer) / 2

    assert centre(1) == (90.0, 3.5)  # basal anterior: top, outer ring
    assert centre(3)[0] == 210.0  # basal inferoseptal: lower left
    assert centre(10) == (270.0, 2.5)  # mid inferior: bottom, middle ring
    assert centre(14)[0] == 180.0 and centre(16)[0] == 0.0  # apical septal left, lateral right
    assert segment_wedge(17)[:2] == (0.0, 1.0)
    png = bullseye_png({1: "induced", 7: "no capture", 2: "not induced"}, title="x")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(ValueError, match="unknown outcome"):
        bullseye_png({3: "maybe"})


def _inducible_study(tmp_path) -> tuple[Path, Path, dict, dict]:
    """An induction.json with one VT from one of two sites and its ablation.json, each
    validated by the stage's own report model (a hand-made study, not a simulation)."""
    from cardiotwin.pipeline.ablation.report import AblationReport
    from cardiotwin.pipeline.provenance import provenance
    from cardiotwin.pipeline.risk import InductionReport

    vt = {
        "id": 1, "cycle_length_ms": 412.0, "exit_site_mm": [10.0, -4.5, 22.25],
        "exit_adjacent_to_border_zone": True, "exit_to_border_zone_mm": 0.8,
        "slowest_segment_mm": [9.0, -3.0, 20.0], "slowest_cv_m_per_s": 0.12, "stable": True,
        "reentrant_beats": 3, "phase_singularities": [], "sites": ["AHA-4"],
        "trials": [{"site": "AHA-4", "coupling_intervals_ms": [300.0, 270.0]}],
        "activation_map": "vt-1.vtu",
    }  # fmt: skip

    def site(name, segment, induced):
        return {
            "name": name, "position_mm": [0.0, 1.0, 2.0], "aha_segment": segment,
            "status": "ok", "captured": True, "stimulus_strength_ua_per_uf": 60.0,
            "induced": induced, "coupling_intervals_ms": [300.0, 270.0] if induced else [290.0],
            "stages": [], "trials": [], "vt_id": 1 if induced else None,
        }  # fmt: skip

    induction = InductionReport.model_validate({
        "cardiotwin_version": "0", "chamber": "ventricle", "protocol": "pes", "inducible": True,
        "complete": True, "note": "inducible from 1 of 2 sites", "unique_vts": [vt],
        "sites": [site("AHA-4", 4, True), site("AHA-9", 9, False)], "sites_paced": 2,
        "sites_inducing": 1, "fraction_inducing_sites": 0.5, "per_aha_segment": [],
        "mesh_fingerprint": "m", "config_hash": "c", "backend": "cpu", "wall_s": 12.5,
        "tissue": {}, "batch": {}, "units": {},
    }).model_dump(mode="json")  # fmt: skip
    lesion = {"center_mm": [11.0, -4.0, 21.5], "radius_mm": 4.0, "volume_ml": 0.31,
              "vt_ids": [1], "round": 1, "line": 0}  # fmt: skip
    ablation = AblationReport.model_validate({
        "cardiotwin_version": "0", "status": "non-inducible after ablation",
        "note": "nothing induced after round 1", "input_inducible": True,
        "non_inducible_after": True, "rounds": 1, "total_volume_ml": 0.31,
        "lesion_radius_mm": 4.0, "strategy": "targeted", "lesions": [lesion],
        "lesion_sets": [{"line": 0, "round": 1, "kind": "target", "label": "VT 1 isthmus",
                         "vt_ids": [1], "line_ends_mm": [[8.0, -5.0, 20.0], [14.0, -3.0, 23.0]],
                         "anchors": ["dense scar", "dense scar"], "volume_ml": 0.31,
                         "points": [0]}],
        "per_round": [{"round": 0, "induction": {"inducible": True}}, {"round": 1, "targets": [{
            "vt_id": 1, "mechanism": "isthmus", "reachable": True,
            "note": "diastolic pathway: for 120 of the 412 ms cycle only 0.4 % of the tissue "
                    "activates", "cv_site_m_per_s": 0.08, "cv_median_m_per_s": 0.31}]}],
        "controls": [],
        "controls_summary": {"draws": 0, "placed": 0, "non_inducible_after": 0,
                             "volume_ml": None},
        "mesh_fingerprint": "m", "ablated_mesh": "ablated.vtu", "ablated_mesh_fingerprint": "a",
        "units": {}, "provenance": provenance("ablation", wall_s=3.0),
    }).model_dump(mode="json")  # fmt: skip
    paths = tmp_path / "induction.json", tmp_path / "ablation.json"
    paths[0].write_text(json.dumps(induction))
    paths[1].write_text(json.dumps(ablation))
    return *paths, induction, ablation


def _stage_meshes(folder: Path, lesion_mm, lesion_radius_mm: float) -> np.ndarray:
    """The VT map (vt-1.vtu) and ablated mesh (ablated.vtu) the stages would write next to
    their JSON, hand-made on a 24 × 12 × 12 mm box around the study's points: activation
    0..412 ms along x (NaN in a dense-scar block, as induce writes it), the elements within
    the lesion radius tagged LESION. Returns the box's point coordinates."""
    from dataclasses import replace

    from cardiotwin.meshing.io import write_mesh
    from cardiotwin.meshing.mesh import box_mesh
    from cardiotwin.meshing.tags import DENSE_SCAR, LESION

    box = box_mesh((24.0, 12.0, 12.0), 2.0, origin_mm=(0.0, -10.0, 15.0))
    centres = box.element_centres_mm()
    region = box.region.copy()
    region[(centres[:, 0] > 16) & (centres[:, 1] > -4)] = DENSE_SCAR
    activation = box.points_mm[:, 0] / 24.0 * 412.0
    in_scar = np.ones(box.n_points, dtype=bool)
    in_scar[box.tets[region != DENSE_SCAR].ravel()] = False
    activation[in_scar] = np.nan
    write_mesh(replace(box, region=region, point_data={"activation_ms": activation}),
               folder / "vt-1.vtu")  # fmt: skip
    ablated = region.copy()
    ablated[np.linalg.norm(centres - lesion_mm, axis=1) <= lesion_radius_mm] = LESION
    write_mesh(replace(box, region=ablated), folder / "ablated.vtu")
    return box.points_mm


def _image(uri: str) -> np.ndarray:
    """The RGB pixels (0..1) of a data:image/png;base64 URI."""
    import base64
    import io

    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))[..., :3]


def _pixels(image: np.ndarray, rgb, tolerance: float) -> int:
    """How many pixels lie within ``tolerance`` of ``rgb`` in every channel."""
    return int((np.abs(image - np.asarray(rgb)).max(axis=-1) < tolerance).sum())


def _study_inputs(tmp_path):
    """The hand-made study of :func:`_inducible_study` with its stage meshes, as report
    inputs: (inputs, induction.json path, induction, ablation)."""
    induction_json, ablation_json, induction, ablation = _inducible_study(tmp_path)
    lesion = ablation["lesions"][0]
    _stage_meshes(tmp_path, lesion["center_mm"], lesion["radius_mm"])
    inputs = _inputs()
    inputs.induction_json, inputs.ablation_json = induction_json, ablation_json
    return inputs, induction_json, induction, ablation


def test_report_states_the_induction_and_ablation(tmp_path):
    import re

    inputs, induction_json, induction, ablation = _study_inputs(tmp_path)
    written = write_report(inputs, tmp_path / "out", pdf=False)
    results = CaseResults.model_validate_json(written["results"].read_text())
    assert results.induction.inducible and results.induction.n_unique_vts == 1
    assert results.induction.fraction_inducing_sites == induction["fraction_inducing_sites"]
    by_name = {s.name: s for s in results.induction.sites}
    # the site table joins each site to its VT's cycle length (induction.json keeps them apart)
    assert by_name["AHA-4"].outcome == "induced" and by_name["AHA-4"].vt_cycle_length_ms == 412
    assert by_name["AHA-9"].outcome == "not induced" and by_name["AHA-9"].vt_id is None
    assert results.ablation.non_inducible_after and results.ablation.input_inducible
    assert results.ablation.lesions[0].center_mm == ablation["lesions"][0]["center_mm"]
    html = written["html"].read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Inducible: YES" in text and "0.50 (1 of 2 paced sites)" in text
    assert "AHA-4 4 induced 300, 270 1 412" in text
    assert "AHA-9 9 not induced 290 - -" in text
    assert "11.0, -4.0, 21.5" in text  # the lesion centre, scanner mm
    assert "8.0, -5.0, 20.0" in text and "14.0, -3.0, 23.0" in text  # the line's ends
    assert "after ablation the model is non-inducible" in text
    # how the target was found, from the round's targets
    assert (
        "round 1, VT 1 (isthmus; conduction there 0.08 m/s against 0.31 m/s in the circuit): "
        "diastolic pathway: for 120 of the 412 ms cycle only 0.4 % of the tissue activates"
    ) in text
    assert "Nothing to ablate" not in text
    # montage, 3-D scar, the bullseye drawn from the sites' outcomes, the VT's activation map
    # and the lesions on the ablated mesh
    assert html.count("data:image/png;base64,") == 5
    by_alt = {alt: uri for uri, alt in re.findall(r'<img src="(data:[^"]+)" alt="([^"]+)"', html)}
    assert {"activation map of VT 1", "ablation targets on the mesh"} <= set(by_alt)
    assert "exit site (on the surface nearest to it) at 10.0, -4.5, 22.2 mm (scanner)" in text
    vt_map, targets = (
        _image(by_alt["activation map of VT 1"]),
        _image(by_alt["ablation targets on the mesh"]),
    )
    # the colours the captions promise: the scar block grey, the exit ball and the lesion magenta
    from cardiotwin.pipeline.mesh_pictures import LESION_MAGENTA

    assert _pixels(vt_map, LESION_MAGENTA, 0.15) > 100  # the exit ball, opaque
    # the scar block's faces, grey shaded by the lights (text and edges are a few hundred)
    greys = (np.ptp(vt_map, axis=-1) < 0.02) & (vt_map.mean(axis=-1) > 0.3)
    assert (greys & (vt_map.mean(axis=-1) < 0.75)).sum() > 5000
    # the lesion through the see-through wall: saturated magenta (red and blue, no green)
    red, green, blue = np.moveaxis(targets, -1, 0)
    assert ((red - green > 0.35) & (blue - green > 0.35)).sum() > 1000
    # a stage file gone: a note naming the file (not its folder), no picture, no crash
    (tmp_path / "vt-1.vtu").unlink()
    html = write_report(inputs, tmp_path / "again", pdf=False)["html"].read_text()
    assert "VT 1: No picture: vt-1.vtu of the induce stage is missing; re-run induce." in html
    assert 'alt="activation map of VT 1"' not in html and str(tmp_path) not in html
    assert html.count("data:image/png;base64,") == 4


def test_a_line_in_separate_pieces_lists_each_piece(tmp_path):
    """A lesion line whose points fall in two groups that do not touch (a channel cut at both
    ends) is listed piece by piece, each with its own ends and volume, and said to be in
    pieces; an ablation.json from before pieces were recorded is grouped by the report, one
    that records them is shown as recorded."""
    import re

    inputs, _, _, ablation = _study_inputs(tmp_path)
    single = json.loads(json.dumps(ablation))
    far = {**ablation["lesions"][0], "center_mm": [2.0, -8.0, 17.0], "volume_ml": 0.2}
    ablation["lesions"].append(far)  # 10.8 mm from the first: 4 mm spheres do not touch
    ablation["lesion_sets"][0].update(points=[0, 1], volume_ml=0.51)
    ablation["total_volume_ml"] = 0.51
    line = ablation["lesion_sets"][0]

    def table(data):
        inputs.ablation_json.write_text(json.dumps(data))
        html = write_report(inputs, tmp_path / "out", pdf=False)["html"].read_text()
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))

    line.pop("pieces", None)  # as written before 2026-12-05
    text = table(ablation)
    assert "1 of 2: 1 11.0, -4.0, 21.5 11.0, -4.0, 21.5 0.0 0.310" in text
    assert "2 of 2: 2 2.0, -8.0, 17.0 2.0, -8.0, 17.0 0.0 0.200" in text
    assert "Line 0 comes in separate pieces" in text
    # the line's recorded ends (one at each piece) no longer read as one line between them
    assert "8.0, -5.0, 20.0" not in text and "14.0, -3.0, 23.0" not in text
    line["pieces"] = [
        {"points": [0], "ends_mm": [[9.0, -5.0, 20.0], [13.0, -3.0, 23.0]], "length_mm": 5.39,
         "volume_ml": 0.31},
        {"points": [1], "ends_mm": [[1.0, -9.0, 16.0], [3.0, -7.0, 18.0]], "length_mm": 3.46,
         "volume_ml": 0.2},
    ]  # fmt: skip
    text = table(ablation)
    assert "1 of 2: 1 9.0, -5.0, 20.0 13.0, -3.0, 23.0 5.4 0.310" in text
    assert "2 of 2: 2 1.0, -9.0, 16.0 3.0, -7.0, 18.0 3.5 0.200" in text
    # one piece (the study as made): no piece count, no note, the line's recorded ends
    text = table(single)
    assert "8.0, -5.0, 20.0 14.0, -3.0, 23.0 7.0 0.310" in text
    assert "1 of 1:" not in text and "separate pieces" not in text


def test_overlapping_lesions_share_one_label():
    """The 9 points of an ablation line (2 mm apart, 4 mm spheres) print one label, not nine
    numbers over each other; a lesion apart keeps its own; numbers are the table's."""
    from cardiotwin.pipeline.mesh_pictures import lesion_labels

    line = np.c_[np.arange(9) * 2.0, np.zeros(9), np.zeros(9)]
    far = np.array([[60.0, 0, 0]])
    where, texts = lesion_labels(np.vstack([line, far]), 4.0)
    assert texts == ["1–9", "10"]
    np.testing.assert_array_equal(where, [line[4], far[0]])  # the member in the middle

    # overlap decides, not order: lesion 2 lies apart, lesions 1 and 3 overlap (7 < 4 + 4 mm)
    where, texts = lesion_labels([[0, 0, 0], [30, 0, 0], [7, 0, 0]], [4.0, 4.0, 4.0])
    assert texts == ["1, 3", "2"]
    # spheres that only nearly touch (8.5 mm apart, radii 4) are labelled apart
    assert lesion_labels([[0, 0, 0], [8.5, 0, 0]], 4.0)[1] == ["1", "2"]


def test_an_atrial_driver_round_a_vein_is_called_macro_reentry(tmp_path):
    import json
    import re

    inputs, induction_json, induction, ablation = _study_inputs(tmp_path)
    html = write_report(inputs, tmp_path / "ventricle", pdf=False)["html"].read_text()
    assert "macro-re-entry" not in html and "<th>circuit</th>" not in html
    # the same study as an atrium whose driver circles vein-2 (its winding measured by
    # pipeline/induction/anatomy.py), and one in the wall
    second = {**induction["unique_vts"][0], "id": 2, "macro_reentry_around": []}
    induction.update(chamber="atrium", unique_vts=[
        {**induction["unique_vts"][0], "macro_reentry_around": ["vein-2"]}, second])  # fmt: skip
    induction_json.write_text(json.dumps(induction))
    # an atrial case: the ventricular sample's segmentation and pictures are not its own
    inputs.kind, inputs.segmentation_json, inputs.pictures = "atrium", None, {}
    html = write_report(inputs, tmp_path / "atrium", pdf=False)["html"].read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "AHA-4 macro-re-entry around vein-2" in text
    assert "AHA-4 in the wall (circles no vein or valve)" in text


def test_the_cohort_summary_never_calls_an_incomplete_study_not_inducible():
    from types import SimpleNamespace

    from cardiotwin.pipeline.report.cohort import burden_plot_png, rows, tsv
    from cardiotwin.pipeline.report.results import InductionResult

    def case(case_id, inducible, complete):
        induction = InductionResult(
            inducible=inducible, complete=complete, n_unique_vts=int(inducible), unique_vts=[],
            n_sites=2, fraction_inducing_sites=0.5 if inducible else 0.0, sites=[],
        )  # fmt: skip
        segmentation = SimpleNamespace(scar_percent=5.0, border_zone_percent=3.0, scar_volume_ml=4)
        return SimpleNamespace(
            case_id=case_id, kind="ventricle", segmentation=segmentation,
            induction=induction, ablation=None,
        )  # fmt: skip

    table = rows([case("a", True, False), case("b", False, True), case("c", False, False)])
    assert [row["inducible"] for row in table] == [True, False, "incomplete"]
    assert "\tincomplete\t" in tsv(table)
    assert burden_plot_png(table).startswith(b"\x89PNG")


def _text(html: str) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_undetermined_answers_are_not_called_no(tmp_path):
    # an induction that induced nothing with a site unanswered, and an ablation whose
    # re-induction was incomplete: the summary cards said "no" (green) and "NO" (red)
    inputs, induction_json, induction, ablation = _study_inputs(tmp_path)
    for site in induction["sites"]:
        site.update(induced=False, vt_id=None)
    induction["sites"][0]["status"] = "diverged at S2 300 ms"
    induction.update(inducible=False, complete=False, unique_vts=[], sites_inducing=0,
                     fraction_inducing_sites=0.0)  # fmt: skip
    induction_json.write_text(json.dumps(induction))
    inputs.ablation_json = None
    written = write_report(inputs, tmp_path / "incomplete", pdf=False)
    text = _text(written["html"].read_text())
    assert "Inducible re-entry not determined (study incomplete)" in text
    assert "Inducible: no (not every site gave an answer: non-inducibility is not claimed)" in text

    (tmp_path / "b").mkdir()
    inputs, induction_json, induction, ablation = _study_inputs(tmp_path / "b")
    ablation.update(status="induction incomplete", non_inducible_after=False)
    inputs.ablation_json.write_text(json.dumps(ablation))
    written = write_report(inputs, tmp_path / "after", pdf=False)
    text = _text(written["html"].read_text())
    assert "Non-inducible after ablation not determined (re-induction incomplete)" in text
    assert "Non-inducible after ablation NO" not in text
    assert "Inducible re-entry YES (1 VT)" in text
    # the lesion table names the round (VT ids restart with each re-induction), 3 decimals
    assert "1 1 11.0, -4.0, 21.5 4.0 0.310 1" in text
    results = [written["results"]]

    # the cohort: three-way after ablation, coloured by what is good news per column
    from cardiotwin.pipeline.report.cohort import write_summary

    healthy = _inputs("healthy")
    (tmp_path / "c").mkdir()
    healthy.induction_json, healthy.ablation_json = _inducible_study(tmp_path / "c")[:2]
    data = json.loads(healthy.induction_json.read_text())
    for site in data["sites"]:
        site.update(induced=False, vt_id=None)
    data.update(inducible=False, unique_vts=[], sites_inducing=0, fraction_inducing_sites=0.0)
    healthy.induction_json.write_text(json.dumps(data))
    data = json.loads(healthy.ablation_json.read_text())
    data.update(status="not inducible before ablation", input_inducible=False,
                non_inducible_after=True, lesions=[], lesion_sets=[], total_volume_ml=0.0,
                rounds=0)  # fmt: skip
    healthy.ablation_json.write_text(json.dumps(data))
    results.append(write_report(healthy, tmp_path / "healthy", pdf=False)["results"])
    cured = _inputs("cured")
    (tmp_path / "d").mkdir()
    cured.induction_json, cured.ablation_json = _inducible_study(tmp_path / "d")[:2]
    results.append(write_report(cured, tmp_path / "cured", pdf=False)["results"])
    written = write_summary(results, tmp_path / "cohort")
    table = [line.split("\t") for line in written["table"].read_text().splitlines()]
    after = {row[0]: row[-1] for row in table[1:]}
    assert after == {"cured": "True", "demo-1": "incomplete", "healthy": "nothing to ablate"}
    page = written["html"].read_text()
    assert page.count('class="yes"') == 2  # cured and demo-1 inducible: the bad news
    assert page.count('class="no"') == 2  # healthy not inducible, cured non-inducible after


def test_the_settings_table_says_what_the_stages_ran_with(tmp_path):
    from cardiotwin.pipeline.config import STAGE_SECTIONS, config_from_dict, config_hash

    inputs, induction_json, induction, _ = _study_inputs(tmp_path)
    quality = tmp_path / "mesh.quality.json"
    quality.write_text(json.dumps({"input": {"edge_mm_requested": 2.0}}))
    inputs.mesh_quality_json = quality
    config = config_from_dict({"mesh": {"edge_mm": 0.5}})
    induction["config_hash"] = config_hash(config, sections=STAGE_SECTIONS["induce"])
    induction_json.write_text(json.dumps(induction))
    text = _text(write_report(inputs, tmp_path / "same", config, pdf=False)["html"].read_text())
    assert "mesh edge (requested) 2.0 mm" in text  # the mesh's own record, not the config's
    assert "sites: AHA-4, AHA-9" in text and "segmentation method fwhm" in text
    assert "voxels of 1.5 × 1.5 × 8.0 mm" in text
    assert "The induction ran with other settings" not in text
    other = config_from_dict({"induction": {"pes": {"s1_count": 8}}})
    text = _text(write_report(inputs, tmp_path / "other", other, pdf=False)["html"].read_text())
    assert "The induction ran with other settings" in text


def test_provenance_shows_local_changes(tmp_path):
    inputs, _, _, ablation = _study_inputs(tmp_path)
    ablation["provenance"]["git_commit"] = "0123456789abcdef0123+modified"
    inputs.ablation_json.write_text(json.dumps(ablation))
    text = _text(write_report(inputs, tmp_path / "out", pdf=False)["html"].read_text())
    assert "0123456789ab (with local changes)" in text


@pytest.mark.parametrize(
    ("role", "content", "message"),
    [
        ("segmentation_json", {"method": "fwhm", "wall_volume_ml": 10}, "not a segmentation JSON"),
        ("induction_json", [], "holds a JSON list"),
        ("induction_json", "folder", "cannot be read"),
    ],
)
def test_a_malformed_stage_output_is_one_error_naming_the_file(tmp_path, role, content, message):
    inputs = _inputs()
    path = tmp_path / "input.json"
    if content == "folder":
        path.mkdir()
    else:
        path.write_text(json.dumps(content))
    setattr(inputs, role, path)
    with pytest.raises(ReportError, match=f"input.json.*{message}"):
        write_report(inputs, tmp_path / "out", pdf=False)


def test_inputs_that_contradict_each_other_are_refused(tmp_path):
    """A new user's trial: each of these made a report that looked right and was not."""
    from dataclasses import replace as replaced

    from cardiotwin.meshing.io import write_mesh
    from cardiotwin.meshing.mesh import box_mesh

    inputs, induction_json, induction, ablation = _study_inputs(tmp_path)
    # the chamber: the segmentation and the induction ran on a ventricle
    with pytest.raises(ReportError, match="--kind is atrium, but the segmentation stage ran"):
        write_report(replaced(inputs, kind="atrium"), tmp_path / "a", pdf=False)
    # a mesh other than the one the induction and ablation ran on
    other = tmp_path / "other.vtu"
    write_mesh(box_mesh((4.0, 4.0, 4.0), 2.0), other)
    with pytest.raises(ReportError, match="the induction ran on another mesh than other.vtu"):
        write_report(replaced(inputs, mesh=other), tmp_path / "b", pdf=False)
    # a picture that is not a PNG file
    fake = tmp_path / "montage.png"
    fake.write_text("not a picture")
    pictures = {**inputs.pictures, "montage": fake}
    with pytest.raises(ReportError, match="montage picture montage.png is not a PNG file"):
        write_report(replaced(inputs, pictures=pictures), tmp_path / "c", pdf=False)
    # a picture whose section has no data: it was dropped without a word
    with pytest.raises(ReportError, match="montage picture belongs to the segmentation"):
        write_report(replaced(inputs, segmentation_json=None), tmp_path / "d", pdf=False)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_results_schema_file_is_generated_from_the_model():
    from cardiotwin.pipeline.report.results import SCHEMA_PATH, results_schema

    assert json.loads(Path(SCHEMA_PATH).read_text()) == results_schema(), (
        "pipeline/schemas/results.schema.json is stale: regenerate it from results_schema()"
    )


def test_a_case_given_twice_or_an_identifier_as_case_id_is_refused(tmp_path, capsys):
    from cardiotwin.pipeline.cli import main

    written = write_report(_inputs(), tmp_path / "one", pdf=False)
    copy = tmp_path / "two" / "results.json"
    copy.parent.mkdir()
    copy.write_bytes(written["results"].read_bytes())
    with pytest.raises(ValueError, match="are both case 'demo-1'"):
        write_summary([written["results"], copy], tmp_path / "cohort")
    assert not (tmp_path / "cohort").exists()
    # the report heads its page with the case id: a record number is refused, not repeated
    argv = ["report", "--case-id", "MRN0012345", "--kind", "ventricle",
            "--out", str(tmp_path / "r"), "--no-pdf"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "looks like a record number" in err and "0012345" not in err


def test_a_site_paced_outside_its_segment_says_why():
    # the sample's AHA-12 centre lies in dense scar: meshing moved the site 15.5 mm, into
    # segment 16; the table must not leave "AHA-12 | 16" unexplained
    from cardiotwin.pipeline.report.build import _site_note

    note = _site_note("AHA-12", 16, "ok")
    assert note.startswith("paced in segment 16: segment 12's centre lies in scar")
    assert _site_note("AHA-12", 12, "ok") is None
    assert _site_note("LA-01", None, "ok") is None and _site_note("RV-1", 0, "ok") is None
    assert _site_note("AHA-3", 7, "S1 did not capture") == "S1 did not capture"
