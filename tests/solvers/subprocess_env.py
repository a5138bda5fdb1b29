"""The environment of a test's helper subprocess: this folder first on the path, then the
caller's own PYTHONPATH (benchmarks/gpu_check.sh puts cardiotwin there on the GPU image)."""

import os
from pathlib import Path

HERE = Path(__file__).parent


def subprocess_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}
