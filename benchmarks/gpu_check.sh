#!/usr/bin/env bash
# The one script a lent GPU machine runs: under 5 minutes on an H100/H200, each part under its
# own timeout, nothing installed and nothing fetched from the network. Results go to $OUT
# when set (else out/gpu_check).
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --clinical [BUDGET_S [CASE]]   # part 4 alone, a second call
#
# Parts (timeouts add up to 300 s; Numba compiling the TP06 kernels takes a good part; on an
# H200 parts 1-3 took 103 s before 1b and 2b were added):
#   1. the CUDA tests on the real device (75 s; 56 s on an H200): CUDA vs CPU parity, fp64
#      and mixed, and the CG's groups of iterations replayed as CUDA graphs (the default)
#      against launching them;
#   1b. the parity test again with CARDIOTWIN_CUDA_GRAPHS=0, the kernels launched one by one
#      (30 s; 17 s on an H200);
#   2. the throughput matrix (100 s): TP06, ~0.6M nodes, lumped and CG, fp64 and mixed,
#      B = 1 and 16, node-steps/s against the roofline ceiling (benchmarks/roofline.py),
#      and the cost of a batch member relative to a single run;
#   2b. CG at B = 1 again with CARDIOTWIN_CUDA_GRAPHS=0 (40 s): what the graphs gain where
#      the host's launches were half of a step (1.2-2.4x on an H200);
#   3. the N-version slab at 0.1 mm (442 401 nodes), lumped mass, mixed precision (55 s):
#      P8 against the CPU's 44.33 ms (fp64, RESULTS.md).
#   4. (--clinical, its own call: up to BUDGET_S, default 540 s, so it fits one 600 s device
#      command) the clinical configuration (configs/clinical.yaml: TP06 ventricles, Courtemanche
#      atria, 0.5 mm, dt 0.01 ms, every site,
#      backend cuda) on the sample la-fibrosis (or CASE) through the pipeline's own commands,
#      segment -> mesh -> induce -> ablate, by benchmarks/clinical_stages.py: wall time and peak
#      memory per stage, and for a stage stopped at the budget its last progress (simulated
#      ms, node-steps/s). The atrium by default: its 0.5 mm mesh takes 2 min there, the LV's
#      ~12 min (longer than a device command). It needs pydantic, nibabel, meshio and pyamg,
#      which the image lacks: first run benchmarks/gpu_wheels.sh here and carry .whl
#      (installed from there, offline, into a temporary folder). Seen on an H200 (2026-12-04):
#      the atrium's 20-site batch at 4.55e9 node-steps/s (benchmarks/RESULTS.md).
# Not measured here (no CuPy path exists): whether cuSPARSE's SpMV beats the numba-cuda one.
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
for file in "$ROOT"/src/cardiotwin/*.py; do ln -s "$file" "$SITE/cardiotwin/$(basename "$file")"; done
for folder in solvers meshing pipeline; do ln -s "$ROOT/$folder" "$SITE/cardiotwin/$folder"; done
export PYTHONPATH="$SITE:$ROOT/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  "$PY" -c "import numba, numpy; from numba import cuda; print('numba', numba.__version__, 'numpy', numpy.__version__, 'cuda available', cuda.is_available())"
} 2>&1 | tee "$OUT/device.txt"

if [ "${1:-}" = "--clinical" ]; then
  BUDGET_S=${2:-540}
  CASE=${3:-la-fibrosis}
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE/wheels" \
      .whl/*.whl || exit 1
    export PYTHONPATH="$SITE/wheels:$PYTHONPATH"
  fi
  if ! "$PY" -c "import pydantic, nibabel, meshio, pyamg" 2>/dev/null; then
    echo "pydantic, nibabel, meshio or pyamg is missing: run benchmarks/gpu_wheels.sh on a machine with PyPI" \
      "and carry .whl" | tee "$OUT/clinical_stages.txt"
    exit 1
  fi
  echo "== 4. the clinical configuration on $CASE, stage by stage (${BUDGET_S} s)"
  "$PY" benchmarks/clinical_stages.py --case "$CASE" --config configs/clinical.yaml \
    --budget-s "$BUDGET_S" --work "$SITE/clinical" --json "$OUT/clinical_stages.json" 2>&1 \
    | tee "$OUT/clinical_stages.txt"
  rc=${PIPESTATUS[0]}
  for log in "$SITE"/clinical/*.log; do tail -c 20000 "$log" >"$OUT/clinical_$(basename "$log")"; done
  exit "$rc"
fi

status=0
echo "== 1. CUDA tests on the device (75 s)"
CARDIOTWIN_REAL_GPU=1 timeout 75 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or cudasim" \
  tests/solvers/test_cuda_backend.py tests/solvers/test_cuda_graphs.py 2>&1 \
  | tee "$OUT/gpu_tests.txt" || status=1

echo "== 1b. CUDA vs CPU parity with the CG's kernels launched one by one, no graphs (30 s)"
CARDIOTWIN_REAL_GPU=1 CARDIOTWIN_CUDA_GRAPHS=0 timeout 30 "$PY" -m pytest -q -p no:cacheprovider \
  -m "gpu or cudasim" tests/solvers/test_cuda_backend.py 2>&1 \
  | tee "$OUT/gpu_tests_graphs.txt" || status=1

echo "== 2. throughput vs roofline, ~0.6M nodes (100 s)"
timeout 100 "$PY" benchmarks/bench_gpu_tissue.py --nodes 600000 --steps 100 --parity-steps 0 \
  --json "$OUT/bench_gpu_tissue.json" 2>&1 | tee "$OUT/bench_gpu_tissue.txt" || status=1

echo "== 2b. CG at B = 1 without CUDA graphs (40 s)"
CARDIOTWIN_CUDA_GRAPHS=0 timeout 40 "$PY" benchmarks/bench_gpu_tissue.py --nodes 600000 \
  --steps 100 --parity-steps 0 --schemes cg --batch 1 --json "$OUT/bench_gpu_tissue_nographs.json" \
  2>&1 | tee "$OUT/bench_gpu_tissue_nographs.txt" || status=1

echo "== 3. N-version slab at 0.1 mm, lumped mass, mixed precision (55 s)"
timeout 55 "$PY" -m cardiotwin.pipeline verify nversion --dx 0.1 --dt 0.01 --mass lumped \
  --precision mixed --backend cuda --json "$OUT/nversion_dx0.1_dt0.01_lumped_mixed.json" 2>&1 \
  | tail -n 12 | tee "$OUT/nversion.txt" || status=1
exit $status
