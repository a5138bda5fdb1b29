"""Mixed precision against float64, one cell at a time: APD90 after 1 and after many beats,
and which states float32 cannot carry.

For every model (``--models``, default all registered): the stimulus is twice the float64
0.5 ms threshold (as ``cardiotwin verify cell``), the cell is paced at ``--bcl`` (1000 ms)
with ``--dt`` (0.01 ms) and exact gate rates, once with every state in float64 and once as
``precision="mixed"`` keeps them (float32 but for the model's FP64_STATES; arithmetic
float64). Reported per beat count in ``--beats`` (default 1 and 1000): APD90 of the last
beat in both precisions and the difference (the issue's bound: 1 ms), and the largest
relative difference of any state at the end.

``--resolution`` prints instead, per state, the share of its movement over one paced beat
at ``--dt`` made of updates below half a float32 ulp (``precision.lost_change_share``): the
figure that decides a model's FP64_STATES (> 1 % at dt 0.005 ms → float64).

    .venv/bin/python benchmarks/precision_check.py --json out/bench/precision.json
    .venv/bin/python benchmarks/precision_check.py --models tp06-epi --beats 1 10
    .venv/bin/python benchmarks/precision_check.py --resolution --dt 0.005
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numba
import numpy as np

from cardiotwin.solvers.cell import action_potential_metrics, pace_cell, stimulus_threshold
from cardiotwin.solvers.ionic import get_model, model_names
from cardiotwin.solvers.ionic.base import compile_step_of_module, empty_table, takes_table
from cardiotwin.solvers.precision import MAX_LOST_SHARE, fp64_states, lost_change_share


def apd_comparison(name: str, beats: list[int], dt_ms: float, bcl_ms: float) -> dict:
    model = get_model(name)
    amplitude = 2.0 * stimulus_threshold(model, dt_ms=dt_ms)
    rows = []
    for n in beats:
        runs = {}
        for precision in ("fp64", "mixed"):
            started = time.perf_counter()
            run = pace_cell(
                model, beats=n, bcl_ms=bcl_ms, dt_ms=dt_ms, stim_amplitude=amplitude,
                precision=precision,
            )  # fmt: skip
            runs[precision] = (run, action_potential_metrics(run), time.perf_counter() - started)
        (a, ma, ta), (b, mb, tb) = runs["fp64"], runs["mixed"]
        scale = np.maximum(np.abs(a.final_state), 1e-12)
        relative = np.abs(b.final_state - a.final_state) / scale
        worst = int(np.argmax(relative))
        rows.append(
            {
                "beats": n,
                "apd90_fp64_ms": ma["apd90_ms"],
                "apd90_mixed_ms": mb["apd90_ms"],
                "apd90_difference_ms": mb["apd90_ms"] - ma["apd90_ms"],
                "v_rest_difference_mv": mb["v_rest_mv"] - ma["v_rest_mv"],
                "largest_relative_state_difference": float(relative[worst]),
                "in_state": model.state_names[worst],
                "wall_s": {"fp64": ta, "mixed": tb},
            }
        )
    return {
        "model": name,
        "fp64_states": list(fp64_states(model)),
        "stimulus_ua_per_uf": amplitude,
        "dt_ms": dt_ms,
        "bcl_ms": bcl_ms,
        "rows": rows,
    }


def beat_trajectory(name: str, dt_ms: float, bcl_ms: float, amplitude: float) -> np.ndarray:
    """(n_states, steps + 1) float64 states over one paced beat (exact rates)."""
    model = get_model(name)
    step = compile_step_of_module(model.module, numba.njit, use_table=False)
    with_table, table = takes_table(model), empty_table(1)
    n_steps, stim_steps = round(bcl_ms / dt_ms), round(0.5 / dt_ms)

    @numba.njit
    def run(y, p, out):
        out[:, 0] = y[:, 0]
        for n in range(n_steps):
            i_stim = amplitude if n < stim_steps else 0.0
            if with_table:
                step(y, p, 0, 0, dt_ms, i_stim, table)
            else:
                step(y, p, 0, 0, dt_ms, i_stim)
            out[:, n + 1] = y[:, 0]

    y = model.initial_state(1)
    out = np.empty((model.n_states, n_steps + 1))
    run(y, np.ascontiguousarray(model.default_parameters()[:, None]), out)
    return out


def resolution(name: str, dt_ms: float, bcl_ms: float) -> dict:
    model = get_model(name)
    share = lost_change_share(beat_trajectory(name, dt_ms, bcl_ms, 60.0))
    declared = set(fp64_states(model))
    return {
        "model": name,
        "dt_ms": dt_ms,
        "states": [
            {
                "state": s,
                "lost_share": float(x),
                "fp64": s in declared,
                "rule_says_fp64": bool(x > MAX_LOST_SHARE),
            }  # fmt: skip
            for s, x in zip(model.state_names, share, strict=True)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(model_names()))
    parser.add_argument("--beats", nargs="+", type=int, default=[1, 1000])
    parser.add_argument("--dt", type=float, default=0.01, help="time step, ms")
    parser.add_argument("--bcl", type=float, default=1000.0, help="cycle length, ms")
    parser.add_argument("--resolution", action="store_true", help="the FP64_STATES analysis")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for name in args.models:
        if args.resolution:
            result = resolution(name, args.dt, args.bcl)
            print(f"== {name} (dt {args.dt} ms): share of movement below half a float32 ulp")
            for row in result["states"]:
                mark = "float64" if row["fp64"] else "float32"
                flag = "" if row["fp64"] == row["rule_says_fp64"] else "  <- rule disagrees"
                print(f"  {row['state']:8s} {row['lost_share']:8.2%}  {mark}{flag}")
        else:
            result = apd_comparison(name, args.beats, args.dt, args.bcl)
            for row in result["rows"]:
                print(
                    f"{name:20s} beat {row['beats']:5d}: APD90 {row['apd90_fp64_ms']:9.3f} "
                    f"(fp64) {row['apd90_mixed_ms']:9.3f} (mixed)  Δ "
                    f"{row['apd90_difference_ms']:+.4f} ms; ΔV_rest "
                    f"{row['v_rest_difference_mv']:+.2e} mV; worst state "
                    f"{row['in_state']} {row['largest_relative_state_difference']:.2e}",
                    flush=True,
                )
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": vars(args) | {"json": str(args.json)},
                                         "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
