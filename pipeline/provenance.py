"""Provenance: what made an output, so it can be reproduced years later.

Every result JSON carries a ``provenance`` block (see :func:`provenance`): the cardiotwin
version and git commit, Python and key library versions, the configuration hash, the
backend actually used (CPU/GPU, device name, fallback reason), seeds, the SHA-256 of every
input's *content* (never its file name or path: they may carry a patient's identity), the
host's CPU count and the wall time of the stage. :class:`StageTimer` measures the wall time.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from functools import cache
from pathlib import Path

import cardiotwin

#: libraries whose version changes results or file formats
_LIBRARIES = (
    "numpy", "scipy", "numba", "numba-cuda", "cupy-cuda12x", "cupy-cuda13x", "cupy",
    "scikit-image", "pyamg", "pyvista", "vtk", "nibabel", "SimpleITK", "pydicom", "meshio",
)  # fmt: skip


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (sorted by relative path) — the
    folder case covers DICOM series; the names enter only as relative paths' hash order."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{path} holds no file to hash")
    for file in files:
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@cache
def git_commit() -> str | None:
    """The commit of the cardiotwin source tree, when it runs from a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=10,
    ).stdout.strip()  # fmt: skip
    return commit + ("+modified" if dirty else "")


@cache
def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def backend_record(requested: str, used: str, *, device: str | None = None,
                   fallback_reason: str | None = None) -> dict:  # fmt: skip
    """What the simulation ran on: the backend asked for and the one used, and why if they
    differ (e.g. ``auto`` without a usable GPU: asked of the CUDA runtime when not given);
    the GPU's name when it ran on one."""
    if fallback_reason is None and requested != used and used == "cpu":
        from cardiotwin.solvers.stepping import cuda_unavailable_reason

        fallback_reason = cuda_unavailable_reason()
    if device is None and used == "cuda":
        try:
            from numba import cuda

            name = cuda.get_current_device().name
            device = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # the name is for the record only
            device = None
    return {
        "requested": requested,
        "used": used,
        "device": device,
        "fallback_reason": fallback_reason,
    }


def provenance(
    stage: str,
    *,
    inputs: dict[str, str | os.PathLike] | None = None,
    config=None,
    backend: dict | None = None,
    seeds: dict[str, int] | None = None,
    wall_s: float | None = None,
) -> dict:
    """The provenance block of one stage's output.

    ``inputs`` maps a role ("lge", "mesh", ...) to a path; only the content hash is recorded.
    ``config`` is a :class:`~cardiotwin.pipeline.config.Config` (its hash and version).
    """
    from cardiotwin.pipeline.config import config_hash

    return {
        "stage": stage,
        "cardiotwin_version": cardiotwin.__version__,
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "config_version": None if config is None else config.config_version,
        "config_sha256": None if config is None else config_hash(config),
        "inputs_sha256": {role: file_sha256(p) for role, p in (inputs or {}).items()},
        "backend": backend,
        "seeds": seeds or {},
        "cpu_count": os.cpu_count(),
        "wall_s": None if wall_s is None else round(float(wall_s), 3),
    }


class StageTimer:
    """Wall time of a stage: ``with StageTimer() as timer: ...; timer.wall_s``."""

    def __enter__(self) -> StageTimer:
        self._start = time.perf_counter()
        self.wall_s = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._start

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start
