"""Wall time of each pipeline stage for one sample patient under a configuration.

Runs the same ``cardiotwin`` commands the Snakefile runs (segment -> mesh -> induce ->
ablate), one fresh process per stage, inside one overall time budget: each stage gets what
the budget has left, and a stage stopped at that limit is recorded as such with the last
progress it logged (for the induction: simulated ms, trials finished, node-steps/s), so a
budget too short for the whole study still says how far each stage got and how fast.
Written for ``benchmarks/gpu_check.sh --clinical`` (the clinical configuration on a lent GPU)
and runnable anywhere:

    python benchmarks/clinical_stages.py --case lv-infarct --config configs/clinical.yaml \\
        --budget-s 540 --work out/clinical --json out/clinical/clinical_stages.json

Per stage the JSON holds ``status`` (``done``, ``stopped`` at the budget, ``failed``,
``skipped``), ``wall_s``, the stage's own wall time and backend from its provenance when
it finished, peak resident memory of the stage's process, and the last progress line.

Machines without VTK (the GPU image has no pyvista): the mesh is written as an openCARP
file set (``mesh.elem``), which keeps everything without VTK; the VTs' activation maps and
the ablated mesh go through meshio (meshing.io's fallback). The pictures and the report are
not made: they are CPU work, not timed here.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("segment", "mesh", "induce", "ablate")
#: the log lines that say how far a stage got (the last one is kept): the induction's
#: batch summaries and its progress bars (simulated ms, trials done, node-steps/s)
PROGRESS = re.compile(r"((?:batch |S1 train|round \d|tissue|stopped at t = ).*|\S.*node-steps/s.*)")


def has_vtk() -> bool:
    """Whether pyvista and VTK can be imported (the GPU image has neither)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("pyvista", "vtk"))
    except ImportError:
        return False


