"""Meshing cost and quality: ``cardiotwin mesh`` (with ``prepare``) on the sample patients.

Each (patient, edge) runs the real command, ``cardiotwin mesh ... --prepare`` (load,
shape-based resampling, meshing, tags, quality statistics, surfaces, coordinates, fibres,
AHA segments and pacing sites, writing the VTU), in a fresh process so that its peak memory
is its own. Inside that process the main stages are timed and their peak resident memory
taken by wrapping the library functions the command calls (the Linux peak-RSS mark is read
and reset at each stage's entry and exit: ``/proc/self/status`` VmHWM, ``clear_refs`` 5), so
a row says where the time and the memory go. Quality figures come from the JSON the command
writes beside the mesh. Also printed: the node count a 0.35 mm mesh would have, from the two
finest meshes' measured scaling (nodes ∝ edge^-k).

A benchmark, not a test: nothing is asserted. Timings on a shared machine are noisy; the
1-minute load average is recorded with each run.

    .venv/bin/python benchmarks/bench_meshing.py --json out/bench/meshing.json
    .venv/bin/python benchmarks/bench_meshing.py --edges 2 1 --patients lv-infarct
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"

#: patient -> (kind, label map, extra arguments)
PATIENTS = {
    "lv-infarct": ("ventricle", "segmentation/labels_fwhm.nii.gz", []),
    "lv-healthy": ("ventricle", "segmentation/labels_fwhm.nii.gz", []),
    "la-fibrosis": (
        "atrium",
        "segmentation/labels_iir-surface.nii.gz",
        ["--lge", "lge.nii.gz", "--blood", "blood.nii.gz", "--wall", "wall.nii.gz"],
    ),
}

#: stage -> the (module, function) names the command looks up when it runs that stage
STAGES = {
    "resample": [("cardiotwin.pipeline.images", "resample_isotropic")],
    "mesh": [
        ("cardiotwin.meshing.from_labels", "mesh_ventricle"),
        ("cardiotwin.meshing.atrium", "mesh_atrium"),
    ],
    "stuffing": [(f"cardiotwin.meshing.{m}", "stuff") for m in ("from_labels", "atrium")],
    "improve": [("cardiotwin.meshing.atrium", "improve_min_dihedral")],
    "quality": [("cardiotwin.meshing.quality", "quality_summary")],
    "prepare": [("cardiotwin.meshing.prepare", "prepare")],
    "surfaces": [
        ("cardiotwin.meshing.prepare", name)
        for name in ("identify_surfaces", "split_endocardium", "atrial_openings")
    ],
    "coordinates": [
        ("cardiotwin.meshing.prepare", name)
        for name in ("ventricular_coordinates", "atrial_coordinates", "aha_segments")
    ],
    "fibres": [("cardiotwin.meshing.prepare", n) for n in ("ventricular_fibres", "atrial_fibres")],
    "sites": [("cardiotwin.meshing.prepare", n) for n in ("ventricular_sites", "atrial_sites")],
    "write": [("cardiotwin.meshing.io", "write_mesh")],
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class StageProbe:
    """Wall time and peak RSS per stage, stages nested (an outer stage's peak covers its
    inner stages'); the process's overall peak is the largest mark read."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self.overall_mb = 0.0
        self._open: list[str] = []

    @staticmethod
    def _mark_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
        return float("nan")

    def _fold(self) -> None:
        """Credit the peak since the last reset to every open stage, then reset it."""
        mark = self._mark_mb()
        self.overall_mb = max(self.overall_mb, mark)
        for stage in self._open:
            self.peak_mb[stage] = max(self.peak_mb.get(stage, 0.0), mark)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:  # not Linux: peaks per stage stay the process's peak so far
            pass

    def wrap(self, stage: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._fold()
            self._open.append(stage)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
                self._fold()
                self._open.pop()

        return timed

    def install(self) -> None:
        for stage, places in STAGES.items():
            for module_name, name in places:
                module = importlib.import_module(module_name)
                setattr(module, name, self.wrap(stage, getattr(module, name)))


def _child(argv: list[str], quality_path: str, queue) -> None:
    probe = StageProbe()
    probe.install()
    from cardiotwin.pipeline.cli import main

    start = time.perf_counter()
    code = main(argv)
    wall_s = time.perf_counter() - start
    probe._fold()
    result = {"returncode": code, "wall_s": wall_s, "peak_rss_mb": probe.overall_mb,
              "stages_s": probe.seconds, "stages_peak_mb": probe.peak_mb}  # fmt: skip
    if code == 0:
        result["quality"] = json.loads(Path(quality_path).read_text())
    queue.put(result)


def run_one(patient: str, edge_mm: float, workdir: Path, prepare: bool) -> dict:
    kind, labels, extra = PATIENTS[patient]
    case = SAMPLES / patient
    out = workdir / f"{patient}-{edge_mm:g}.vtu"
    quality_path = out.with_name(out.stem + ".quality.json")
    argv = ["mesh", "--labels", str(case / labels), "--kind", kind, "--edge-mm", str(edge_mm),
            "--out", str(out), "--prepare" if prepare else "--no-prepare"]  # fmt: skip
    for i, token in enumerate(extra):
        argv.append(str(case / token) if i % 2 else token)
    load = os.getloadavg()[0]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(argv, str(quality_path), queue))
    child.start()
    result = _result(child, queue)
    child.join()
    row = {"patient": patient, "kind": kind, "edge_mm": edge_mm, "load_1min_before": load,
           "prepare": prepare}  # fmt: skip
    if result is None or result["returncode"] != 0:
        row["returncode"] = child.exitcode if result is None else result["returncode"]
        row["error"] = "see the log above"
        row.update(result or {})  # the stages it got through
        return row
    quality = result.pop("quality")
    row.update(result)
    row.update(
        nodes=quality["nodes"],
        elements=quality["elements"],
        volume_ml=quality["volume_ml"],
        tags_ml={q["name"]: q["volume_ml"] for q in quality["tags"].values()},
        mean_edge_mm=quality["edge_mm"]["mean"],
        dihedral_min_deg=quality["dihedral_deg"]["min"],
        dihedral_p1_deg=quality["dihedral_deg"]["p1"],
        dihedral_max_deg=quality["dihedral_deg"]["max"],
        aspect_max=quality["aspect_ratio"]["max"],
        aspect_p99=quality["aspect_ratio"]["p99"],
        inverted=quality["inverted_elements"],
        degenerate=quality["degenerate_elements"],
        goal_met=quality["goal"]["met"],
    )
    for path in out.parent.glob(out.stem + "*"):
        path.unlink()
    return row


def _result(child, queue) -> dict | None:
    """The child's result, or None if it died without one."""
    from queue import Empty

    while True:
        try:
            return queue.get(timeout=1.0)
        except Empty:
            if not child.is_alive():
                try:
                    return queue.get(timeout=1.0)
                except Empty:
                    return None


def _s(row: dict, stage: str) -> str:
    value = row["stages_s"].get(stage)
    return "–" if value is None else f"{value:.1f}"


def _mb(row: dict, stage: str) -> str:
    value = row["stages_peak_mb"].get(stage)
    return "–" if value is None else f"{value:.0f}"


TISSUES = ("healthy", "border zone / fibrosis", "dense scar")


def tables(rows: list[dict]) -> str:
    cost = [
        "| patient | edge (mm) | nodes | elements | whole command (s) | peak RSS (MB) | mesh (s) "
        "| of which stuffing / improve (s) | quality (s) | prepare (s) | of which surfaces / "
        "coordinates / fibres / sites (s) | write (s) | peak RSS mesh / prepare (MB) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    quality = [
        "| patient | edge (mm) | mean edge (mm) | dihedral min / 1st pct / max (°) "
        "| aspect R/3r p99 / max | inverted | tags healthy / border zone / dense scar (ml) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("returncode") != 0:
            cost.append(f"| {r['patient']} | {r['edge_mm']:g} | failed: {r['error']} |")
            continue
        tags = r["tags_ml"]
        cost.append(
            f"| {r['patient']} | {r['edge_mm']:g} | {r['nodes']:,} | {r['elements']:,} | "
            f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {_s(r, 'mesh')} | "
            f"{_s(r, 'stuffing')} / {_s(r, 'improve')} | {_s(r, 'quality')} | "
            f"{_s(r, 'prepare')} | {_s(r, 'surfaces')} / {_s(r, 'coordinates')} / "
            f"{_s(r, 'fibres')} / {_s(r, 'sites')} | {_s(r, 'write')} | "
            f"{_mb(r, 'mesh')} / {_mb(r, 'prepare')} | {r['load_1min_before']:.1f} |"
        )
        quality.append(
            f"| {r['patient']} | {r['edge_mm']:g} | {r['mean_edge_mm']:.3f} | "
            f"{r['dihedral_min_deg']:.1f} / {r['dihedral_p1_deg']:.1f} / "
            f"{r['dihedral_max_deg']:.1f} | {r['aspect_p99']:.2f} / {r['aspect_max']:.1f} | "
            f"{r['inverted']} | " + " / ".join(f"{tags.get(n, 0.0):.2f}" for n in TISSUES) + " |"
        )
    return "\n".join(cost) + "\n\n" + "\n".join(quality)


def node_estimate(rows: list[dict], patient: str, target_mm: float = 0.35) -> str | None:
    """Nodes at ``target_mm`` from the two finest meshes (power law nodes ∝ edge^-k)."""
    done = sorted((r for r in rows if r["patient"] == patient and r.get("returncode") == 0),
                  key=lambda r: r["edge_mm"])  # fmt: skip
    if not done:
        return None
    finest = done[0]
    if len(done) == 1:
        exponent = 3.0
    else:
        coarser = done[1]
        exponent = np.log(coarser["nodes"] / finest["nodes"]) / np.log(
            finest["edge_mm"] / coarser["edge_mm"]
        )
    nodes = finest["nodes"] * (finest["edge_mm"] / target_mm) ** exponent
    return (f"{patient}: a {target_mm:g} mm mesh would have ≈ {nodes:,.0f} nodes "
            f"(nodes ∝ edge^-{exponent:.2f} from {len(done[:2])} finest meshes; "
            f"{finest['nodes']:,} at {finest['edge_mm']:g} mm)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", nargs="+", default=list(PATIENTS), choices=list(PATIENTS))
    parser.add_argument("--edges", nargs="+", type=float, default=[2.0, 1.0, 0.5])
    parser.add_argument("--no-prepare", action="store_true", help="mesh only (no prepare)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for edge in sorted(args.edges, reverse=True):
            for patient in args.patients:
                row = run_one(patient, edge, Path(tmp), prepare=not args.no_prepare)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                if args.json:  # keep what is done if a later row runs out of time or memory
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    report = {"cpu": cpu_name(), "rows": rows}
                    args.json.write_text(json.dumps(report, indent=1) + "\n")
    rows.sort(key=lambda r: (r["patient"], -r["edge_mm"]))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}")
    print(tables(rows))
    for patient in args.patients:
        line = node_estimate(rows, patient)
        if line:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
