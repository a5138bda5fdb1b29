"""Every registered ionic model gives the same numbers on every backend.

The plain-Python reference backend is the oracle (no compiler between the equations and the
numbers); the Numba CPU kernel and the CUDA kernel (under the CUDA simulator) must agree.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ionic_cases import run_steps
from subprocess_env import subprocess_env

from cardiotwin.solvers.backends import cpu, reference
from cardiotwin.solvers.ionic import UnknownNameError, get_model, model_names

HERE = Path(__file__).parent
N_STEPS = 300  # 3 ms at 0.01 ms: stimulus, upstroke and the start of the plateau
DT_MS = 0.01


@pytest.mark.parametrize("name", model_names())
def test_cpu_matches_reference(name):
    model = get_model(name)
    y_ref = run_steps(reference.make_cell_kernel(model), model, N_STEPS, DT_MS)
    y_cpu = run_steps(cpu.make_cell_kernel(model), model, N_STEPS, DT_MS)
    assert np.all(np.isfinite(y_ref))
    # the stimulated nodes must have depolarised, or the comparison would be trivial
    assert y_ref[0, 0] > y_ref[0, 2] + 20.0
    np.testing.assert_allclose(y_cpu, y_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.cudasim
def test_cuda_kernels_match_cpu_under_simulator(tmp_path):
    names = list(model_names())
    n_steps = 120
    out = tmp_path / "cuda.npz"
    env = subprocess_env(NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "cudasim_cell_steps.py"),
            str(out),
            str(n_steps),
            str(DT_MS),
            *names,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = np.load(out)
    for name in names:
        model = get_model(name)
        y_cpu = run_steps(cpu.make_cell_kernel(model), model, n_steps, DT_MS)
        np.testing.assert_allclose(results[name], y_cpu, rtol=1e-9, atol=1e-12, err_msg=name)


def test_parameter_sets_by_name():
    model = get_model("mitchell-schaeffer")
    table = model.parameter_table()
    slow = table.add(tau_close=2.0)
    same = table.add(tau_close=2.0)
    assert slow == same == 1, "identical sets are stored once"
    p = table.as_array()
    assert p[model.parameter_index("tau_close"), slow] == 300.0  # 2 x 150 ms default
    with pytest.raises(UnknownNameError, match="tau_in"):
        table.add(tau_closed=2.0)


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownNameError, match="mitchell-schaeffer"):
        get_model("mitchel-schaefer")
