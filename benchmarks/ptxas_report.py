"""Registers and spills of the CUDA cell kernels on sm_90 (H100/H200), without a GPU.

For each model file, precision and gate-rate mode, the split cell kernel of
``solvers/backends/cuda.py`` (the one a tissue run launches; one parameter set, so the
per-node set lookup is gone) is compiled to PTX by numba-cuda for compute capability 9.0
and assembled by ``ptxas -arch=sm_90 -v``; its register count, spill stores/loads and
stack frame are printed, with the occupancy the register count allows at 128 threads per
block (65 536 registers and 64 warps per SM on sm_90).

Needs numba-cuda, CUDA's libNVVM and libdevice (``CUDA_HOME``), NVRTC (only to list the
architectures: ``pip install nvidia-cuda-nvrtc``) and ``ptxas`` on the PATH.

    CUDA_HOME=/usr/local/cuda .venv/bin/python benchmarks/ptxas_report.py --json out/ptxas.json
    # the TP06 kernel under register caps (what CARDIOTWIN_CUDA_CELL_REGISTERS asks the
    # driver's JIT for; ptxas --maxrregcount is the same limit), with the spills they cost:
    ... ptxas_report.py --models tp06-epi --max-registers 0 128 96 80 64
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import types
from pathlib import Path

MODELS = ("tp06-epi", "courtemanche", "mitchell-schaeffer", "aliev-panfilov")
THREADS = 128


def occupancy(registers: int, threads: int = THREADS) -> float:
    """Fraction of an sm_90 SM's 64 warps resident at ``registers`` per thread."""
    warps_per_block = threads // 32
    per_warp = ((registers * 32 + 255) // 256) * 256  # allocation granularity 256
    blocks = min(65536 // (per_warp * warps_per_block), 32, 64 // warps_per_block)
    return blocks * warps_per_block / 64


def kernel_ptx(model_name: str, precision: str, use_table: bool) -> str:
    from numba import cuda, float32, float64, int32
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import nvrtc

    from cardiotwin.solvers.backends.cuda import split_kernel_source
    from cardiotwin.solvers.ionic import get_model
    from cardiotwin.solvers.ionic.base import takes_table
    from cardiotwin.solvers.precision import state_layout

    # no device to ask: the architectures NVRTC would list, and sm_90 for the device
    # functions the kernel calls (which otherwise ask the current device)
    nvrtc.get_supported_ccs = lambda: ((8, 0), (9, 0))
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    model = get_model(model_name)
    layout = state_layout(model, precision)
    value = float64 if precision == "fp64" else float32
    source = split_kernel_source(
        model.module, use_table, takes_table(model), layout.placement, single_set=True
    )
    signature = (
        value[::1], value[::1], float32[:, ::1], float64[:, ::1], float64[:, ::1],
        int32[::1], float64, float64[::1], float64[:, :, ::1],
    )  # fmt: skip
    ptx, _ = cuda.compile_ptx(source, signature, cc=(9, 0))
    return ptx


def ptxas(ptx: str, max_registers: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kernel.ptx"
        path.write_text(ptx)
        cap = [f"--maxrregcount={max_registers}"] if max_registers else []
        out = subprocess.run(
            ["ptxas", "-arch=sm_90", *cap, "-v", str(path), "-o", str(Path(folder) / "k.cubin")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    text = out.stderr + out.stdout
    registers = int(re.search(r"Used (\d+) registers", text).group(1))
    frame, stores, loads = map(
        int,
        re.search(
            r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text
        ).groups(),
    )
    return {"registers": registers, "stack_frame_bytes": frame, "spill_store_bytes": stores,
            "spill_load_bytes": loads, "occupancy_128_threads": occupancy(registers)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--max-registers", type=int, nargs="+", default=[0],
                        help="register caps to assemble under (0: none)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from cardiotwin.solvers.ionic import get_model
    from cardiotwin.solvers.ionic.base import n_table_columns

    rows = []
    print(f"{'model':20s} {'precision':9s} {'rates':6s} {'cap':>4s} {'regs':>5s} "
          f"{'spill st/ld B':>14s} {'stack B':>8s} {'occupancy':>9s}")  # fmt: skip
    for name in args.models:
        modes = (False, True) if n_table_columns(get_model(name)) else (False,)
        for precision in ("fp64", "mixed"):
            for use_table in modes:
                ptx = kernel_ptx(name, precision, use_table)
                for cap in args.max_registers:
                    row = {"model": name, "precision": precision,
                           "rates": "table" if use_table else "exact", "max_registers": cap,
                           **ptxas(ptx, cap)}  # fmt: skip
                    rows.append(row)
                    print(
                        f"{name:20s} {precision:9s} {row['rates']:6s} {cap or '-':>4} "
                        f"{row['registers']:5d} "
                        f"{row['spill_store_bytes']:6d}/{row['spill_load_bytes']:<7d} "
                        f"{row['stack_frame_bytes']:8d} {row['occupancy_128_threads']:9.1%}",
                        flush=True,
                    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
