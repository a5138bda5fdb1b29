"""Induction: protocols, batched trials, re-entry detection, unique VTs, bad input.

Most tests run on the ring of induction_cases.py (anatomical re-entry around a core, a
border-zone arc giving the unidirectional block) with a fast test tissue; the expected
answers come from the geometry: where the circuit leaves the arc, how long a turn takes.
"""

import math

import numpy as np
import pytest
from induction_cases import (
    BORDER_ZONE_DEG,
    R_IN_MM,
    R_MID_MM,
    R_OUT_MM,
    angle_deg,
    config,
    ring,
    ring_runner,
)

from cardiotwin.pipeline.induction import InductionError, run_induction
from cardiotwin.pipeline.induction.protocols import (
    PESSite,
    PESTiming,
    ProtocolError,
    rapid_pacing_onsets,
    validate,
)
from cardiotwin.pipeline.risk import build_report

CV_HEALTHY_M_PER_S = 0.6  # the calibrated target along the fibres (induction_cases.config)


@pytest.fixture(scope="module")
def ring_study(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return run_induction(ring(), config(cache), sites=["AHA-1", "AHA-2", "AHA-3"])


@pytest.mark.slow
def test_the_ring_with_a_border_zone_arc_is_inducible_from_either_end(ring_study):
    by_name = {o.site.name: o for o in ring_study.sites}
    assert all(o.status == "ok" and o.s1_captured for o in ring_study.sites)
    assert by_name["AHA-1"].induced and by_name["AHA-2"].induced
    # from the far side the wave reaches both ends of the arc at once: no one-way block
    assert not by_name["AHA-3"].induced
    # two circuits, one per direction of rotation
    assert len(ring_study.vts) == 2
    assert by_name["AHA-1"].vt_id != by_name["AHA-2"].vt_id
    for name, end in (("AHA-1", BORDER_ZONE_DEG[1]), ("AHA-2", BORDER_ZONE_DEG[0])):
        a = by_name[name].analysis
        # paced next to one end, the wave blocks there, turns the long way round and leaves
        # the arc at that same end: the exit lies within 2 element widths of it
        end_mm = R_MID_MM * np.array([math.cos(math.radians(end)), math.sin(math.radians(end))])
        assert np.linalg.norm(np.array(a.exit_mm[:2]) - end_mm) <= 3.0, (name, a.exit_mm)
        assert a.exit_adjacent_to_border_zone
        # one turn of the ring: at least the inner circumference at the healthy CV, at most
        # the outer one at half of it (the arc conducts more slowly)
        assert 2 * math.pi * R_IN_MM / CV_HEALTHY_M_PER_S < a.cycle_length_ms
        assert a.cycle_length_ms < 2 * math.pi * R_OUT_MM / (0.5 * CV_HEALTHY_M_PER_S)
        # the slowest conduction is in the arc (reduced upstroke), an anatomical circuit has
        # no phase singularity in the tissue
        assert BORDER_ZONE_DEG[0] - 5 < angle_deg(a.slowest_mm) < BORDER_ZONE_DEG[1] + 5
        assert a.phase_singularities == []
    both = [by_name[n].analysis.cycle_length_ms for n in ("AHA-1", "AHA-2")]
    assert abs(both[0] - both[1]) < 0.05 * both[0]  # the same ring either way round


@pytest.mark.slow
def test_the_report_says_what_a_cardiologist_needs(ring_study):
    report = build_report(ring_study, "f" * 64)
    data = report.model_dump()
    assert data["inducible"] and data["complete"]
    assert data["sites_paced"] == 3 and data["sites_inducing"] == 2
    assert data["fraction_inducing_sites"] == pytest.approx(2 / 3, abs=1e-3)
    vt = data["unique_vts"][0]
    assert set(vt) >= {"id", "cycle_length_ms", "exit_site_mm", "sites", "activation_map"}
    site = next(s for s in data["sites"] if s["name"] == "AHA-1")
    assert site["induced"] and site["vt_id"] in {v["id"] for v in data["unique_vts"]}
    # the S2 stage tried 130 ms first, then shorter, and S3 followed the shortest capturing S2
    s2, *rest = site["stages"]
    assert s2["stimulus"] == "S2" and s2["tested_ms"][0] == 130.0
    if rest:
        assert rest[0]["after_ms"] == [s2["shortest_capturing_ms"]]
    inducing = [t for t in site["trials"] if t["induced"]]
    assert site["coupling_intervals_ms"] in [t["coupling_intervals_ms"] for t in inducing]
    segments = {s["segment"]: s for s in data["per_aha_segment"]}
    assert segments[1]["induced_sites"] == ["AHA-1"] and segments[3]["induced_sites"] == []


@pytest.mark.slow
def test_mixed_precision_finds_the_same_circuits(ring_study):
    """``simulation.precision: mixed`` (float32 V, gates and matrix; solvers/precision.py):
    every site gives the fp64 study's answer, and its circuit the same cycle length (within
    0.5 %) and exit (within one element)."""
    from cardiotwin.pipeline.commands.induce import with_precision

    mixed = run_induction(
        ring(), with_precision(ring_study.config, "mixed"), sites=["AHA-1", "AHA-2", "AHA-3"]
    )
    fp64 = {o.site.name: o for o in ring_study.sites}
    for outcome in mixed.sites:
        reference = fp64[outcome.site.name]
        assert outcome.induced == reference.induced, outcome.site.name
        if outcome.induced:
            a, b = outcome.analysis, reference.analysis
            assert abs(a.cycle_length_ms - b.cycle_length_ms) <= 0.005 * b.cycle_length_ms
            assert np.linalg.norm(np.subtract(a.exit_mm, b.exit_mm)) <= 1.0 + 1e-9
    assert len(mixed.vts) == len(ring_study.vts)
    # induction.json says which precision it ran in
    assert build_report(mixed, "0" * 64).precision == "mixed"
    assert build_report(ring_study, "0" * 64).precision == "fp64"


def test_a_precision_the_model_cannot_run_is_refused_before_calibrating(tmp_path, capsys):
    """Mixed precision below the time step its float32/float64 split was checked for: one
    line naming the key, before any calibration run is made."""
    from cardiotwin.meshing.io import write_mesh
    from cardiotwin.pipeline.cli import main

    mesh_path = write_mesh(ring(), tmp_path / "ring.vtu")
    cfg = tmp_path / "small_dt.yaml"
    cfg.write_text(f"simulation: {{dt_ms: 0.002}}\ntissue: {{cache_dir: {tmp_path / 'cache'}}}\n")
    argv = ["induce", "--mesh", str(mesh_path), "--config", str(cfg), "--precision", "mixed"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "simulation.precision: precision='mixed' with dt" in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_uniform_ring_is_not_inducible(tmp_path):
    # negative control: no border zone, no unidirectional block, nothing sustains
    study = run_induction(ring(with_border_zone=False), config(tmp_path), sites=["AHA-1", "AHA-3"])
    assert all(o.status == "ok" for o in study.sites)
    assert not any(o.induced for o in study.sites) and study.vts == []
    report = build_report(study, "0" * 64)
    assert not report.inducible and report.complete
    assert report.note.startswith("not inducible from any of the 2 sites")
    # the protocol went down to loss of capture and through S3: a real search, not a shortcut
    site = study.sites[0]
    assert len(site.stages) == 2 and len(site.trials) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("width", [1, 3])
def test_trials_start_from_states_kept_on_the_way_with_the_same_answers(
    tmp_path, monkeypatch, width
):
    from cardiotwin.pipeline.induction import runner, study

    # S3 trials start from the state of the S2 trial with the shortest capturing interval
    # where S3 can first come, and a trial of the downward search from its own onset (a
    # trial with a longer interval kept that state on its way), instead of from the S1
    # snapshot: every trial's record is the same, and fewer steps are simulated
    runs = {}
    for name, flag, ahead, cut in (
        ("unbroken", False, 0, False),  # every trial from the S1 snapshot to rest
        ("none", False, 0, True),
        ("next", True, 0, True),
        ("all", True, 3, True),
    ):
        monkeypatch.setattr(study, "BRANCH_FROM_PREFIX", flag)
        monkeypatch.setattr(study, "FINISH_IF_MISSED", cut)
        monkeypatch.setattr(runner, "ONSET_BRANCHES", ahead)
        settings = config(tmp_path, batch={"speculative_intervals": width})
        runs[name] = run_induction(ring(with_border_zone=False), settings, sites=["AHA-1"])
    site, plain = runs["all"].sites[0], runs["none"].sites[0]
    assert site.stages == plain.stages and len(site.stages) == 2

    def decisions(outcome):  # what the protocol read (speculative extras may differ)
        read = [t["coupling_intervals_ms"] for t in outcome.trials if t["read_by_protocol"]]
        stages = [
            (s["stimulus"], s["after_ms"], s["shortest_capturing_ms"]) for s in outcome.stages
        ]
        return stages, sorted(read), outcome.coupling_intervals_ms, outcome.induced

    assert decisions(site) == decisions(runs["unbroken"].sites[0])
    s2 = site.stages[1]["after_ms"][0]

    def by_intervals(outcome):
        return {tuple(t["coupling_intervals_ms"]): t for t in outcome.trials}

    assert by_intervals(site) == by_intervals(plain) == by_intervals(runs["next"].sites[0])
    # a trial whose extrastimulus clearly missed ended at its capture window's close; run on,
    # it came to rest later and said the same (not captured, not induced)
    missed = 0
    for key, unbroken in by_intervals(runs["unbroken"].sites[0]).items():
        trial = by_intervals(site).get(key)
        if trial is None:  # a speculative trial that one run proposed and the other not
            assert not unbroken["read_by_protocol"]
            continue
        assert unbroken["outcome"] == "quiescent"
        assert trial["captured"] == unbroken["captured"] and not trial["induced"]
        if trial["outcome"] == "missed":
            missed += 1
            assert trial["captured"][-1] is False
            assert trial["finished_ms"] <= unbroken["finished_ms"]
        else:
            assert trial == unbroken
    assert missed >= 1  # (test_beats.py: a miss long before rest)
    # every capture is decided (a refractory S2 is a miss, not None)
    assert all(c is not None for t in site.trials for c in t["captured"])
    s3_trials = [t for t in site.trials if len(t["coupling_intervals_ms"]) == 2]
    assert len(s3_trials) >= 2
    steps = {name: run.stats["member_steps"] for name, run in runs.items()}
    # each S3 trial skips the S2 interval (less the steps its batch idled, bounded by
    # compaction): at least 3/4 of it per S3 trial
    assert steps["none"] - steps["next"] >= 0.75 * len(s3_trials) * round(s2 / 0.1)
    # and trials started at their own onset skip the time from the earliest one (one at a
    # time; side by side, the trials to start from a kept state depend on which ends first)
    assert steps["all"] < steps["next"] if width == 1 else steps["all"] <= steps["next"]


@pytest.mark.slow
def test_the_upward_search_starts_each_trial_near_its_own_extrastimulus(tmp_path, monkeypatch):
    from cardiotwin.pipeline.induction import runner, study

    # S2 and S3 first at 90 ms, inside the refractory period: each stage searches upwards.
    # A run of the prefix alone keeps the state at the next intervals' onsets, so that their
    # trials do not simulate the time from the earliest onset again; same decisions
    runs = {}
    for name, flag, ahead in (("unbroken", False, 0), ("plain", True, 0), ("upward", True, 3)):
        monkeypatch.setattr(study, "BRANCH_FROM_PREFIX", flag)
        monkeypatch.setattr(study, "FINISH_IF_MISSED", flag)
        monkeypatch.setattr(runner, "ONSET_BRANCHES", ahead)
        settings = config(
            tmp_path,
            pes={"first_coupling_ms": 90, "min_coupling_ms": 90},
            batch={"speculative_intervals": 1},
        )
        runs[name] = run_induction(ring(with_border_zone=False), settings, sites=["AHA-1"])
    site = runs["upward"].sites[0]
    stages = [(s["after_ms"], s["tested_ms"], s["shortest_capturing_ms"]) for s in site.stages]
    for other in ("unbroken", "plain"):
        theirs = runs[other].sites[0].stages
        assert stages == [
            (s["after_ms"], s["tested_ms"], s["shortest_capturing_ms"]) for s in theirs
        ]
    assert len(stages) == 2 and all(len(tested) >= 3 for _, tested, _ in stages)
    records = {tuple(t["coupling_intervals_ms"]): t for t in site.trials}
    for trial in runs["plain"].sites[0].trials:
        assert records[tuple(trial["coupling_intervals_ms"])] == trial
    steps = {name: run.stats["member_steps"] for name, run in runs.items()}
    assert steps["upward"] < steps["plain"] < steps["unbroken"]


def test_an_upward_search_resumed_from_a_journal_runs_one_prefix_run_at_a_time(
    tmp_path, monkeypatch
):
    import glob
    import os
    import shutil

    from cardiotwin.pipeline.induction import study

    # replayed results arrive all at once; each used to start a run of the prefix alone,
    # all of them side by side. And the first such run used to keep states for intervals
    # that the journal then answered
    settings = config(
        tmp_path, pes={"first_coupling_ms": 90, "min_coupling_ms": 90},
        batch={"speculative_intervals": 1},
    )  # fmt: skip
    journal = tmp_path / "journal"
    whole = run_induction(ring(with_border_zone=False), settings, sites=["AHA-1"], journal=journal)
    files = sorted(glob.glob(str(journal / "*" / "*.pkl")), key=os.path.getmtime)
    assert len(files) > 8
    for name in files[6:]:  # killed after six trials
        os.remove(name)
    kept = tmp_path / "kept"
    shutil.copytree(journal, kept)
    steps = {}
    for skip in (False, True):
        monkeypatch.setattr(study, "SKIP_ON_RECORD", skip)
        shutil.rmtree(journal, ignore_errors=True)
        shutil.copytree(kept, journal)
        resumed = run_induction(
            ring(with_border_zone=False), settings, sites=["AHA-1"], journal=journal
        )
        assert resumed.sites[0].trials == whole.sites[0].trials
        assert max(resumed.stats["batch_sizes"]) <= 2  # a trial and one run of its prefix
        steps[skip] = resumed.stats["member_steps"]
    # the run of the prefix alone skips the intervals on record: it goes no further than
    # the search's next intervals that are not, and the trials it serves start there
    assert steps[True] < steps[False]


def test_protocol_decisions_do_not_depend_on_speculation():
    # a site whose S2 captures down to 110 ms and induces with S3 at 120 ms: read in the
    # order a cardiologist tries them, whether trials ran one by one or side by side
    timing = PESTiming(
        s1_onsets=(0,),
        snapshot_step=90,
        couplings=(130, 120, 110, 100, 90),
        extrastimuli=3,
        duration=2,
    )

    def outcome(couplings):
        captured = couplings[-1] >= (110 if len(couplings) == 1 else 100)
        induced = len(couplings) == 2 and couplings[-1] == 120
        return captured, induced

    decisions = []
    for width in (1, 2, 5):
        site = PESSite(timing)
        queue = site.propose(width)
        while queue:
            trial = queue.pop()  # the most speculative first: out of order
            site.record(trial, *outcome(trial))
            queue.extend(site.propose(width))
        decisions.append((site.induced_by, [s.shortest_capturing for s in site.stages]))
    assert decisions[0] == decisions[1] == decisions[2] == ((110, 120), [110, 120])


@pytest.mark.parametrize("width", [1, 3])
def test_a_failed_trial_fails_the_site_only_if_the_protocol_reads_it(width):
    timing = PESTiming(
        s1_onsets=(0,), snapshot_step=90, couplings=(130, 120, 110), extrastimuli=1, duration=2
    )
    # S2 at 130 induces; 120 (speculative when run side by side) blows up and ends first
    site = PESSite(timing)
    proposed = site.propose(width)
    if (120,) in proposed:
        site.record((120,), False, False, diverged=True)
    site.record((130,), True, True)
    assert site.induced_by == (130,) and site.failed_at is None
    assert site.read == {(130,)}  # 120 decided nothing
    # S2 at 130 captures without inducing, so 120 is needed: its failure fails the site
    site = PESSite(timing)
    queue = site.propose(width)
    outcomes = {(130,): dict(captured=True, induced=False), (120,): dict(diverged=True)}
    while queue and not site.done:
        trial = queue.pop(0)
        site.record(trial, **{"captured": False, "induced": False, **outcomes.get(trial, {})})
        queue.extend(site.propose(width))
    assert site.done and site.failed_at == (120,) and site.induced_by is None
    assert (120,) in site.read and (110,) not in site.read


def test_rapid_pacing_onsets_follow_the_configured_ramp(tmp_path):
    # Boyle et al. 2019: 12 stimuli, two at each of 300, 280, ... 200 ms
    onsets = rapid_pacing_onsets(config(tmp_path).induction, 0.1)
    intervals = np.diff(onsets) * 0.1
    assert len(onsets) == 12
    np.testing.assert_allclose(intervals, [300, 300, 280, 280, 260, 260, 240, 240, 220, 220, 200])


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("pes", {"min_coupling_ms": 1.0}, r"induction\.pes\.min_coupling_ms \(1 ms\).*overlap"),
        ("pes", {"s1_cycle_length_ms": 200.03}, "not a whole number of time steps"),
        ("stimulus", {"duration_ms": 3.0}, None),
    ],
)
def test_protocols_that_cannot_run_name_the_key(tmp_path, section, values, message):
    induction = config(tmp_path, **{section: values}).induction
    if message is None:
        validate(induction, "ventricle", 0.1)
        return
    with pytest.raises(ProtocolError, match=message):
        validate(induction, "ventricle", 0.1)


