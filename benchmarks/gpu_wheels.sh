#!/usr/bin/env bash
# Run HERE, on a machine that reaches PyPI, before a session that has a GPU: downloads into
# .whl/ (git-ignored) the wheels that `benchmarks/gpu_check.sh --clinical` needs and the GPU
# image lacks: pydantic (the configuration model), nibabel (NIfTI), pyamg (the Laplace solves
# of the mesh preparation: coordinates and fibres) and meshio (VTU without
# VTK: the VTs' activation maps), with their own needs,
# at the versions this checkout's environment uses. About 6 MB; then on the device:
#
#   run(carry=[".whl"], command="bash benchmarks/gpu_check.sh --clinical")
#
# The GPU image's Python is 3.12 (override with PY_VERSION=3.11 etc.).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PY_VERSION=${PY_VERSION:-3.12}
rm -rf .whl && mkdir -p .whl
pins=$("$PY" - <<'PY'
from importlib.metadata import version
names = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection",
         "typing-extensions", "nibabel", "meshio", "pyamg"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PY
)
echo "downloading for CPython $PY_VERSION: $pins"
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl $pins
ls -l .whl
