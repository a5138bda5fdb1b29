"""Trials as members of the engine's batch: branched from snapshots, refilled, compacted.

A :class:`Trial` is one pacing run of one site: the snapshot it starts from (e.g. the site's
state after its S1 train), the stimuli it adds, and when it ends (at rest after its last
stimulus, or after a fixed observation time). :class:`TrialRunner` runs any number of trials
as members of one :class:`~cardiotwin.solvers.monodomain.MonodomainProblem` batch (one SpMM
and one cell-kernel launch per step for all of them), with a
:class:`~cardiotwin.solvers.beats.TrialMonitor` recording per-beat activation times, capture
and quiescence.

Members need not start together: each keeps an integer time offset (local time = batch
clock + offset, in steps), so a batch is refilled with fresh trials while others run on. The
models are autonomous (no explicit time dependence besides the stimuli, which are placed at
their local times), so a member's trajectory is the same as in a run of its own (the batch
equals single runs to ~1e-13 ms in activation times and exactly in state; tested). When
``compact_fraction`` of the members have finished, the batch is rebuilt from the running
members' snapshots and records plus new trials, so finished members stop costing. A member
that blows up (:class:`~cardiotwin.solvers.trackers.NanGuard`) while running is reported
``diverged``; one that had already finished keeps its result, and the batch is rebuilt then.

A trial may ask for its state at steps on its way (``branch_at``): as the batch passes such a
step, that member's state and monitor record are copied to the host (only that member's:
the batch does not stop) and returned as :class:`Branch` objects with its result. A trial
started from a branch, with the record carried over, gives what an unbroken run of its
stimuli gives (tested): the PES starts S3 trials from their S2 trial's state this way.

Memory: :func:`bytes_per_node_member` counts what one member needs per node (state,
stimulus, diffusion work arrays, the monitor's ring of activation times); the batch size is
the largest that fits ``batch.memory_gb`` (default: half the free GPU or host memory).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.pipeline.induction.sites import PacingSite
from cardiotwin.pipeline.tissue import Tissue
from cardiotwin.solvers.beats import OUTCOMES, RUNNING, MemberWatch, TrialMonitor
from cardiotwin.solvers.checkpoint import (
    Snapshot,
    branch,
    reuse_discretisation,
    snapshot_identity,
    take_snapshot,
)
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import NanGuard, SimulationDiverged, Tracker

if TYPE_CHECKING:  # the configuration model (pydantic) is not needed to run
    from cardiotwin.pipeline.config import InductionConfig, SimulationConfig

log = logging.getLogger(__name__)

#: batch size limit when memory would allow more (host work per check grows with B)
MAX_MEMBERS = 256

#: PES: a trial (downward search) or a run of the prefix alone (upward search) keeps the
#: state at the onsets of this many of the search's next intervals
#: (``TrialRunner.onset_branches``). Each costs one member's state and monitor
#: record copied to the host as the batch passes that step (the batch does not stop), and
#: host memory while it waits: ~(8·n_states + 8·keep_beats + 21) bytes per tissue node
ONSET_BRANCHES = 3


@dataclass(frozen=True, eq=False)
class Branch:
    """A trial's state at a chosen local step, to start other trials from: one member's
    snapshot and the trial monitor's record then (activation times in local ms), so that a
    trial started from it carries on exactly as an unbroken run of its stimuli would."""

    step: int  # local step
    snapshot: Snapshot
    record: dict


@dataclass(frozen=True, eq=False)
class Trial:
    """One pacing run of one site (times in local steps of dt)."""

    key: tuple  # what the protocol calls it, e.g. ("AHA-3", (290,))
    site: int  # index into the runner's sites
    start: Snapshot  # one member
    start_step: int  # the snapshot's local time
    onsets: tuple[int, ...]  # stimuli this trial applies (at its site)
    watch: tuple[int, ...]  # onsets whose capture is checked
    quiet_after: int | None  # from this step, rest ends the trial (None: never)
    stop: int  # the trial ends here at the latest
    keep_final: bool = False  # return the state at the end (the trial must end at ``stop``)
    #: the monitor's record at ``start`` (a trial started from a :class:`Branch`; times in
    #: local ms): the beats and captures so far carry on; None: a fresh record
    start_record: dict | None = None
    #: keep the state at these local steps in the result (:attr:`TrialResult.branches`),
    #: for trials that share this one's stimuli up to there
    branch_at: tuple[int, ...] = ()
    #: end the trial (outcome ``missed``) when its last watched stimulus clearly did not
    #: capture (:class:`~cardiotwin.solvers.beats.MemberWatch`)
    finish_if_missed: bool = False
    #: taken from and written to the runner's journal (a resumed study)
    journal: bool = True


@dataclass
class TrialResult:
    """What a trial did: outcome ``quiescent`` / ``observed`` / ``missed`` / ``diverged``,
    when it finished (local ms), capture of each watched stimulus, per-beat activation times
    (N, keep) in local ms (tissue nodes), the final state when asked for, an error message
    when it diverged."""

    trial: Trial
    outcome: str
    finished_ms: float
    captured: list
    beats_ms: np.ndarray | None
    final: Snapshot | None = None
    error: str = ""
    node_steps: int = 0
    #: the states at ``trial.branch_at`` that the trial got to, in time order
    branches: tuple[Branch, ...] = ()


@dataclass
class _Member:
    trial: Trial
    snapshot: Snapshot
    record: dict | None
    offset: int  # local step = clock step + offset
    branches: tuple[Branch, ...] = ()

    def branches_due(self, clock: int) -> list[int]:
        """The trial's branch steps not taken yet, as batch clock steps after ``clock``."""
        taken = {b.step for b in self.branches}
        return [
            s - self.offset
            for s in self.trial.branch_at
            if s not in taken and s - self.offset > clock
        ]


