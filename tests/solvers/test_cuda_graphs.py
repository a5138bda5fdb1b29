"""The CG's groups of iterations replayed as captured CUDA graphs give the iterates of the
kernels launched one by one (cudasim_graphs.py). Under the simulator a stand-in checks that
each graph is replayed only for the buffers it was captured with; on a device
(``CARDIOTWIN_REAL_GPU=1``, benchmarks/gpu_check.sh) the real capture runs."""

import json

import pytest
from subprocess_env import DEVICE_MARKS, REAL_GPU, helper_output

pytestmark = DEVICE_MARKS


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return json.loads(
        helper_output(tmp_path_factory, "cudasim_graphs.py", "graphs.json", 600).read_text()
    )


def test_graph_replay_gives_the_launched_iterates_bit_for_bit(report):
    assert report["simulated"] != REAL_GPU
    assert report["residual"] < 1e-6  # the solves themselves are right (|b| ~ 1)
    assert report["graph_iterations"] == report["iterations"]
    assert report["identical"]
    # the start and first groups: one graph per (right-hand side, solution) buffer pair (two
    # alternate over four solves), captured from the second solve on and replayed, not
    # captured again, in the fourth
    assert report["start_graphs"] == 2 and report["still_on"]
    if not REAL_GPU:
        assert report["captures"] == report["graphs"] and report["replays"] > report["captures"]


def test_the_stepper_s_guess_solve_and_increment_replay_bit_for_bit(report):
    assert report["stepper_identical"]
    assert report["stepper_start_graphs"] >= 2  # both V buffers' directions
    assert report["stepper_increment_error"] == 0.0


def test_a_failed_capture_falls_back_to_launching_the_kernels(report):
    assert report["fallback_off"] and report["fallback_identical"]
