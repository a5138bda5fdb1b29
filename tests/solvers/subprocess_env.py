"""The environment of a test's helper subprocess: this folder first on the path, then the
caller's own PYTHONPATH (benchmarks/gpu_check.sh puts cardiotwin there on the GPU image)."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def subprocess_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_helper(script: str, *args: str, simulate: bool = True, timeout: int = 1200) -> None:
    """Run helper ``script`` of this folder with ``args`` (under the CUDA simulator when
    ``simulate``); a failure shows the end of its stderr."""
    env = subprocess_env(**({"NUMBA_ENABLE_CUDASIM": "1"} if simulate else {}))
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
