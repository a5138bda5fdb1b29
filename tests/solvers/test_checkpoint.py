"""Snapshots and branches (a new problem's run from a saved state), damaged checkpoints."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.checkpoint import (
    CheckpointError,
    Snapshot,
    branch,
    take_snapshot,
)
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import (
    BackendUnavailable,
    SplitStepper,
    cuda_usable,
    select_backend,
)
from cardiotwin.solvers.trackers import (
    ActivationTracker,
    APDTracker,
    CheckpointTracker,
    NanGuard,
)

DT = 0.05
LEFT = ((0, 0, 0), (0.25, 1.0, 0.5))
RIGHT = ((2.75, 0, 0), (3.0, 1.0, 0.5))
MIDDLE = ((1.25, 0, 0), (1.5, 1.0, 0.5))


def _problem(stimuli, batch_size=1, parameter_set=None, table=None, sigma=(0.1334, 0.01761)):
    mesh = box_mesh((3.0, 1.0, 0.5), 0.25)
    return MonodomainProblem(
        mesh,
        "mitchell-schaeffer",
        {1: sigma},
        stimuli=stimuli,
        batch_size=batch_size,
        parameter_set=parameter_set,
        parameters=table,
    )


def _s1(**kw):
    return Stimulus(0.0, 1.0, 50.0, box_mm=LEFT, **kw)


def _s2(start, box=RIGHT, **kw):
    return Stimulus(start, 1.0, 50.0, box_mm=box, **kw)


@pytest.mark.parametrize(("mass", "scheme"), [("lumped", "explicit"), ("consistent", "implicit")])
def test_branch_is_bit_identical_to_an_unbroken_run(mass, scheme):
    # the S1-only run is snapshotted at 6 ms; the branch adds an S2 at 9 ms. An unbroken
    # run of the S1+S2 problem must give the same bits (state, activation times after 6 ms)
    numerics = dict(mass=mass, diffusion=scheme)
    unbroken = SplitStepper(_problem([_s1(), _s2(9.0)]), DT, **numerics)
    whole = ActivationTracker()
    unbroken.run(6.0)
    unbroken.run(20.0, [whole])

    prefix = SplitStepper(_problem([_s1()]), DT, **numerics)
    prefix.run(6.0)
    snapshot = take_snapshot(prefix)
    assert snapshot.t_ms == pytest.approx(6.0)
    stepper = branch(_problem([_s1(), _s2(9.0)]), snapshot, source_problem=prefix.problem)
    assert stepper.t_ms == snapshot.t_ms and stepper.substeps == prefix.substeps
    after = ActivationTracker()
    stepper.run(20.0, [after])

    np.testing.assert_array_equal(stepper.state, unbroken.state)
    np.testing.assert_array_equal(after.last_ms, whole.last_ms)
    np.testing.assert_array_equal(after.count, whole.count)
    # not trivial: the S2 made a second activation near the right end
    assert after.count[-1, 0] >= 1 and np.nanmax(after.last_ms) > 9.0


def test_a_batch_of_branches_equals_single_runs():
    # one snapshot member fans out into three trials (different S2 times and places); each
    # member equals the single unbroken run of its own stimuli to 1e-12
    prefix = SplitStepper(_problem([_s1()]), DT)
    prefix.run(5.0)
    snapshot = take_snapshot(prefix)
    trials = [(8.0, RIGHT), (10.0, MIDDLE), (12.0, RIGHT)]
    stimuli = [_s1()] + [_s2(t, box, members=(b,)) for b, (t, box) in enumerate(trials)]
    batch = branch(_problem(stimuli, batch_size=3), snapshot, [0, 0, 0])
    activation = ActivationTracker()
    batch.run(25.0, [activation])
    n = batch.n_nodes
    state = batch.state.reshape(2, n, 3)
    for b, (t, box) in enumerate(trials):
        single = SplitStepper(_problem([_s1(), _s2(t, box)]), DT)
        single_activation = ActivationTracker()
        single.run(5.0)
        single.run(25.0, [single_activation])
        np.testing.assert_allclose(state[:, :, b], single.state, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            activation.last_ms[:, b], single_activation.last_ms[:, 0], rtol=0, atol=1e-12
        )
    assert not np.allclose(state[:, :, 0], state[:, :, 1])


def test_snapshot_file_round_trip_and_member_selection(tmp_path):
    table = get_model("mitchell-schaeffer").parameter_table()
    slow = table.add(tau_close=0.8)
    n_mesh = box_mesh((3.0, 1.0, 0.5), 0.25).n_points
    sets = np.zeros((n_mesh, 2), dtype=np.int32)
    sets[:, 1] = slow
    run = SplitStepper(
        _problem([_s1()], batch_size=2, parameter_set=sets, table=table), DT,
        mass="consistent", diffusion="implicit",
    )  # fmt: skip
    run.run(4.0)
    snapshot = take_snapshot(run)
    path = snapshot.save(tmp_path / "s1.npz")
    loaded = Snapshot.load(path)
    np.testing.assert_array_equal(loaded.state, snapshot.state)
    np.testing.assert_array_equal(loaded.diffusion["increment"], snapshot.diffusion["increment"])
    assert loaded.numerics == snapshot.numerics and loaded.t_ms == snapshot.t_ms
    # member 1 (slow recovery) can seed a branch only with its own parameter sets
    picked = loaded.select([1, 1])
    assert picked.n_members == 2 and picked.nbytes == snapshot.nbytes
    sets_slow = np.full((n_mesh, 2), slow, dtype=np.int32)
    branch(_problem([_s1()], 2, sets_slow, table), loaded, [1, 1])
    with pytest.raises(ValueError, match="batch member 0 uses other parameter sets"):
        branch(_problem([_s1()], 2, sets_slow, table), loaded, [0, 1])


def test_a_branch_of_another_tissue_or_numerics_is_refused():
    prefix = SplitStepper(_problem([_s1()]), DT)
    prefix.run(1.0)
    snapshot = take_snapshot(prefix)
    with pytest.raises(ValueError, match="another mesh, tissue"):
        branch(_problem([_s1()], sigma=(0.2, 0.02)), snapshot)
    stepper = SplitStepper(_problem([_s1()]), DT, mass="consistent")
    from cardiotwin.solvers.checkpoint import restore_snapshot

    with pytest.raises(ValueError, match="numerics differ.*mass 'lumped'"):
        restore_snapshot(stepper, snapshot)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_names_the_file(tmp_path, damage):
    path = tmp_path / "run.npz"
    SplitStepper(_problem([_s1()]), DT).run(1.0, [CheckpointTracker(path, 1.0)])
    data = path.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "garbage": b"not a zip at all" * 10,
               "empty": b""}[damage]  # fmt: skip
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match=r"run\.npz cannot be read .*truncated or corrupt"):
        SplitStepper(_problem([_s1()]), DT).run(2.0, resume_from=path)


def test_resuming_with_trackers_in_another_order_is_an_error(tmp_path):
    path = tmp_path / "run.npz"
    first = [ActivationTracker(), APDTracker(), NanGuard()]
    SplitStepper(_problem([_s1()]), DT).run(2.0, [*first, CheckpointTracker(path, 1.0)])
    with pytest.raises(CheckpointError, match=r"0\.ActivationTracker.*1\.APDTracker.*same order"):
        SplitStepper(_problem([_s1()]), DT).run(
            4.0, [APDTracker(), ActivationTracker()], resume_from=path
        )
    with pytest.raises(CheckpointError, match="holds the state of trackers"):
        SplitStepper(_problem([_s1()]), DT).run(4.0, [ActivationTracker()], resume_from=path)
    # stateless trackers may be added or dropped
    SplitStepper(_problem([_s1()]), DT).run(
        4.0, [ActivationTracker(), NanGuard(), APDTracker()], resume_from=path
    )


def test_time_step_types_and_absurd_values():
    problem = _problem([_s1()])
    # a numpy float32 is taken as the decimal it prints as
    assert SplitStepper(problem, np.float32(0.05)).dt_ms == 0.05
    assert SplitStepper(problem, np.float64(0.05)).dt_ms == 0.05
    with pytest.raises(ValueError, match=r"got True \(bool\)"):
        SplitStepper(problem, True)
    with pytest.raises(ValueError, match="got '0.05' \\(str\\)"):
        SplitStepper(problem, "0.05")
    # the upstroke of Mitchell-Schaeffer (tau_in 0.3 ms) is not resolved at 2 ms
    with pytest.raises(ValueError, match=r"dt = 2 ms is too large for the mitchell-schaeffer"):
        SplitStepper(problem, 2.0)


@pytest.mark.skipif(cuda_usable(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_one_clear_error():
    with pytest.raises(BackendUnavailable, match="no usable CUDA device.*backend 'cpu'"):
        select_backend("cuda")


@pytest.mark.skipif(cuda_usable(), reason="a CUDA device is present")
@pytest.mark.parametrize("dt", ["0.05", "2.0"])
def test_verify_nversion_refuses_a_missing_gpu_and_an_absurd_dt(dt, capsys):
    from cardiotwin.pipeline.cli import main

    backend = "cuda" if dt == "0.05" else "cpu"
    assert main(["verify", "nversion", "--dx", "0.5", "--dt", dt, "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("no usable CUDA device" if backend == "cuda" else "too large for the tp06-epi") in err


def test_a_resumed_run_starts_its_trackers_at_the_resumed_time(tmp_path):
    # trackers were started before the checkpoint was loaded: a recorder's first frame was
    # the fresh stepper's initial state at t = 0, the NaN guard's "last good" time 0 ms
    from cardiotwin.solvers.trackers import VoltageRecorder

    problem = _problem([_s1()])
    path = tmp_path / "run.npz"
    first = SplitStepper(problem, DT)
    activation = ActivationTracker()
    first.run(4.0, [activation, CheckpointTracker(path, interval_ms=4.0)])
    recorder, guard = VoltageRecorder(interval_ms=1.0), NanGuard()
    resumed = SplitStepper(problem, DT)
    again = ActivationTracker()
    resumed.run(6.0, [again, recorder, guard], resume_from=path)
    assert recorder.times_ms[0] == pytest.approx(4.0)
    np.testing.assert_array_equal(recorder.voltages_mv[0], first.voltage_mv)
    assert guard._last_good_ms == pytest.approx(6.0)
    whole = ActivationTracker()
    SplitStepper(problem, DT).run(6.0, [whole])
    np.testing.assert_array_equal(again.first_ms, whole.first_ms)
