"""cardiotwin vs TorchCor on the N-version slab: same mesh, model, Δt, simulated time, CPU.

Both codes run the N-version benchmark set-up (../shared/NVERSION.md §1; built by
:func:`cardiotwin.solvers.verification.nversion_problem`): slab 20 × 7 × 3 mm at ``--dx``
(0.2 mm: 101 × 36 × 16 = 58 176 nodes), ten Tusscher–Panfilov 2006 epicardial cells from
the published initial state, σ_l / σ_t = 0.1334 / 0.01761 S/m (monodomain), χ = 1400 cm⁻¹,
C_m = 1 µF/cm², 35.71 µA/µF for 2 ms on the corner cube 0 ≤ x, y, z ≤ 1.5 mm, float64
(``--precision mixed`` and ``--torchcor-dtype float32``: the float32 variants), ``--threads``
CPU threads, ``--dt`` ms up to ``--t-end`` ms.

How TorchCor (PyPI ``torchcor``) is made to match:

- mesh: the same nodes and tetrahedra written as openCARP ``.pts`` (µm, read with
  ``unit_conversion=1000``), ``.elem`` (``Tt`` + region 1) and ``.lon`` (fibre along x per
  element) in a temporary folder; the stimulus nodes as a ``.vtx`` file;
- σ: ``add_conductivity([1], il=0.1334, it=0.01761)`` (monodomain values; TorchCor takes the
  harmonic mean itself only when extracellular values are given); TorchCor's χ = 140 mm⁻¹ and
  C_m = 0.01 µF/mm² are its defaults and equal ours (1400 cm⁻¹, 1 µF/cm²);
- stimulus: ``intensity`` 35.71 (µA/cm² ≡ µA/µF at C_m = 1 µF/cm²); TorchCor stimulates
  a step when its *end* time t satisfies start ≤ t ≤ start + duration, with t accumulated
  by ``t += dt``; duration 2 ms + Δt/2 makes that the same 40 steps (2 ms) as ours;
- cell model: ``TenTusscherPanfilov(cell_type="EPI")``, whose states are set after
  ``initialize`` to the published N-version state that cardiotwin starts from (TorchCor's own
  initial state differs; ``--torchcor-initial own`` keeps it). TorchCor evaluates the gate
  rates from lookup tables (V: −800..800 mV by 0.05 mV; Ca_ss; V − E_K for I_K1), as
  openCARP does, and compiles ``differentiate`` with ``torch.compile`` on first use;
- numerics: TorchCor's default, consistent mass (``mass_lumping=False``), θ = 0.5
  (Crank–Nicolson, fixed) with the ionic current explicit, CG with a Jacobi preconditioner
  and linear extrapolation of the initial guess, tolerances ``--cg-rtol`` (relative) and
  ``--torchcor-atol`` (absolute, on the preconditioned residual), 100 iterations at most
  (its README's settings). cardiotwin runs
  ``SplitStepper(mass="consistent", diffusion="implicit", theta=0.5)`` (Godunov splitting,
  Jacobi-CG started from V plus the last step's diffusion increment, relative tolerance
  ``--cg-rtol``), with the TP06 voltage lookup tables (``--cell-tables on``, the default;
  ``off``: exact rates).

TorchCor is driven through its ``Monodomain.assemble`` / ``step`` exactly as its ``solve``
does (minus storing snapshots of V), with the same activation-time tracking as ours (upward
crossing of 0 mV, linear in time) done by a few tensor operations per step. The ionic and
diffusion parts are timed apart in both codes (TorchCor: ``step(verbose=True)``; cardiotwin:
a stopwatch around the stepper's cell kernel and diffusion operator).

Each code runs in its own Python process (``--side``), so imports, thread pools and
compilation do not interfere; the parent prints both and the ratio. Timing: a clock after
every step; the first ``--warmup-steps`` steps hold the one-off compilation (Numba here,
``torch.compile`` there) and are reported apart ("first steps"); node-steps/s is measured
over the remaining steps. Import and set-up (mesh, files, assembly) are reported separately.

A benchmark, not a test: nothing is asserted. On a shared machine, note the load.

    .venv/bin/python benchmarks/bench_vs_torchcor.py --json out/bench/vs_torchcor.json
    .venv/bin/python benchmarks/bench_vs_torchcor.py --dx 0.5 --t-end 20   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

#: TorchCor's ten Tusscher state attribute for each cardiotwin ``tp06`` state; TorchCor keeps
#: Ca_i in µM internally (it multiplies by 1e-3 inside ``differentiate``)
TORCHCOR_STATE = {
    "Xr1": ("Xr1", 1.0),
    "Xr2": ("Xr2", 1.0),
    "Xs": ("Xs", 1.0),
    "m": ("M", 1.0),
    "h": ("H", 1.0),
    "j": ("J", 1.0),
    "d": ("D", 1.0),
    "f": ("F", 1.0),
    "f2": ("F2", 1.0),
    "fCass": ("FCaSS", 1.0),
    "s": ("S", 1.0),
    "r": ("R", 1.0),
    "Ca_i": ("Cai", 1e3),
    "R_prime": ("R_", 1.0),
    "Ca_SR": ("CaSR", 1.0),
    "Ca_ss": ("CaSS", 1.0),
    "Na_i": ("Nai", 1.0),
    "K_i": ("Ki", 1.0),
}
#: TorchCor's CG iteration limit (its README example)
TORCHCOR_MAX_ITER = 100


def load_average() -> float:
    return os.getloadavg()[0]


def steady_rate(clock: list[float], n_nodes: int, warmup_steps: int) -> dict:
    """Timing facts from per-step clock readings (``clock[0]`` before the first step)."""
    n_steps = len(clock) - 1
    k = min(warmup_steps, n_steps - 1)
    steady_s = clock[-1] - clock[k]
    per_step = steady_s / (n_steps - k)
    return {
        "steps": n_steps,
        "warmup_steps": k,
        "run_wall_s": clock[-1] - clock[0],
        "first_steps_wall_s": clock[k] - clock[0],
        "compile_estimate_s": (clock[k] - clock[0]) - k * per_step,
        "steady_wall_s": steady_s,
        "steady_ms_per_step": 1e3 * per_step,
        "node_steps_per_s": n_nodes / per_step,
        "node_steps_per_s_including_first_steps": n_nodes * n_steps / (clock[-1] - clock[0]),
    }


def split_times(ionic_s: list[float], diffusion_s: list[float], warmup_steps: int) -> dict:
    """Per-step ionic and diffusion times: totals, and ms per step after the warm-up."""
    k = min(warmup_steps, len(ionic_s) - 1)
    return {
        "ionic_s": sum(ionic_s),
        "diffusion_s": sum(diffusion_s),
        "ionic_ms_per_step_steady": 1e3 * sum(ionic_s[k:]) / (len(ionic_s) - k),
        "diffusion_ms_per_step_steady": 1e3 * sum(diffusion_s[k:]) / (len(diffusion_s) - k),
    }


# --- TorchCor side ------------------------------------------------------------------------


def write_openCARP_mesh(mesh, stimulus_nodes, folder: Path) -> None:
    """``slab.pts`` (µm), ``slab.elem``, ``slab.lon`` and ``stimulus.vtx`` in ``folder``."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "slab.pts", "w") as fh:
        fh.write(f"{mesh.n_points}\n")
        np.savetxt(fh, mesh.points_mm * 1000.0, fmt="%.6f")
    with open(folder / "slab.elem", "w") as fh:
        fh.write(f"{mesh.n_elements}\n")
        rows = np.column_stack([mesh.tets, mesh.region])
        np.savetxt(fh, rows, fmt="Tt %d %d %d %d %d")
    with open(folder / "slab.lon", "w") as fh:
        fh.write("1\n")  # openCARP: one fibre direction per element (no sheet)
        np.savetxt(fh, mesh.fibres, fmt="%.8f")
    with open(folder / "stimulus.vtx", "w") as fh:
        fh.write(f"{len(stimulus_nodes)}\nintra\n")
        np.savetxt(fh, np.asarray(stimulus_nodes, dtype=np.int64), fmt="%d")


