"""The CUDA backend's register cap reaches the cell kernel's compile options (checked
without a device: a dispatcher is made, not compiled), and is part of the kernel's cache
key, so a benchmark can compare caps in one process."""

import json
import os
import subprocess
import sys

SCRIPT = """
import json
from cardiotwin.solvers.backends import cuda
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.precision import state_layout

model = get_model("tp06-epi")
placement = state_layout(model, "fp64").placement
found = {}
for cap in (None, 96, 128):
    cuda.CELL_MAX_REGISTERS = cap
    kernel = cuda.make_split_cell_kernel(model, placement, True, True).kernel
    found[str(cap)] = kernel.targetoptions.get("max_registers")
capped = cuda.make_split_cell_kernel(model, placement, True, True).kernel  # 128, again
cuda.CELL_MAX_REGISTERS = None
plain = cuda.make_split_cell_kernel(model, placement, True, True).kernel
found["same cap, same kernel"] = plain is cuda.make_split_cell_kernel(
    model, placement, True, True
).kernel
found["another cap, another kernel"] = plain is not capped
print(json.dumps(found))
"""


def test_the_cell_kernel_register_cap_is_a_compile_option_and_a_cache_key():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["None"] is None
    assert found["96"] == 96 and found["128"] == 128
    assert found["same cap, same kernel"] and found["another cap, another kernel"]