def test_sites_that_cannot_be_paced_are_labelled_not_silent(tmp_path):
    mesh = ring()
    # a site inside the core (scar), and one whose stimulus is too weak to capture
    core = np.nonzero(np.hypot(*mesh.points_mm[:, :2].T) < 5.0)[0]
    mesh.node_sets["AHA-4"] = core
    settings = config(
        tmp_path,
        pes={"s1_count": 1, "extrastimuli": 1, "first_coupling_ms": 100, "min_coupling_ms": 100},
    )
    study = run_induction(mesh, settings, sites=["AHA-3", "AHA-4"])
    status = {o.site.name: o.status for o in study.sites}
    assert status["AHA-4"].startswith("not paced: inside non-conducting tissue")
    assert status["AHA-3"] == "ok"
    report = build_report(study, "0" * 64)
    assert not report.inducible and not report.complete
    assert "AHA-4: not paced" in report.note
    # too weak even at 4 x (1 -> 2 -> 4 µA/µF): labelled with the strength tried last;
    # 5 µA/µF fails but twice that captures (measured on this ring: 10 captures, 5 does not)
    short = {"s1_count": 2, "extrastimuli": 1, "first_coupling_ms": 100, "min_coupling_ms": 100}
    weak = config(tmp_path, stimulus={"strength_ua_per_uf": 1.0}, pes=short)
    study = run_induction(mesh, weak, sites=["AHA-3"])
    assert study.sites[0].status == "S1 did not capture (stimuli [1, 2] of 2, at 4 µA/µF)"
    raised = config(tmp_path, stimulus={"strength_ua_per_uf": 5.0}, pes=short)
    study = run_induction(mesh, raised, sites=["AHA-3"])
    assert study.sites[0].s1_captured and study.sites[0].stimulus_strength_ua_per_uf == 10.0
    # S1 captured, but no S2 did, from 100 ms up to the S1 cycle length (this short train
    # leaves the ring refractory): the site's answer is unknown, not "non-inducible"
    assert study.sites[0].status.startswith("no extrastimulus captured (S2 at 100-190 ms")
    assert not build_report(study, "0" * 64).complete
    with pytest.raises(InductionError, match="no pacing site can be paced.*AHA-4"):
        run_induction(mesh, settings, sites=["AHA-4"])
    with pytest.raises(InductionError, match="AHA-9 not in the mesh.*AHA-1, AHA-2, AHA-3"):
        run_induction(mesh, settings, sites=["AHA-9"])


