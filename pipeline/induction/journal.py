"""A journal of finished trials, so a killed induction study resumes where it stopped.

Every trial the runner finishes is written to the journal folder at once (one file per
trial, atomically). A study started again with the same journal folder, mesh, tissue,
numerics, protocol, sites and backend takes each trial it would run from the journal instead
of simulating it; the protocol replays the same decisions, so the answer is the one an
uninterrupted run gives (trials are deterministic: a batch member does not depend on the
other members, see ``tests/solvers/test_checkpoint.py``).

Layout: ``<folder>/<set-up fingerprint>/<trial hash>.pkl``. A journal of another set-up (a
changed configuration or mesh) is removed when a study opens the folder: it can never be
reused. The command removes the journal once its outputs are written.

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


def _trial_hash(key: tuple, strength_ua_per_uf: float) -> str:
    text = repr((JOURNAL_FORMAT, key, round(float(strength_ua_per_uf), 9)))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class TrialJournal:
    """Finished trials of one study set-up (``fingerprint``) in ``folder``."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.root = Path(folder)
        self.folder = self.root / fingerprint[:32]
        if self.root.is_dir():
            for other in self.root.iterdir():
                if other.is_dir() and other != self.folder:
                    log.info("journal: removing %s (another set-up)", other.name)
                    shutil.rmtree(other, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.reused = 0
        self.written = 0
        found = len(list(self.folder.glob("*.pkl")))
        if found:
            log.info("journal: resuming, %d finished trial(s) on record", found)

    def _path(self, key: tuple, strength: float) -> Path:
        return self.folder / f"{_trial_hash(key, strength)}.pkl"

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
        self.reused += 1
        return replace(result, trial=trial)

    def put(self, result, strength_ua_per_uf: float) -> None:
        """Record a finished trial (its starting state is not kept: the key names it)."""
        trial = result.trial
        stripped = replace(result, trial=replace(trial, start=None))
        payload = pickle.dumps((trial.key, stripped), protocol=pickle.HIGHEST_PROTOCOL)
        path = self._path(trial.key, strength_ua_per_uf)
        write_atomic(path, lambda p: Path(p).write_bytes(payload))
        self.written += 1

    def remove(self) -> None:
        """Delete the whole journal (the study's outputs are written)."""
        shutil.rmtree(self.root, ignore_errors=True)
