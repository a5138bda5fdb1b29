"""Beats of a pacing trial: per-beat activation times, capture of each stimulus, quiescence.

:class:`TrialMonitor` is the tracker a pacing protocol runs its batch of trials with. Per node
and batch member it keeps the last ``keep`` activation times (upward crossings of
``threshold_mv``, interpolated in time: a ring buffer, so re-entry cycles are kept beat by
beat, not only the first and last). Per member (:class:`MemberWatch`) it checks, every
``interval_ms``:

- **capture** of each listed stimulus: did the wave leave the pacing site? The stimulus
  captured when at least ``capture_fraction`` of the member's probe nodes (a shell around
  the site, chosen by the caller) activated between its onset and ``capture_window_ms``
  later (decided when the window closes, or when the member comes to rest before that: at
  rest no probe node will activate any more);
- **quiescence**: after ``quiet_after_ms`` (the end of the member's last stimulus), the member
  is at rest once V < ``quiet_mv`` at every node (no depolarised tissue: no wave exists, and
  the models here have no automaticity, so none will appear). The member is then finished;
- **end of observation**: at ``stop_at_ms`` the member is finished whatever it does;
- **a missed last stimulus** (``finish_if_missed``): when the capture window of the member's
  last watched stimulus closes with not one probe node activated since its onset, the member
  is finished (``MISSED``): no wave left the site, so the rest of the trial is the run
  without that stimulus (a protocol that has run that already asks for this). A probe that
  activated in part (below ``capture_fraction``) is not captured either, but the trial runs
  on: only a clean miss is cut short.

An activation counts only when the node's V has fallen below ``rearm_mv`` since its last
counted one (hysteresis: Mitchell–Schaeffer's plateau decays through 0 mV slowly, and a
premature stimulus during it would otherwise count as a beat).

A finished member stops recording (its results are frozen at that time, though the batch
still steps it); when at least ``stop_fraction`` of the members are finished the run stops
(:class:`~cardiotwin.solvers.stepping.StopSimulation`), so that the caller can compact the
batch and go on with the rest. Host work per check is O(B) plus the few probe nodes whose
capture window just closed; the per-step work is one node kernel
(:func:`~cardiotwin.solvers.backends.node_rules.beat_activation_at`).

Times are the stepper's (ms); node indices are tissue nodes (the problem's numbering).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cardiotwin.solvers.backends import node_rules
from cardiotwin.solvers.stepping import StopSimulation
from cardiotwin.solvers.trackers import Tracker, continues_on

#: outcome codes of a member (``TrialMonitor.outcome``)
RUNNING, QUIESCENT, OBSERVED, MISSED = 0, 1, 2, 3
OUTCOMES = {RUNNING: "running", QUIESCENT: "quiescent", OBSERVED: "observed", MISSED: "missed"}


@dataclass(frozen=True)
class MemberWatch:
    """What :class:`TrialMonitor` checks for one batch member (times in the stepper's ms)."""

    stimulus_onsets_ms: Sequence[float] = ()  # stimuli whose capture is checked
    probe_nodes: np.ndarray | None = None  # tissue nodes of the capture probe
    quiet_after_ms: float = np.inf  # quiescence ends the trial from this time on
    stop_at_ms: float = np.inf  # the member is finished at this time
    #: the last watched stimulus, once its window closed with no probe node activated at
    #: all, ends the trial (outcome ``MISSED``)
    finish_if_missed: bool = False


def ordered_beats(times_ms: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Chronological activation times from a ring buffer: ``times_ms`` (n, keep) and
    ``count`` (n,) → (n, keep), oldest first, NaN-padded in front where fewer were kept."""
    n, keep = times_ms.shape
    count = np.asarray(count, dtype=np.int64)
    slot = (count[:, None] - keep + np.arange(keep)[None, :]) % keep
    out = np.take_along_axis(times_ms, slot, axis=1)
    out[(count[:, None] - keep + np.arange(keep)[None, :]) < 0] = np.nan
    return out


class TrialMonitor(Tracker):
    """Per-beat activation times, stimulus capture and quiescence of a batch of trials.

    ``watches``: one :class:`MemberWatch` per batch member (``None``: record beats only).
    Results (host copies): :meth:`beats` (N, keep) per member, :attr:`count` and
    :attr:`last_ms` (N, B), :attr:`outcome` (B,) (``RUNNING``, ``QUIESCENT``, ``OBSERVED``),
    :attr:`finished_ms` (B,), :attr:`captured` (list per member of True/False/None per
    watched stimulus; None: not checked yet).
    """

    updates_every_step = True

    def __init__(
        self,
        watches: Sequence[MemberWatch] | None = None,
        *,
        keep: int = 8,
        threshold_mv: float = 0.0,
        rearm_mv: float = -40.0,
        quiet_mv: float = -50.0,
        capture_window_ms: float = 50.0,
        capture_fraction: float = 0.5,
        interval_ms: float = 5.0,
        stop_fraction: float = 1.0,
        records: Sequence[dict | None] | None = None,
    ) -> None:
        if int(keep) != keep or keep < 1:
            raise ValueError(f"keep must be a positive number of beats, got {keep}")
        if not 0 < stop_fraction <= 1:
            raise ValueError(f"stop_fraction must lie in (0, 1], got {stop_fraction}")
        if not 0 < capture_fraction <= 1:
            raise ValueError(f"capture_fraction must lie in (0, 1], got {capture_fraction}")
        self.watches = None if watches is None else list(watches)
        self.keep = int(keep)
        self.threshold_mv = float(threshold_mv)
        self.rearm_mv = float(rearm_mv)
        if not self.rearm_mv < self.threshold_mv:
            raise ValueError(
                f"rearm_mv ({rearm_mv} mV) must lie below the activation threshold "
                f"({threshold_mv} mV)"
            )
        self.quiet_mv = float(quiet_mv)
        self.capture_window_ms = float(capture_window_ms)
        self.capture_fraction = float(capture_fraction)
        self.interval_ms = float(interval_ms)
        self.stop_fraction = float(stop_fraction)
        self.records = None if records is None else list(records)
        self._shape = None
        self._ops = None

    # --- tracker protocol ---------------------------------------------------------------

    def start(self, sim) -> None:
        ops = sim.ops
        n, b = sim.n_nodes, sim.batch_size
        if self.watches is not None and len(self.watches) != b:
            raise ValueError(f"TrialMonitor got {len(self.watches)} watches for {b} members")
        v0 = ops.to_host(sim.voltage).reshape(-1)
        if continues_on(self, sim):  # a further run of the same stepper
            self._v_prev = ops.asarray(v0)
            return
        self._ops, self._shape = ops, (n, b)
        host = {
            "v_prev": v0.reshape(n, b).copy(),
            # a node below the threshold may be on an upstroke (a run started mid-wave from
            # a snapshot): armed, so that activation counts as in the unbroken run
            "armed": (v0 < self.threshold_mv).astype(np.int8).reshape(n, b),
            "times_ms": np.full((n, b, self.keep), np.nan),
            "count": np.zeros((n, b), dtype=np.int32),
            "last_ms": np.full((n, b), np.nan),
        }
        self.outcome = np.zeros(b, dtype=np.int8)
        self.finished_ms = np.full(b, np.nan)
        carried = {}
        if self.records is not None:
            if len(self.records) != b:
                raise ValueError(f"TrialMonitor got {len(self.records)} records for {b} members")
            for m, record in enumerate(self.records):
                if record is None:
                    continue
                for name in host:
                    host[name][:, m] = record[name]
                carried[m] = record
        self._v_prev = ops.asarray(host["v_prev"].reshape(-1))
        self._armed = ops.asarray(host["armed"].reshape(-1), dtype=np.int8)
        self._times = ops.asarray(host["times_ms"].reshape(-1))
        self._count = ops.asarray(host["count"].reshape(-1), dtype=np.int32)
        self._last = ops.asarray(host["last_ms"].reshape(-1))
        self._recording_host = np.ones(b, dtype=np.int8)
        self._recording = ops.asarray(self._recording_host, dtype=np.int8)
        watches = self.watches or [MemberWatch() for _ in range(b)]
        self._onsets = [np.asarray(w.stimulus_onsets_ms, dtype=np.float64) for w in watches]
        self.captured = [[None] * len(o) for o in self._onsets]
        for m, record in carried.items():
            # a record from a trial with fewer watched stimuli (one this member branched
            # from, its stimuli a prefix of this one's): the stimuli after them are unchecked
            captured = list(record["captured"])
            if len(captured) > len(self.captured[m]):
                raise ValueError(
                    f"member {m}: the record has {len(captured)} captures, the watch "
                    f"{len(self.captured[m])} stimuli"
                )
            self.captured[m][: len(captured)] = captured
        self._probes = [
            np.zeros(0, np.int64) if w.probe_nodes is None else np.asarray(w.probe_nodes, np.int64)
            for w in watches
        ]
        for m, (probe, onsets) in enumerate(zip(self._probes, self._onsets, strict=True)):
            if onsets.size and probe.size == 0:
                raise ValueError(f"member {m}: capture checks need probe nodes")
        self._quiet_after = np.array([w.quiet_after_ms for w in watches], dtype=np.float64)
        self._finish_if_missed = np.array([w.finish_if_missed for w in watches], dtype=bool)
        self._missed = np.zeros(b, dtype=bool)
        self._stop_at = np.array([w.stop_at_ms for w in watches], dtype=np.float64)
        self._beat_kernel = ops.node_kernel(node_rules.beat_activation_at)
        self._gather = ops.node_kernel(node_rules.gather_at)

    def update(self, sim) -> None:
        self._beat_kernel(
            self._v_prev.size, self._v_prev, sim.voltage.reshape(-1), sim.t_ms - sim.dt_ms,
            sim.dt_ms, self.threshold_mv, self.rearm_mv, self._armed, self._recording,
            self._shape[1], self.keep,
            self._times, self._count, self._last,
        )  # fmt: skip

    def handle(self, sim) -> None:
        t = sim.t_ms
        self._check_captures(t)
        running = self.outcome == RUNNING
        if not running.any():
            return self._maybe_stop(t)
        newly = running & self._missed
        self.outcome[newly] = MISSED
        running &= ~newly
        due_quiet = running & (t >= self._quiet_after)
        if due_quiet.any():
            v_max = self._ops.member_max(sim.voltage, self._shape[1])
            quiet = due_quiet & (v_max < self.quiet_mv)
            self.outcome[quiet] = QUIESCENT
            newly |= quiet
            if quiet.any():  # at rest no probe node activates any more: captures are final
                self._check_captures(t, settled=quiet)
        observed = (self.outcome == RUNNING) & (t >= self._stop_at - 1e-9)
        self.outcome[observed] = OBSERVED
        newly |= observed
        if newly.any():
            self.finished_ms[newly] = t
            self._recording_host[newly] = 0
            self._ops.copy(self._ops.asarray(self._recording_host, dtype=np.int8), self._recording)
        self._maybe_stop(t)

    def _maybe_stop(self, t: float) -> None:
        finished = np.count_nonzero(self.outcome != RUNNING)
        if finished >= self.stop_fraction * self.outcome.size - 1e-9:
            total = self.outcome.size
            raise StopSimulation(f"{finished} of {total} trials finished (t = {t:g} ms)")

    def _check_captures(self, t: float, settled: np.ndarray | None = None) -> None:
        """Decide the captures whose window has closed by ``t``; for ``settled`` members
        (at rest) also those of stimuli delivered whose window is still open."""
        b = self._shape[1]
        pending = []
        for m, onsets in enumerate(self._onsets):
            closes = t if settled is not None and settled[m] else t - self.capture_window_ms
            for j, onset in enumerate(onsets):
                if self.captured[m][j] is None and onset <= closes + 1e-9:
                    pending.append((m, j, onset))
        if not pending:
            return
        members = sorted({m for m, _, _ in pending})
        index = np.concatenate([self._probes[m] * b + m for m in members])
        out = self._ops.zeros(index.size)
        self._gather(index.size, self._last, self._ops.asarray(index, dtype=np.int64), out)
        last = self._ops.to_host(out)
        offsets = np.cumsum([0] + [self._probes[m].size for m in members])
        where = {m: last[offsets[i] : offsets[i + 1]] for i, m in enumerate(members)}
        for m, j, onset in pending:
            activated = np.mean(where[m] >= onset - 1e-9)  # NaN (never) compares False
            self.captured[m][j] = bool(activated >= self.capture_fraction)
            if activated == 0 and j == len(self._onsets[m]) - 1 and self._finish_if_missed[m]:
                self._missed[m] = True

    # --- results ------------------------------------------------------------------------

    @property
    def count(self) -> np.ndarray:
        """(N, B) number of activations recorded."""
        return self._ops.to_host(self._count).reshape(self._shape)

    @property
    def last_ms(self) -> np.ndarray:
        """(N, B) latest activation time, ms (NaN: none)."""
        return self._ops.to_host(self._last).reshape(self._shape)

    def all_beats(self) -> np.ndarray:
        """(N, B, keep) chronological activation times (oldest first, NaN-padded)."""
        n, b = self._shape
        times = self._ops.to_host(self._times).reshape(n * b, self.keep)
        count = self._ops.to_host(self._count)
        return ordered_beats(times, count).reshape(n, b, self.keep)

    def beats(self, member: int) -> np.ndarray:
        """(N, keep) chronological activation times of one member (oldest first)."""
        return self.all_beats()[:, member, :]

    def member_records(self, members: Sequence[int]) -> list[dict]:
        """Host records of the given members (per-node arrays (N,) / (N, keep), the captures
        so far) to carry them into a monitor of a rebuilt batch (``records=``)."""
        n, b = self._shape
        ops = self._ops
        nodes = np.arange(n, dtype=np.int64) * b
        slots = np.arange(self.keep, dtype=np.int64)

        def pick(array, index, shape):  # only these values cross to the host
            out = ops.empty(index.size, dtype=array.dtype)
            self._gather(index.size, array, ops.asarray(index, dtype=np.int64), out)
            return ops.to_host(out).reshape(shape)

        records = []
        for m in members:
            flat = nodes + m
            records.append(
                {
                    "v_prev": pick(self._v_prev, flat, n),
                    "armed": pick(self._armed, flat, n),
                    "times_ms": pick(
                        self._times, (flat[:, None] * self.keep + slots).reshape(-1), (n, self.keep)
                    ),
                    "count": pick(self._count, flat, n),
                    "last_ms": pick(self._last, flat, n),
                    "captured": list(self.captured[m]),
                }
            )
        return records

    # --- checkpoints --------------------------------------------------------------------

    def state_dict(self):
        if self._ops is None:
            return {}
        ops = self._ops
        width = max((len(row) for row in self.captured), default=0)
        captured = np.full((len(self.captured), width), np.nan)
        for m, row in enumerate(self.captured):
            captured[m, : len(row)] = [np.nan if c is None else float(c) for c in row]
        return {
            "v_prev": ops.to_host(self._v_prev),
            "armed": ops.to_host(self._armed),
            "times_ms": ops.to_host(self._times),
            "count": ops.to_host(self._count),
            "last_ms": ops.to_host(self._last),
            "outcome": self.outcome.copy(),
            "finished_ms": self.finished_ms.copy(),
            "captured": captured,
        }

    def load_state_dict(self, data) -> None:
        ops = self._ops
        for name, buffer in (("v_prev", self._v_prev), ("armed", self._armed),
                             ("times_ms", self._times),
                             ("count", self._count), ("last_ms", self._last)):  # fmt: skip
            ops.copy(ops.asarray(np.asarray(data[name], dtype=buffer.dtype)), buffer)
        self.outcome[...] = data["outcome"]
        self.finished_ms[...] = data["finished_ms"]
        self._recording_host[...] = (self.outcome == RUNNING).astype(np.int8)
        ops.copy(ops.asarray(self._recording_host, dtype=np.int8), self._recording)
        captured = np.asarray(data["captured"])
        for m, row in enumerate(self.captured):
            for j in range(len(row)):
                value = captured[m, j]
                row[j] = None if np.isnan(value) else bool(value)
