"""One import name: the user's folders are installed as cardiotwin.<folder>, nothing else."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cardiotwin

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("solvers", "meshing", "pipeline")


@pytest.mark.parametrize("folder", FOLDERS)
def test_bare_folder_names_are_not_importable(folder, tmp_path):
    # run from an empty directory so the source tree is not on sys.path
    code = f"import importlib.util as u, sys; sys.exit(0 if u.find_spec({folder!r}) is None else 1)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 0, f"a top-level module {folder!r} is importable after install"


@pytest.mark.parametrize("folder", FOLDERS)
def test_folders_import_under_cardiotwin(folder, tmp_path):
    code = f"import cardiotwin.{folder} as m; print(m.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder in FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(("cardiotwin", *parts)))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_solvers_import_without_io_or_gpu_packages(tmp_path):
    # the GPU machine has numpy/scipy/numba but no meshio, pyvista, nibabel or SimpleITK,
    # and a CPU-only install must never import CuPy
    code = (
        "import sys\n"
        "for name in ('meshio', 'pyvista', 'nibabel', 'SimpleITK', 'cupy'):\n"
        "    sys.modules[name] = None\n"
        "import cardiotwin.solvers, cardiotwin.solvers.ionic, cardiotwin.solvers.backends.cpu\n"
        "import cardiotwin.solvers.cell, cardiotwin.meshing\n"
        "import cardiotwin.pipeline.cli\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_version():
    assert cardiotwin.__version__ != "0+unknown"