@dataclass
class RunStats:
    """Work done: batch generations, member-steps, node-steps and wall time of stepping."""

    generations: int = 0
    member_steps: int = 0
    idle_member_steps: int = 0  # steps of members already finished (before compaction)
    node_steps: int = 0
    wall_s: float = 0.0
    batch_sizes: list = field(default_factory=list)

    @property
    def node_steps_per_s(self) -> float:
        return self.node_steps / self.wall_s if self.wall_s > 0 else 0.0


def bytes_per_node_member(n_states: int, diffusion: str, mass: str, keep: int) -> int:
    """Bytes per tissue node per batch member on the device: state (8·n_states), stimulus
    current (8), parameter-set index (4), diffusion work arrays (explicit lumped: 1 array;
    CG schemes: 7), trial monitor (previous V, armed flag, ``keep`` activation times, count,
    latest time)."""
    diffusion_arrays = 1 if (diffusion == "explicit" and mass == "lumped") else 7
    monitor = 8 + 1 + 8 * keep + 4 + 8
    return 8 * n_states + 8 + 4 + 8 * diffusion_arrays + monitor


def _shift_record(record: dict | None, ms: float) -> dict | None:
    """A monitor record with its activation times moved by ``ms`` (batch clock <-> local)."""
    if record is None:
        return None
    return {**record, "times_ms": record["times_ms"] + ms, "last_ms": record["last_ms"] + ms}


def free_memory_bytes(backend: str) -> int:
    """Free memory where the batch lives: GPU memory (CUDA) or available host memory."""
    if backend == "cuda":
        from numba import cuda

        free, _ = cuda.current_context().get_memory_info()
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class _Progress(Tracker):
    """A progress bar on stderr per batch: simulated ms, trials finished, node-steps/s."""

    def __init__(self, label: str, monitor: TrialMonitor, enabled: bool) -> None:
        self.interval_ms = 10.0
        self.label, self.monitor, self.enabled = label, monitor, enabled
        self._bar = None

    def start(self, sim) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._t0, self._wall0 = sim.t_ms, time.perf_counter()
        total = round(max(0.0, (sim.t_end_ms or 0.0) - sim.t_ms), 3)
        self._bar = tqdm(
            total=total,
            unit="ms",
            desc=self.label,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )
        self._shown = sim.t_ms
        self._nodes = sim.n_nodes * sim.batch_size

    def handle(self, sim) -> None:
        if self._bar is None:
            return
        self._bar.update(round(sim.t_ms - self._shown, 3))
        self._shown = sim.t_ms
        wall = time.perf_counter() - self._wall0
        steps = (sim.t_ms - self._t0) / sim.dt_ms
        finished = int(np.count_nonzero(self.monitor.outcome != RUNNING))
        self._bar.set_postfix_str(
            f"{finished}/{sim.batch_size} done, {self._nodes * steps / max(wall, 1e-9):.3g} "
            "node-steps/s",
            refresh=False,
        )

    def finish(self, sim) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Brancher(Tracker):
    """Keeps the state of running members at given batch clock steps (:class:`Branch`
    material: the member's snapshot and monitor record), without stopping the batch: only
    that member's values cross to the host. Handled first (before the monitor can stop
    the run at that step), every gcd of the steps, so on every one of them."""

    handle_first = True

    def __init__(self, due: dict[int, list[int]], monitor: TrialMonitor, dt_ms: float) -> None:
        self.due = {m: set(steps) for m, steps in due.items() if steps}
        self.monitor = monitor
        self._identity = None  # snapshot_identity of the run, hashed once
        self.taken: dict[int, list[tuple[int, Snapshot, dict]]] = {m: [] for m in self.due}
        every = math.gcd(*[s for steps in self.due.values() for s in steps]) if self.due else 0
        self.interval_ms = every * dt_ms if every else None

    def handle(self, sim) -> None:
        now = sim.step_index
        for m, steps in self.due.items():
            if now in steps and self.monitor.outcome[m] == RUNNING:
                (record,) = self.monitor.member_records([m])
                if self._identity is None:
                    self._identity = snapshot_identity(sim)
                self.taken[m].append((now, take_snapshot(sim, [m], self._identity), record))


