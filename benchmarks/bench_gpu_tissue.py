"""GPU tissue throughput, measured against the bandwidth ceiling of ``roofline.py``.

TP06 (lookup tables, one parameter set) on a 4:2:1 box of about ``--nodes`` nodes (default
600 000) at 0.2 mm, dt 0.05 ms, for each scheme (``lumped``: lumped mass, explicit
diffusion; ``cg``: consistent mass, Crank–Nicolson, Jacobi-CG to 1e-5), precision (fp64,
mixed) and batch size (1, 16; member b stimulated on its own corner cube). Each case: a few
untimed steps (compilation, stimulus), then ``--steps`` timed steps ended by a copy of V to
the host (which waits for the device). Reported: node-steps/s, the roofline ceiling for the
same scheme, precision, B, CG iterations and non-zeros per row on an H100 SXM / H200
(``roofline.bytes_per_node_step``), the fraction of it reached, and for B = 16 the cost of
a member relative to a single run. ``--variants`` runs each case once per setting of the
CUDA backend (``layout=csr``, ``chunks=4096``, ``registers=128``, comma-separated; see
:func:`set_variant`) in the one process, so they share what is already compiled. A parity
check against the CPU backend on a small box closes the run. A benchmark, not a test:
nothing is asserted.

    python benchmarks/bench_gpu_tissue.py --json out/gpu/tissue.json
    python benchmarks/bench_gpu_tissue.py --backend cpu --nodes 20000 --steps 10   # CPU twin
    python benchmarks/bench_gpu_tissue.py --schemes cg --batch 1 --variants default layout=csr \
        chunks=4096 registers=128
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from roofline import BANDWIDTH, bytes_per_node_step

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.checkpoint import reuse_discretisation
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

SIGMA_S_PER_M = (0.1334, 0.01761)
DT_MS = 0.05
SCHEMES = {
    "lumped": dict(mass="lumped", diffusion="explicit"),
    "cg": dict(mass="consistent", diffusion="implicit", cg_rtol=1e-5),
}


def box_for(n_nodes: int, dx_mm: float = 0.2):
    """A 4:2:1 box with about ``n_nodes`` nodes at ``dx_mm``."""
    cells = max(2, round((n_nodes / 8.0) ** (1.0 / 3.0)))
    return box_mesh((4 * cells * dx_mm, 2 * cells * dx_mm, cells * dx_mm), dx_mm)


def problem_for(mesh, batch: int, source=None) -> MonodomainProblem:
    stimuli = [
        Stimulus(0.0, 2.0, 35.71, box_mm=((0, 0, 0), (1.5, 1.5, 1.5 + 0.5 * b)), members=(b,))
        for b in range(batch)
    ]
    problem = MonodomainProblem(
        mesh, "tp06-epi", {1: SIGMA_S_PER_M}, stimuli=stimuli, batch_size=batch
    )
    if source is not None:
        reuse_discretisation(problem, source)  # the same mesh: assemble once
    return problem


VARIANT_KEYS = {
    "layout": "SPMV_LAYOUT",
    "chunks": "REDUCTION_CHUNKS",
    "registers": "CELL_MAX_REGISTERS",
}


def set_variant(backend: str, variant: str) -> dict:
    """Set the CUDA backend's settings for ``variant``: ``default`` or comma-separated
    ``key=value`` with keys ``layout`` (the sparse layout, ``sell`` or ``csr``), ``chunks``
    (most row chunks of the reductions) and ``registers`` (the cell kernel's register cap,
    0 for none); the rest at their defaults. Returns the settings in force."""
    if backend != "cuda":
        return {}
    from cardiotwin.solvers.backends import cuda

    if not hasattr(set_variant, "defaults"):
        set_variant.defaults = {key: getattr(cuda, name) for key, name in VARIANT_KEYS.items()}
    settings = dict(set_variant.defaults)
    for item in filter(None, ("" if variant == "default" else variant).split(",")):
        key, _, value = item.partition("=")
        if key not in VARIANT_KEYS:
            raise SystemExit(
                f"unknown variant key {key!r} in {variant!r}: use {list(VARIANT_KEYS)}"
            )
        settings[key] = value if key == "layout" else (int(value) or None)
    for key, value in settings.items():
        setattr(cuda, VARIANT_KEYS[key], value)
    return settings


def throughput(problem, scheme, precision, backend, steps) -> dict:
    started = time.perf_counter()
    stepper = SplitStepper(problem, DT_MS, backend=backend, precision=precision,
                           stability_bound="gershgorin", **SCHEMES[scheme])  # fmt: skip
    for _ in range(5):  # compile and warm up
        stepper.advance()
    _ = stepper.voltage_mv  # copying V to the host waits for the device
    setup_s = time.perf_counter() - started
    cg = getattr(stepper.diffusion_operator, "cg", None)
    iterations_before = 0 if cg is None else cg.iterations
    t0 = time.perf_counter()
    for _ in range(steps):
        stepper.advance()
    _ = stepper.voltage_mv
    wall = time.perf_counter() - t0
    n, b = stepper.n_nodes, stepper.batch_size
    iterations = 0.0 if cg is None else (cg.iterations - iterations_before) / steps
    model = bytes_per_node_step(
        scheme=scheme, precision=precision, batch=b,
        nnz_per_row=problem.stiffness.nnz / n, substeps=stepper.substeps,
        cg_iterations=iterations,
    )  # fmt: skip
    rate = n * b * steps / wall
    return {
        "scheme": scheme,
        "precision": precision,
        "nodes": n,
        "batch": b,
        "steps": steps,
        "substeps": stepper.substeps,
        "cg_iterations_per_step": iterations,
        "setup_and_compile_s": setup_s,
        "wall_s": wall,
        "node_steps_per_s": rate,
        "bytes_per_node_step": model["total"],
        "ceiling_node_steps_per_s": {g: bw / model["total"] for g, bw in BANDWIDTH.items()},
        "fraction_of_h100_sxm_ceiling": rate / (BANDWIDTH["H100 SXM"] / model["total"]),
        "fraction_of_h200_ceiling": rate / (BANDWIDTH["H200"] / model["total"]),
    }


def parity(backend: str, steps: int, precision: str) -> float:
    mesh = box_mesh((3.0, 1.5, 1.5), 0.25)
    result = []
    for name in (backend, "cpu"):
        stepper = SplitStepper(problem_for(mesh, 2), DT_MS, backend=name, precision=precision)
        for _ in range(steps):
            stepper.advance()
        result.append(stepper.voltage_mv)
    return float(np.abs(result[0] - result[1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--nodes", type=int, default=600_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    parser.add_argument("--precisions", nargs="+", default=["fp64", "mixed"])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["default"],
        help="CUDA settings per run: default, or key=value,...",
    )
    parser.add_argument("--parity-steps", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mesh = box_for(args.nodes)
    rows = []
    base = problem_for(mesh, 1)
    problems = {b: base if b == 1 else problem_for(mesh, b, base) for b in args.batch}
    print(f"{'scheme':7s} {'prec':6s} {'B':>3s} {'node-steps/s':>13s} {'H100 ceiling':>13s} "
          f"{'H200 ceiling':>13s} {'of H100':>8s} {'B/B=1':>6s} {'CG it':>6s} variant")  # fmt: skip
    for scheme, precision, variant in itertools.product(
        args.schemes, args.precisions, args.variants
    ):
        in_force = set_variant(args.backend, variant)
        single = None
        for batch in args.batch:
            row = throughput(problems[batch], scheme, precision, args.backend, args.steps)
            row.update(in_force)
            single = row["node_steps_per_s"] if batch == 1 else single
            row["member_cost_vs_single"] = (
                single / row["node_steps_per_s"] if single and batch > 1 else None
            )
            rows.append(row)
            ceiling = row["ceiling_node_steps_per_s"]
            member = row["member_cost_vs_single"]
            print(
                f"{scheme:7s} {precision:6s} {batch:3d} {row['node_steps_per_s']:13.3g} "
                f"{ceiling['H100 SXM']:13.3g} {ceiling['H200']:13.3g} "
                f"{row['fraction_of_h100_sxm_ceiling']:8.1%} "
                f"{'' if member is None else f'{member:.2f}':>6s} "
                f"{row['cg_iterations_per_step']:6.2f} "
                + ",".join(f"{k}={v}" for k, v in in_force.items()),
                flush=True,
            )
    parities = {}
    if args.parity_steps > 0:  # 0: skip (the CUDA tests check parity; this compiles CPU kernels)
        parities = {p: parity(args.backend, args.parity_steps, p) for p in args.precisions}
    for precision, max_dv in parities.items():
        print(f"parity {args.backend} vs cpu, {precision}, {args.parity_steps} steps: "
              f"max |dV| = {max_dv:.3g} mV")  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from cardiotwin.solvers.backends.cuda import CUDA_GRAPHS

        report = {"rows": rows, "parity_max_dv_mv": parities, "cuda_graphs": CUDA_GRAPHS}
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
