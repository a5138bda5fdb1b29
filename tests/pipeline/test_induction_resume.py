"""A killed induction study resumes from its journal and gives the uninterrupted answer.

The study runs as a user's process would (``python -m cardiotwin.pipeline induce``) on the
ring of induction_cases.py, two trials per batch so trials finish one generation after
another; it is killed with SIGKILL once some trials are on record, then started again.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from induction_cases import config, ring

from cardiotwin.meshing.io import read_mesh, write_mesh
from cardiotwin.pipeline.provenance import file_sha256

pytestmark = [pytest.mark.slow]

#: what legitimately differs between two runs of one study (time taken, how the batches
#: were cut): everything else must be equal
RUN_SPECIFIC = {"wall_s", "batch", "provenance"}


def _command(mesh, settings, out, journal=None) -> list[str]:
    argv = [sys.executable, "-m", "cardiotwin.pipeline", "induce", "--mesh", str(mesh),
            "--config", str(settings), "--out", str(out), "--sites", "AHA-1,AHA-3",
            "--no-progress"]  # fmt: skip
    return argv + (["--journal", str(journal)] if journal else [])


def _answer(out: Path) -> dict:
    data = json.loads((out / "induction.json").read_text())
    return {k: v for k, v in data.items() if k not in RUN_SPECIFIC}


def test_a_study_killed_mid_run_resumes_with_the_same_answer(tmp_path):
    mesh_path = write_mesh(ring(), tmp_path / "ring.vtu")
    settings = config(tmp_path / "cache", batch={"max_members": 2})
    settings_path = tmp_path / "config.yaml"
    settings_path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    whole = tmp_path / "uninterrupted"
    subprocess.run(_command(mesh_path, settings_path, whole), check=True, env=env, timeout=900)
    assert not (whole / ".journal").exists()  # removed once the answer is written

    out, journal = tmp_path / "killed", tmp_path / "journal"
    process = subprocess.Popen(_command(mesh_path, settings_path, out, journal), env=env)
    deadline = time.monotonic() + 600
    recorded = []
    while time.monotonic() < deadline and process.poll() is None:
        recorded = list(journal.glob("*/[!.]*.pkl"))
        if len(recorded) >= 4:  # the S1 trains and a couple of extrastimulus trials
            break
        time.sleep(0.05)
    assert process.poll() is None, "the study ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "induction.json").exists()  # nothing half-written
    out.mkdir(exist_ok=True)
    (out / "vt-9.vtu").write_text("a VT map an earlier run in this folder left")
    on_record = len(list(journal.glob("*/[!.]*.pkl")))
    assert on_record >= 4

    resumed = subprocess.run(
        _command(mesh_path, settings_path, out, journal),
        env=env,
        timeout=900,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming, {on_record} finished trial(s) on record" in resumed.stderr
    assert not journal.exists()
    assert not (out / "vt-9.vtu").exists()  # not this answer's: removed once it is written

    data = json.loads((out / "induction.json").read_text())
    assert data["batch"]["trials_from_journal"] == on_record  # provenance: it resumed
    # the stage's provenance block, as the other stages': the mesh by content, the backend
    provenance = data["provenance"]
    assert provenance["stage"] == "induction" and provenance["config_sha256"] == data["config_hash"]
    assert provenance["inputs_sha256"]["mesh"] == file_sha256(mesh_path)
    assert provenance["backend"]["used"] == data["backend"] == "cpu"
    assert "numpy" in provenance["libraries"] and str(tmp_path) not in json.dumps(provenance)
    answer = _answer(out)
    assert answer == _answer(whole)
    assert answer["inducible"]  # the ring's designed circuit (test_induction.py)
    for vt in answer["unique_vts"]:
        a = read_mesh(out / vt["activation_map"]).point_data["activation_ms"]
        b = read_mesh(whole / vt["activation_map"]).point_data["activation_ms"]
        # equal to rounding of the time offsets (a trial's local ms = batch clock + offset,
        # and the batches are cut differently on resume): 1e-9 ms
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
        assert np.array_equal(np.isnan(a), np.isnan(b))


def test_a_journal_of_another_set_up_is_never_reused(tmp_path, caplog):
    from cardiotwin.pipeline.induction import run_induction

    mesh, journal = ring(), tmp_path / "journal"

    def study(min_coupling_ms):
        settings = config(
            tmp_path / "cache", pes={"first_coupling_ms": 120, "min_coupling_ms": min_coupling_ms}
        )
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="cardiotwin.pipeline.induction.journal"):
            result = run_induction(mesh, settings, sites=["AHA-1"], journal=journal)
        folders = [p.name for p in journal.iterdir() if p.is_dir()]
        return result, folders, caplog.text

    first, folders_first, log_first = study(120)
    assert "resuming" not in log_first and len(folders_first) == 1
    on_record = len(list(journal.glob("*/[!.]*.pkl")))
    # the same set-up again: every trial comes from the journal, the same answer
    again, folders_again, log_again = study(120)
    assert f"resuming, {on_record} finished trial(s)" in log_again
    assert folders_again == folders_first
    assert again.sites[0].trials == first.sites[0].trials
    assert again.sites[0].induced == first.sites[0].induced
    # another shortest coupling is another set-up: the old journal goes, nothing is reused
    _, folders_other, log_other = study(110)
    assert "resuming" not in log_other
    assert len(folders_other) == 1 and folders_other != folders_first


def test_a_folder_that_is_not_a_journal_is_refused_and_left_as_it_was(tmp_path):
    from cardiotwin.pipeline.induction.journal import JournalError, TrialJournal, remove_journal

    # the user's own folder, given as --journal by mistake: refused, nothing deleted
    mine = tmp_path / "patients"
    (mine / "meshes").mkdir(parents=True)
    (mine / "meshes" / "heart.vtu").write_text("precious")
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(JournalError, match="not a trial journal"):
        TrialJournal(mine, "f" * 64)
    remove_journal(mine)  # not a journal: left alone
    assert (mine / "meshes" / "heart.vtu").read_text() == "precious"
    assert (mine / "notes.txt").read_text() == "mine"
    # a journal's own folder is used and reused; removing it removes only what it made
    journal = tmp_path / "journal"
    TrialJournal(journal, "a" * 64)
    TrialJournal(journal, "b" * 64)  # another set-up replaces the first
    assert sorted(p.name for p in journal.iterdir() if p.is_dir()) == ["b" * 32]
    (journal / "kept.txt").write_text("a file someone put there")
    remove_journal(journal)
    assert sorted(p.name for p in journal.iterdir()) == ["kept.txt"]


def test_a_trial_write_cut_short_by_a_kill_is_neither_counted_nor_kept(tmp_path, caplog):
    from cardiotwin.pipeline.induction.journal import TrialJournal

    journal = TrialJournal(tmp_path / "journal", "c" * 64)
    (journal.folder / ("0" * 24 + ".pkl")).write_bytes(b"a finished trial")
    partial = journal.folder / (".0123.a1b2c3.tmp.pkl")  # files.write_atomic's temporary name
    partial.write_bytes(b"half")
    with caplog.at_level(logging.INFO, logger="cardiotwin.pipeline.induction.journal"):
        TrialJournal(tmp_path / "journal", "c" * 64)
    assert "resuming, 1 finished trial(s)" in caplog.text and not partial.exists()


def test_the_journal_keeps_a_captured_trials_states_after_its_stimulus_only(tmp_path):
    import pickle

    from cardiotwin.pipeline.induction.journal import TrialJournal, _trial_hash
    from cardiotwin.pipeline.induction.runner import Branch, Trial, TrialResult

    journal = TrialJournal(tmp_path / "journal", "d" * 64)
    before, after = Branch(90, "state at 90", {}), Branch(150, "state at 150", {})

    def result(key, captured, branches):
        trial = Trial(key, 0, "start", 0, onsets=(100,), watch=(100,), quiet_after=102,
                      stop=500, start_record={"v_prev": 1}, branch_at=(90, 150))  # fmt: skip
        return TrialResult(trial, "quiescent", 400.0, [captured], None, branches=branches)

    for key, captured in (("hit", True), ("miss", False)):
        journal.put(result(key, captured, (before, after)), 50.0)
    hit = journal.get(result("hit", True, ()).trial, 50.0)
    miss = journal.get(result("miss", False, ()).trial, 50.0)
    # the state before its stimulus is its prefix's (a speed-up within a run, large on disk);
    # after it, only a captured trial's can start a later stage
    assert [b.step for b in hit.branches] == [150] and miss.branches == ()
    # journals written by 0330c77 kept one state as ``branch``: read as a one-state tuple
    old = result("old", True, ())
    del old.__dict__["branches"]  # pickled as that version did
    old.__dict__["branch"] = after
    path = journal.folder / f"{_trial_hash('old', 50.0)}.pkl"
    path.write_bytes(pickle.dumps(("old", old)))
    assert [b.step for b in journal.get(old.trial, 50.0).branches] == [150]
