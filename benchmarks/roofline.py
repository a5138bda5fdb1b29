"""Bytes per node-step of the CUDA step, counted from the kernels' arguments, and the
node-steps/s a GPU's memory bandwidth allows (the roofline ceiling of a bandwidth-bound step).

Every array a kernel of the step reads or writes is counted once per kernel launch
(compulsory traffic: the gathered neighbours of a sparse product and the lookup table, a
few MB, are taken to come from cache), per node and batch member; what all members share
(the matrices, the inverse diagonal) is divided by B. Kernels and their arguments, as
``solvers/backends/cuda.py`` launches them (``v`` = bytes of a stored value: 8 for fp64,
4 under mixed precision; matrix values likewise, indices int32):

- cell kernel: V in and out (2v), every other state read and written (4 or 8 bytes each,
  by the model's layout), the stimulus current (8);
- sparse product (lumped mass, per substep): the matrix (nnz/N·(v + 4) + 4, shared), x
  (v) and the result (v);
- Crank–Nicolson CG (consistent mass): initial guess x = V + increment (3v); first kernel:
  both matrices (shared), V and x (2v), r, z, p written (3v), D⁻¹ (v, shared); per
  iteration: q = A p with p·q (matrix, 2v), the update of x, r, z with its sums (7v + D⁻¹),
  the direction p (3v); the new increment (3v);
- trackers fused into the cell kernel: activation (V_prev in/out, first, last, count: 36
  bytes), APD (V_prev, phase, t_up, V_min, V_peak, APD, count: 62 bytes).

    python benchmarks/roofline.py                        # the table for RESULTS.md
    python benchmarks/roofline.py --nodes 600000 --json out/roofline.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: peak memory bandwidth, bytes/s (vendor figures: H100 SXM5 80 GB HBM3 3.35 TB/s, H100
#: PCIe 2.0 TB/s, H200 SXM 141 GB HBM3e 4.8 TB/s)
BANDWIDTH = {"H100 SXM": 3.35e12, "H100 PCIe": 2.0e12, "H200": 4.8e12}
#: a P1 box mesh (Kuhn tetrahedra) has 15 non-zeros per row away from the boundary
NNZ_PER_ROW = 15.0
TRACKER_BYTES = {"activation": 36, "apd": 62}


def state_bytes(model_name: str, precision: str) -> int:
    """Bytes of one node's states other than V, as the layout stores them."""
    from cardiotwin.solvers.ionic import get_model
    from cardiotwin.solvers.precision import state_layout

    layout = state_layout(get_model(model_name), precision)
    return 4 * layout.n32 + 8 * layout.n64


def bytes_per_node_step(
    *,
    model: str = "tp06-epi",
    scheme: str = "lumped",
    precision: str = "fp64",
    batch: int = 1,
    nnz_per_row: float = NNZ_PER_ROW,
    substeps: int = 1,
    cg_iterations: float = 4.0,
    trackers: tuple[str, ...] = (),
) -> dict:
    """Bytes per node and member for one time step, split by kernel."""
    v = 8 if precision == "fp64" else 4
    # per row: its entries (value, int32 column) and its int32 start and length (the device's
    # SELL and CSR layouts both read those two; padding is never read)
    matrix = (nnz_per_row * (v + 4) + 8) / batch
    parts = {"cell": 2 * v + 2 * state_bytes(model, precision) + 8}
    parts["trackers (fused)"] = sum(TRACKER_BYTES[t] for t in trackers)
    if scheme == "lumped":
        parts["sparse products"] = substeps * (matrix + 2 * v)
    elif scheme == "cg":
        parts["guess + increment"] = 6 * v
        parts["CG start"] = 2 * matrix + 5 * v + v / batch
        parts["CG iterations"] = cg_iterations * (matrix + 12 * v + v / batch)
    else:
        raise ValueError(f"scheme must be 'lumped' or 'cg', got {scheme!r}")
    parts["total"] = sum(parts.values())
    return parts


def ceilings(total_bytes: float) -> dict[str, float]:
    """node-steps/s each GPU's bandwidth allows at ``total_bytes`` per node-step."""
    return {gpu: bandwidth / total_bytes for gpu, bandwidth in BANDWIDTH.items()}


def table(cg_iterations: float = 4.0, model: str = "tp06-epi") -> list[dict]:
    rows = []
    for scheme in ("lumped", "cg"):
        for precision in ("fp64", "mixed"):
            for batch in (1, 16):
                parts = bytes_per_node_step(
                    model=model, scheme=scheme, precision=precision, batch=batch,
                    cg_iterations=cg_iterations,
                )  # fmt: skip
                rows.append(
                    {
                        "scheme": scheme,
                        "precision": precision,
                        "batch": batch,
                        "bytes": parts,
                        "ceiling_node_steps_per_s": ceilings(parts["total"]),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tp06-epi")
    parser.add_argument("--cg-iterations", type=float, default=4.0,
                        help="CG iterations per step (dt 0.05 ms, rtol 1e-5: about 4)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = table(args.cg_iterations, args.model)
    gpus = list(BANDWIDTH)
    print(f"{args.model}, P1 box mesh ({NNZ_PER_ROW:g} non-zeros per row), CG iterations "
          f"{args.cg_iterations:g}; bytes per node-step and the bandwidth ceiling")  # fmt: skip
    print(
        f"{'scheme':7s} {'prec':6s} {'B':>3s} {'bytes':>8s}  "
        + "  ".join(f"{g:>10s}" for g in gpus)
    )
    for row in rows:
        ceiling = row["ceiling_node_steps_per_s"]
        print(
            f"{row['scheme']:7s} {row['precision']:6s} {row['batch']:3d} "
            f"{row['bytes']['total']:8.1f}  " + "  ".join(f"{ceiling[g]:10.3g}" for g in gpus)
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
