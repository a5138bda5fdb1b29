"""The patient report: HTML that renders in a real browser, the same page as PDF, results.json."""

import json
import shutil
import subprocess
from pathlib import Path

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
    written = write_report(_inputs(), tmp_path, pdf=False)
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