def test_a_trial_that_blows_up_is_reported_and_the_others_kept(tmp_path):
    # one site's stimulus is absurdly strong: its S1 train diverges, the other site is paced
    mesh = ring()
    settings = config(
        tmp_path,
        pes={"s1_count": 1, "extrastimuli": 1, "first_coupling_ms": 100, "min_coupling_ms": 100},
    )
    from cardiotwin.pipeline.induction.runner import TrialRunner

    original = TrialRunner._stimuli

    def boosted(self, members, clock):
        stimuli = original(self, members, clock)
        for s in stimuli:
            if s.nodes is mesh.node_sets["AHA-1"]:
                object.__setattr__(s, "strength_ua_per_uf", 1e9)
        return stimuli

    TrialRunner._stimuli = boosted
    try:
        study = run_induction(mesh, settings, sites=["AHA-1", "AHA-3"])
    finally:
        TrialRunner._stimuli = original
    status = {o.site.name: o.status for o in study.sites}
    assert status["AHA-1"].startswith("S1 train: simulation diverged at t = ")
    assert "mm): V = " in status["AHA-1"]
    assert status["AHA-3"] == "ok" and study.sites[1].trials


def test_outside_the_ring_everything_is_scar(tmp_path):
    # sanity of the test mesh: tissue only in the annulus
    mesh = ring()
    keep = mesh.region != 3
    r = np.hypot(*mesh.element_centres_mm()[keep][:, :2].T)
    assert r.min() >= R_IN_MM - 1.0 and r.max() <= R_OUT_MM + 1.0


