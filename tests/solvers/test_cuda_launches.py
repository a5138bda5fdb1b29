"""The CUDA backend's step loop makes no host round trips: launches and transfers per step,
counted under Numba's CUDA simulator by wrapping the simulator's own launch and copy entry
points (cudasim_launches.py), not by anything the backend reports about itself.

What the backend claims (solvers/backends/cuda.py module docstring):
- lumped mass, explicit diffusion: 1 + substeps launches per step (the cell kernel, with
  the activation and APD trackers fused into it, and one sparse product per substep);
- Crank–Nicolson with the consistent mass: 4 + 3 per issued CG iteration (cell kernel,
  initial guess, the CG's first kernel with the right-hand side fused in, three kernels
  per iteration, the new increment), iterations issued in groups of CG_CHECK_EVERY and one
  asynchronous 8-byte copy per check;
- no host-to-device copy, no host array handed to a kernel and no allocation in any step.
"""

import json
import math
import os

import pytest
from subprocess_env import run_helper

pytestmark = [
    pytest.mark.cudasim,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CARDIOTWIN_REAL_GPU") == "1",
        reason="counts launches through the CUDA simulator's entry points",
    ),
]


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    out = tmp_path_factory.mktemp("launches") / "launches.json"
    run_helper("cudasim_launches.py", str(out))
    return json.loads(out.read_text())


def _runs(counted, scheme):
    runs = [r for r in counted["runs"] if r["scheme"].startswith(scheme)]
    assert runs, scheme
    return runs


def test_no_step_copies_to_the_device_or_allocates(counted):
    for run in counted["runs"]:
        assert len(run["steps"]) == 4
        for step in run["steps"]:
            for what in ("host-to-device copies", "host arrays passed to kernels",
                         "device allocations", "pinned allocations"):  # fmt: skip
                assert step.get(what, 0) == 0, (run["scheme"], run["precision"], what)


def test_lumped_explicit_step_is_the_cell_kernel_and_one_product_per_substep(counted):
    for run in _runs(counted, "lumped"):
        assert run["trackers"] == ["ActivationTracker", "APDTracker"]  # fused, not launched
        for step in run["steps"]:
            assert step["launches"] == 1 + run["substeps"], run
            assert step["launch split_cell_kernel"] == 1
            assert step["launch _spmm_kernel"] == run["substeps"]
            assert step.get("device-to-host copies", 0) == 0


def test_crank_nicolson_step_reads_convergence_once_per_group_of_iterations(counted):
    m = counted["cg_check_every"]
    for run in _runs(counted, "consistent"):
        previous = None
        for step in run["steps"]:
            iterations = step["cg iterations"]
            issued = step["launch _cg_spmm_dot_kernel"]
            assert iterations > 0, "the CG must have work to do for the count to mean much"
            assert step["launch _cg_update_step_kernel"] == issued
            assert step["launch _cg_direction_step_kernel"] == issued
            assert step["launches"] == 4 + 3 * issued, step
            copies = step["device-to-host copies"]
            assert step["asynchronous device-to-host copies"] == copies
            assert step["device-to-host bytes"] == 8 * copies  # two int32: active, done
            assert issued % m == 0 and issued >= iterations
            assert 1 <= copies <= issued // m  # at most one small copy per m iterations
            if iterations == previous:  # steady state: as many as the last solve, one check
                assert issued == m * math.ceil(iterations / m)
                assert copies == 1
            previous = iterations
