"""A journal of finished trials, so a killed induction study resumes where it stopped.

Every trial the runner finishes is written to the journal folder at once (one file per
trial, atomically). A study started again with the same journal folder, mesh, tissue,
numerics, protocol, sites and backend takes each trial it would run from the journal instead
of simulating it; the protocol replays the same decisions, so the answer is the one an
uninterrupted run gives (trials are deterministic: a batch member does not depend on the
other members, see ``tests/solvers/test_checkpoint.py``).

Layout: ``<folder>/<set-up fingerprint>/<trial hash>.pkl`` and a marker file,
``<folder>/CARDIOTWIN_TRIAL_JOURNAL``. A journal of another set-up (a changed configuration or
mesh) is removed when a study opens the folder: it can never be reused. The command removes
the journal once its outputs are written. Only a folder that is new, empty or marked is used,
and only set-up folders and the marker are ever deleted: a folder of the user's given as the
journal by mistake is refused, never emptied.

The files are Python pickles written by this program for itself: do not open a journal
folder from a source you do not trust.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

from cardiotwin.files import write_atomic

log = logging.getLogger(__name__)

#: bump when the pickled :class:`TrialResult` layout changes
JOURNAL_FORMAT = 1

#: the file that marks a folder as a trial journal
MARKER = "CARDIOTWIN_TRIAL_JOURNAL"


class JournalError(ValueError):
    """A journal folder that cannot be used (it holds something that is not a journal)."""


def _setup_folders(root: Path) -> list[Path]:
    """The set-up folders of a journal: 32 hexadecimal digits, nothing else."""
    hexdigits = set("0123456789abcdef")
    return [
        p for p in root.iterdir() if p.is_dir() and len(p.name) == 32 and set(p.name) <= hexdigits
    ]


def remove_journal(folder: str | Path) -> None:
    """Delete a journal: its set-up folders and its marker, then the folder if that left it
    empty. A folder without the marker is not a journal and is left alone."""
    root = Path(folder)
    if not (root / MARKER).is_file():
        return
    for setup in _setup_folders(root):
        shutil.rmtree(setup, ignore_errors=True)
    (root / MARKER).unlink(missing_ok=True)
    try:
        root.rmdir()
    except OSError:
        log.info("journal: %s kept (it holds other files)", root)


def _trial_hash(key: tuple, strength_ua_per_uf: float) -> str:
    text = repr((JOURNAL_FORMAT, key, round(float(strength_ua_per_uf), 9)))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class TrialJournal:
    """Finished trials of one study set-up (``fingerprint``) in ``folder``."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.root = Path(folder)
        self.folder = self.root / fingerprint[:32]
        marker = self.root / MARKER
        if self.root.exists() and not self.root.is_dir():
            raise JournalError(f"the journal {self.root} is a file; give a folder")
        if self.root.is_dir() and not marker.is_file() and any(self.root.iterdir()):
            raise JournalError(
                f"the journal folder {self.root} holds files and is not a trial journal (no "
                f"{MARKER} in it); give a new or empty folder. Nothing in it was changed."
            )
        if self.root.is_dir():
            for other in _setup_folders(self.root):
                if other != self.folder:
                    log.info("journal: removing %s (another set-up)", other.name)
                    shutil.rmtree(other, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker.write_text("finished trials of cardiotwin induction studies (safe to delete)\n")
        self.reused = 0
        self.written = 0
        for partial in self.folder.glob(".*.tmp.pkl"):  # a write a kill cut short
            partial.unlink(missing_ok=True)
        found = len(list(self.folder.glob("[!.]*.pkl")))
        if found:
            log.info("journal: resuming, %d finished trial(s) on record", found)

    def _path(self, key: tuple, strength: float) -> Path:
        return self.folder / f"{_trial_hash(key, strength)}.pkl"

    def has(self, key: tuple, strength_ua_per_uf: float) -> bool:
        """Whether a trial with ``key`` at this strength is on record (its file is there; a
        damaged one is found out only by :meth:`get`)."""
        return self._path(key, strength_ua_per_uf).is_file()

    def get(self, trial, strength_ua_per_uf: float):
        """The recorded result of ``trial`` at this strength (its ``trial`` set to the one
        given), or None. A damaged entry is dropped and the trial runs again."""
        path = self._path(trial.key, strength_ua_per_uf)
        if not path.is_file():
            return None
        try:
            with path.open("rb") as stream:
                key, result = pickle.load(stream)
        except Exception as exc:  # a damaged file: run the trial again
            log.warning("journal: %s unreadable (%s); running that trial again", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        if key != trial.key:  # a hash collision: never reuse another trial's result
            return None
        # journals written by 0330c77 (2026-12-05) kept one state as ``branch``
        legacy = result.__dict__.pop("branch", None)
        if legacy is not None:
            result = replace(result, branches=(legacy,))
        self.reused += 1
        return replace(result, trial=trial)

    def put(self, result, strength_ua_per_uf: float) -> None:
        """Record a finished trial (its starting state is not kept: the key names it). Of its
        branch states (:attr:`TrialResult.branches`) only those after its last stimulus are
        kept, and only when that stimulus captured (a later stage may start from them); the
        ones before it are the state of its prefix, a speed-up for trials that follow it in
        the same run, not worth their size on disk."""
        trial = result.trial
        captured = bool(result.captured) and result.captured[-1] is True
        last = max(trial.onsets, default=-1)
        stripped = replace(
            result,
            trial=replace(trial, start=None, start_record=None),
            branches=tuple(b for b in result.branches if captured and b.step > last),
        )
        payload = pickle.dumps((trial.key, stripped), protocol=pickle.HIGHEST_PROTOCOL)
        path = self._path(trial.key, strength_ua_per_uf)
        write_atomic(path, lambda p: Path(p).write_bytes(payload))
        self.written += 1

    def remove(self) -> None:
        """Delete the whole journal (the study's outputs are written): :func:`remove_journal`."""
        remove_journal(self.root)
