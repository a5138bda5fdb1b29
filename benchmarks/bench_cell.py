"""Ionic-kernel throughput on the CPU backend: node-steps per second for every model.

For each registered model (``cardiotwin.solvers.ionic.model_names()``), each thread count and
each mode (exact; lookup tables where the model declares ``TABULATED`` columns), one
compiled cell kernel advances ``--nodes`` cells by ``--steps`` steps of ``--dt`` ms. Half of
the cells are stimulated during the first 2 ms of the timed window, so both resting and
depolarising code paths run. Numba compiles on the first call: that call (on 2 cells) is
timed separately and reported as ``compile_s`` (once per model file and mode: the variants
of a file share one compiled kernel, shown as "cached"); then one untimed warm-up run, then
``--repeats`` timed runs, each from a fresh copy of the initial state. Reported:
median and best node-steps/s (``nodes × steps / wall time``).

``--kernel cell`` (default) times the single-cell kernel of pre-pacing (IEEE arithmetic,
the C library's ``log``/``exp``); ``--kernel tissue`` the tissue kernel the monodomain
stepper runs (float64 split state, one parameter set, fast-math, vectorised; ``--libm``:
compiled with the C library's ``log``/``exp`` instead of ``solvers/backends/vector_math``).
``--parameter-sets N`` (tissue kernel): N parameter sets, node k on set k mod N, differing
in ``--varying`` parameters (the first ones with a non-zero value, scaled by 1 + 0.02 × set),
as a ventricle's epi/M/endo and border-zone sets differ in a few conductances;
``--every-parameter-per-node``: read all parameters per node, as before 2026-12-05
(``cpu.CELL_UNIFORM_PARAMETERS`` off).

A benchmark, not a test: nothing is asserted. Timings on a shared machine are noisy; the
1-minute load average is recorded before and after.

    .venv/bin/python benchmarks/bench_cell.py --json out/bench/cell.json
    .venv/bin/python benchmarks/bench_cell.py --models tp06-epi --threads 2 --nodes 200000
    .venv/bin/python benchmarks/bench_cell.py --kernel tissue --models tp06-epi courtemanche
    .venv/bin/python benchmarks/bench_cell.py --kernel tissue --models tp06-epi --parameter-sets 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from cardiotwin.solvers.backends import cpu
from cardiotwin.solvers.ionic import get_model, model_names
from cardiotwin.solvers.ionic.base import build_table, n_table_columns
from cardiotwin.solvers.precision import state_layout

#: stimulus for the stimulated half of the cells (µA/µF) and its duration (ms): enough to
#: excite every registered model from rest
STIMULUS_UA_PER_UF = 60.0
STIMULUS_MS = 2.0


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_model_name() -> str:
    """The CPU's model name, with family/model and the widest vector unit: a KVM guest
    often reports a bare "AMD EPYC", which names neither the generation (Zen 1 has no
    AVX-512, Zen 4 does) nor what Numba compiles for (LLVM's host CPU, appended)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if key.strip() == "flags":
                break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else None
    details = (
        [f"family {fields['cpu family']} model {fields['model']}"] if "model" in fields else []
    )
    details += [vector] if vector else []
    try:
        import llvmlite.binding as llvm

        details.append(f"LLVM {llvm.get_host_cpu_name()}")
    except (ImportError, RuntimeError):
        pass
    return f"{name} ({', '.join(details)})" if details else name


def threading_environment() -> dict:
    """The settings that decide how worker threads wait between parallel regions.

    With Numba's default ``omp`` layer (GNU OpenMP), idle workers spin; on an oversubscribed
    machine (load > cores) a parallel region then waits for a descheduled spinner, and many
    small parallel kernels per step slow down by one to two orders of magnitude.
    ``OMP_WAIT_POLICY=PASSIVE`` (or ``NUMBA_THREADING_LAYER=workqueue``) avoids that; see
    README.md.
    """
    import numba

    names = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS")
    env = {name: os.environ.get(name) for name in names}
    try:
        env["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        env["numba_threading_layer"] = None
    return env


def kernel_calls(model, which: str, use_table: bool, single_set: bool = True):
    """``(start, advance, membrane_potential)`` for one kernel: ``start(y)`` turns an
    (n_states, n) state into what the kernel steps, ``advance(state, parameters, pset, dt_ms,
    i_stim, table)`` takes one step in place, ``membrane_potential(state)`` reads V back."""
    if which == "cell":
        kernel = cpu.make_cell_kernel(model, use_table=use_table)
        return (lambda y: y), kernel, (lambda y: y[0])
    layout = state_layout(model, "fp64")
    split = cpu.make_split_cell_kernel(model, layout.placement, use_table, single_set=single_set)

    def advance(state, parameters, pset, dt_ms, i_stim, table):
        v, y32, y64 = state
        split(v, v, y32, y64, parameters, pset, dt_ms, i_stim, table)

    return layout.split, advance, (lambda state: state[0])


def parameter_sets(model, n_sets: int, n_varying: int) -> np.ndarray:
    """``n_sets`` columns of the model's defaults, the first ``n_varying`` parameters with a
    non-zero value scaled by 1 + 0.02 × set (see the module docstring)."""
    parameters = np.repeat(model.parameter_table().as_array(), n_sets, axis=1)
    rows = np.flatnonzero(parameters[:, 0] != 0.0)[:n_varying]
    parameters[rows] *= 1.0 + 0.02 * np.arange(n_sets)
    return parameters


def bench_kernel(
    model, n_nodes, n_steps, dt_ms, n_threads, use_table, repeats, which="cell", n_sets=1,
    n_varying=6,
) -> dict:  # fmt: skip
    """Time one (model, threads, mode) combination; see the module docstring."""
    cpu.set_threads(n_threads)
    parameters = parameter_sets(model, n_sets, n_varying)
    start, advance, membrane_potential = kernel_calls(model, which, use_table, n_sets == 1)

    table_build_s = None
    table = None
    if use_table:
        t0 = time.perf_counter()
        table = build_table(model, parameters, dt_ms)
        table_build_s = time.perf_counter() - t0

    # first call compiles (Numba caches per argument types, so 2 cells are enough)
    small = start(model.initial_state(2))
    t0 = time.perf_counter()
    advance(small, parameters, np.zeros(2, np.int32), dt_ms, np.zeros(2), table)
    compile_s = time.perf_counter() - t0

    y0 = model.initial_state(n_nodes)
    pset = (np.arange(n_nodes) % n_sets).astype(np.int32)
    stim_on = np.zeros(n_nodes)
    stim_on[::2] = STIMULUS_UA_PER_UF
    stim_off = np.zeros(n_nodes)
    stim_steps = round(STIMULUS_MS / dt_ms)

    def run() -> float:
        state = start(y0.copy())
        t0 = time.perf_counter()
        for n in range(n_steps):
            i_stim = stim_on if n < stim_steps else stim_off
            advance(state, parameters, pset, dt_ms, i_stim, table)
        wall = time.perf_counter() - t0
        if not np.all(np.isfinite(membrane_potential(state))):
            raise FloatingPointError(f"{model.name}: V became NaN/inf in the benchmark run")
        return wall

    run()  # warm-up: caches, thread pool, page faults
    walls = [run() for _ in range(repeats)]
    node_steps = n_nodes * n_steps
    return {
        "model": model.name,
        "threads": n_threads,
        "mode": "table" if use_table else "exact",
        "kernel": which,
        "n_states": model.n_states,
        "nodes": n_nodes,
        "steps": n_steps,
        "dt_ms": dt_ms,
        "parameter_sets": n_sets,
        "varying_parameters": n_varying if n_sets > 1 else 0,
        "compile_s": compile_s,
        "table_build_s": table_build_s,
        "wall_s": walls,
        "node_steps_per_s_median": node_steps / statistics.median(walls),
        "node_steps_per_s_best": node_steps / min(walls),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--nodes", type=int, default=58_176, help="default: the 0.2 mm slab")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--dt", type=float, default=0.05, help="time step, ms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--kernel", choices=("cell", "tissue"), default="cell", help="see the module docstring"
    )
    parser.add_argument(
        "--libm", action="store_true", help="tissue kernel with the C library's log/exp"
    )
    parser.add_argument("--parameter-sets", type=int, default=1, help="see the module docstring")
    parser.add_argument("--varying", type=int, default=6, help="parameters differing per set")
    parser.add_argument(
        "--every-parameter-per-node",
        action="store_true",
        help="several sets: read every parameter per node (see the module docstring)",
    )
    args = parser.parse_args(argv)
    if args.parameter_sets > 1 and args.kernel != "tissue":
        parser.error("--parameter-sets is for the tissue kernel (--kernel tissue)")
    cpu.CELL_VECTOR_MATH = not args.libm
    cpu.CELL_UNIFORM_PARAMETERS = not args.every_parameter_per_node

    names = args.models or list(model_names())
    header = (
        f"{'model':<20}{'mode':<7}{'thr':>4}{'compile s':>11}"
        f"{'node-steps/s (median)':>23}{'(best)':>11}"
    )
    print(f"CPU: {cpu_model_name()}, {os.cpu_count()} logical cores; load {load_average():.2f}")
    print(f"{args.nodes} cells × {args.steps} steps of {args.dt} ms, {args.repeats} repeats")
    print(f"{args.kernel} kernel" + (", C-library log/exp" if args.libm else ""))
    if args.parameter_sets > 1:
        how = "every parameter" if args.every_parameter_per_node else "the varying ones"
        print(f"{args.parameter_sets} parameter sets, {args.varying} differing; {how} per node")
    print(header)
    print("-" * len(header))
    load_before = load_average()
    rows = []
    compiled = set()  # kernels are compiled once per model file and mode
    for name in names:
        model = get_model(name)
        modes = [False, True] if n_table_columns(model) > 0 else [False]
        for use_table in modes:
            for n_threads in args.threads:
                row = bench_kernel(
                    model, args.nodes, args.steps, args.dt, n_threads, use_table, args.repeats,
                    args.kernel, args.parameter_sets, args.varying,
                )  # fmt: skip
                key = (model.module, use_table)
                if key in compiled:
                    row["compile_s"] = None  # already compiled: the first call measured nothing
                compiled.add(key)
                rows.append(row)
                compile_text = "cached" if row["compile_s"] is None else f"{row['compile_s']:.2f}"
                print(
                    f"{name:<20}{row['mode']:<7}{n_threads:>4}{compile_text:>11}"
                    f"{row['node_steps_per_s_median']:>23.3e}{row['node_steps_per_s_best']:>11.3e}",
                    flush=True,
                )
    load_after = load_average()
    print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "cell_kernel",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cpu": cpu_model_name(),
            "logical_cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "numba": __import__("numba").__version__,
            "load_before": load_before,
            "load_after": load_after,
            "threading": threading_environment(),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "kernel": args.kernel,
            "vector_math": args.kernel == "tissue" and not args.libm,
            "uniform_parameters": not args.every_parameter_per_node,
            "results": rows,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
