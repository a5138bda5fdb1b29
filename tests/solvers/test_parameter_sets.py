"""Several parameter sets in the CPU tissue cell kernel: the parameters that differ between
the sets are read per node, the others once per call (``cpu.CELL_UNIFORM_PARAMETERS``).

The oracle is the reference backend, which runs the model file's own ``step`` unrewritten
with every parameter read per node from the (n_parameters, n_sets) array.
"""

import numpy as np
import pytest
from llvmlite import binding as llvm

from cardiotwin.solvers.backends import cpu, reference
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.ionic.base import build_table
from cardiotwin.solvers.precision import state_layout

DT_MS = 0.02
N_NODES = 24


def _tp06_sets():
    """tp06-epi, border zone (DESIGN.md §4), endo and M cell, as the tissue builds them."""
    model = get_model("tp06-epi")
    table = model.parameter_table()
    table.add(g_Na=0.38, g_CaL=0.31, g_Kr=0.30, g_Ks=0.20)
    table.add_values(celltype=0.0, g_to=0.073)
    table.add_values(celltype=2.0, g_Ks=0.098)
    return model, table.as_array()


def _courtemanche_sets():
    """Courtemanche with an AF-remodelled and a fibrotic set (conductances scaled)."""
    model = get_model("courtemanche")
    table = model.parameter_table()
    table.add(g_to=0.5, g_CaL=0.3, g_K1=2.0)
    table.add(g_to=0.5, g_CaL=0.3, g_K1=2.0, g_Na=0.6)
    return model, table.as_array()


def _run(backend, model, p, n_steps, use_table=True):
    """``n_steps`` of the split cell kernel on nodes cycling through the sets, the first
    half stimulated for 1 ms, one node started at -20 mV (the other h/j branch)."""
    layout = state_layout(model, "fp64")
    kernel = backend.make_split_cell_kernel(model, layout.placement, use_table=use_table)
    pset = (np.arange(N_NODES) % p.shape[1]).astype(np.int32)
    y0 = model.initial_state(N_NODES)
    y0[0, -1] = -20.0
    v, y32, y64 = layout.split(y0)
    v_out = np.empty_like(v)
    table = build_table(model, p, DT_MS) if use_table else None
    stim, off = np.zeros(N_NODES), np.zeros(N_NODES)
    stim[: N_NODES // 2] = 60.0
    peak = v.copy()
    for n in range(n_steps):
        kernel(v, v_out, y32, y64, p, pset, DT_MS, stim if n < 1.0 / DT_MS else off, table)
        v, v_out = v_out, v
        peak = np.maximum(peak, v)
    return layout.join(v, y32, y64), peak


def test_varying_parameters_are_the_rows_that_differ():
    model, p = _tp06_sets()
    names = {"g_Na", "g_CaL", "g_Kr", "g_Ks", "celltype", "g_to"}
    assert cpu.varying_parameters(p) == {model.parameter_index(n) for n in names}
    assert cpu.varying_parameters(p[:, :1]) == frozenset()
    q = p.copy()
    q[0, 2] = np.nan  # NaN is never equal: read per node rather than taken from set 0
    assert 0 in cpu.varying_parameters(q)


@pytest.mark.parametrize("sets", [_tp06_sets, _courtemanche_sets])
def test_several_sets_match_the_reference_backend(sets):
    model, p = sets()
    n_steps = 300  # 6 ms: stimulus, upstroke and the early repolarisation of every set
    ref, peak = _run(reference, model, p, n_steps)
    ours, _ = _run(cpu, model, p, n_steps)
    assert np.all(peak[: N_NODES // 2] > 0.0), "stimulated nodes must fire"
    # the sets must change the traces, or reading the wrong set would pass
    v = ref[0, : N_NODES // 2].reshape(-1, p.shape[1])
    assert np.ptp(v[0]) > 1.0
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_uniform_parameters_give_the_states_of_reading_every_parameter(monkeypatch):
    model, p = _tp06_sets()
    ours, _ = _run(cpu, model, p, 300)
    monkeypatch.setattr(cpu, "CELL_UNIFORM_PARAMETERS", False)
    every, _ = _run(cpu, model, p, 300)
    np.testing.assert_allclose(ours, every, rtol=1e-12, atol=1e-14)


def test_a_model_without_tables_reads_only_the_varying_parameters_too():
    model = get_model("mitchell-schaeffer")
    table = model.parameter_table()
    table.add(tau_close=0.5, tau_out=1.2)
    p = table.as_array()
    ref, peak = _run(reference, model, p, 300, use_table=False)
    ours, _ = _run(cpu, model, p, 300, use_table=False)
    assert np.all(peak[: N_NODES // 2] > 0.5)
    assert not np.allclose(ref[:, 0], ref[:, 1])  # the two sets' nodes part
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_exact_voltage_terms_with_several_sets_match_the_reference():
    # without tables the model's voltage_term reads p itself: every parameter per node
    model, p = _tp06_sets()
    ref, _ = _run(reference, model, p, 100, use_table=False)
    ours, _ = _run(cpu, model, p, 100, use_table=False)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(
    "+avx2" not in llvm.get_host_cpu_features().flatten().split(","),
    reason="needs a CPU with AVX2 (on SSE2 alone LLVM leaves the loop scalar)",
)
def test_several_sets_node_loop_vectorises():
    model, p = _tp06_sets()
    layout = state_layout(model, "fp64")
    launch = cpu.make_split_cell_kernel(model, layout.placement, use_table=True)
    _run(cpu, model, p, 1)  # compiles the kernel for these sets
    compiled = launch.compiled_for(p).compiled
    ir = "".join(o.library.get_llvm_str() for o in compiled.overloads.values())
    assert "vector.body" in ir  # the loop vectoriser's label for the vectorised loop body


def test_a_parameter_array_changed_in_place_is_read_again():
    # the launch remembers which rows vary for the array it was given; a change in place
    # must be seen, or set 1 would go on with set 0's value of a row that now differs
    model = get_model("mitchell-schaeffer")
    layout = state_layout(model, "fp64")
    p = np.repeat(model.parameter_table().as_array(), 2, axis=1)  # set 1: at first set 0
    pset = (np.arange(N_NODES) % 2).astype(np.int32)
    stim = np.full(N_NODES, 0.5)
    finals = []
    for backend in (cpu, reference):
        kernel = backend.make_split_cell_kernel(model, layout.placement)
        q = p.copy()
        v, y32, y64 = layout.split(model.initial_state(N_NODES))
        for n in range(200):
            if n == 1:
                q[model.parameter_index("tau_in"), 1] *= 3.0
            kernel(v, v, y32, y64, q, pset, DT_MS, stim)
        finals.append(layout.join(v, y32, y64))
    ours, ref = finals
    assert abs(ref[0, 0] - ref[0, 1]) > 0.01  # the change made the sets' nodes part
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