# --- the batch machinery ------------------------------------------------------------------


def _runner(tmp_path, max_members, compact_fraction=0.5):
    return ring_runner(tmp_path, max_members, compact_fraction)


def _trials(runner):
    from cardiotwin.pipeline.induction.runner import Trial

    # S1 at 0 and 200 ms; member-specific S2 (site, coupling in steps of 0.1 ms)
    plans = [(0, 1300), (1, 1500), (2, 1200), (0, 1700)]
    return [
        Trial(
            key=k,
            site=site,
            start=runner.initial,
            start_step=0,
            onsets=(0, 2000, 2000 + s2),
            watch=(0, 2000, 2000 + s2),
            quiet_after=2000 + s2 + 20,
            stop=2000 + s2 + 3000,
        )
        for k, (site, s2) in enumerate(plans)
    ]


def test_a_batch_of_trials_equals_the_trials_run_one_by_one(tmp_path):
    # with compaction (finished members dropped, running ones carried into a new batch
    # with new trials beside them at another time offset) every member's record equals its
    # single run to 1e-12 ms
    batched = _runner(tmp_path, max_members=3, compact_fraction=0.3)
    single = _runner(tmp_path, max_members=1)
    a = {r.trial.key: r for r in batched.run(_trials(batched))}
    b = {r.trial.key: r for r in single.run(_trials(single))}
    assert batched.stats.generations > 2 and max(batched.stats.batch_sizes) == 3
    assert sorted(a) == sorted(b) == [0, 1, 2, 3]
    for key in a:
        assert a[key].outcome == b[key].outcome and a[key].captured == b[key].captured
        assert a[key].finished_ms == pytest.approx(b[key].finished_ms, abs=1e-9)
        np.testing.assert_allclose(a[key].beats_ms, b[key].beats_ms, rtol=0, atol=1e-12)
        assert np.isfinite(a[key].beats_ms).any()


