"""The CG's graph replay (the default on a device) against launching its kernels one by
one (a subprocess script for test_cuda_graphs.py).

Usage: [NUMBA_ENABLE_CUDASIM=1] python cudasim_graphs.py OUT.json

Under the simulator, which cannot capture graphs, :class:`CapturedGraph` is replaced by a
stand-in that records the buffers it was captured for and, at each replay, checks that the
solver still points at them (a real graph holds the pointers it was captured with) before
issuing the work. On a device the real capture runs. Either way: solves into two alternating
buffers, with graphs and without, must give the same iterates bit for bit, both as
``solve(b, x)`` and as the stepper calls the solver (right-hand side B·V, initial guess V plus
the last increment, the new increment queued by the solver); then a capture that fails must
fall back to the launches, with the same result.
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
    replays = 0

    def __init__(self, stream, issue):
        self.solver = StandInGraph.current
        self.key = self.buffers()
        self.issue = issue
        StandInGraph.captured.append(self.key)

    def buffers(self):
        return tuple(backend.device_pointer(a) for a in (self.solver.x, self.solver.src))

    def launch(self, stream):
        assert self.buffers() == self.key, "a graph replayed for other buffers"
        StandInGraph.replays += 1
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
    rhs_buffers = [backend.zeros(rhs.shape), backend.zeros(rhs.shape)]
    results, iterations = [], []
    for k in range(solves):
        x, b = buffers[k % 2], rhs_buffers[k % 2]
        b.copy_to_device(rhs * (1.0 + 0.1 * k))
        iterations.append(solver.solve(b, x))
        results.append(backend.to_host(x).copy())
    residual = max(
        float(np.abs(matrix @ r - rhs * (1.0 + 0.1 * k)).max()) for k, r in enumerate(results)
    )
    return results, iterations, residual, solver


def run_as_stepper(use_graphs: bool, steps: int = 5):
    """The stepper's use: (M + K) V⁺ = M V with guess V + last increment, V alternating
    between two buffers; returns every V and increment, and the solver."""
    matrix, rhs = system()
    mass = backend.CSRMatrix(sp.diags(np.full(matrix.shape[0], 40.0), format="csr"))
    solver = backend.ConjugateGradient(backend, matrix, rhs.shape[1], 1e-8, 200)
    solver.use_graphs = use_graphs
    StandInGraph.current = solver
    v = [backend.asarray(rhs), backend.zeros(rhs.shape)]
    increment = backend.zeros(rhs.shape)
    results = []
    for k in range(steps):
        src, x = v[k % 2], v[1 - k % 2]

        def new_increment(src=src, x=x):
            backend.axpbyz(1.0, x, -1.0, src, increment)

        solver.solve_product(mass, src, x, guess_from=increment, then=new_increment)
        results += [backend.to_host(x).copy(), backend.to_host(increment).copy()]
    return results, solver


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
        "start_graphs": sum(key[0] == "start" for key in solver._graphs),
        # stand-in captures (simulator only): a graph found again must not be captured again
        "captures": len(StandInGraph.captured),
        "replays": StandInGraph.replays,
        "still_on": solver.use_graphs,
    }
    plain_steps, _ = run_as_stepper(False)
    graph_steps, solver = run_as_stepper(True)
    report["stepper_identical"] = all(
        np.array_equal(a, b) for a, b in zip(plain_steps, graph_steps, strict=True)
    )
    report["stepper_start_graphs"] = sum(key[0] == "start" for key in solver._graphs)
    # the increment really is V⁺ − V: the solver issued it after the last iteration
    report["stepper_increment_error"] = float(
        np.abs(graph_steps[-1] - (graph_steps[-2] - graph_steps[-4])).max()
    )
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
