"""Run every registered model's CUDA cell kernel under the CUDA simulator (a subprocess script).

Usage: NUMBA_ENABLE_CUDASIM=1 python cudasim_cell_steps.py OUT.npz N_STEPS DT_MS MODEL...
Writes the state arrays after the steps, one entry per model. The parent test compares them
with the CPU backend; see test_ionic_backends.py.
"""

import sys

import numpy as np
from numba import cuda

from cardiotwin.solvers.backends import cuda as cuda_backend
from cardiotwin.solvers.ionic import get_model

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from ionic_cases import initial_case  # noqa: E402


def main(out_path: str, n_steps: int, dt_ms: float, names: list[str]) -> None:
    results = {}
    for name in names:
        model = get_model(name)
        y, p, pset, stim = initial_case(model)
        d_y, d_p, d_pset = cuda.to_device(y), cuda.to_device(p), cuda.to_device(pset)
        kernel = cuda_backend.make_cell_kernel(model)
        for n in range(n_steps):
            d_stim = cuda.to_device(stim if n * dt_ms < 1.0 else np.zeros_like(stim))
            kernel(d_y, d_p, d_pset, dt_ms, d_stim)
        results[name] = d_y.copy_to_host()
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
