"""Meshing cost and quality: ``cardiotwin mesh`` on the sample patients at several edges.

Each (patient, edge) runs the real command in a fresh process (``python -m
cardiotwin.pipeline mesh ...``) so that wall time and peak resident memory (from
``resource.getrusage`` of the child) cover everything: loading, shape-based resampling,
meshing, tagging, quality statistics and writing the VTU. Figures come from the quality JSON
the command writes beside the mesh. Also printed: the node count a 0.35 mm mesh would have,
from the 0.5 mm mesh's nodes × (0.5 / 0.35)³ (the lattice's nodes scale with edge⁻³).

A benchmark, not a test: nothing is asserted. Timings on a shared machine are noisy; the
1-minute load average is recorded with each run.

    .venv/bin/python benchmarks/bench_meshing.py --json out/bench/meshing.json
    .venv/bin/python benchmarks/bench_meshing.py --edges 2 1 --patients lv-infarct
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_samples"

#: patient -> (kind, label map, extra arguments)
PATIENTS = {
    "lv-infarct": ("ventricle", "segmentation/labels_fwhm.nii.gz", []),
    "lv-healthy": ("ventricle", "segmentation/labels_fwhm.nii.gz", []),
    "la-fibrosis": (
        "atrium",
        "segmentation/labels_iir.nii.gz",
        ["--lge", "lge.nii.gz", "--blood", "blood.nii.gz", "--wall", "wall.nii.gz"],
    ),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_one(patient: str, edge_mm: float, workdir: Path) -> dict:
    kind, labels, extra = PATIENTS[patient]
    case = SAMPLES / patient
    out = workdir / f"{patient}-{edge_mm:g}.vtu"
    args = [sys.executable, "-m", "cardiotwin.pipeline", "mesh", "--labels", str(case / labels),
            "--kind", kind, "--edge-mm", str(edge_mm), "--out", str(out)]  # fmt: skip
    for i, token in enumerate(extra):
        args.append(str(case / token) if i % 2 else token)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        wall_s = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        messages = stderr.read()
    row = {"patient": patient, "kind": kind, "edge_mm": edge_mm, "wall_s": wall_s,
           "peak_rss_mb": usage.ru_maxrss / 1024.0, "load_1min_before": load,
           "returncode": child.returncode}  # fmt: skip
    proc = argparse.Namespace(returncode=child.returncode, stderr=messages)
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        return row
    quality = json.loads(out.with_name(out.stem + ".quality.json").read_text())
    row.update(
        nodes=quality["nodes"],
        elements=quality["elements"],
        volume_ml=quality["volume_ml"],
        tags_ml={
            quality["tags"][t]["name"]: quality["tags"][t]["volume_ml"] for t in quality["tags"]
        },  # fmt: skip
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
    out.unlink()
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| patient | edge (mm) | wall (s) | peak RSS (MB) | nodes | elements | mean edge (mm) "
        "| dihedral min / 1st pct / max (°) | aspect p99 / max | inverted | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["returncode"] != 0:
            lines.append(f"| {r['patient']} | {r['edge_mm']:g} | failed: {r['error'][0]} |")
            continue
        peak = f"{r['peak_rss_mb']:.0f}"
        lines.append(
            f"| {r['patient']} | {r['edge_mm']:g} | {r['wall_s']:.1f} | {peak} | "
            f"{r['nodes']:,} | {r['elements']:,} | {r['mean_edge_mm']:.3f} | "
            f"{r['dihedral_min_deg']:.1f} / {r['dihedral_p1_deg']:.1f} / "
            f"{r['dihedral_max_deg']:.1f} | {r['aspect_p99']:.2f} / {r['aspect_max']:.1f} | "
            f"{r['inverted']} | {r['load_1min_before']:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", nargs="+", default=list(PATIENTS), choices=list(PATIENTS))
    parser.add_argument("--edges", nargs="+", type=float, default=[2.0, 1.0, 0.5])
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for edge in sorted(args.edges, reverse=True):
            for patient in args.patients:
                row = run_one(patient, edge, Path(tmp))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["patient"], -r["edge_mm"]))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}")
    print(table(rows))
    for patient in args.patients:
        finest = [r for r in rows if r["patient"] == patient and r["returncode"] == 0]
        if finest:
            f = min(finest, key=lambda r: r["edge_mm"])
            nodes = f["nodes"] * (f["edge_mm"] / 0.35) ** 3
            print(f"{patient}: a 0.35 mm mesh would have ≈ {nodes:,.0f} nodes "
                  f"(from {f['nodes']:,} at {f['edge_mm']:g} mm)")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