def test_a_trial_branched_from_the_s1_snapshot_equals_an_unbroken_run(tmp_path):
    from cardiotwin.pipeline.induction.runner import Trial

    runner = _runner(tmp_path, max_members=4)
    s1 = Trial(
        key="s1",
        site=0,
        start=runner.initial,
        start_step=0,
        onsets=(0, 2000),
        watch=(),
        quiet_after=None,
        stop=2900,
        keep_final=True,
    )
    (prefix,) = runner.run([s1])
    branched = Trial(
        key="b",
        site=0,
        start=prefix.final,
        start_step=2900,
        onsets=(3300,),
        watch=(),
        quiet_after=None,
        stop=6000,
        keep_final=True,
    )
    unbroken = Trial(
        key="u",
        site=0,
        start=runner.initial,
        start_step=0,
        onsets=(0, 2000, 3300),
        watch=(),
        quiet_after=None,
        stop=6000,
        keep_final=True,
    )
    results = {r.trial.key: r for r in runner.run([branched, unbroken])}
    # the state bit for bit; activation times to the rounding of the batch's time offset
    np.testing.assert_array_equal(results["b"].final.state, results["u"].final.state)

    def after(beats):
        return np.sort(np.where(beats > 290.0, beats, np.inf), axis=1)[:, :3]

    np.testing.assert_allclose(
        after(results["b"].beats_ms), after(results["u"].beats_ms), rtol=0, atol=1e-12
    )
    assert np.isfinite(after(results["b"].beats_ms)).sum() > results["b"].beats_ms.shape[0]


def test_a_trial_started_from_another_trials_branch_equals_an_unbroken_run(tmp_path):
    from cardiotwin.pipeline.induction.runner import Trial

    # states kept on the way by an S2 trial: at the onset of a shorter S2 (before its own
    # stimulus) and where an S3 can first come (after it). Trials started there (beats and
    # captures carried over) against the same stimuli from the start; the S2 trial itself
    # must not change by keeping them
    runner = _runner(tmp_path, max_members=6)
    s2, s3 = (0, 2000, 3300), (0, 2000, 3300, 4500)  # steps of 0.1 ms, site AHA-3
    s2_short = (0, 2000, 3200)

    def trial(key, onsets, **kwargs):
        kwargs = {"start": runner.initial, "start_step": 0, **kwargs}
        end = onsets[-1]
        return Trial(key, 2, onsets=onsets, watch=onsets, quiet_after=end + 20, stop=end + 3000,
                     **kwargs)  # fmt: skip

    first = {
        r.trial.key: r
        for r in runner.run(
            [
                trial("s2", s2, branch_at=(3200, 4200)),
                trial("plain", s2),
                trial("u", s3),
                trial("u_short", s2_short),
            ]
        )
    }
    prefix = first["s2"]
    assert [b.step for b in prefix.branches] == [3200, 4200]
    assert first["plain"].branches == () and first["u"].branches == ()
    assert prefix.captured == first["plain"].captured == [True, True, True]
    np.testing.assert_array_equal(prefix.beats_ms, first["plain"].beats_ms)
    assert prefix.finished_ms == first["plain"].finished_ms

    def derived(key, onsets, origin):
        return trial(
            key, onsets, start=origin.snapshot, start_step=origin.step, start_record=origin.record
        )

    at_onset, after = prefix.branches
    steps_before = runner.stats.member_steps
    (alone,) = runner.run([derived("d", s3, after)])
    # it simulated only from the branch on
    assert runner.stats.member_steps - steps_before == round(alone.finished_ms / 0.1) - 4200
    # beside a trial started at step 0 they run at other time offsets in the batch
    beside = {
        r.trial.key: r
        for r in runner.run(
            [derived("d", s3, after), derived("d_short", s2_short, at_onset), trial("p", s2)]
        )
    }
    for result, unbroken in (
        (alone, first["u"]),
        (beside["d"], first["u"]),
        (beside["d_short"], first["u_short"]),
    ):
        assert result.captured == unbroken.captured and result.captured[-1] is True
        assert result.outcome == unbroken.outcome == "quiescent"
        assert result.finished_ms == pytest.approx(unbroken.finished_ms, abs=1e-9)
        # every beat, those before the start (carried in the record) and after
        np.testing.assert_allclose(result.beats_ms, unbroken.beats_ms, rtol=0, atol=1e-9)
        assert (np.isfinite(result.beats_ms).sum(axis=1) >= 3).mean() > 0.9


def test_the_batch_size_follows_the_memory_budget(tmp_path):
    from cardiotwin.pipeline.induction.runner import bytes_per_node_member

    # Mitchell-Schaeffer: 2 states; explicit lumped diffusion; a ring of 12 beats
    per_node = bytes_per_node_member(2, "explicit", "lumped", 12)
    assert per_node == 8 * 2 + 8 + 4 + 8 + (8 + 1 + 96 + 4 + 8)
    runner = _runner(tmp_path, max_members=None)
    n = runner.base.n_nodes
    small = config(tmp_path, batch={"memory_gb": 3.5 * per_node * n / 1e9})
    from cardiotwin.pipeline.induction.runner import TrialRunner

    fitted = TrialRunner(
        runner.mesh, runner.tissue, small.simulation, small.induction, runner.sites
    )
    assert fitted.max_members == 3


