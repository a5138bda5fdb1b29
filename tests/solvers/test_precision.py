"""precision="mixed": which states float32 carries, parity with float64, and refusals.

The expected numbers are the issue's bounds (mixed vs float64: activation within 0.5 ms at
P8, mean |Δ| of activation ≤ 0.1 ms, APD90 within 1 ms) and the resolution rule of
solvers/precision.py (a state whose sub-half-ulp updates exceed 1 % of its movement over a
beat is float64), computed here from a float64 trajectory. The 0.2 mm N-version comparison,
every model's APD90 and the 1000-beat drift are benchmarks (benchmarks/precision_check.py,
benchmarks/RESULTS.md): too long for CI.
"""

import sys
import types

import numba
import numpy as np
import pytest

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.backends import cpu
from cardiotwin.solvers.cell import action_potential_metrics, pace_cell
from cardiotwin.solvers.ionic import aliev_panfilov, get_model
from cardiotwin.solvers.ionic.base import (
    build_table,
    compile_step_of_module,
    model_from_module,
    takes_table,
)
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.precision import (
    MAX_LOST_SHARE,
    MIXED_MIN_DT_MS,
    PrecisionError,
    fp64_states,
    lost_change_share,
    state_layout,
)
from cardiotwin.solvers.stepping import BackendUnavailable, SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker, CheckpointTracker
from cardiotwin.solvers.verification import run_nversion

SIGMA = {1: (0.1334, 0.01761)}


def _beat(model, dt_ms: float) -> np.ndarray:
    """float64 states over one beat (1000 ms, 60 µA/µF for 1 ms), lookup-table rates."""
    step = compile_step_of_module(model.module, numba.njit, use_table=True)
    p = np.ascontiguousarray(model.default_parameters()[:, None])
    table = build_table(model, p, dt_ms)
    n_steps, stim_steps = round(1000.0 / dt_ms), round(1.0 / dt_ms)
    with_table = takes_table(model)

    @numba.njit
    def run(y, out):
        out[:, 0] = y[:, 0]
        for n in range(n_steps):
            i_stim = 60.0 if n < stim_steps else 0.0
            if with_table:
                step(y, p, 0, 0, dt_ms, i_stim, table)
            else:
                step(y, p, 0, 0, dt_ms, i_stim)
            out[:, n + 1] = y[:, 0]

    out = np.empty((model.n_states, n_steps + 1))
    run(model.initial_state(1), out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tp06-epi", "courtemanche", "mitchell-schaeffer"])
def test_float64_states_are_those_float32_would_freeze(name):
    model = get_model(name)
    share = lost_change_share(_beat(model, MIXED_MIN_DT_MS))
    assert share.max() > 0  # some state does stall: the rule is tested, not vacuous
    declared = set(fp64_states(model))
    for state, lost in zip(model.state_names, share, strict=True):
        assert (lost > MAX_LOST_SHARE) == (state in declared), (state, lost)


def test_layout_round_trips_float64_states_exactly():
    model = get_model("tp06-epi")
    layout = state_layout(model, "mixed", dt_ms=0.01)
    y = model.initial_state(3) * (1 + 1e-9 * np.arange(3))
    back = layout.join(*layout.split(y))
    na, k = model.state_index("Na_i"), model.state_index("K_i")
    np.testing.assert_array_equal(back[[na, k]], y[[na, k]])  # kept in float64
    np.testing.assert_allclose(back, y, rtol=2**-24)  # the others to float32 rounding
    assert "Na_i, K_i" in layout.describe()


def test_mixed_refuses_a_model_without_a_declaration_and_too_small_a_dt(monkeypatch):
    module = types.ModuleType("undeclared_model")
    module.__dict__.update(
        {
            k: v
            for k, v in vars(aliev_panfilov).items()
            if k != "FP64_STATES" and not k.startswith("__")
        }  # fmt: skip
    )
    monkeypatch.setitem(sys.modules, "undeclared_model", module)
    model = model_from_module(module, "undeclared")
    with pytest.raises(PrecisionError, match="does not declare FP64_STATES.*precision='fp64'"):
        state_layout(model, "mixed")
    with pytest.raises(PrecisionError, match=r"dt = 0\.001 ms.*K_i, Na_i.*dt ≥ 0\.005 ms"):
        state_layout(get_model("tp06-epi"), "mixed", dt_ms=0.001)
    problem = MonodomainProblem(box_mesh((1.0, 0.5, 0.5), 0.25), "aliev-panfilov", SIGMA)
    with pytest.raises(ValueError, match="reference backend is the float64 oracle"):
        SplitStepper(problem, 0.05, backend="reference", precision="mixed")


def test_cli_refuses_mixed_precision_on_the_reference_backend(capsys):
    from cardiotwin.pipeline.cli import main

    code = main(["verify", "nversion", "--dx", "0.5", "--dt", "0.05", "--backend", "reference",
                 "--precision", "mixed"])  # fmt: skip
    assert code == 2
    assert "float64 oracle" in capsys.readouterr().err


@pytest.mark.slow
def test_mixed_nversion_at_half_a_millimetre_matches_float64():
    # "auto": on a machine without a GPU the output says why the CPU ran it
    runs = {p: run_nversion(0.5, 0.05, backend="auto", precision=p) for p in ("fp64", "mixed")}
    a, b = runs["fp64"], runs["mixed"]
    assert a["all_activated"] and b["all_activated"]
    assert b["precision"] == "mixed" and "K_i" in b["storage"]
    if b["backend"] == "cpu":
        assert "no usable CUDA device" in b["fallback_reason"]
    for point in ("P1", "P8", "P9"):
        assert abs(a["activation_ms"][point] - b["activation_ms"][point]) <= 0.5, point
    diagonal = np.abs(np.array(a["diagonal_ms"]) - np.array(b["diagonal_ms"]))
    assert diagonal.mean() <= 0.1
    assert a["activation_ms"]["P8"] > 100.0  # the slow 0.5 mm wave: a real comparison


@pytest.mark.parametrize("name", ["mitchell-schaeffer", "aliev-panfilov"])
def test_mixed_single_cell_apd90_within_a_millisecond(name):
    model = get_model(name)
    apd = [
        action_potential_metrics(
            pace_cell(model, beats=3, stim_amplitude=60.0, precision=precision)
        )["apd90_ms"]
        for precision in ("fp64", "mixed")
    ]
    assert apd[0] > 200.0  # an action potential was measured
    assert abs(apd[1] - apd[0]) <= 1.0


def _strip(batch: int = 1) -> MonodomainProblem:
    mesh = box_mesh((2.0, 0.5, 0.5), 0.25)
    stimuli = [Stimulus(0.0, 1.0, 60.0, box_mm=((0, 0, 0), (0.5, 0.5, 0.5)))]
    return MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, stimuli=stimuli,
                             batch_size=batch)  # fmt: skip


