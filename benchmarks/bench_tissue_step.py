"""Whole monodomain steps on a patient's tissue, as the induction stage builds it.

The benchmarks beside this one time a slab (``bench_vs_torchcor.py``) or one kernel
(``bench_cell.py``) with one parameter set. A patient's ventricle has several: epi, M and
endo cells, healthy and border zone (six TP06 sets). This one reads a mesh (``.vtu`` from
``cardiotwin mesh``), builds its tissue from a configuration exactly as ``cardiotwin
induce`` does (``pipeline.tissue.build_tissue``: calibrated conductivities and pre-paced
states, cached on disk), starts a wave with a 2 ms stimulus over the first 30 % of the mesh
along x, steps to ``--from-ms`` untimed (so that the window sees a wave front, excited and
recovering tissue) and times the steps from there to ``--to-ms``. Each mode runs from the
same snapshot (``solvers.checkpoint.branch``), in one process, alternately ``--repeats``
times:

- ``varying``: the CPU cell kernel reads per node only the parameters that differ between
  the sets (``cpu.CELL_UNIFORM_PARAMETERS``, the default since 2026-12-05);
- ``every``: it reads every parameter per node (as before).

A benchmark, not a test: nothing is asserted. Node-steps/s are tissue nodes × steps / wall.

    .venv/bin/python benchmarks/bench_tissue_step.py --mesh results/lv-infarct/mesh/mesh.vtu \\
        --config configs/clinical.yaml --threads 2 --json out/bench/tissue_step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cardiotwin.meshing.io import read_mesh
from cardiotwin.pipeline.config import load_config
from cardiotwin.pipeline.tissue import build_tissue
from cardiotwin.solvers.backends import cpu
from cardiotwin.solvers.checkpoint import branch, take_snapshot
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

sys.path.insert(0, str(Path(__file__).parent))
from bench_cell import cpu_model_name, load_average  # noqa: E402

MODES = {"varying": True, "every": False}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mesh", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--chamber", choices=("ventricle", "atrium"), default="ventricle")
    parser.add_argument("--bcl", type=float, default=600.0, help="pre-pacing cycle length, ms")
    parser.add_argument("--threads", type=int, default=None, help="default: all")
    parser.add_argument("--from-ms", type=float, default=80.0)
    parser.add_argument("--to-ms", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    threads = cpu.set_threads(args.threads)
    config = load_config(args.config)
    mesh = read_mesh(args.mesh)
    chamber = getattr(config.tissue, args.chamber)
    tissue = build_tissue(mesh, chamber, config.tissue, config.simulation, bcl_ms=args.bcl)
    lo, hi = mesh.points_mm.min(axis=0), mesh.points_mm.max(axis=0)
    box = (tuple(lo - 1.0), (lo[0] + 0.3 * (hi[0] - lo[0]), hi[1] + 1.0, hi[2] + 1.0))
    problem = MonodomainProblem(
        mesh, stimuli=[Stimulus(0.0, 2.0, 60.0, box_mm=box)], **tissue.problem_kwargs()
    )
    parameters = problem.parameters.as_array()
    dt = float(config.simulation.dt_ms)
    print(f"CPU: {cpu_model_name()}, {threads} threads; load {load_average():.2f}")
    print(
        f"{problem.n_nodes} tissue nodes, {parameters.shape[1]} parameter sets, "
        f"{len(cpu.varying_parameters(parameters))} of {parameters.shape[0]} parameters "
        f"differ; dt {dt} ms, timed {args.from_ms}-{args.to_ms} ms"
    )
    stepper = SplitStepper(
        problem, dt, backend="cpu", mass=config.simulation.mass,
        diffusion=config.simulation.diffusion, state=tissue.initial_state(problem),
    )  # fmt: skip
    stepper.run(args.from_ms)
    start = take_snapshot(stepper)
    excited = float(np.mean(stepper.state[0] > -40.0))
    print(f"nodes above -40 mV at {args.from_ms} ms: {100 * excited:.0f} %")
    rates = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, flag in MODES.items():
            cpu.CELL_UNIFORM_PARAMETERS = flag  # read when the stepper compiles its kernel
            stepper = branch(problem, start, backend="cpu")  # at from_ms, same state
            t0 = time.perf_counter()
            stepper.run(args.to_ms)
            wall = time.perf_counter() - t0
            rate = problem.n_nodes * (stepper.step_index - start.step_index) / wall
            rates[mode].append(rate)
            print(f"{mode:<8} {rate:.3e} node-steps/s ({wall:.1f} s)", flush=True)
    best = {mode: max(r) for mode, r in rates.items()}
    print(f"varying / every: {best['varying'] / best['every']:.2f}x (best of {args.repeats})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "tissue_step",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu_model_name(),
            "threads": threads,
            "mesh": str(args.mesh),
            "config": str(args.config),
            "tissue_nodes": problem.n_nodes,
            "parameter_sets": int(parameters.shape[1]),
            "varying_parameters": len(cpu.varying_parameters(parameters)),
            "dt_ms": dt,
            "window_ms": [args.from_ms, args.to_ms],
            "excited_fraction": excited,
            "node_steps_per_s": rates,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
