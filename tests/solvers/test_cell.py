"""Single-cell action potentials of the phenomenological models against reference numbers.

Reference values: ../shared/NVERSION.md §2 (Myokit + CVODES, 1 Hz, 0.5 ms at 2x threshold).
"""

import numpy as np
import pytest

from cardiotwin.solvers.cell import action_potential_metrics, pace_cell, stimulus_threshold
from cardiotwin.solvers.ionic import get_model


def test_mitchell_schaeffer_steady_apd90():
    # NVERSION §2: 287 ms at steady state. The gate closes at v_gate, so APD90 is set by
    # tau_close * ln(...) and barely depends on the stimulus: 2 ms tolerance (our APD90 is
    # measured from the upstroke; from the stimulus onset it is ~5 ms longer, 288.7 ms).
    run = pace_cell(get_model("mitchell-schaeffer"), beats=20)
    m = action_potential_metrics(run)
    assert m["v_rest_mv"] == pytest.approx(-80.0, abs=0.01)
    assert m["apd90_ms"] == pytest.approx(287.0, abs=5.0)


def test_aliev_panfilov_apd90_beat1_and_steady():
    # NVERSION §2: beat 1 347 ms, steady 1 Hz 269 ms. Aliev-Panfilov's APD depends on the
    # stimulus charge (the recovery variable integrates the upstroke): at 2x threshold we get
    # 340.5 / 257.9 ms, at 3.3x 354.6 / 279.1 ms. The reference's stimulus is not stated
    # exactly, hence the 15 ms tolerance; the restitution (beat 1 >> steady) is the physics.
    model = get_model("aliev-panfilov")
    first = action_potential_metrics(pace_cell(model, beats=1))
    steady = action_potential_metrics(pace_cell(model, beats=30))
    assert first["apd90_ms"] == pytest.approx(347.0, abs=15.0)
    assert steady["apd90_ms"] == pytest.approx(269.0, abs=15.0)
    assert first["apd90_ms"] - steady["apd90_ms"] > 50.0
    assert first["v_rest_mv"] == pytest.approx(-80.0)


def test_threshold_is_a_threshold():
    model = get_model("mitchell-schaeffer")
    threshold = stimulus_threshold(model)
    below = pace_cell(model, beats=1, stim_amplitude=0.95 * threshold)
    above = pace_cell(model, beats=1, stim_amplitude=1.0 * threshold)
    assert below.voltage_mv.max() < 0.0 < above.voltage_mv.max()


def test_reference_backend_matches_cpu():
    model = get_model("aliev-panfilov")
    a = pace_cell(model, beats=1, bcl_ms=50.0, dt_ms=0.05, stim_amplitude=60.0)
    b = pace_cell(model, beats=1, bcl_ms=50.0, dt_ms=0.05, stim_amplitude=60.0, backend="reference")
    np.testing.assert_allclose(a.voltage_mv, b.voltage_mv, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [{"dt_ms": 0.0}, {"dt_ms": 0.03}, {"beats": 0}])
def test_bad_protocol_is_refused(kwargs):
    with pytest.raises(ValueError):
        pace_cell(get_model("aliev-panfilov"), stim_amplitude=60.0, **kwargs)


def test_a_parameter_or_state_vector_of_the_wrong_length_is_refused():
    # the kernels index them unchecked: 2 of Mitchell-Schaeffer's 7 parameters gave a
    # different non-physical answer on each call
    model = get_model("mitchell-schaeffer")
    with pytest.raises(ValueError, match="7 parameters"):
        pace_cell(model, bcl_ms=500, dt_ms=0.05, stim_amplitude=1.0, parameters=[0.3, 6.0])
    with pytest.raises(ValueError, match="2 states"):
        stimulus_threshold(model, dt_ms=0.05, initial_state=np.zeros(5))
