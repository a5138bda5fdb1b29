"""Count the CUDA backend's kernel launches and host↔device traffic per time step (a
subprocess script, run under NUMBA_ENABLE_CUDASIM=1 by test_cuda_launches.py).

Usage: NUMBA_ENABLE_CUDASIM=1 python cudasim_launches.py OUT.json

The counting is done by wrapping the simulator's own entry points, not by anything in the
backend: every kernel launch (``FakeCUDAKernel.__call__`` outside a kernel), every host
array passed to a kernel (an implicit copy both ways), ``to_device``, ``copy_to_host``,
``copy_to_device`` and device/pinned allocations. For each scheme it runs a small batched
problem past its stimulus, then records the counters' change over each later step (a
tracker placed last in the list reads them after every step), with the CG iterations the
solver reported for that step.
"""

import collections
import json
import sys

import numpy as np
from numba import cuda
from numba.cuda.simulator import kernel as sim_kernel
from numba.cuda.simulator.cudadrv import devicearray as sim_array

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.backends import cuda as backend
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker, APDTracker, Tracker

COUNTS: collections.Counter = collections.Counter()


def _install_counters() -> None:
    launch = sim_kernel.FakeCUDAKernel.__call__

    def counted_launch(self, *args):
        if not self._device and sim_kernel._kernel_context is None:
            COUNTS["launches"] += 1
            COUNTS[f"launch {self.fn.__name__}"] += 1
            for arg in args:
                if isinstance(arg, np.ndarray) and arg.ndim > 0:
                    COUNTS["host arrays passed to kernels"] += 1
        return launch(self, *args)

    sim_kernel.FakeCUDAKernel.__call__ = counted_launch

    copy_to_host = sim_array.FakeCUDAArray.copy_to_host

    def counted_copy_to_host(self, ary=None, stream=0):
        COUNTS["device-to-host copies"] += 1
        COUNTS["device-to-host bytes"] += int(self._ary.nbytes)
        COUNTS["asynchronous device-to-host copies"] += int(stream != 0)
        return copy_to_host(self, ary, stream)

    sim_array.FakeCUDAArray.copy_to_host = counted_copy_to_host

    copy_to_device = sim_array.FakeCUDAArray.copy_to_device

    def counted_copy_to_device(self, ary, stream=0):
        if not isinstance(ary, sim_array.FakeCUDAArray):
            COUNTS["host-to-device copies"] += 1
        return copy_to_device(self, ary, stream)

    sim_array.FakeCUDAArray.copy_to_device = counted_copy_to_device

    def counting(name, function):
        def wrapper(*args, **kwargs):
            COUNTS[name] += 1
            return function(*args, **kwargs)

        return wrapper

    cuda.to_device = counting("host-to-device copies", cuda.to_device)
    cuda.device_array = counting("device allocations", cuda.device_array)
    cuda.pinned_array = counting("pinned allocations", cuda.pinned_array)


class StepCounter(Tracker):
    """After every step: the counters' change since the previous step, and the CG iterations
    of the step."""

    updates_every_step = True

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def start(self, sim) -> None:
        self._last = COUNTS.copy()
        cg = getattr(sim.diffusion_operator, "cg", None)
        self._cg_last = 0 if cg is None else cg.iterations

    def update(self, sim) -> None:
        now = COUNTS.copy()
        delta = {k: now[k] - self._last[k] for k in now if now[k] != self._last[k]}
        cg = getattr(sim.diffusion_operator, "cg", None)
        if cg is not None:
            delta["cg iterations"] = cg.iterations - self._cg_last
            self._cg_last = cg.iterations
        self.steps.append(delta)
        self._last = now


LUMPED = dict(mass="lumped", diffusion="explicit")
CRANK_NICOLSON = dict(mass="consistent", diffusion="implicit")
#: (numerics, precision, with trackers): both schemes, both precisions, fused trackers
RUNS = (
    ("lumped explicit, 1 substep", dict(LUMPED, substeps=1), "fp64", True),
    ("lumped explicit, 2 substeps", dict(LUMPED, substeps=2), "mixed", True),
    ("consistent Crank-Nicolson", CRANK_NICOLSON, "fp64", True),
    ("consistent Crank-Nicolson", CRANK_NICOLSON, "mixed", False),
)
DT_MS = 0.025
WARM_UP_MS = 0.1  # compiles, and the stimulus (2 steps) switches on and off
COUNTED_STEPS = 4


def problem(batch: int) -> MonodomainProblem:
    mesh = box_mesh((0.75, 0.5, 0.25), 0.25)
    stimuli = [Stimulus(0.0, 2 * DT_MS, 80.0, box_mm=((0, 0, 0), (0.25, 0.5, 0.25)))]
    return MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (0.1334, 0.01761)}, stimuli=stimuli, batch_size=batch
    )


def main(out_path: str) -> None:
    # the simulator runs one Python thread per CUDA thread: keep launches small
    backend.THREADS_PER_BLOCK = 4
    backend.REDUCTION_CHUNKS = 2
    _install_counters()
    results = {"cg_check_every": backend.CG_CHECK_EVERY, "runs": []}
    for name, numerics, precision, with_trackers in RUNS:
        stepper = SplitStepper(problem(2), DT_MS, backend="cuda", precision=precision, **numerics)
        trackers = [ActivationTracker(), APDTracker()] if with_trackers else []
        stepper.run(WARM_UP_MS, trackers)
        counter = StepCounter()
        stepper.run(WARM_UP_MS + COUNTED_STEPS * DT_MS, [*trackers, counter])
        results["runs"].append(
            {
                "scheme": name,
                "precision": precision,
                "trackers": [type(t).__name__ for t in trackers],
                "substeps": stepper.substeps,
                "steps": counter.steps,
            }
        )
    with open(out_path, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
