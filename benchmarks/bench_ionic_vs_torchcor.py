"""TP06 ionic step, cardiotwin vs TorchCor, interleaved in one process on the same cells.

The cell kernel a cardiotwin tissue run launches (split state, one parameter set, lookup
tables; ``SplitStepper``'s ``_cell_kernel``) against TorchCor 1.0.6's
``TenTusscherPanfilov.differentiate`` (its whole ionic step, ``torch.compile``d, lookup
tables), both float64, on ``--nodes`` cells (default 58 176, the 0.2 mm slab), half of them
started at −20 mV so upstroke and resting paths both run, dt ``--dt`` 0.05 ms. The two
alternate in ``--rounds`` rounds of ``--steps`` steps; reported per round: nanoseconds per
node and step, and the ratio TorchCor / cardiotwin (above 1: cardiotwin faster).

``--threads 1`` (default) measures CPU time of the calling thread (``time.thread_time``),
which other processes on a shared machine disturb much less than wall time; with more
threads it measures wall time. A benchmark, not a test: nothing is asserted. Needs the
``bench`` extra (benchmarks/README.md).

    .venv/bin/python benchmarks/bench_ionic_vs_torchcor.py --json out/bench/ionic_vs_torchcor.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from bench_cell import cpu_model_name, threading_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=58_176)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dt", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numba
    import torch
    from torchcor.ionic import TenTusscherPanfilov

    from cardiotwin.meshing.mesh import box_mesh
    from cardiotwin.solvers.monodomain import MonodomainProblem
    from cardiotwin.solvers.stepping import SplitStepper

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    n, dt = args.nodes, args.dt

    # cardiotwin: the stepper's own cell kernel, on its own state arrays
    problem = MonodomainProblem(box_mesh((2.0, 1.0, 1.0), 1.0), "tp06-epi", {1: (0.1, 0.01)})
    stepper = SplitStepper(problem, dt)  # builds the kernel and the tables for dt
    kernel = stepper._cell_kernel
    y0 = problem.model.initial_state(n)
    y0[0, : n // 2] = -20.0
    v, y32, y64 = stepper.layout.split(y0)
    v_other, stimulus, pset = np.empty_like(v), np.zeros(n), np.zeros(1, np.int32)

    def ours() -> None:
        nonlocal v, v_other
        for _ in range(args.steps):
            kernel(v, v_other, y32, y64, stepper._p, pset, dt, stimulus)
            v, v_other = v_other, v

    cell = TenTusscherPanfilov(dt=dt, cell_type="EPI", device=torch.device("cpu"),
                               dtype=torch.float64)  # fmt: skip
    u = cell.initialize(n).clone()
    u[: n // 2] = -20.0

    def theirs() -> None:
        for _ in range(args.steps):
            cell.differentiate(u)

    ours()
    theirs()  # compile both
    rounds = []
    for index in range(args.rounds):
        timings = {}
        order = (("cardiotwin", ours), ("torchcor", theirs))
        for name, run in order if index % 2 == 0 else order[::-1]:  # who goes first alternates
            started = clock()
            run()
            timings[name] = 1e9 * (clock() - started) / (args.steps * n)
        timings["ratio"] = timings["torchcor"] / timings["cardiotwin"]
        rounds.append(timings)
        print(f"cardiotwin {timings['cardiotwin']:6.1f} ns/node-step  torchcor "
              f"{timings['torchcor']:6.1f}  ratio {timings['ratio']:.2f}", flush=True)  # fmt: skip
    summary = {
        k: statistics.median(r[k] for r in rounds) for k in ("cardiotwin", "torchcor", "ratio")
    }
    print(f"median: cardiotwin {summary['cardiotwin']:.1f}, torchcor {summary['torchcor']:.1f} "
          f"ns/node-step, ratio {summary['ratio']:.2f} ({cpu_model_name()}, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.2f})")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "cpu": cpu_model_name(), "threads": args.threads, "nodes": n, "dt_ms": dt,
            "clock": "thread CPU time" if args.threads == 1 else "wall",
            "load_after": os.getloadavg()[0], "threading": threading_environment(),
            "rounds": rounds, "median": summary,
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
