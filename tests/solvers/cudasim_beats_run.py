"""Run the trial monitor on a tiny batch with the CUDA backend (a subprocess script).

Usage: NUMBA_ENABLE_CUDASIM=1 python cudasim_beats_run.py OUT.npz BACKEND
Writes the per-beat activation times, counts, outcomes, finish times and captures; the
parent test (test_beats.py) runs the same on the CPU and compares.
"""

import sys

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.beats import MemberWatch, TrialMonitor
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

DT_MS = 0.025
T_END_MS = 1.0


def run(backend: str) -> dict:
    mesh = box_mesh((0.75, 0.5, 0.25), 0.25)
    stimuli = [
        Stimulus(0.0, 0.5, 80.0, box_mm=((0, 0, 0), (0.25, 0.5, 0.25)), members=(0,)),
        Stimulus(0.0, 0.5, 80.0, box_mm=((0.5, 0, 0), (0.75, 0.5, 0.25)), members=(1,)),
    ]
    problem = MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (0.1334, 0.01761)}, stimuli=stimuli, batch_size=2
    )
    probe = np.arange(problem.n_nodes)
    watches = [
        MemberWatch((0.0,), probe, quiet_after_ms=0.5, stop_at_ms=0.75),
        MemberWatch((0.25,), probe, quiet_after_ms=0.5),
    ]
    monitor = TrialMonitor(
        watches,
        keep=2,
        threshold_mv=-60.0,
        rearm_mv=-75.0,
        capture_window_ms=0.25,
        interval_ms=0.25,
    )
    SplitStepper(problem, DT_MS, backend=backend).run(T_END_MS, [monitor])
    captured = np.array(
        [[np.nan if c is None else float(c) for c in row] for row in monitor.captured]
    )
    return {
        "beats": monitor.all_beats(),
        "count": monitor.count,
        "outcome": monitor.outcome.astype(np.float64),
        "finished_ms": monitor.finished_ms,
        "captured": captured,
    }


if __name__ == "__main__":
    backend = sys.argv[2]
    if backend == "cuda":
        from cardiotwin.solvers.backends import cuda as cuda_backend

        # the simulator runs one Python thread per CUDA thread: keep launches small
        cuda_backend.THREADS_PER_BLOCK = 4
        cuda_backend.REDUCTION_CHUNKS = 2
    np.savez(sys.argv[1], **run(backend))
