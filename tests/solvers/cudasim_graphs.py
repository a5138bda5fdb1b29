"""The CG's graph replay (the default on a device) against launching its kernels one by
one (a subprocess script for test_cuda_graphs.py).

Usage: [NUMBA_ENABLE_CUDASIM=1] python cudasim_graphs.py OUT.json

Under the simulator, which cannot capture graphs, :class:`CapturedGraph` is replaced by a
stand-in that records the solution buffer it was captured for and, at each replay, checks
that the solver still points at that buffer (a real graph holds the pointer it was captured
with) before issuing the group. On a device the real capture runs. Either way: solves into
two alternating buffers, with graphs and without, must give the same iterates bit for bit;
then a capture that fails must fall back to the launches, with the same result.
"""

import json
import sys

import numpy as np
import scipy.sparse as sp
from numba import config

from cardiotwin.solvers.backends import cuda as backend

SIMULATED = bool(config.ENABLE_CUDASIM)


class StandInGraph:
    captured: list = []

    def __init__(self, stream, issue):
        self.solver = StandInGraph.current
        self.key = backend.device_pointer(self.solver.x)
        self.issue = issue
        StandInGraph.captured.append(self.key)

    def launch(self, stream):
        now = backend.device_pointer(self.solver.x)
        assert now == self.key, "a graph replayed for another solution buffer"
        self.issue()


class FailingGraph:
    def __init__(self, stream, issue):
        raise RuntimeError("no capture here")


def system(n: int = 12, n_cols: int = 2):
    rng = np.random.default_rng(3)
    main = 40.0 + rng.random(n)
    matrix = sp.diags([main, -np.ones(n - 1), -np.ones(n - 1)], [0, -1, 1], format="csr")
    rhs = rng.standard_normal((n, n_cols))
    return matrix, rhs


def run(use_graphs: bool, solves: int = 4):
    matrix, rhs = system()
    solver = backend.ConjugateGradient(backend, matrix, rhs.shape[1], 1e-8, 200)
    solver.use_graphs = use_graphs
    StandInGraph.current = solver
    buffers = [backend.zeros(rhs.shape), backend.zeros(rhs.shape)]
    results, iterations = [], []
    for k in range(solves):
        x = buffers[k % 2]
        b = backend.asarray(rhs * (1.0 + 0.1 * k))
        iterations.append(solver.solve(b, x))
        results.append(backend.to_host(x).copy())
    residual = max(
        float(np.abs(matrix @ r - rhs * (1.0 + 0.1 * k)).max()) for k, r in enumerate(results)
    )
    return results, iterations, residual, solver


def main(out: str) -> None:
    if SIMULATED:
        backend.CapturedGraph = StandInGraph
    plain, plain_iterations, residual, _ = run(False)
    graphs, graph_iterations, _, solver = run(True)
    report = {
        "simulated": SIMULATED,
        "residual": residual,
        "iterations": plain_iterations,
        "graph_iterations": graph_iterations,
        "identical": all(np.array_equal(a, b) for a, b in zip(plain, graphs, strict=True)),
        "graphs": len(solver._graphs),
        # stand-in captures (simulator only): a graph found again must not be captured again
        "captures": len(StandInGraph.captured),
        "still_on": solver.use_graphs,
    }
    backend.CapturedGraph = FailingGraph
    fallback, _, _, solver = run(True, solves=2)
    report["fallback_identical"] = all(
        np.array_equal(a, b) for a, b in zip(plain, fallback, strict=False)
    )
    report["fallback_off"] = not solver.use_graphs
    with open(out, "w") as handle:
        json.dump(report, handle)


if __name__ == "__main__":
    main(sys.argv[1])
