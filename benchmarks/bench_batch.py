"""Batched monodomain on the N-version slab: wall time per simulation for B = 1, 4, 16.

One :class:`~cardiotwin.solvers.monodomain.MonodomainProblem` carries B independent
simulations (``batch_size``) on the N-version slab (20 × 7 × 3 mm at ``--dx``; ``--model``,
default TP06 epi; σ 0.1334 / 0.01761 S/m, χ 1400 cm⁻¹, C_m 1 µF/cm²). Member b is
stimulated on its own 1.5 mm cube (35.71 µA/µF for 2 ms from t = 0), the cubes spread along
the x axis from the P1 corner to the far end, so the members differ. Gate rates come from
the model's voltage lookup tables where it has them (``--cell-tables on``, the default;
``off``: exact). Each B runs ``--t-end`` ms of simulated time at ``--dt`` after
``--warmup-steps`` untimed steps (Numba compiles on the first B's warm-up; reported as
``first_warmup_s``). Reported per B: wall time of the timed steps, wall time per simulation
(÷ B), node-steps/s (N·B·steps / wall) and the ratio of the per-simulation cost to B = 1
(< 1: batching pays).

A benchmark, not a test: nothing is asserted. On a shared machine, note the load.

    .venv/bin/python benchmarks/bench_batch.py --json out/bench/batch.json
    .venv/bin/python benchmarks/bench_batch.py --batch 1 4 --dx 0.5 --t-end 10
    .venv/bin/python benchmarks/bench_batch.py --model courtemanche --batch 1 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from bench_cell import cpu_model_name, threading_environment

from cardiotwin.solvers.backends import cpu
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker
from cardiotwin.solvers.verification import (
    SLAB_MM,
    STIMULUS_DURATION_MS,
    STIMULUS_UA_PER_UF,
    nversion_problem,
)

#: side of each member's stimulus cube, mm (the N-version cube)
CUBE_MM = 1.5


def stimulus_cubes(batch_size: int) -> list[Stimulus]:
    """Member b: the cube [x_b, x_b + 1.5] × [0, 1.5] × [0, 1.5] mm, x_b spread along x."""
    span = SLAB_MM[0] - CUBE_MM
    stimuli = []
    for b in range(batch_size):
        x0 = span * b / max(batch_size - 1, 1)
        stimuli.append(
            Stimulus(
                start_ms=0.0,
                duration_ms=STIMULUS_DURATION_MS,
                strength_ua_per_uf=STIMULUS_UA_PER_UF,
                box_mm=((x0, 0.0, 0.0), (x0 + CUBE_MM, CUBE_MM, CUBE_MM)),
                members=(b,),
            )
        )
    return stimuli


def batch_problem(dx_mm: float, batch_size: int, model: str) -> MonodomainProblem:
    """The N-version slab problem with ``batch_size`` members and one stimulus site each."""
    single = nversion_problem(dx_mm, model)
    return MonodomainProblem(
        mesh=single.mesh,
        model=single.model,
        conductivities_s_per_m=single.conductivities_s_per_m,
        stimuli=stimulus_cubes(batch_size),
        batch_size=batch_size,
        chi_per_cm=single.chi_per_cm,
        cm_uf_per_cm2=single.cm_uf_per_cm2,
    )


def bench_batch(args, batch_size: int) -> dict:
    t0 = time.perf_counter()
    problem = batch_problem(args.dx, batch_size, args.model)
    stepper = SplitStepper(
        problem,
        args.dt,
        backend="cpu",
        mass=args.mass,
        diffusion=args.diffusion,
        theta=args.theta,
        cg_rtol=args.cg_rtol,
        cell_tables=args.cell_tables == "on",
    )
    tables = stepper.cell_tables
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stepper.run(args.warmup_steps * args.dt)
    warmup_s = time.perf_counter() - t0
    activation = ActivationTracker()
    load_before = os.getloadavg()[0]
    summary = stepper.run(args.warmup_steps * args.dt + args.t_end, [activation])
    first_ms = activation.first_ms
    if not np.all(np.isfinite(stepper.voltage_mv)):
        raise FloatingPointError(f"B = {batch_size}: V became NaN/inf")
    return {
        "batch_size": batch_size,
        "nodes": problem.n_nodes,
        "steps": summary.steps,
        "setup_s": setup_s,
        "warmup_s": warmup_s,
        "wall_s": summary.wall_s,
        "wall_per_simulation_s": summary.wall_s / batch_size,
        "node_steps_per_s": summary.node_steps_per_s,
        "substeps": stepper.substeps,
        "cell_tables": tables,
        "activated_nodes_per_member": np.isfinite(first_ms).sum(axis=0).tolist(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--model", default="tp06-epi", help="a registered ionic model")
    parser.add_argument("--dx", type=float, default=0.2, help="mesh spacing, mm")
    parser.add_argument("--dt", type=float, default=0.05, help="time step, ms")
    parser.add_argument("--t-end", type=float, default=5.0, help="timed simulated time, ms")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mass", choices=("consistent", "lumped"), default="consistent")
    parser.add_argument("--diffusion", choices=("implicit", "explicit"), default="implicit")
    parser.add_argument("--theta", type=float, default=0.5)
    parser.add_argument("--cg-rtol", type=float, default=1e-5)
    parser.add_argument(
        "--cell-tables", choices=("on", "off"), default="on",
        help="gate rates from voltage lookup tables (on) or exact (off)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    threads = cpu.set_threads(args.threads)
    print(f"CPU: {cpu_model_name()}, {threads} threads; load {os.getloadavg()[0]:.2f}")
    print(
        f"N-version slab dx {args.dx} mm, {args.model}, dt {args.dt} ms, {args.t_end} ms timed, "
        f"{args.mass} mass, {args.diffusion} diffusion, cell tables {args.cell_tables}"
        + (
            f" (theta {args.theta}, CG rtol {args.cg_rtol:g})"
            if args.diffusion == "implicit"
            else ""
        )
    )
    header = (
        f"{'B':>4}{'nodes':>9}{'wall s':>10}{'s / simulation':>16}{'node-steps/s':>15}"
        f"{'vs B=1':>9}{'load':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for batch_size in args.batch:
        row = bench_batch(args, batch_size)
        if not rows:
            row["first_warmup_s"] = row["warmup_s"]  # includes the Numba compilation
        rows.append(row)
        base = rows[0]["wall_per_simulation_s"] if rows[0]["batch_size"] == 1 else None
        row["per_simulation_vs_single"] = (
            None if base is None else row["wall_per_simulation_s"] / base
        )
        ratio = "-" if base is None else f"{row['per_simulation_vs_single']:.2f}"
        print(
            f"{batch_size:>4}{row['nodes']:>9}{row['wall_s']:>10.2f}"
            f"{row['wall_per_simulation_s']:>16.3f}{row['node_steps_per_s']:>15.3e}"
            f"{ratio:>9}{row['load_after']:>7.2f}",
            flush=True,
        )
    print(f"first warm-up (incl. Numba compilation): {rows[0]['first_warmup_s']:.1f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "batch",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu_model_name(),
            "logical_cores": os.cpu_count(),
            "threads": threads,
            "threading": threading_environment(),
            "model": args.model,
            "dx_mm": args.dx,
            "dt_ms": args.dt,
            "t_end_ms": args.t_end,
            "mass": args.mass,
            "diffusion": args.diffusion,
            "theta": args.theta,
            "cg_rtol": args.cg_rtol,
            "cell_tables": args.cell_tables,
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "results": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
