"""The arithmetic ``log``/``exp`` of the CPU cell kernels against the C library, and the
kernels that use them: vectorised, and the same states as with the C library's."""

import re

import llvmlite.binding as llvm
import numba
import numpy as np
import pytest

from cardiotwin.solvers.backends import cpu
from cardiotwin.solvers.backends.vector_math import exp, log
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.ionic.base import build_table
from cardiotwin.solvers.precision import state_layout


def _kernel(fastmath):
    @numba.njit(parallel=True, error_model="numpy", fastmath=fastmath)
    def both(x, out_log, out_exp):
        for i in numba.prange(x.shape[0]):
            out_log[i] = log(x[i])
            out_exp[i] = exp(x[i])

    return both


def _ulps(ours, libm):
    finite = np.isfinite(libm) & (libm != 0.0)
    return np.max(np.abs(ours[finite] - libm[finite]) / np.spacing(np.abs(libm[finite])))


# fdlibm documents its log and exp as within 1 ulp; fast-math may reorder the final sums,
# which costs at most one more
@pytest.mark.parametrize("fastmath, max_ulps", [(False, 1.0), (set(cpu.CELL_FASTMATH), 2.0)])
def test_within_ulps_of_the_c_library(fastmath, max_ulps):
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-700.0, 700.0, 200_000)),  # log over the double range
            rng.uniform(-750.0, 712.0, 200_000),  # exp to overflow and through the subnormals
            rng.uniform(0.5, 2.0, 100_000),  # log near 1, exp near 1
            rng.uniform(-1.0, 1.0, 100_000) * 1e-8,  # exp of tiny arguments
            np.exp(rng.uniform(-744.0, -708.0, 10_000)),  # log of subnormals
        ]
    )
    out_log, out_exp = np.empty_like(x), np.empty_like(x)
    _kernel(fastmath)(x, out_log, out_exp)
    with np.errstate(all="ignore"):
        assert _ulps(out_log, np.log(x)) <= max_ulps
        assert _ulps(out_exp, np.exp(x)) <= max_ulps


def test_special_values_as_the_c_library():
    x = np.array(
        [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 5e-324, 1.0, 2.0]
        + [709.78, 709.79, 710.0, -708.0, -745.0, -745.2, -1e4, 1e4]
    )
    out_log, out_exp = np.empty_like(x), np.empty_like(x)
    _kernel(set(cpu.CELL_FASTMATH))(x, out_log, out_exp)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out_log[:9], np.log(x[:9]))  # ±inf, NaN, exact points
        exp_ref = np.exp(x)
    np.testing.assert_array_equal(np.isinf(out_exp), np.isinf(exp_ref))
    np.testing.assert_array_equal(np.isnan(out_exp), np.isnan(exp_ref))
    np.testing.assert_array_equal(out_exp == 0.0, exp_ref == 0.0)
    assert out_exp[list(x).index(-745.0)] == 5e-324  # the smallest subnormal, as libm


def _tp06_run(monkeypatch, vector_math: bool, n_steps: int = 400):
    """The stepper's TP06 table kernel (``make_split_cell_kernel``, float64, one parameter
    set) on 4096 cells for ``n_steps`` of 0.05 ms, half of them started depolarised."""
    monkeypatch.setattr(cpu, "CELL_VECTOR_MATH", vector_math)  # part of the kernel cache key
    model = get_model("tp06-epi")
    layout = state_layout(model, "fp64")
    kernel = cpu.make_split_cell_kernel(model, layout.placement, use_table=True, single_set=True)
    n = 4096
    y0 = model.initial_state(n)
    y0[0, : n // 2] = -20.0
    v, y32, y64 = layout.split(y0)
    v_out = np.empty_like(v)
    parameters = model.parameter_table().as_array()
    table = build_table(model, parameters, 0.05)
    no_stimulus, pset = np.zeros(n), np.zeros(1, np.int32)
    for _ in range(n_steps):
        kernel(v, v_out, y32, y64, parameters, pset, 0.05, no_stimulus, table)
        v, v_out = v_out, v
    return kernel, layout.join(v, y32, y64)


def test_tp06_kernel_same_states_with_the_c_library(monkeypatch):
    _, ours = _tp06_run(monkeypatch, vector_math=True)
    _, libm = _tp06_run(monkeypatch, vector_math=False)
    assert ours[0].min() < -80.0 and ours[0].max() > 0.0  # resting and excited nodes both
    # 2 ulp per log/exp, through 400 steps of a stable excitable system: far below 1e-10
    np.testing.assert_allclose(ours, libm, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(
    "+avx2" not in llvm.get_host_cpu_features().flatten().split(","),
    reason="needs a CPU with AVX2 (on SSE2 alone LLVM leaves the loop scalar)",
)
def test_tp06_kernel_node_loop_vectorises(monkeypatch):
    kernel, _ = _tp06_run(monkeypatch, vector_math=True, n_steps=1)
    ir = "".join(lib.get_llvm_str() for lib in _libraries(kernel))
    assert "vector.body" in ir  # the loop vectoriser's label for the vectorised loop body
    # no call into the C library's log/exp left (LLVM would issue llvm.log.v8f64 lane by lane)
    assert not re.findall(r"call [^\n]*?@[\w.]*(?:log|exp)[\w.]*\(", ir)


def _libraries(launch):
    return [overload.library for overload in launch.compiled.overloads.values()]
