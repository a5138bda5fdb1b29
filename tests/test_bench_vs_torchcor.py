"""benchmarks/bench_vs_torchcor.py's cardiotwin side measures the real stepper.

The benchmark wraps the stepper's cell kernel and diffusion operator in stopwatches. Once
(11a0547 to 7e3bb43) the diffusion stopwatch dropped the operator's return value, which
tells the stepper which buffer holds the diffused V: the wave never left the stimulus cube
and the benchmark printed a speed for a simulation that did not happen. Here the cardiotwin
side runs as the parent runs it (its own process, ``--side cardiotwin``) on a coarse slab
(TorchCor is not needed), and its activation map must match the same stepper run without
stopwatches.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DX_MM, DT_MS, T_END_MS = 0.5, 0.05, 50.0


@pytest.mark.slow
def test_the_timed_cardiotwin_side_is_the_untimed_simulation(tmp_path):
    from cardiotwin.solvers.stepping import SplitStepper
    from cardiotwin.solvers.trackers import ActivationTracker
    from cardiotwin.solvers.verification import nversion_problem

    command = [
        sys.executable, str(ROOT / "benchmarks" / "bench_vs_torchcor.py"), "--side", "cardiotwin",
        "--workdir", str(tmp_path), "--dx", str(DX_MM), "--dt", str(DT_MS),
        "--t-end", str(T_END_MS), "--threads", "2", "--warmup-steps", "5",
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT, timeout=600)
    timed = np.load(tmp_path / "cardiotwin_activation_ms.npy")
    report = json.loads((tmp_path / "cardiotwin.json").read_text())

    problem = nversion_problem(DX_MM)
    stepper = SplitStepper(
        problem, DT_MS, backend="cpu", mass="consistent", diffusion="implicit", theta=0.5,
        cg_rtol=1e-5, cell_tables=True,
    )  # fmt: skip
    activation = ActivationTracker()
    stepper.run(round(T_END_MS / DT_MS) * DT_MS, [activation])
    untimed = problem.mesh_field(activation.first_ms[:, 0])

    assert np.isfinite(untimed).mean() > 0.9  # the wave crosses most of the slab in 50 ms
    np.testing.assert_array_equal(np.isfinite(timed), np.isfinite(untimed))
    both = np.isfinite(untimed)
    np.testing.assert_allclose(timed[both], untimed[both], rtol=0, atol=1e-9)
    assert report["cg_iterations_per_step"] > 1.0  # diffusion was solved every step
