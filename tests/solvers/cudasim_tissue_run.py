"""Run a tiny batched monodomain problem on the CUDA backend (a subprocess script).

Usage: NUMBA_ENABLE_CUDASIM=1 python cudasim_tissue_run.py OUT.npz BACKEND
Writes, for each diffusion scheme in SCHEMES, the final state and the activation times, and
what the trial monitor (solvers/beats.py) recorded in a run of two members: per-beat
activation times, counts, outcomes, finish times and captures. The parent test
(test_cuda_backend.py) runs the same on the CPU and compares.
"""

import sys

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.beats import MemberWatch, TrialMonitor
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker

# the implicit consistent-mass scheme uses every backend operation (SpMM, CG, reductions);
# each (scheme, mass, precision) runs with an activation tracker (fused into the cell kernel
# on CUDA)
SCHEMES = (
    ("implicit", "consistent", "fp64"),
    ("implicit", "consistent", "mixed"),
    ("explicit", "lumped", "mixed"),
)
T_END_MS = 0.5
DT_MS = 0.025


def problem():
    mesh = box_mesh((0.75, 0.5, 0.25), 0.25)
    stimuli = [
        Stimulus(0.0, 0.5, 80.0, box_mm=((0, 0, 0), (0.25, 0.5, 0.25)), members=(0,)),
        Stimulus(0.0, 0.5, 80.0, box_mm=((0.5, 0, 0), (0.75, 0.5, 0.25)), members=(1,)),
    ]
    return MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (0.1334, 0.01761)}, stimuli=stimuli, batch_size=2
    )


def run(backend: str) -> dict:
    results = {}
    for scheme, mass, precision in SCHEMES:
        stepper = SplitStepper(problem(), DT_MS, mass=mass, diffusion=scheme, backend=backend,
                               precision=precision)  # fmt: skip
        activation = ActivationTracker(threshold_mv=-60.0)
        stepper.run(T_END_MS, [activation])
        results[f"{scheme}_{mass}_{precision}_state"] = stepper.state
        results[f"{scheme}_{mass}_{precision}_activation"] = activation.first_ms
        # one member's state gathered on the device: that member's columns of the whole state
        whole = stepper.state.reshape(-1, stepper.n_nodes, 2)
        results[f"{scheme}_{mass}_{precision}_member_gather_error"] = np.array(
            [np.abs(stepper.member_state([m]) - whole[:, :, [m]]).max() for m in (1, 0)]
        )
    results.update(_monitored(backend))
    # per-member maximum (quiescence): a member with any NaN gives NaN, one with none its max
    ops = stepper.ops
    values = np.array([[1.0, 2.0, np.nan], [5.0, np.nan, np.nan], [3.0, 9.0, np.nan],
                       [0.0, 1.0, np.nan], [-1.0, 0.5, np.nan]])  # fmt: skip
    results["member_max"] = ops.member_max(ops.asarray(values.reshape(-1)), 3)
    # the divergence checks, twice each on one device scalar (it must be reset between calls)
    flat = ops.asarray(np.array([0.0, 1.0, 250.0, np.nan, -3.0, np.inf]))
    clean = ops.asarray(np.zeros(6))
    results["first_bad"] = np.array([ops.first_bad_index(flat, 200.0),
                                     ops.first_bad_index(clean, 200.0),
                                     ops.first_bad_index(flat, 1000.0)], dtype=float)  # fmt: skip
    results["count_nan"] = np.array([ops.count_nan(flat), ops.count_nan(clean)], dtype=float)
    return results


def _monitored(backend: str) -> dict:
    """A monitored trial: member 0 observed until 0.75 ms (then frozen), member 1 running;
    thresholds low enough that the 1 ms run records beats and captures."""
    probe = np.arange(problem().n_nodes)
    watches = [
        MemberWatch((0.0,), probe, quiet_after_ms=0.5, stop_at_ms=0.75),
        MemberWatch((0.25,), probe, quiet_after_ms=0.5),
    ]
    monitor = TrialMonitor(
        watches, keep=2, threshold_mv=-60.0, rearm_mv=-75.0, capture_window_ms=0.25,
        interval_ms=0.25,
    )  # fmt: skip
    SplitStepper(problem(), DT_MS, backend=backend).run(2 * T_END_MS, [monitor])
    captured = [[np.nan if c is None else float(c) for c in row] for row in monitor.captured]
    # one member's record gathered on the device: that member's part of the whole arrays
    (record,) = monitor.member_records([1])
    whole = monitor.state_dict()
    n = problem().n_nodes

    def error(name) -> float:  # NaN (no beat) must meet NaN
        got = np.asarray(record[name], dtype=np.float64)
        want = whole[name].reshape(n, 2, -1)[:, 1].reshape(got.shape).astype(np.float64)
        both = np.isnan(got) & np.isnan(want)
        diff = np.where(both, 0.0, np.abs(got - want))
        return float(np.nan_to_num(diff, nan=np.inf).max())

    names = ("v_prev", "armed", "times_ms", "count", "last_ms")
    return {
        "monitor_record_gather_error": np.array([error(name) for name in names]),
        "monitor_beats": monitor.all_beats(),
        "monitor_count": monitor.count,
        "monitor_outcome": monitor.outcome.astype(np.float64),
        "monitor_finished_ms": monitor.finished_ms,
        "monitor_captured": np.array(captured),
    }


if __name__ == "__main__":
    backend = sys.argv[2]
    if backend == "cuda":
        from cardiotwin.solvers.backends import cuda as cuda_backend

        # the simulator runs one Python thread per CUDA thread: keep launches small
        cuda_backend.THREADS_PER_BLOCK = 4
        cuda_backend.REDUCTION_CHUNKS = 2
    np.savez(sys.argv[1], **run(backend))