def test_batching_defaults_follow_the_backend_and_explicit_settings_win(tmp_path):
    from cardiotwin.pipeline.config import BatchConfig

    # auto: one interval per site and compaction at every finished trial on the CPU (where
    # speculation measured 0.86-1.0x and eager compaction 1.35x site by site), 3 and 0.5 on
    # a GPU; a number in the config is taken as it is
    assert BatchConfig().for_backend("cpu") == (1, 0.01)
    assert BatchConfig().for_backend("cuda") == (3, 0.5)
    assert BatchConfig(speculative_intervals=2, compact_fraction=0.3).for_backend("cuda") == (
        2,
        0.3,
    )
    for bad in ({"speculative_intervals": 0}, {"compact_fraction": 1.5}, {"compact_fraction": 0}):
        with pytest.raises(ValueError):
            BatchConfig(**bad)
    from cardiotwin.pipeline.induction.runner import TrialRunner

    runner = _runner(tmp_path, max_members=2)
    auto = config(tmp_path, batch={"speculative_intervals": "auto"})
    cpu = TrialRunner(runner.mesh, runner.tissue, auto.simulation, auto.induction, runner.sites)
    assert (cpu.speculative_intervals, cpu.compact_fraction) == (1, 0.01)
    assert (runner.speculative_intervals, runner.compact_fraction) == (3, 0.5)


# --- command line and report file ---------------------------------------------------------


def test_report_schema_file_is_generated_from_the_model():
    import json

    from cardiotwin.pipeline.risk import SCHEMA_PATH, report_schema

    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(report_schema()))


