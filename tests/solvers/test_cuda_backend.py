"""The CUDA tissue backend gives the CPU's numbers (checked under Numba's CUDA simulator).

Every operation the stepper needs (SpMM, CG, reductions, trackers, the cell kernel) runs in a
subprocess with NUMBA_ENABLE_CUDASIM=1 on a tiny batched problem; the CPU backend runs the
same problem here. On a real GPU, benchmarks/gpu_check.sh runs this file against the device.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import cudasim_tissue_run as case  # noqa: E402


@pytest.mark.cudasim
def test_cuda_tissue_backend_matches_cpu(tmp_path):
    out = tmp_path / "cuda.npz"
    env = dict(os.environ, PYTHONPATH=str(HERE))
    if os.environ.get("CARDIOTWIN_REAL_GPU") != "1":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [sys.executable, str(HERE / "cudasim_tissue_run.py"), str(out), "cuda"],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    gpu = np.load(out)
    cpu = case.run("cpu")
    for key, expected in cpu.items():
        if key.endswith("_activation"):
            # both members activated somewhere, at different places: a real comparison
            assert np.isfinite(expected).any(axis=0).all(), key
        np.testing.assert_allclose(gpu[key], expected, rtol=0, atol=1e-9, err_msg=key)
