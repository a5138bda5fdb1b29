"""``cardiotwin verify``: verification runs against independent reference numbers.

- ``verify cell``: pace one cell at 1 Hz and measure the last action potential
  (../shared/NVERSION.md §2).
- ``verify nversion``: the Niederer et al. 2011 N-version slab benchmark (NVERSION.md §1).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from cardiotwin.files import write_json_atomic
from cardiotwin.pipeline.cli import CommandError

log = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="verify_command", metavar="RUN", required=True)

    cell = sub.add_parser("cell", help="pace one cell and measure its last action potential")
    cell.add_argument("--model", required=True, help="ionic model name, e.g. tp06-epi")
    cell.add_argument("--beats", type=int, default=1, help="number of beats (default 1)")
    cell.add_argument("--bcl", type=float, default=1000.0, help="cycle length, ms (default 1000)")
    cell.add_argument("--dt", type=float, default=0.01, help="time step, ms (default 0.01)")
    cell.add_argument(
        "--stim-amplitude",
        type=float,
        default=None,
        help="stimulus, µA/µF (default: twice the 0.5 ms threshold)",
    )
    cell.add_argument("--backend", choices=("cpu", "reference"), default="cpu")
    cell.add_argument("--json", type=Path, help="write the measurements to this JSON file")

    nv = sub.add_parser("nversion", help="the Niederer 2011 N-version slab benchmark")
    nv.add_argument("--dx", type=float, required=True, help="mesh spacing, mm (0.5, 0.2, 0.1)")
    nv.add_argument("--dt", type=float, required=True, help="time step, ms (0.05, 0.01, 0.005)")
    nv.add_argument("--backend", choices=("auto", "cpu", "cuda", "reference"), default="auto")
    nv.add_argument("--mass", choices=("lumped", "consistent"), default="lumped")
    nv.add_argument(
        "--diffusion",
        choices=("explicit", "implicit"),
        default="explicit",
        help="explicit (sub-stepped to the stability bound) or theta-scheme with CG",
    )
    nv.add_argument("--json", type=Path, help="write the results to this JSON file")
    nv.add_argument("--progress", action="store_true", help="show a progress bar (stderr)")
    nv.add_argument(
        "--cell-tables",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gate rates from voltage lookup tables (default; --no-cell-tables: exact rates)",
    )
    nv.add_argument(
        "--precision",
        choices=("fp64", "mixed"),
        default="fp64",
        help="fp64 (default) or mixed: V, gates and diffusion in float32, the states float32 "
        "cannot resolve per step in float64 (arithmetic float64 throughout)",
    )
    nv.add_argument(
        "--max-time",
        type=float,
        default=300.0,
        help="stop at this simulated time if not all nodes have activated, ms (default 300)",
    )


def _run_cell(args: argparse.Namespace) -> dict:
    from cardiotwin.solvers.cell import action_potential_metrics, pace_cell
    from cardiotwin.solvers.ionic import UnknownNameError, get_model

    try:
        model = get_model(args.model)
    except UnknownNameError as exc:
        raise CommandError(str(exc)) from None
    if args.beats < 1:
        raise CommandError(f"--beats must be at least 1, got {args.beats}")
    if not (args.dt > 0 and math.isfinite(args.dt)):
        raise CommandError(f"--dt must be a positive number of ms, got {args.dt}")
    if not (args.bcl > 0 and math.isfinite(args.bcl)):
        raise CommandError(f"--bcl must be a positive number of ms, got {args.bcl}")
    amplitude = args.stim_amplitude
    if amplitude is not None and not (amplitude > 0 and math.isfinite(amplitude)):
        raise CommandError(
            f"--stim-amplitude must be a positive number of µA/µF (the size of the "
            f"depolarising stimulus), got {amplitude}"
        )
    try:
        run = pace_cell(
            model,
            beats=args.beats,
            bcl_ms=args.bcl,
            dt_ms=args.dt,
            stim_amplitude=args.stim_amplitude,
            backend=args.backend,
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result = action_potential_metrics(run)
    if not all(math.isfinite(result[k]) for k in ("apd90_ms", "v_peak_mv")):
        raise CommandError(
            f"the cell did not fire an action potential: a stimulus of "
            f"{run.stimulus_amplitude:g} µA/µF for 0.5 ms is below {model.name}'s threshold; "
            "raise --stim-amplitude (the default is twice the threshold)"
        )
    result.update(
        model=model.name,
        beats=args.beats,
        bcl_ms=args.bcl,
        dt_ms=args.dt,
        stimulus_amplitude_uA_per_uF=run.stimulus_amplitude,
        stimulus_duration_ms=0.5,
        backend=args.backend,
    )
    return result


def _run_nversion(args: argparse.Namespace) -> dict:
    from cardiotwin.solvers.verification import run_nversion

    if not (args.dx > 0 and math.isfinite(args.dx)):
        raise CommandError(f"--dx must be a positive number of mm, got {args.dx}")
    if not (args.dt > 0 and math.isfinite(args.dt)):
        raise CommandError(f"--dt must be a positive number of ms, got {args.dt}")
    try:
        return run_nversion(
            dx_mm=args.dx,
            dt_ms=args.dt,
            backend=args.backend,
            mass=args.mass,
            diffusion=args.diffusion,
            max_time_ms=args.max_time,
            progress=args.progress,
            cell_tables=args.cell_tables,
            precision=args.precision,
        )
    except (ValueError, NotImplementedError) as exc:
        raise CommandError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    runner = {"cell": _run_cell, "nversion": _run_nversion}[args.verify_command]
    result = runner(args)
    if args.json:
        write_json_atomic(result, args.json)
        log.info("wrote %s", args.json)
    print(json.dumps(result, indent=2))
    return 0