@pytest.mark.slow
def test_cardiotwin_induce_writes_the_report_and_vt_maps(tmp_path, capsys):
    import json

    import yaml

    from cardiotwin.meshing.io import read_mesh, write_mesh
    from cardiotwin.pipeline.cli import main

    mesh_path = write_mesh(ring(), tmp_path / "ring.vtu")
    settings = config(tmp_path / "cache", pes={"first_coupling_ms": 120, "min_coupling_ms": 120})
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    out = tmp_path / "out"
    rc = main(
        [
            "induce",
            "--mesh",
            str(mesh_path),
            "--config",
            str(config_path),
            "--out",
            str(out),
            "--sites",
            "AHA-1,AHA-3",
            "--no-progress",
        ]
    )
    assert rc == 0
    data = json.loads((out / "induction.json").read_text())
    assert data["inducible"] and [s["name"] for s in data["sites"]] == ["AHA-1", "AHA-3"]
    assert data["mesh_fingerprint"] == read_mesh(mesh_path).fingerprint()
    assert str(tmp_path) not in (out / "induction.json").read_text()  # no input path leaks
    vt = read_mesh(out / data["unique_vts"][0]["activation_map"])
    keep = settings.induction.detection.keep_beats
    assert f"beat_{keep:02d}_ms" in vt.point_data and f"beat_{keep + 1:02d}_ms" not in vt.point_data
    activation = vt.point_data["activation_ms"]
    assert np.nanmax(activation) <= data["unique_vts"][0]["cycle_length_ms"] + 1e-6
    assert np.isnan(activation[vt.tets[vt.region == 3].ravel()]).any()  # no tissue in scar
    assert "inducible from 1 of 2 paced sites" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "cuda"], "no usable CUDA device"),
        (["--config", "{bad}"], "unknown key 'induction.pes.s1_cout'"),
        (["--mesh", "{missing}"], "cannot read the mesh: mesh file"),
        (["--sites", "AHA-7"], "AHA-7 not in the mesh"),
    ],
)
def test_cardiotwin_induce_bad_input_is_one_line(tmp_path, capsys, args, message):
    from cardiotwin.meshing.io import write_mesh
    from cardiotwin.pipeline.cli import main
    from cardiotwin.solvers.stepping import cuda_usable

    if "cuda" in args and cuda_usable():
        pytest.skip("a CUDA device is present")
    mesh_path = write_mesh(ring(), tmp_path / "ring.vtu")
    bad = tmp_path / "bad.yaml"
    bad.write_text("induction:\n  pes:\n    s1_cout: 3\n")
    args = [a.format(bad=bad, missing=tmp_path / "nope.vtu") for a in args]
    base = {"--mesh": str(mesh_path), "--out": str(tmp_path / "out")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    argv = ["induce"] + [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_cardiotwin_induce_without_a_vtu_writer_refuses_before_simulating(
    tmp_path, capsys, monkeypatch
):
    """Neither pyvista (VTK) nor meshio: the VT maps could not be written at the end, so the
    study is refused up front, not after hours of simulation."""
    import cardiotwin.meshing.io as io
    from cardiotwin.pipeline.cli import main

    mesh_path = io.write_mesh(ring(), tmp_path / "ring.elem")  # readable without either
    real_find_spec = io.importlib.util.find_spec
    monkeypatch.setattr(io, "_pyvista", lambda: None)
    monkeypatch.setattr(
        io.importlib.util, "find_spec", lambda n: None if n == "meshio" else real_find_spec(n)
    )
    started = []
    monkeypatch.setattr("cardiotwin.pipeline.induction.run_induction", lambda *a, **k: started)
    assert main(["induce", "--mesh", str(mesh_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs pyvista (VTK) or meshio" in err, err
    assert not (tmp_path / "out").exists()


def _as_atrium(base):
    """The ring's fast tissue declared as an atrium (tag 2 as fibrosis)."""
    ventricle = base.tissue.ventricle.model_dump()
    ventricle["regions"]["fibrosis"] = ventricle["regions"].pop("border_zone")
    return base.tissue.model_copy(update={"atrium": base.tissue.atrium.model_validate(ventricle)})


@pytest.mark.parametrize("chamber", ["ventricle", "atrium"])
def test_each_chamber_times_activation_at_its_own_level(tmp_path, monkeypatch, chamber):
    # both chambers default to -40 / -60 mV (remodelled atrial cells and premature beats in
    # the border zone peak below 0 mV: test_tissue.py, test_fast_tissue.py); a study must
    # hand its own chamber's levels to the beat monitor, told apart here by setting them apart
    from cardiotwin.pipeline.induction import runner

    mesh = ring()
    if chamber == "atrium":
        mesh.node_sets = {"LA-01": mesh.node_sets["AHA-1"]}
    base = config(tmp_path)
    settings = base.model_copy(update={"tissue": _as_atrium(base)})
    detection = settings.induction.detection.model_copy(
        update={"threshold_mv": -30.0, "rearm_mv": -55.0}
    )
    settings = settings.model_copy(
        update={"induction": settings.induction.model_copy(update={"detection": detection})}
    )
    seen = {}

    class Stop(Exception):
        pass

    def monitor(*args, threshold_mv, rearm_mv, **kwargs):
        seen.update(threshold_mv=threshold_mv, rearm_mv=rearm_mv)
        raise Stop

    monkeypatch.setattr(runner, "TrialMonitor", monitor)
    with pytest.raises(Stop):
        run_induction(mesh, settings, sites=["LA-01" if chamber == "atrium" else "AHA-1"])
    expected = (-40.0, -60.0) if chamber == "atrium" else (-30.0, -55.0)
    assert (seen["threshold_mv"], seen["rearm_mv"]) == expected


@pytest.mark.slow
def test_atrial_rapid_pacing_finds_the_driver_next_to_the_fibrotic_arc(tmp_path):
    # the ring as an "atrium": fibrotic arc (tag 2) with longer refractoriness; the burst from
    # beside the arc's end leaves a sustained circuit, the burst from the far side does not
    mesh = ring()
    mesh.node_sets = {"LA-01": mesh.node_sets["AHA-1"], "LA-02": mesh.node_sets["AHA-3"]}
    # the ring's inner edge named as an opening, and one in the scar outside it that no
    # tissue reaches: the driver circles the first (macro-re-entry, DESIGN §7)
    radius = np.hypot(*mesh.points_mm[:, :2].T)
    inner = np.nonzero(np.abs(radius - R_IN_MM) < 0.6)[0]
    mesh.surfaces["mitral"] = np.stack([inner] * 3, axis=1)
    mesh.surfaces["vein-1"] = np.stack([np.nonzero(radius < 3.0)[0]] * 3, axis=1)
    base = config(tmp_path)
    settings = base.model_copy(
        update={
            "tissue": _as_atrium(base),
            "induction": base.induction.model_copy(
                update={
                    "rapid_pacing": base.induction.rapid_pacing.model_validate(
                        {
                            "first_cycle_length_ms": 140,
                            "last_cycle_length_ms": 100,
                            "cycle_length_step_ms": 10,
                            "prepace_cycle_length_ms": 200,
                        }
                    ),
                    "detection": base.induction.detection.model_copy(
                        update={"atrial_sustained_after_ms": 600.0, "opening_loop_mm": (1.0, 2.5)}
                    ),
                }
            ),
        }
    )
    study = run_induction(mesh, settings)
    assert study.chamber == "atrium" and study.protocol == "rapid_pacing"
    by_name = {o.site.name: o for o in study.sites}
    assert by_name["LA-01"].induced and not by_name["LA-02"].induced
    assert len(study.vts) == 1
    # 10 stimuli: 2 at each of 140 ... 100 ms, as configured (a burst down to 110 ms does
    # not induce here: the block in the arc needs a cycle shorter than its refractoriness)
    intervals = by_name["LA-02"].coupling_intervals_ms
    assert intervals == [140.0, 140.0, 130.0, 130.0, 120.0, 120.0, 110.0, 110.0, 100.0]
    report = build_report(study, "0" * 64)
    assert report.protocol == "rapid_pacing" and report.sites_inducing == 1
    driver = report.unique_vts[0]
    assert driver.macro_reentry_around == ["mitral"], driver.opening_winding
    assert set(driver.opening_winding) == {"mitral"}  # vein-1 has no tissue round it


# --- detection on synthetic activation maps -------------------------------------------------


def _rotor_geometry():
    from cardiotwin.meshing.mesh import box_mesh
    from cardiotwin.pipeline.induction.detection import Geometry

    mesh = box_mesh((20.0, 20.0, 1.0), 1.0, origin_mm=(-10.0, -10.0, 0.0))

    class Problem:
        tets, points_mm, n_nodes = mesh.tets, mesh.points_mm, mesh.n_points
        tissue_nodes = np.arange(mesh.n_points)

    class Tissue:
        node_region = np.zeros(mesh.n_points, dtype=int)
        region_names = ["healthy"]
        mean_edge_mm = 1.0

    return Geometry.of(Problem, Tissue)


@pytest.mark.parametrize("turn", [1, -1])
def test_a_rotor_has_one_phase_singularity_with_its_sense_of_rotation(turn):
    from cardiotwin.pipeline.induction.detection import phase_singularities

    # a wave turning about (2.3, -3.4) mm (between nodes): activation time grows with the
    # polar angle (turn = +1: counter-clockwise seen from +z), 200 ms a turn, 6 turns kept
    geometry = _rotor_geometry()
    x = geometry.points_mm
    theta = np.mod(turn * np.arctan2(x[:, 1] + 3.4, x[:, 0] - 2.3), 2 * np.pi)
    cl = 200.0
    beats = (theta / (2 * np.pi) * cl)[:, None] + cl * np.arange(6)[None, :]
    found = phase_singularities(beats, 800.0, 1000.0, geometry)
    # top (+z) and bottom (−z) faces both show it: seen from outside, opposite senses
    assert len(found) == 2, found
    for ps in found:
        assert np.hypot(ps["position_mm"][0] - 2.3, ps["position_mm"][1] + 3.4) < 1.0
        seen_from_top = ps["position_mm"][2] > 0.5
        assert ps["chirality"] == (turn if seen_from_top else -turn)
    # a plane wave has none
    plane = (x[:, 0] / 0.5)[:, None] + cl * np.arange(6)[None, :]
    assert phase_singularities(plane, 800.0, 1000.0, geometry) == []


@pytest.mark.parametrize("end_fraction", [0.1, 0.5, 0.9])
def test_a_rotor_is_found_wherever_the_run_ends_in_its_cycle(end_fraction):
    # beats recorded up to the run's end only: the nodes the wave just passed have no next
    # beat on record, so the phase must be sampled over a cycle that is wholly observed
    from cardiotwin.pipeline.induction.detection import phase_singularities, phase_window

    geometry = _rotor_geometry()
    x = geometry.points_mm
    theta = np.mod(np.arctan2(x[:, 1] + 3.4, x[:, 0] - 2.3), 2 * np.pi)
    cl = 200.0
    end = 2000.0 + end_fraction * cl
    beats = (theta / (2 * np.pi) * cl)[:, None] + cl * np.arange(20)[None, :]
    beats = np.where(beats < end, beats, np.nan)
    found = phase_singularities(beats, *phase_window(end, cl), geometry)
    assert len(found) == 2, found
    assert all(ps["samples"] == 8 for ps in found), found


@pytest.mark.parametrize(("silent_ms", "induced"), [(0.0, True), (15.0, True), (25.0, False)])
def test_a_wave_that_stopped_before_the_end_is_not_sustained(silent_ms, induced):
    # a rotor turning until `silent_ms` before the observation ends. On this 1 mm mesh one
    # mean edge at 0.05 m/s is 20 ms: a live circuit's front is always somewhere, so some
    # node activates within that of the end; silent longer, the wave has died and the tissue
    # is only repolarising (on the lv-infarct phantom such waves were silent 53-161 ms)
    from cardiotwin.pipeline.config import DetectionConfig
    from cardiotwin.pipeline.induction.detection import analyse_trial

    geometry = _rotor_geometry()
    x = geometry.points_mm
    theta = np.mod(np.arctan2(x[:, 1] + 3.4, x[:, 0] - 2.3), 2 * np.pi)
    cl, last_onset, end = 200.0, 500.0, 2500.0
    beats = (theta / (2 * np.pi) * cl)[:, None] + 400.0 + cl * np.arange(12)[None, :]
    beats = np.where(beats < end - silent_ms, beats, np.nan)
    config = DetectionConfig()
    result = analyse_trial(beats, last_onset, end, False, geometry, config, 2000.0)
    assert result.induced == induced, result.reason
    if induced:
        assert abs(result.cycle_length_ms - cl) < 1.0
    else:
        assert result.reason.startswith("the wave had stopped")


def test_unique_vts_same_circuit_at_another_time_counts_once():
    from cardiotwin.pipeline.config import DetectionConfig
    from cardiotwin.pipeline.induction.detection import TrialAnalysis, cluster_vts

    rng = np.random.default_rng(0)
    n, cl = 500, 300.0
    order = rng.uniform(0, cl, n)

    def vt(shift, sense=1, exit_mm=(0.0, 0.0, 0.0), cycle=cl):
        activation = np.mod(sense * order + shift, cycle)
        return TrialAnalysis(
            True, "", cycle, True, 3, activation_ms=activation, exit_mm=list(exit_mm)
        )

    config = DetectionConfig()
    vts = cluster_vts(
        [
            ("AHA-1", [290.0], vt(0.0)),
            ("AHA-2", [280.0], vt(70.0)),  # the same circuit, caught at another phase
            ("AHA-3", [300.0], vt(0.0, sense=-1)),  # the same path the other way round
            ("AHA-4", [270.0], vt(0.0, exit_mm=(25.0, 0.0, 0.0))),  # exit 25 mm away
            ("AHA-5", [260.0], vt(0.0, cycle=400.0)),  # 33 % slower
        ],
        config,
    )
    assert [sorted(s for s, _ in v.trials) for v in vts] == [
        ["AHA-1", "AHA-2"],
        ["AHA-3"],
        ["AHA-4"],
        ["AHA-5"],
    ]


def test_a_first_interval_that_does_not_capture_makes_the_search_go_up():
    # S2 captures from 320 ms on (the refractory period is longer than the first interval,
    # 300 ms): the protocol lengthens the S2 in 10 ms steps to the shortest that captures,
    # then adds S3 after it; S3 captures down to 250 ms and never induces
    timing = PESTiming(
        s1_onsets=(0,),
        snapshot_step=200,
        couplings=(300, 290, 280, 270, 260, 250, 240),
        extrastimuli=2,
        duration=2,
        longer=(310, 320, 330, 340),
    )

    def outcome(couplings):
        captured = couplings[-1] >= (320 if len(couplings) == 1 else 250)
        return captured, False

    for width in (1, 3):
        site = PESSite(timing)
        queue = site.propose(width)
        while queue:
            trial = queue.pop(0)
            site.record(trial, *outcome(trial))
            queue.extend(site.propose(width))
        assert [s.shortest_capturing for s in site.stages] == [320, 250]
        assert site.done and site.induced_by is None
        assert site.final_couplings() == (320, 250)
        assert 340 not in site.stages[0].tested or width > 1  # no need to go past 320


def test_the_capture_probe_falls_back_to_the_nearest_node_beyond_the_site():
    from cardiotwin.pipeline.induction.sites import PacingSite, probe_nodes

    site = PacingSite("X", np.array([0]), np.zeros(3), 0, 1.0)
    # nothing in the shell (and its widenings); beyond it, a far node listed first
    points = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [25.0, 0.0, 0.0], [60.0, 0, 0]])
    assert probe_nodes(site, points, (1.0, 2.0)).tolist() == [2]
