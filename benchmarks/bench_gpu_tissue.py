"""GPU tissue throughput: TP06 (lookup tables) on box meshes, one run and a batch of 16.

For each mesh size (``--nodes``, default about 1e5 and 1e6 nodes) and batch size (1, 16)
it times ``--steps`` split steps (explicit lumped-mass diffusion, dt 0.05 ms) on the CUDA
backend after a warm-up, and reports node-steps/s and the per-simulation cost of the batch
relative to one run. Parity: the first ``--parity-steps`` of a small run on CUDA against
the CPU backend (max |ΔV|, mV). A benchmark, not a test: nothing is asserted.

    python benchmarks/bench_gpu_tissue.py --json out/gpu/tissue.json
    python benchmarks/bench_gpu_tissue.py --backend cpu --nodes 20000 --steps 20   # CPU twin
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

SIGMA_S_PER_M = (0.1334, 0.01761)
DT_MS = 0.05


def box_for(n_nodes: int, dx_mm: float = 0.2):
    """A 4:2:1 box with about ``n_nodes`` nodes at ``dx_mm``."""
    cells = max(2, round((n_nodes / 8.0) ** (1.0 / 3.0)))
    return box_mesh((4 * cells * dx_mm, 2 * cells * dx_mm, cells * dx_mm), dx_mm)


def stepper_for(mesh, batch: int, backend: str) -> SplitStepper:
    stimuli = [
        Stimulus(0.0, 2.0, 35.71, box_mm=((0, 0, 0), (1.5, 1.5, 1.5 + 0.5 * b)), members=(b,))
        for b in range(batch)
    ]
    problem = MonodomainProblem(
        mesh, "tp06-epi", {1: SIGMA_S_PER_M}, stimuli=stimuli, batch_size=batch
    )
    stepper = SplitStepper(problem, DT_MS, backend=backend, stability_bound="gershgorin")
    return stepper


def throughput(mesh, batch: int, backend: str, steps: int) -> dict:
    stepper = stepper_for(mesh, batch, backend)
    for _ in range(5):  # compile and warm up
        stepper.advance()
    _ = stepper.voltage_mv  # copying V to the host waits for the device
    t0 = time.perf_counter()
    for _ in range(steps):
        stepper.advance()
    _ = stepper.voltage_mv
    wall = time.perf_counter() - t0
    n = stepper.n_nodes
    return {
        "nodes": n,
        "batch": batch,
        "steps": steps,
        "substeps": stepper.substeps,
        "wall_s": wall,
        "wall_per_simulation_s": wall / batch,
        "node_steps_per_s": n * batch * steps / wall,
    }


def parity(backend: str, steps: int) -> float:
    mesh = box_mesh((3.0, 1.5, 1.5), 0.25)
    result = []
    for name in (backend, "cpu"):
        stepper = stepper_for(mesh, 2, name)
        for _ in range(steps):
            stepper.advance()
        result.append(stepper.voltage_mv)
    return float(np.abs(result[0] - result[1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--nodes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--parity-steps", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for n in args.nodes:
        mesh = box_for(n)
        for batch in args.batch:
            row = throughput(mesh, batch, args.backend, args.steps)
            rows.append(row)
            print(
                f"{args.backend}: {row['nodes']} nodes x B={batch}: "
                f"{row['node_steps_per_s']:.3g} node-steps/s, "
                f"{row['wall_per_simulation_s']:.3g} s per simulation ({args.steps} steps)"
            )
    max_dv = parity(args.backend, args.parity_steps)
    print(
        f"parity {args.backend} vs cpu after {args.parity_steps} steps: max |dV| = {max_dv:.3g} mV"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "parity_max_dv_mv": max_dv}, indent=2))


if __name__ == "__main__":
    main()
