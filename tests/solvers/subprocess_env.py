"""The environment of a test's helper subprocess: this folder first on the path, then the
caller's own PYTHONPATH (benchmarks/gpu_check.sh puts cardiotwin there on the GPU image)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
#: the device tests run on a real GPU (benchmarks/gpu_check.sh sets it), else the simulator
REAL_GPU = os.environ.get("CARDIOTWIN_REAL_GPU") == "1"
#: the marks of a module of such tests
DEVICE_MARKS = [pytest.mark.gpu if REAL_GPU else pytest.mark.cudasim, pytest.mark.slow]


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


def helper_output(tmp_path_factory, script: str, name: str, timeout: int) -> Path:
    """Run helper ``script`` (on the device or under the simulator, :data:`REAL_GPU`) with
    a fresh output path named ``name``; returns that path."""
    out = tmp_path_factory.mktemp(Path(name).stem) / name
    run_helper(script, str(out), simulate=not REAL_GPU, timeout=timeout)
    return out