def case_inputs(cohort: Path, case: str) -> dict[str, str]:
    """The cohort sheet's row for ``case`` (paths relative to the repository root)."""
    with open(cohort, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["case_id"] == case:
                return {k: v for k, v in row.items() if v and v != "-"}
    sample = ROOT / "data_samples" / case
    if not (sample / "lge.nii.gz").is_file():
        raise SystemExit(f"case {case!r} is neither in {cohort} nor in data_samples/")
    kind = "atrium" if case.startswith("la") else "ventricle"
    row = {"case_id": case, "kind": kind}
    for name in ("lge", "wall", "blood"):
        if (sample / f"{name}.nii.gz").is_file():
            row[name] = str(sample / f"{name}.nii.gz")
    return row


def _flags(**options) -> list[str]:
    """``--name value`` pairs, the values as text."""
    return [str(x) for name, value in options.items() for x in (f"--{name}", value)]


def commands(row: dict, config: Path, method: str, work: Path, backend: str | None,
             sites: str | None, mesh_name: str) -> dict[str, list[str]]:  # fmt: skip
    """The command line of each stage (the Snakefile's, without the pictures)."""
    cli = [sys.executable, "-m", "cardiotwin.pipeline"]
    images = _flags(lge=ROOT / row["lge"], wall=ROOT / row["wall"])
    blood = _flags(blood=ROOT / row["blood"]) if "blood" in row else []
    labels, mesh, induced = work / "labels.nii.gz", work / mesh_name, work / "induce"
    atrium = [*images, *blood] if row["kind"] == "atrium" else []
    chosen = _flags(backend=backend) if backend else []
    picked = _flags(sites=sites) if sites else []
    return {
        "segment": [*cli, "segment", *images, *blood, *_flags(method=method, out=labels)],
        "mesh": [
            *cli,
            "mesh",
            *_flags(labels=labels, kind=row["kind"], config=config),
            *atrium,
            *_flags(out=mesh),
        ],  # fmt: skip
        "induce": [
            *cli,
            "induce",
            *_flags(mesh=mesh, config=config, out=induced),
            *chosen,
            *picked,
        ],  # fmt: skip
        "ablate": [
            *cli,
            "ablate",
            *_flags(mesh=mesh, induction=induced / "induction.json"),
            *_flags(config=config, out=work / "ablate"),
            *chosen,
        ],  # fmt: skip
    }


def stage_record(name: str, work: Path) -> dict:
    """What a finished stage's own outputs say (wall time, backend, sizes, answer)."""
    try:
        if name == "segment":
            report = json.loads((work / "labels.json").read_text())
            keys = ("healthy_volume_ml", "border_zone_volume_ml", "scar_volume_ml")
            return {k: round(report[k], 2) for k in keys if k in report}
        if name == "mesh":
            report = json.loads(next(work.glob("mesh*.quality.json")).read_text())
            mean_edge = (report.get("edge_mm") or {}).get("mean")
            return {"nodes": report.get("nodes"), "elements": report.get("elements"),
                    "mean_edge_mm": mean_edge, "own_wall_s": _wall(report)}  # fmt: skip
        if name == "induce":
            report = json.loads((work / "induce" / "induction.json").read_text())
            batch = report.get("batch") or {}
            return {"note": report.get("note"), "backend": report.get("backend"),
                    "own_wall_s": report.get("wall_s"),
                    "node_steps_per_s": batch.get("node_steps_per_s"),
                    "tissue_nodes": batch.get("tissue_nodes")}  # fmt: skip
        if name == "ablate":
            report = json.loads((work / "ablate" / "ablation.json").read_text())
            return {"note": report.get("note"), "rounds": report.get("rounds"),
                    "total_volume_ml": report.get("total_volume_ml"),
                    "backend": (report.get("provenance") or {}).get("backend"),
                    "own_wall_s": _wall(report)}  # fmt: skip
    except (OSError, ValueError, StopIteration):
        return {}
    return {}


def _wall(report: dict) -> float | None:
    return (report.get("provenance") or {}).get("wall_s")


def last_progress(log: Path) -> str | None:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    hits = [m.group(1) for line in lines if (m := PROGRESS.search(line))]
    return hits[-1] if hits else None


def run_stage(command: list[str], log: Path, limit_s: float) -> tuple[str, float, int | None]:
    """Run one stage in its own process group; (status, wall s, return code)."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return "stopped", time.perf_counter() - started, None
    return ("done" if rc == 0 else "failed"), time.perf_counter() - started, rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="lv-infarct", help="a cohort case id or sample name")
    parser.add_argument("--cohort", type=Path, default=ROOT / "configs" / "cohort.tsv")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "clinical.yaml")
    parser.add_argument("--budget-s", type=float, default=540.0, help="for all stages together")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in order")
    parser.add_argument("--backend", choices=("auto", "cpu", "cuda"), help="default: config's")
    parser.add_argument("--sites", help="induction sites (default: the configuration's)")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "clinical_stages")
    parser.add_argument("--json", type=Path, help="results (default: WORK/clinical_stages.json)")
    args = parser.parse_args(argv)

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    from cardiotwin.pipeline.config import load_config

    config = load_config(args.config)
    row = case_inputs(args.cohort, args.case)
    section = config.segmentation
    method = section.ventricle_method if row["kind"] == "ventricle" else section.atrium_method
    vtk = has_vtk()
    args.work.mkdir(parents=True, exist_ok=True)
    lines = commands(row, args.config.resolve(), method, args.work, args.backend, args.sites,
                     "mesh.vtu" if vtk else "mesh.elem")  # fmt: skip
    result = {
        "case": args.case,
        "kind": row["kind"],
        "config": str(args.config),
        "budget_s": args.budget_s,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "vtk": vtk},
        "stages": {},
    }
    out = args.json or args.work / "clinical_stages.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every stage: a device call cut short still leaves the figures
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    deadline = time.perf_counter() + args.budget_s
    blocked = None
    for name in stages:
        left = deadline - time.perf_counter()
        if blocked or left < 1:
            reason = blocked or "the budget was spent"
            result["stages"][name] = {"status": "skipped", "reason": reason}
            continue
        log = args.work / f"{name}.log"
        print(f"== {name} ({left:.0f} s left)", flush=True)
        status, wall, rc = run_stage(lines[name], log, left)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        record = {"status": status, "wall_s": round(wall, 1), "command": lines[name][2:]}
        record["peak_rss_mb_so_far"] = round(peak_mb)
        if status == "done":
            record.update(stage_record(name, args.work))
        else:
            record["last_progress"] = last_progress(log)
            record["log_tail"] = log.read_text(errors="replace").splitlines()[-5:]
            record["return_code"] = rc
            blocked = f"{name} did not finish ({status})"
        result["stages"][name] = record
        save()
        print(f"   {status} in {wall:.1f} s; {record.get('last_progress') or ''}", flush=True)
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
