#!/usr/bin/env bash
# The one script a lent GPU machine runs (under 5 minutes, nothing from the network):
# the CUDA tests on the real device, the N-version slab at 0.1 mm, then the GPU benchmarks.
# Results go to $OUT when set.
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#
# The device image has numpy, scipy, numba, numba-cuda, CuPy, pytest and tqdm but not
# meshio/pyvista/nibabel/SimpleITK, and no network: cardiotwin is put on the path through a
# folder of links instead of pip, and only the solver tests run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/out/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

SITE=$(mktemp -d)
mkdir -p "$SITE/cardiotwin"
ln -s "$ROOT/src/cardiotwin/__init__.py" "$SITE/cardiotwin/__init__.py"
for folder in solvers meshing pipeline; do ln -s "$ROOT/$folder" "$SITE/cardiotwin/$folder"; done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c "import numba, numpy; from numba import cuda; print('numba', numba.__version__, 'numpy', numpy.__version__, 'cuda available', cuda.is_available())"
} 2>&1 | tee "$OUT/device.txt"

status=0
echo "== GPU tests"
CARDIOTWIN_REAL_GPU=1 timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or cudasim" \
  tests/solvers 2>&1 | tee "$OUT/gpu_tests.txt" || status=1

echo "== N-version slab at 0.1 mm (442 401 nodes), lumped and consistent mass, on the GPU"
for mass in lumped consistent; do
  timeout 90 "$PY" -m cardiotwin.pipeline verify nversion --dx 0.1 --dt 0.01 --mass "$mass" \
    --backend cuda --json "$OUT/nversion_dx0.1_dt0.01_$mass.json" 2>&1 | tail -n 4 \
    | tee -a "$OUT/nversion.txt" || status=1
done

echo "== GPU benchmarks"
for bench in benchmarks/bench_gpu_*.py; do
  [ -e "$bench" ] || continue
  CARDIOTWIN_REAL_GPU=1 timeout 150 "$PY" "$bench" --json "$OUT/$(basename "$bench" .py).json" 2>&1 \
    | tee -a "$OUT/gpu_benchmarks.txt" || status=1
done
echo "== Induction: every site of the stand-in LV, batched, on the GPU"
# made on the dev machine (bench_induction.py --save-npz/--save-config) and carried along
if [ -e out/induction_gpu.npz ] && [ -e out/induction_gpu.json ]; then
  timeout 240 "$PY" benchmarks/bench_induction.py --mesh out/induction_gpu.npz \
    --config-json out/induction_gpu.json --backend cuda --sites all --modes batched \
    --json "$OUT/induction_gpu.json" 2>&1 | tail -n 5 | tee -a "$OUT/induction.txt" || status=1
else
  echo "skipped: out/induction_gpu.npz / .json not carried (see benchmarks/README.md)"
fi
exit $status
