"""Per-beat activation times, capture and quiescence of pacing trials (solvers/beats.py).

The CUDA kernels of the monitor are compared with the CPU in test_cuda_backend.py (the
simulator run of cudasim_tissue_run.py includes a monitored trial)."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.backends import cpu, reference
from cardiotwin.solvers.beats import (
    MISSED,
    OBSERVED,
    QUIESCENT,
    RUNNING,
    MemberWatch,
    TrialMonitor,
    ordered_beats,
)
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker, NanGuard, SimulationDiverged

DT = 0.05
PERIOD = 400.0  # Mitchell-Schaeffer's APD90 at 1 Hz is 283 ms (NVERSION.md §2): 400 ms recovers


def test_ordered_beats_unrolls_the_ring():
    # keep 3; node 0 saw 5 beats (slots hold 4, 5, 3), node 1 two, node 2 none
    times = np.array([[4.0, 5.0, 3.0], [1.0, 2.0, np.nan], [np.nan] * 3])
    out = ordered_beats(times, np.array([5, 2, 0]))
    np.testing.assert_array_equal(out[0], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(out[1], [np.nan, 1.0, 2.0])
    assert np.isnan(out[2]).all()


def _strip_problem(stimuli, batch_size=1):
    mesh = box_mesh((6.0, 1.0, 0.5), 0.25)
    return MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (0.1334, 0.01761)}, stimuli=stimuli, batch_size=batch_size
    )


LEFT = ((0, 0, 0), (0.25, 1.0, 0.5))


def test_beats_capture_and_quiescence_of_a_paced_strip():
    # three S1 at 400 ms, then an S2 150 ms later (inside the refractory period: no capture)
    s1 = Stimulus(0.0, 1.0, 50.0, box_mm=LEFT, period_ms=PERIOD, count=3)
    s2 = Stimulus(2 * PERIOD + 150.0, 1.0, 50.0, box_mm=LEFT)
    problem = _strip_problem([s1, s2])
    x = problem.points_mm[:, 0]
    probe = np.nonzero(np.isclose(x, 1.0))[0]  # 1 mm from the pacing site
    onsets = (0.0, PERIOD, 2 * PERIOD, 2 * PERIOD + 150.0)
    watch = MemberWatch(onsets, probe, quiet_after_ms=onsets[-1] + 1.0, stop_at_ms=3000.0)
    monitor = TrialMonitor([watch], keep=2, interval_ms=5.0)
    plain = ActivationTracker()
    summary = SplitStepper(problem, DT).run(3000.0, [monitor, plain])

    assert monitor.captured == [[True, True, True, False]]
    assert monitor.outcome[0] == QUIESCENT
    # V falls below -50 mV everywhere once the third beat repolarises (APD ~280 ms)
    assert 2 * PERIOD + 200 < monitor.finished_ms[0] < 2 * PERIOD + 400
    assert summary.stopped_by.startswith("1 of 1 trials finished")
    np.testing.assert_array_equal(monitor.count[:, 0], 3)
    beats = monitor.beats(0)  # keep 2: the last two beats, oldest first
    # away from the site both trackers saw the same beats; at the site the S2 pushed V from
    # the plateau (~-1 mV, Mitchell-Schaeffer) over 0 mV: a "beat" without hysteresis
    away = x > 1.5
    np.testing.assert_array_equal(beats[away, 1], plain.last_ms[away, 0])
    assert plain.count[0, 0] == 4 and plain.last_ms[0, 0] > onsets[-1]
    # one beat per period at every node (latency and CV change by a few ms with the rate)
    np.testing.assert_allclose(beats[:, 1] - beats[:, 0], PERIOD, atol=5.0)
    far = np.argmax(x)
    assert beats[far, 1] > beats[np.argmin(x), 1] + 5.0  # the wave travels along the strip


def test_captures_are_decided_when_the_member_comes_to_rest_before_the_window_closes():
    # a capture window longer than the beat: at rest no probe node activates any more, so
    # the captures are known then (the S1 captured, the refractory S2 did not), not None
    s1 = Stimulus(0.0, 1.0, 50.0, box_mm=LEFT)
    s2 = Stimulus(150.0, 1.0, 50.0, box_mm=LEFT)
    problem = _strip_problem([s1, s2])
    probe = np.nonzero(np.isclose(problem.points_mm[:, 0], 1.0))[0]
    watch = MemberWatch((0.0, 150.0), probe, quiet_after_ms=151.0, stop_at_ms=3000.0)
    monitor = TrialMonitor([watch], capture_window_ms=2000.0, interval_ms=5.0)
    SplitStepper(problem, DT).run(3000.0, [monitor])
    assert monitor.outcome[0] == QUIESCENT and monitor.finished_ms[0] < 500.0
    assert monitor.captured == [[True, False]]
    # observed to the end of a window that never closes: unknown, not a miss
    observed = TrialMonitor(
        [MemberWatch((0.0, 150.0), probe, stop_at_ms=200.0)], capture_window_ms=2000.0
    )
    SplitStepper(_strip_problem([s1, s2]), DT).run(3000.0, [observed])
    assert observed.outcome[0] == OBSERVED and observed.captured == [[None, None]]


@pytest.mark.parametrize("finish_if_missed", [True, False])
def test_a_clean_miss_of_the_last_stimulus_ends_the_trial_when_asked(finish_if_missed):
    # member 0: an S2 150 ms after the S1, deep in its refractory period (a clean miss);
    # member 1: an S2 at 700 ms, after recovery (captured)
    s1 = Stimulus(0.0, 1.0, 50.0, box_mm=LEFT)
    s2 = [Stimulus(t, 1.0, 50.0, box_mm=LEFT, members=(m,)) for m, t in ((0, 150.0), (1, 700.0))]
    problem = _strip_problem([s1, *s2], batch_size=2)
    probe = np.nonzero(np.isclose(problem.points_mm[:, 0], 1.0))[0]
    watches = [
        MemberWatch((0.0, t), probe, quiet_after_ms=t + 1.0, finish_if_missed=finish_if_missed)
        for t in (150.0, 700.0)
    ]
    monitor = TrialMonitor(watches, capture_window_ms=20.0, interval_ms=5.0)
    SplitStepper(problem, DT).run(3000.0, [monitor])
    assert monitor.captured == [[True, False], [True, True]]
    assert monitor.outcome[1] == QUIESCENT and monitor.finished_ms[1] > 700.0 + 200.0
    if finish_if_missed:  # at the window's close, long before the S1 beat has passed
        assert monitor.outcome[0] == MISSED and monitor.finished_ms[0] == pytest.approx(170.0)
    else:
        assert monitor.outcome[0] == QUIESCENT and monitor.finished_ms[0] > 250.0


def test_a_member_stops_recording_when_finished_and_the_batch_stops_at_the_fraction():
    # member 0 is observed for 8 ms only; member 1 until quiescent. With stop_fraction 0.5
    # the run stops at 8 ms; member 0's record is then frozen while member 1 runs on
    stimulus = Stimulus(0.0, 1.0, 50.0, box_mm=LEFT)
    problem = _strip_problem([stimulus], batch_size=2)
    watches = [MemberWatch(stop_at_ms=8.0), MemberWatch(quiet_after_ms=1.0)]
    monitor = TrialMonitor(watches, interval_ms=1.0, stop_fraction=0.5)
    stepper = SplitStepper(problem, DT)
    summary = stepper.run(1000.0, [monitor])
    assert summary.t_ms == pytest.approx(8.0)
    assert list(monitor.outcome) == [OBSERVED, RUNNING]
    count_at_stop = monitor.count[:, 0].copy()
    assert 0 < count_at_stop.sum() < problem.n_nodes  # the wave was halfway along
    monitor.stop_fraction = 1.0
    stepper.run(1000.0, [monitor])
    assert list(monitor.outcome) == [OBSERVED, QUIESCENT]
    np.testing.assert_array_equal(monitor.count[:, 0], count_at_stop)
    np.testing.assert_array_equal(monitor.count[:, 1], 1)


def test_reference_backend_matches_cpu():
    stimuli = [
        Stimulus(0.0, 1.0, 50.0, box_mm=LEFT, members=(0,)),
        Stimulus(2.0, 1.0, 50.0, box_mm=((5.75, 0, 0), (6.0, 1.0, 0.5)), members=(1,)),
    ]
    results = {}
    for backend in ("cpu", "reference"):
        problem = _strip_problem(stimuli, batch_size=2)
        probe = np.nonzero(np.isclose(problem.points_mm[:, 0], 1.0))[0]
        watches = [MemberWatch((0.0,), probe), MemberWatch((2.0,), probe)]
        monitor = TrialMonitor(watches, keep=3, capture_window_ms=8.0, interval_ms=1.0)
        SplitStepper(problem, DT, backend=backend).run(12.0, [monitor])
        results[backend] = monitor
    a, b = results["cpu"], results["reference"]
    np.testing.assert_allclose(a.all_beats(), b.all_beats(), rtol=0, atol=1e-10)
    assert a.captured == b.captured == [[True], [False]]  # member 1's wave is 5 mm away


def test_member_max_is_nan_for_a_member_with_any_nan():
    # 4 nodes x 3 members: member 1 has one NaN among finite values, member 2 only NaN
    values = np.array([[1.0, 2.0, np.nan], [5.0, np.nan, np.nan], [3.0, 9.0, np.nan],
                       [0.0, 1.0, np.nan]]).reshape(-1)  # fmt: skip
    for ops in (cpu, reference):
        out = ops.member_max(values, 3)
        assert out[0] == 5.0 and np.isnan(out[1]) and np.isnan(out[2]), (ops.__name__, out)


def test_a_blown_up_member_is_diverged_not_quiescent():
    # a stimulus 1000x too strong (a units slip) sends V to NaN within 1 ms; the monitor,
    # due at the same step as the guard and handed first, read every node as below
    # -50 mV (NaN was ignored) and stopped the run as a quiet, non-inducible trial
    mesh = box_mesh((2.0, 1.0, 1.0), 0.5)
    stimulus = Stimulus(0.0, 1.0, 5.0e4, box_mm=((0, 0, 0), (0.5, 1, 1)))
    problem = MonodomainProblem(mesh, "mitchell-schaeffer", {1: (0.1, 0.1)}, stimuli=[stimulus])
    monitor = TrialMonitor([MemberWatch(quiet_after_ms=0.0, stop_at_ms=50.0)], interval_ms=1.0)
    guard = NanGuard(interval_ms=1.0)
    with pytest.raises(SimulationDiverged):
        SplitStepper(problem, DT).run(50.0, [monitor, guard])  # the runner's order
    assert monitor.outcome[0] == RUNNING
    # without a guard the member is not taken for quiet either: it runs to its end
    monitor = TrialMonitor([MemberWatch(quiet_after_ms=0.0, stop_at_ms=5.0)], interval_ms=1.0)
    SplitStepper(problem, DT).run(50.0, [monitor])
    assert monitor.outcome[0] == OBSERVED
