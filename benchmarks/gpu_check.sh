#!/usr/bin/env bash
# The one script a lent GPU machine runs: under 5 minutes on an H100/H200, each part under its
# own timeout, nothing installed and nothing fetched from the network. Results go to $OUT
# when set (else out/gpu_check).
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --clinical [BUDGET_S [CASE]]   # part 4 alone, a second call
#
# Parts (timeouts add up to 295 s; Numba compiling the TP06 kernels takes a good part; on an
# H200 parts 1-3 took 103 s before 1b and 2b were added):
#   1. the CUDA tests on the real device (85 s; 56 s on an H200 before the layout test):
#      CUDA vs CPU parity, fp64 and mixed, the CG's groups of iterations replayed as CUDA
#      graphs (the default) against launching them, and the sparse layouts (sliced ELLPACK,
#      the default, against CSR: bit-identical products and CG iterates);
#   2. the throughput matrix (100 s): TP06, ~0.6M nodes, lumped and CG, fp64 and mixed,
#      B = 1 and 16, node-steps/s against the roofline ceiling (benchmarks/roofline.py),
#      and the cost of a batch member relative to a single run;
#   2b. B = 1, mixed precision, lumped and CG, each with one setting changed from part 2's
#      defaults (75 s): the former CSR layout (what the coalesced SELL layout gains), 4096
#      row chunks instead of 1024 (whether the CG's reductions want more blocks in flight:
#      1024 blocks of 128 threads fill half of an H200's thread slots), and the cell kernel
#      capped at 128 and 96 registers (16 and 20 warps per SM instead of 12, for 36-48 and
#      160-184 bytes of spills; each cap compiles TP06 again). Graphs on and off were
#      compared on 2026-12-04 (1.2-2.4x at B = 1; that part, 1b and 2b then, is dropped);
#   3. the N-version slab at 0.1 mm (442 401 nodes), lumped mass, mixed precision (35 s; 15 s
#      on an H200):
#      P8 against the CPU's 44.33 ms (fp64, RESULTS.md).
#   4. (--clinical, its own call: up to BUDGET_S, default 540 s, so it fits one 600 s device
#      command) the clinical configuration (configs/clinical.yaml: TP06 ventricles, Courtemanche
#      atria, 0.5 mm, dt 0.02 ms, every site,
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
echo "== 1. CUDA tests on the device (85 s)"
CARDIOTWIN_REAL_GPU=1 timeout 85 "$PY" -m pytest -q -p no:cacheprovider -m "gpu or cudasim" \
  tests/solvers/test_cuda_backend.py tests/solvers/test_cuda_graphs.py \
  tests/solvers/test_cuda_layouts.py 2>&1 | tee "$OUT/gpu_tests.txt" || status=1

echo "== 2. throughput vs roofline, ~0.6M nodes (100 s)"
timeout 100 "$PY" benchmarks/bench_gpu_tissue.py --nodes 600000 --steps 100 --parity-steps 0 \
  --json "$OUT/bench_gpu_tissue.json" 2>&1 | tee "$OUT/bench_gpu_tissue.txt" || status=1

echo "== 2b. B = 1, mixed: CSR layout, 4096 row chunks, cell kernel at 128 and 96 registers (75 s)"
timeout 75 "$PY" benchmarks/bench_gpu_tissue.py --nodes 600000 --steps 100 --parity-steps 0 \
  --schemes cg lumped --precisions mixed --batch 1 \
  --variants layout=csr chunks=4096 registers=128 registers=96 \
  --json "$OUT/bench_gpu_tissue_variants.json" 2>&1 | tee "$OUT/bench_gpu_tissue_variants.txt" \
  || status=1

echo "== 3. N-version slab at 0.1 mm, lumped mass, mixed precision (35 s)"
timeout 35 "$PY" -m cardiotwin.pipeline verify nversion --dx 0.1 --dt 0.01 --mass lumped \
  --precision mixed --backend cuda --json "$OUT/nversion_dx0.1_dt0.01_lumped_mixed.json" 2>&1 \
  | tail -n 12 | tee "$OUT/nversion.txt" || status=1
exit $status