def run_torchcor(args) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    import torch
    from torchcor.ionic import TenTusscherPanfilov
    from torchcor.simulator import Monodomain

    torch.set_num_threads(args.threads)
    import_s = time.perf_counter() - t0

    from cardiotwin.solvers.verification import (
        STIMULUS_DURATION_MS,
        STIMULUS_UA_PER_UF,
        nversion_problem,
    )

    t0 = time.perf_counter()
    problem = nversion_problem(args.dx)  # the mesh, stimulus nodes and reference values
    mesh = problem.mesh
    stimulus_nodes = problem.stimuli[0].mesh_nodes(mesh.points_mm)
    folder = Path(args.workdir) / "torchcor_mesh"
    write_openCARP_mesh(mesh, stimulus_nodes, folder)
    sigma_l, sigma_t = problem.conductivities_s_per_m[1]

    cpu, dt = torch.device("cpu"), args.dt
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.torchcor_dtype]
    n_steps = round(args.t_end / dt)
    cell = TenTusscherPanfilov(dt=dt, cell_type="EPI", device=cpu, dtype=dtype)
    sim = Monodomain([cell], T=n_steps * dt, dt=dt, device=cpu, dtype=dtype)
    sim.load_mesh(path=str(folder), unit_conversion=1000)
    sim.add_conductivity([1], il=sigma_l, it=sigma_t)
    sim.add_stimulus(
        str(folder / "stimulus.vtx"),
        start=0.0,
        duration=STIMULUS_DURATION_MS + 0.5 * dt,  # the same 40 steps as ours (see above)
        intensity=STIMULUS_UA_PER_UF,
    )
    sim.assemble()
    n_nodes = sim.n_nodes
    u = torch.zeros(n_nodes, dtype=dtype, device=cpu)
    u[cell.node_indices] = cell.initialize(cell.node_indices.shape[0])
    if args.torchcor_initial == "nversion":
        model = problem.model
        u.fill_(float(model.states[0].initial))
        for name, (attr, scale) in TORCHCOR_STATE.items():
            value = model.states[model.state_index(name)].initial * scale
            setattr(cell, attr, torch.full_like(getattr(cell, attr), value))
    sim.cg.initialize(x=u, linear_guess=True)
    setup_s = time.perf_counter() - t0

    v_prev = u.clone()
    first_ms = torch.full((n_nodes,), float("nan"), dtype=dtype)
    clock = [time.perf_counter()]
    iterations = 0
    ionic_s: list[float] = []
    diffusion_s: list[float] = []
    t = 0.0
    for n in range(1, n_steps + 1):
        t += dt  # as Monodomain.solve: the step's end time
        u, n_iter, ionic, electric = sim.step(
            u, t, args.torchcor_atol, args.cg_rtol, TORCHCOR_MAX_ITER, verbose=True
        )
        if n_iter >= TORCHCOR_MAX_ITER:
            raise RuntimeError(f"TorchCor CG reached {TORCHCOR_MAX_ITER} iterations at {t} ms")
        iterations += n_iter + 1  # its count leaves out the iteration that converges
        ionic_s.append(ionic)
        diffusion_s.append(electric)
        crossed = (v_prev < 0.0) & (u >= 0.0) & torch.isnan(first_ms)
        if bool(crossed.any()):
            a, b = v_prev[crossed], u[crossed]
            first_ms[crossed] = (n - 1) * dt + dt * (0.0 - a) / (b - a)
        v_prev.copy_(u)
        clock.append(time.perf_counter())
    if not bool(torch.isfinite(u).all()):
        raise FloatingPointError("TorchCor's V became NaN/inf")
    np.save(Path(args.workdir) / "torchcor_activation_ms.npy", first_ms.numpy())
    return {
        "code": "torchcor",
        "version": version("torchcor"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "nodes": n_nodes,
        "import_s": import_s,
        "setup_s": setup_s,
        "cg_iterations_per_step": iterations / n_steps,
        **split_times(ionic_s, diffusion_s, args.warmup_steps),
        "numerics": (
            "consistent mass, theta 0.5, ionic explicit; Jacobi-CG, linear extrapolated guess, "
            f"r_tol {args.cg_rtol:g}, a_tol {args.torchcor_atol:g}; lookup tables for gate rates"
        ),
        "initial_state": args.torchcor_initial,
        "threading": {
            "parallel_info": torch.__config__.parallel_info().splitlines()[:6],
            **{k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
        },
        **steady_rate(clock, n_nodes, args.warmup_steps),
    }


# --- cardiotwin side ------------------------------------------------------------------------


class Stopwatch:
    """Calls ``function``, adds up the wall time spent in it and passes its result on (the
    stepper reads which buffer the diffusion operator wrote from it)."""

    def __init__(self, function) -> None:
        self.function = function
        self.seconds: list[float] = []  # per call

    def __call__(self, *args):
        started = time.perf_counter()
        result = self.function(*args)
        self.seconds.append(time.perf_counter() - started)
        return result


def run_cardiotwin(args) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    from cardiotwin.solvers.backends import cpu
    from cardiotwin.solvers.stepping import SplitStepper
    from cardiotwin.solvers.trackers import ActivationTracker, Tracker
    from cardiotwin.solvers.verification import nversion_problem

    cpu.set_threads(args.threads)
    import_s = time.perf_counter() - t0
    from bench_cell import threading_environment

    class StepClock(Tracker):
        """Reads the clock after every step (the stepper calls ``update`` once per step)."""

        updates_every_step = True

        def __init__(self) -> None:
            self.readings: list[float] = []

        def start(self, sim) -> None:
            self.readings = [time.perf_counter()]

        def update(self, sim) -> None:
            self.readings.append(time.perf_counter())

    t0 = time.perf_counter()
    problem = nversion_problem(args.dx)
    stepper = SplitStepper(
        problem,
        args.dt,
        backend="cpu",
        mass=args.mass,
        diffusion=args.diffusion,
        theta=0.5,
        cg_rtol=args.cg_rtol,
        cell_tables=args.cell_tables == "on",
        precision=args.precision,
    )
    tables = stepper.cell_tables
    # time the ionic and diffusion parts apart, as TorchCor's step(verbose=True) does
    ionic = Stopwatch(stepper._cell_kernel)
    stepper._cell_kernel = ionic
    diffusion = Stopwatch(stepper.diffusion_operator.apply)
    stepper.diffusion_operator.apply = diffusion
    setup_s = time.perf_counter() - t0
    activation = ActivationTracker()
    clock = StepClock()
    stepper.run(round(args.t_end / args.dt) * args.dt, [activation, clock])
    v = stepper.voltage_mv
    if not np.all(np.isfinite(v)):
        raise FloatingPointError("cardiotwin's V became NaN/inf")
    first_ms = problem.mesh_field(activation.first_ms[:, 0])
    np.save(Path(args.workdir) / "cardiotwin_activation_ms.npy", first_ms)
    cg = getattr(getattr(stepper, "diffusion_operator", None), "cg", None)  # report only
    steps = len(clock.readings) - 1
    return {
        "code": "cardiotwin",
        "version": version("cardiotwin"),
        "numba": __import__("numba").__version__,
        "threads": cpu.set_threads(None),
        "nodes": problem.n_nodes,
        "import_s": import_s,
        "setup_s": setup_s,
        "cg_iterations_per_step": None if cg is None else cg.iterations / steps,
        **split_times(ionic.seconds, diffusion.seconds, args.warmup_steps),
        "numerics": (
            f"{args.mass} mass, "
            + (
                "theta 0.5 (Crank-Nicolson), Jacobi-CG from V + last increment, "
                f"rtol {args.cg_rtol:g}"
                if args.diffusion == "implicit"
                else f"explicit diffusion, {stepper.substeps} substeps"
            )
            + "; Godunov splitting; "
            + ("lookup tables for gate rates" if tables else "exact gate rates")
            + f"; precision {args.precision}"
        ),
        "precision": args.precision,
        "cell_tables": tables,
        "threading": threading_environment(),
        **steady_rate(clock.readings, problem.n_nodes, args.warmup_steps),
    }


# --- parent: run both, compare ------------------------------------------------------------


#: the options each side's result depends on (``--reuse`` reruns a side when one differs)
SIDE_SETTINGS = {
    "torchcor": (
        "dx",
        "dt",
        "t_end",
        "threads",
        "cg_rtol",
        "torchcor_atol",
        "torchcor_initial",
        "torchcor_dtype",
    ),
    "cardiotwin": (
        "dx",
        "dt",
        "t_end",
        "threads",
        "cg_rtol",
        "mass",
        "diffusion",
        "cell_tables",
        "precision",
    ),
}


def run_side(side: str, args, workdir: Path) -> dict:
    settings = {name: getattr(args, name) for name in SIDE_SETTINGS[side]}
    saved = workdir / f"{side}.json"
    if args.reuse and saved.is_file():
        result = json.loads(saved.read_text())
        if result.get("settings") == settings:
            print(f"reusing {saved} (same settings)", flush=True)
            return result
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(args.threads)
    command = [sys.executable, __file__, "--side", side, "--workdir", str(workdir)]
    for name in ("dx", "dt", "t_end", "threads", "cg_rtol", "torchcor_atol", "warmup_steps"):
        command += [f"--{name.replace('_', '-')}", repr(getattr(args, name))]
    command += ["--mass", args.mass, "--torchcor-initial", args.torchcor_initial]
    command += ["--cell-tables", args.cell_tables, "--diffusion", args.diffusion]
    command += ["--precision", args.precision, "--torchcor-dtype", args.torchcor_dtype]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True)
    result = json.loads(saved.read_text())
    result["process_wall_s"] = time.perf_counter() - started
    result["settings"] = settings
    result["load_after"] = load_average()
    saved.write_text(json.dumps(result, indent=2))
    return result


def compare_activation(workdir: Path, dx_mm: float) -> dict:
    import numpy as np

    from cardiotwin.solvers.verification import POINTS_MM, interpolate_at_points, nversion_problem

    ours = np.load(workdir / "cardiotwin_activation_ms.npy")
    theirs = np.load(workdir / "torchcor_activation_ms.npy")
    problem = nversion_problem(dx_mm)
    points = np.array(list(POINTS_MM.values()))
    mesh = problem.mesh
    at_ours = interpolate_at_points(mesh.points_mm, mesh.tets, ours, points)
    at_theirs = interpolate_at_points(mesh.points_mm, mesh.tets, theirs, points)
    both = np.isfinite(ours) & np.isfinite(theirs)
    diff = ours[both] - theirs[both]
    out = {
        "points": {},
        "nodes_activated": {
            "cardiotwin": int(np.isfinite(ours).sum()),
            "torchcor": int(np.isfinite(theirs).sum()),
            "both": int(both.sum()),
            "all": int(ours.size),
        },  # fmt: skip
        "mean_abs_difference_ms": float(np.abs(diff).mean()) if diff.size else None,
        "max_abs_difference_ms": float(np.abs(diff).max()) if diff.size else None,
        "mean_difference_ms": float(diff.mean()) if diff.size else None,
    }
    for name, a, b in zip(POINTS_MM, at_ours, at_theirs, strict=True):
        rel = 100.0 * (a - b) / b if np.isfinite(a) and np.isfinite(b) and b != 0 else None
        out["points"][name] = {
            "point_mm": POINTS_MM[name],
            "cardiotwin_ms": None if not np.isfinite(a) else float(a),
            "torchcor_ms": None if not np.isfinite(b) else float(b),
            "difference_percent": rel,
        }
    return out


def print_report(report: dict) -> None:
    ours, theirs = report["cardiotwin"], report["torchcor"]
    print()
    print(f"N-version slab, dx {report['dx_mm']} mm ({ours['nodes']} nodes), TP06 epi, "
          f"dt {report['dt_ms']} ms, {report['t_end_ms']} ms, cardiotwin {report['precision']}, "
          f"TorchCor {report['torchcor_dtype']}, "
          f"{report['threads']} threads; {report['cpu']}")  # fmt: skip
    header = f"{'':<34}{'cardiotwin':>14}{'TorchCor':>14}"
    print(header)
    print("-" * len(header))
    rows = [
        ("import, s", "import_s", "{:.2f}"),
        ("set-up (mesh, files, assembly), s", "setup_s", "{:.2f}"),
        ("first steps incl. compile, s", "first_steps_wall_s", "{:.2f}"),
        ("  of which compile (estimate), s", "compile_estimate_s", "{:.2f}"),
        ("steady stepping, s", "steady_wall_s", "{:.2f}"),
        ("ms per step (steady)", "steady_ms_per_step", "{:.2f}"),
        ("node-steps/s (steady)", "node_steps_per_s", "{:.3e}"),
        ("node-steps/s (whole run)", "node_steps_per_s_including_first_steps", "{:.3e}"),
        ("CG iterations per step", "cg_iterations_per_step", "{:.2f}"),
        ("process wall time, s", "process_wall_s", "{:.1f}"),
        ("load average after the run", "load_after", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        a, b = ours.get(key), theirs.get(key)
        cell_a = fmt.format(a) if a is not None else "-"
        cell_b = fmt.format(b) if b is not None else "-"
        print(f"{label:<34}{cell_a:>14}{cell_b:>14}")
    print(f"ionic / diffusion ms per step (steady): cardiotwin "
          f"{ours['ionic_ms_per_step_steady']:.2f} / {ours['diffusion_ms_per_step_steady']:.2f},"
          f" TorchCor {theirs['ionic_ms_per_step_steady']:.2f} / "
          f"{theirs['diffusion_ms_per_step_steady']:.2f}")  # fmt: skip
    print(f"cardiotwin: {ours['numerics']}")
    print(f"TorchCor:   {theirs['numerics']}")
    print("(CG iterations: matrix products in the CG loop; TorchCor's own count is one lower)")
    print(f"speed ratio cardiotwin / TorchCor (steady node-steps/s): {report['ratio']:.3f}")
    agreement = report["agreement"]
    for name, p in agreement["points"].items():
        a, b, rel = p["cardiotwin_ms"], p["torchcor_ms"], p["difference_percent"]
        text_a = f"{a:.3f} ms" if a is not None else "not activated"
        text_b = f"{b:.3f} ms" if b is not None else "not activated"
        text_rel = f" ({rel:+.2f} %)" if rel is not None else ""
        print(f"activation {name} {tuple(p['point_mm'])}: cardiotwin {text_a}, "
              f"TorchCor {text_b}{text_rel}")  # fmt: skip
    n = agreement["nodes_activated"]
    if agreement["mean_abs_difference_ms"] is not None:
        print(f"activation map over {n['both']} of {n['all']} nodes: mean |Δ| "
              f"{agreement['mean_abs_difference_ms']:.3f} ms, max |Δ| "
              f"{agreement['max_abs_difference_ms']:.3f} ms, mean Δ (ours − TorchCor) "
              f"{agreement['mean_difference_ms']:+.3f} ms")  # fmt: skip
    print(f"load average (1 min) before/after: {report['load_before']:.2f} / "
          f"{report['load_after']:.2f}")  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dx", type=float, default=0.2, help="mesh spacing, mm")
    parser.add_argument("--dt", type=float, default=0.05, help="time step, ms")
    parser.add_argument("--t-end", type=float, default=50.0, help="simulated time, ms")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cg-rtol", type=float, default=1e-5,
        help="relative CG tolerance of both codes (TorchCor's README uses 1e-5)",
    )  # fmt: skip
    parser.add_argument("--torchcor-atol", type=float, default=1e-5)
    parser.add_argument(
        "--mass", choices=("consistent", "lumped"), default="consistent",
        help="cardiotwin's mass matrix (TorchCor: consistent)",
    )  # fmt: skip
    parser.add_argument(
        "--diffusion", choices=("implicit", "explicit"), default="implicit",
        help="cardiotwin's diffusion scheme (TorchCor: implicit, theta 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--torchcor-initial", choices=("nversion", "own"), default="nversion",
        help="TorchCor's TP06 start state: the published N-version one (ours) or its own",
    )  # fmt: skip
    parser.add_argument(
        "--cell-tables", choices=("on", "off"), default="on",
        help="cardiotwin's gate rates from voltage lookup tables (on, as TorchCor) or exact",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=("fp64", "mixed"), default="fp64",
        help="cardiotwin's precision: fp64, or mixed (float32 V, gates and matrix, float64 "
        "concentrations); compare mixed with --torchcor-dtype float32",
    )  # fmt: skip
    parser.add_argument(
        "--torchcor-dtype", choices=("float64", "float32"), default="float64",
        help="TorchCor's dtype (every state, the matrix and the solver)",
    )  # fmt: skip
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--only", choices=("both", "cardiotwin", "torchcor"), default="both")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--keep", type=Path, default=None,
        help="work in this folder (mesh files, per-code results) and keep it",
    )  # fmt: skip
    parser.add_argument(
        "--reuse", action="store_true",
        help="with --keep: reuse a code's saved result when its settings are the same",
    )  # fmt: skip
    parser.add_argument("--side", choices=("cardiotwin", "torchcor"), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.side is not None:  # child process: one code
        result = (run_torchcor if args.side == "torchcor" else run_cardiotwin)(args)
        (args.workdir / f"{args.side}.json").write_text(json.dumps(result, indent=2))
        return 0

    from bench_cell import cpu_model_name

    load_before = load_average()
    print(f"CPU: {cpu_model_name()}; load {load_before:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_vs_torchcor_") as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        workdir.mkdir(parents=True, exist_ok=True)
        results = {}
        for side in ("torchcor", "cardiotwin"):
            if args.only in ("both", side):
                print(f"running {side} ...", flush=True)
                results[side] = run_side(side, args, workdir)
        if len(results) < 2:
            print(json.dumps(results, indent=2))
            return 0
        agreement = compare_activation(workdir, args.dx)
    report = {
        "benchmark": "vs_torchcor",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu_model_name(),
        "logical_cores": os.cpu_count(),
        "dx_mm": args.dx,
        "dt_ms": args.dt,
        "t_end_ms": args.t_end,
        "threads": args.threads,
        "cg_rtol": args.cg_rtol,
        "cell_tables": args.cell_tables,
        "mass": args.mass,
        "diffusion": args.diffusion,
        "precision": args.precision,
        "torchcor_dtype": args.torchcor_dtype,
        "load_before": load_before,
        "load_after": load_average(),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "cardiotwin": results["cardiotwin"],
        "torchcor": results["torchcor"],
        "ratio": results["cardiotwin"]["node_steps_per_s"]
        / results["torchcor"]["node_steps_per_s"],
        "agreement": agreement,
    }
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    activated = agreement["nodes_activated"]
    if activated["cardiotwin"] < 0.9 * activated["torchcor"]:
        # a speed figure of a run whose wave did not cross the slab measures nothing
        print(
            f"ERROR: cardiotwin activated {activated['cardiotwin']} of {activated['all']} nodes, "
            f"TorchCor {activated['torchcor']}: the runs differ, the ratio is not a comparison",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