@pytest.mark.parametrize(
    ("mass", "diffusion"), [("lumped", "explicit"), ("consistent", "implicit")]
)
def test_mixed_resume_is_bit_identical(tmp_path, mass, diffusion):
    numerics = dict(mass=mass, diffusion=diffusion, precision="mixed")
    whole = SplitStepper(_strip(), 0.05, **numerics)
    whole_activation = ActivationTracker()
    whole.run(4.0, [whole_activation])
    path = tmp_path / "run.npz"
    first = SplitStepper(_strip(), 0.05, **numerics)
    first.run(2.0, [ActivationTracker(), CheckpointTracker(path, 2.0)])
    resumed = SplitStepper(_strip(), 0.05, **numerics)
    activation = ActivationTracker()
    resumed.run(4.0, [activation], resume_from=path)
    np.testing.assert_array_equal(resumed.state, whole.state)
    np.testing.assert_array_equal(activation.first_ms, whole_activation.first_ms)
    assert resumed.voltage.dtype == np.float32


def test_a_batch_that_does_not_fit_the_device_says_how_many_would(monkeypatch):
    # a backend reporting little free memory (as the CUDA one reports its device's)
    probe = SplitStepper(_strip(1), 0.05, mass="consistent", diffusion="implicit")
    per_member, shared = probe.memory_bytes()
    free = int((shared + 3.5 * per_member) / 0.9)  # room for 3 members, not 4
    monkeypatch.setattr(cpu, "free_memory_bytes", lambda: free, raising=False)
    SplitStepper(_strip(3), 0.05, mass="consistent", diffusion="implicit")
    with pytest.raises(BackendUnavailable, match=r"4 batch members.*at most 3 member\(s\) fit"):
        SplitStepper(_strip(4), 0.05, mass="consistent", diffusion="implicit")