class TrialRunner:
    """Runs :class:`Trial` objects on one mesh and tissue in batches (see the module doc)."""

    def __init__(
        self,
        mesh: Mesh,
        tissue: Tissue,
        simulation: SimulationConfig,
        induction: InductionConfig,
        sites: list[PacingSite],
        *,
        backend: str = "cpu",
        progress: bool = False,
        chamber: str = "ventricle",
    ) -> None:
        self.mesh, self.tissue, self.sites = mesh, tissue, sites
        self.threshold_mv, self.rearm_mv = induction.detection.levels_mv(chamber)
        self.simulation, self.induction = simulation, induction
        self.dt_ms = float(simulation.dt_ms)
        self.detection = induction.detection
        self.progress = progress
        self.backend = backend
        self.base = MonodomainProblem(mesh, **tissue.problem_kwargs())
        stepper = SplitStepper(
            self.base,
            self.dt_ms,
            backend=backend,
            mass=simulation.mass,
            diffusion=simulation.diffusion,
            precision=simulation.precision,
            state=tissue.initial_state(self.base),
        )
        self.backend_name = stepper.backend
        self.initial = take_snapshot(stepper)
        self.substeps = stepper.substeps
        self.duration_steps = round(induction.stimulus.duration_ms / self.dt_ms)
        self.tissue_node = self.base._node_map  # mesh node -> tissue node (−1: none)
        self.probes: dict[int, np.ndarray] = {}
        #: per site, the factor on the configured stimulus strength (raised when a site's
        #: S1 does not capture)
        self.strength_factor: dict[int, float] = {}
        self.stats = RunStats()
        #: finished trials on record (:class:`~cardiotwin.pipeline.induction.journal.
        #: TrialJournal`): taken from there instead of simulated, and each new one written
        self.journal = None
        per_node = bytes_per_node_member(
            self.base.model.n_states,
            simulation.diffusion,
            simulation.mass,
            self.detection.keep_beats,
        )
        self.bytes_per_node_member = per_node
        batch = induction.batch
        #: coupling intervals per site side by side, and the finished fraction that
        #: rebuilds the batch, with ``auto`` resolved for this backend
        self.speculative_intervals, self.compact_fraction = batch.for_backend(self.backend_name)
        #: PES: for how many of a search's next intervals the state at their onsets is kept
        #: on the way, so that their trials start there
        self.onset_branches = ONSET_BRANCHES
        budget = (
            batch.memory_gb * 1e9 if batch.memory_gb else 0.5 * free_memory_bytes(self.backend_name)
        )
        fit = max(1, int(budget // (per_node * self.base.n_nodes)))
        self.max_members = min(fit, batch.max_members or MAX_MEMBERS)
        log.info(
            "batch: %d bytes per node per member, %d tissue nodes: up to %d members in %.3g GB; "
            "%d coupling interval(s) per site side by side, rebuilt when %g of it has finished",
            per_node,
            self.base.n_nodes,
            self.max_members,
            budget / 1e9,
            self.speculative_intervals,
            self.compact_fraction,
        )

    # --- the batch loop -------------------------------------------------------------------

    def run(self, trials: list[Trial], on_result=None) -> list[TrialResult]:
        """Run ``trials`` (any order, any start times); results in the order they finish.

        ``on_result(result) -> list[Trial]``: called as each trial finishes; the trials it
        returns join the queue (a protocol deciding its next trials from the last results
        keeps the batch full)."""
        queue: deque[Trial] = deque()
        results: list[TrialResult] = []

        def admit(batch) -> None:
            # trials on record are answered at once (their follow-ups too); the rest queue
            pending = deque(batch)
            while pending:
                trial = pending.popleft()
                cached = (
                    None
                    if self.journal is None or not trial.journal
                    else self.journal.get(trial, self.strength(trial.site))
                )
                if cached is None:
                    queue.append(trial)
                    continue
                results.append(cached)
                if on_result is not None:
                    pending.extend(on_result(cached) or ())

        admit(trials)
        if not queue:
            return results
        clock = min(t.start_step for t in queue)
        running: list[_Member] = []
        while queue or running:
            members = list(running)
            while queue and len(members) < self.max_members:
                trial = queue.popleft()
                offset = trial.start_step - clock
                record = _shift_record(trial.start_record, -offset * self.dt_ms)
                members.append(_Member(trial, trial.start, record, offset))
            done, running, clock = self._generation(members, clock)
            if self.journal is not None:
                for result in done:
                    if result.trial.journal:
                        self.journal.put(result, self.strength(result.trial.site))
            results.extend(done)
            if on_result is not None:
                for result in done:
                    admit(on_result(result) or ())
        return results

    def _stimuli(self, members: list[_Member], clock: int) -> list[Stimulus]:
        dt, duration = self.dt_ms, self.induction.stimulus.duration_ms
        stimuli = []
        for b, member in enumerate(members):
            nodes = self.sites[member.trial.site].mesh_nodes
            for onset in member.trial.onsets:
                start = onset - member.offset
                if start + self.duration_steps <= clock:
                    continue  # already delivered
                stimuli.append(
                    Stimulus(
                        start * dt,
                        duration,
                        self.strength(member.trial.site),
                        nodes=nodes,
                        members=(b,),
                    )
                )
        return stimuli

    def on_record(self, key: tuple, site: int) -> bool:
        """Whether the trial ``key`` of ``site`` will be answered from the journal (a resumed
        study), not simulated."""
        return self.journal is not None and self.journal.has(key, self.strength(site))

    def strength(self, site: int) -> float:
        """The stimulus strength (µA/µF) used at ``site``."""
        return self.induction.stimulus.strength_ua_per_uf * self.strength_factor.get(site, 1.0)

    def _watch(self, member: _Member) -> MemberWatch:
        trial, dt = member.trial, self.dt_ms
        site = trial.site
        if site not in self.probes:
            from cardiotwin.pipeline.induction.sites import probe_nodes

            self.probes[site] = probe_nodes(
                self.sites[site], self.base.points_mm, self.detection.capture_probe_mm
            )
        quiet = math.inf if trial.quiet_after is None else (trial.quiet_after - member.offset) * dt
        return MemberWatch(
            stimulus_onsets_ms=[(o - member.offset) * dt for o in trial.watch],
            probe_nodes=self.probes[site],
            quiet_after_ms=quiet,
            stop_at_ms=(trial.stop - member.offset) * dt,
            finish_if_missed=trial.finish_if_missed,
        )

    def _generation(self, members: list[_Member], clock: int):
        dt = self.dt_ms
        b = len(members)
        problem = MonodomainProblem(
            self.mesh,
            stimuli=self._stimuli(members, clock),
            batch_size=b,
            **self.tissue.problem_kwargs(),
        )
        reuse_discretisation(problem, self.base)
        snapshot = Snapshot.stack([m.snapshot for m in members], step_index=clock)
        stepper = branch(problem, snapshot, list(range(b)), backend=self.backend)
        d = self.detection
        keep_final = any(m.trial.keep_final for m in members)
        monitor = TrialMonitor(
            [self._watch(m) for m in members],
            keep=d.keep_beats,
            threshold_mv=self.threshold_mv,
            rearm_mv=self.rearm_mv,
            quiet_mv=d.quiet_mv,
            capture_window_ms=d.capture_window_ms,
            capture_fraction=d.capture_fraction,
            interval_ms=d.check_interval_ms,
            stop_fraction=1.0 if keep_final else self.compact_fraction,
            records=[m.record for m in members],
        )
        t_end = max(w.stop_at_ms for w in monitor.watches)
        # a trial whose final state is wanted ends the batch exactly at its stop
        finals = [
            w.stop_at_ms
            for w, m in zip(monitor.watches, members, strict=True)
            if m.trial.keep_final
        ]
        if finals:
            t_end = min(t_end, min(finals))
        self.stats.generations += 1
        self.stats.batch_sizes.append(b)
        label = f"batch {self.stats.generations} ({b} trial{'s' if b > 1 else ''})"
        guard = NanGuard(interval_ms=d.check_interval_ms)
        # states wanted on the members' way (branches), kept as the batch passes them
        brancher = _Brancher(
            {m: member.branches_due(clock) for m, member in enumerate(members)}, monitor, dt
        )
        trackers = [monitor, guard, brancher, _Progress(label, monitor, self.progress)]
        started = time.perf_counter()
        try:
            stepper.run(t_end, trackers)
        except SimulationDiverged as exc:
            # members that finished at an earlier check were sound then (the guard, checking
            # at the monitor's interval, passed it): their results stand; they were only
            # stepped on until compact_fraction of the batch had finished
            settled = (monitor.outcome != RUNNING) & (monitor.finished_ms < exc.t_ms - 0.5 * dt)
            if not settled[exc.member]:
                return self._diverged(members, clock, exc)
            member = members[exc.member]
            log.info(
                "trial %s: blew up at t = %.4g ms, after it had finished at %.4g ms (this "
                "trial's time); its result stands",
                member.trial.key,
                exc.t_ms + member.offset * dt,
                monitor.finished_ms[exc.member] + member.offset * dt,
            )
            if (guard.bad_members(stepper) & ~settled).any():
                # a running member blew up at the same check: run the others again without
                # the finished ones, so that the guard names its own time and place
                beats = monitor.all_beats()
                done = [
                    self._result(members[m], m, monitor, beats) for m in np.flatnonzero(settled)
                ]
                return done, [m for i, m in enumerate(members) if not settled[i]], clock
        wall_s = time.perf_counter() - started
        steps = stepper.step_index - clock
        self.stats.member_steps += b * steps
        self.stats.node_steps += b * steps * problem.n_nodes
        self.stats.wall_s += wall_s
        log.info(
            "%s: %.4g ms simulated, %.3g node-steps/s, %d finished",
            label,
            steps * dt,
            b * steps * problem.n_nodes / wall_s if wall_s > 0 else 0.0,
            int(np.count_nonzero(monitor.outcome != RUNNING)),
        )
        for m, taken in brancher.taken.items():
            member = members[m]
            member.branches = (
                *member.branches,
                *(
                    Branch(step + member.offset, snap, _shift_record(record, member.offset * dt))
                    for step, snap, record in taken
                ),
            )
        beats = monitor.all_beats()
        done, running = [], []
        now = stepper.step_index
        finished = [m for m in range(b) if monitor.outcome[m] != RUNNING]
        self.stats.idle_member_steps += sum(
            max(0, round(now - monitor.finished_ms[m] / dt)) for m in finished
        )
        snapshots = take_snapshot(stepper) if (keep_final or len(finished) < b) else None
        records = monitor.member_records([m for m in range(b) if m not in finished])
        still = iter(records)
        for m, member in enumerate(members):
            if m in finished:
                final = None
                if member.trial.keep_final:
                    if abs(monitor.finished_ms[m] - t_end) > 1e-9:
                        raise RuntimeError(f"trial {member.trial.key} did not end at its stop")
                    final = snapshots.select([m])
                done.append(self._result(member, m, monitor, beats, final))
            else:
                running.append(
                    _Member(
                        member.trial,
                        snapshots.select([m]),
                        next(still),
                        member.offset,
                        member.branches,
                    )
                )
        return done, running, now

    def _result(
        self, member: _Member, m: int, monitor: TrialMonitor, beats: np.ndarray, final=None
    ) -> TrialResult:
        """The result of finished member ``m`` (times in the trial's own ms)."""
        offset_ms = member.offset * self.dt_ms
        return TrialResult(
            trial=member.trial,
            outcome=OUTCOMES[int(monitor.outcome[m])],
            finished_ms=float(monitor.finished_ms[m]) + offset_ms,
            captured=list(monitor.captured[m]),
            beats_ms=beats[:, m, :] + offset_ms,
            final=final,
            branches=member.branches,
        )

    def _diverged(self, members: list[_Member], clock: int, exc: SimulationDiverged):
        """Drop the member that blew up (its result names time and place); the others restart
        the generation from where it began."""
        bad = int(exc.member)
        member = members[bad]
        local_ms = exc.t_ms + member.offset * self.dt_ms
        message = (
            f"simulation diverged at t = {local_ms:.4g} ms (this trial's time) at mesh node "
            f"{exc.node} ({', '.join(f'{v:.4g}' for v in exc.point_mm)} mm): V = "
            f"{exc.value_mv:.4g} mV"
        )
        log.error("trial %s: %s", member.trial.key, message)
        result = TrialResult(member.trial, "diverged", local_ms, [], None, error=message)
        return [result], [m for i, m in enumerate(members) if i != bad], clock
