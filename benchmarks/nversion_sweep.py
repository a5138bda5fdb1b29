"""Run the N-version benchmark over Δx × Δt × mass and print the table for RESULTS.md.

Each configuration is one ``cardiotwin verify nversion`` run in its own process (the
documented command), writing ``OUT_DIR/nv_dx{DX}_dt{DT}_{MASS}[_exact].json``; a
configuration whose JSON already exists is not run again, so an interrupted sweep resumes.
Runs go from cheapest to dearest, so a partial sweep still fills the coarse rows.

    .venv/bin/python benchmarks/nversion_sweep.py --out-dir out/nversion
    .venv/bin/python benchmarks/nversion_sweep.py --out-dir out/nversion --dx 0.5 0.2 --exact
    .venv/bin/python benchmarks/nversion_sweep.py --mass consistent --diffusion implicit
    .venv/bin/python benchmarks/nversion_sweep.py --out-dir out/nversion --table-only

Time on the 2-core dev machine with lookup tables: 0.5 mm seconds, 0.2 mm about a minute per
run, 0.1 mm (442 401 nodes) 1–10 min per run with lumped mass and several times that with
consistent mass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: Published P8 activation times (ms) from NVERSION.md §1, by (Δx mm, Δt ms).
PUBLISHED_P8 = {
    (0.1, 0.05): "fenicsx-beat 40.55",
    (0.1, 0.01): "fenicsx-beat 38.21; 11 codes 37.8–48.7; openCARP (Δt 0.02) 40.65",
    (0.1, 0.005): "fenicsx-beat 37.93; 11 codes 37.8–48.7",
    (0.2, 0.05): "openCARP 41.66; fenicsx-beat 39.90",
    (0.2, 0.01): "openCARP 40.59; fenicsx-beat 38.42",
    (0.2, 0.005): "openCARP 40.45; fenicsx-beat 38.24",
    (0.5, 0.05): "lumped FEM 126.3 (openCARP); consistent FEM ≈ 56–58",
    (0.5, 0.01): "lumped FEM 126.3 (openCARP); consistent FEM ≈ 56–58",
    (0.5, 0.005): "lumped FEM 126.3 (openCARP); consistent FEM ≈ 56–58",
}


def json_path(out_dir: Path, dx: float, dt: float, mass: str, exact: bool, diffusion: str) -> Path:
    suffix = ("_implicit" if diffusion == "implicit" else "") + ("_exact" if exact else "")
    return out_dir / f"nv_dx{dx:g}_dt{dt:g}_{mass}{suffix}.json"


def run_one(
    out_dir: Path, dx: float, dt: float, mass: str, exact: bool, backend: str, diffusion: str
) -> None:
    target = json_path(out_dir, dx, dt, mass, exact, diffusion)
    if target.exists():
        print(f"[skip] {target} exists", flush=True)
        return
    command = [
        sys.executable, "-m", "cardiotwin.pipeline", "verify", "nversion",
        "--dx", f"{dx:g}", "--dt", f"{dt:g}", "--mass", mass, "--backend", backend,
        "--diffusion", diffusion, "--json", str(target),
    ]  # fmt: skip
    command.append("--no-cell-tables" if exact else "--cell-tables")
    print(f"[run] {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        print(f"[fail] exit {completed.returncode} after {elapsed:.0f} s", flush=True)
    else:
        print(f"[done] {elapsed:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)


def table(out_dir: Path) -> str:
    """Markdown rows for every ``verify nversion`` JSON in ``out_dir`` (any file name)."""
    rows = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "activation_ms" not in data:
            continue
        act = data["activation_ms"]
        key = (data["dx_mm"], data["dt_ms"])
        scheme = f"{data['mass']}, {data['diffusion']}"
        rates = "table" if data.get("cell_tables") else "exact"
        rows.append(
            (
                -data["dx_mm"], -data["dt_ms"], scheme, rates,
                f"| {data['dx_mm']:g} | {data['dt_ms']:g} | {scheme} | {rates} | "
                f"{data['nodes']} | {data['substeps']} | {act['P1']:.2f} | **{act['P8']:.2f}** | "
                f"{act['P9']:.2f} | {data['wall_s']:.0f} | {PUBLISHED_P8.get(key, '')} |",
            )
        )  # fmt: skip
    head = (
        "| Δx (mm) | Δt (ms) | mass, diffusion | gate rates | nodes | substeps | P1 (ms) | "
        "P8 (ms) | P9 (ms) | wall (s) | published P8 (ms) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head] + [row[-1] for row in sorted(rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("out/nversion"))
    parser.add_argument("--dx", type=float, nargs="+", default=[0.5, 0.2, 0.1], help="mm")
    parser.add_argument("--dt", type=float, nargs="+", default=[0.05, 0.01, 0.005], help="ms")
    parser.add_argument("--mass", nargs="+", default=["lumped", "consistent"])
    parser.add_argument("--diffusion", choices=("explicit", "implicit"), default="explicit")
    parser.add_argument("--exact", action="store_true", help="exact gate rates, no tables")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--table-only", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        # Cheapest first: coarse meshes, long steps, lumped mass.
        order = sorted(
            ((dx, dt, mass) for dx in args.dx for dt in args.dt for mass in args.mass),
            key=lambda c: (-c[0], -c[1], c[2] != "lumped"),
        )
        for dx, dt, mass in order:
            run_one(args.out_dir, dx, dt, mass, args.exact, args.backend, args.diffusion)
    print(table(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
