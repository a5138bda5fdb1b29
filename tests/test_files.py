"""cardiotwin.files: all or nothing, and on the disk before the name says complete."""

import os
from pathlib import Path

import pytest

from cardiotwin import files


def test_outputs_appear_together_or_not_at_all(tmp_path):
    def broken(path):
        raise RuntimeError("disk full")

    targets = {tmp_path / "new" / "a.json": lambda p: Path(p).write_text("a"),
               tmp_path / "new" / "b.json": broken}  # fmt: skip
    with pytest.raises(RuntimeError):
        files.write_all_or_nothing(targets)
    assert not (tmp_path / "new").exists()  # no half output, no empty folder
    (tmp_path / "old.json").write_text("old")
    files.write_text_atomic(tmp_path / "old.json", "new")
    assert (tmp_path / "old.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["old.json"]  # no temporary left


def test_each_file_and_its_folder_are_synced_before_and_after_the_rename(tmp_path, monkeypatch):
    # renamed into place unsynced, a file can be empty after a power cut under a final name
    events = []
    replace, fsync = os.replace, os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(
        f"/proc/self/fd/{fd}"))) or fsync(fd))  # fmt: skip
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b)))
                        or replace(a, b))  # fmt: skip
    target = tmp_path / "out" / "result.json"
    files.write_json_atomic({"x": 1}, target)
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1].endswith(".tmp.json") and events[1][1] == str(target)
    assert events[2][1] == str(target.parent)


def test_two_outputs_naming_one_file_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / ".." / "labels.nii.gz"
    targets = {tmp_path / "labels.nii.gz": lambda p: Path(p).write_text("labels"),
               same: lambda p: Path(p).write_text("json")}  # fmt: skip
    with pytest.raises(ValueError, match="same file"):
        files.write_all_or_nothing(targets)
    assert not (tmp_path / "labels.nii.gz").exists()


def test_a_file_where_a_folder_must_be_is_named_and_nothing_is_left(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="results is a file, not a folder"):
        files.write_json_atomic({"x": 1}, tmp_path / "results" / "induction.json")
    assert (tmp_path / "results").read_text() == "not a folder"


def test_a_failing_clean_up_does_not_hide_the_error(tmp_path, monkeypatch):
    def broken(path):
        raise RuntimeError("disk full")

    def unlink(self, missing_ok=False):
        raise PermissionError("read-only")

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(RuntimeError, match="disk full"):
        files.write_all_or_nothing({tmp_path / "a.json": broken})
