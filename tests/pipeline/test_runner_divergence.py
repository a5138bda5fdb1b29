"""Blow-ups in a batch of trials (pipeline/induction/runner.py): a trial that had finished keeps
its result when its state blows up while it waits for the batch to be rebuilt; one that blows
up while running is reported diverged at its own time and place.

The trials run on the ring and fast tissue of induction_cases.py; a stimulus of 1e9 µA/µF
sends V past the guard's 1000 mV at a chosen time.
"""

import dataclasses

import numpy as np
import pytest
from induction_cases import ring_runner

from cardiotwin.pipeline.induction.runner import Trial, TrialRunner

BLOW_UP_UA_PER_UF = 1e9


def _runner(tmp_path, max_members, compact_fraction=0.5):
    return ring_runner(tmp_path, max_members, compact_fraction)


def _blowing_up(monkeypatch, at: dict):
    """Make the stimulus of trial ``key`` at local step ``at[key]`` blow its member up."""
    original = TrialRunner._stimuli

    def stimuli(self, members, clock):
        out = []
        for s in original(self, members, clock):
            member = members[s.members[0]]
            onset = round(s.start_ms / self.dt_ms) + member.offset
            if at.get(member.trial.key) == onset:
                s = dataclasses.replace(s, strength_ua_per_uf=BLOW_UP_UA_PER_UF)
            out.append(s)
        return out

    monkeypatch.setattr(TrialRunner, "_stimuli", stimuli)


def _trials(runner, blow_up_at: dict):
    # S1 at 0 and the stimulus that blows up as an extra onset; "finished" and "running"
    # share a site and "finished" comes first in the batch, so at the same check the guard
    # names the finished member (the lower index at the same node)
    plans = {"finished": (0, 1000), "running": (0, 4000), "bystander": (2, 3000)}
    return [
        Trial(
            key=key,
            site=site,
            start=runner.initial,
            start_step=0,
            onsets=(0,) + ((blow_up_at[key],) if key in blow_up_at else ()),
            watch=(0,),
            quiet_after=None,
            stop=stop,
        )
        for key, (site, stop) in plans.items()
    ]


@pytest.mark.parametrize(
    "running_blows_up_at",
    [2500, 1500],  # steps of 0.1 ms: at a later check, or at the same check as "finished"
    ids=["later", "same-check"],
)
def test_a_trial_that_blows_up_after_it_finished_keeps_its_result(
    tmp_path, monkeypatch, running_blows_up_at
):
    # "finished" ends at 100 ms (observed) and blows up at 150 ms, while the batch runs on
    # until 0.9 of its 3 trials have finished; "running" blows up at 150 or 250 ms, before
    # its own end (400 ms). Each result must equal the trial's run on its own (batch of 1,
    # which stops as soon as the trial finishes).
    blow_up_at = {"finished": 1500, "running": running_blows_up_at}
    _blowing_up(monkeypatch, blow_up_at)
    batched = _runner(tmp_path, max_members=3, compact_fraction=0.9)
    single = _runner(tmp_path, max_members=1, compact_fraction=0.9)
    a = {r.trial.key: r for r in batched.run(_trials(batched, blow_up_at))}
    b = {r.trial.key: r for r in single.run(_trials(single, blow_up_at))}
    assert sorted(a) == sorted(b) == ["bystander", "finished", "running"]
    # finished at its stop (1000 steps of 0.1 ms), S1 captured, the blow-up after it ignored
    assert a["finished"].outcome == "observed", a["finished"].error
    assert a["finished"].finished_ms == pytest.approx(100.0, abs=1e-9)
    assert a["finished"].captured == [True] and a["finished"].error == ""
    assert a["bystander"].outcome == "observed"
    assert a["bystander"].finished_ms == pytest.approx(300.0, abs=1e-9)
    # blown up while running: the first 5 ms check after its stimulus, at the time and node
    # (in the error message) of its own run
    assert a["running"].outcome == "diverged"
    assert running_blows_up_at * 0.1 < a["running"].finished_ms <= running_blows_up_at * 0.1 + 5
    for key in a:
        assert a[key].outcome == b[key].outcome, key
        assert a[key].finished_ms == pytest.approx(b[key].finished_ms, abs=1e-9), key
        assert a[key].error == b[key].error, key
        assert a[key].captured == b[key].captured, key
        if b[key].beats_ms is not None:
            np.testing.assert_allclose(a[key].beats_ms, b[key].beats_ms, rtol=0, atol=1e-12)
