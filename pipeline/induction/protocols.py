"""Pacing protocols, as declared in the ``induction`` section of the configuration.

All times are whole time steps (integers) internally, so stimuli of trials that branch from
one snapshot, or that share a batch with other trials at a time offset, fall on exactly the
same steps as in an unbroken run.

**Ventricular PES** (:class:`PESSite`; Arevalo et al. 2016, Prakosa et al. 2018, restated in
DESIGN §7): per site ``s1_count`` S1 at ``s1_cycle_length_ms`` (the S1 train runs once per
site and is snapshotted at the earliest possible S2 onset); then S2 from ``first_coupling_ms``
after the last S1, shortened by ``coupling_step_ms`` until the site induces or the S2 no
longer captures; S3 follows the shortest capturing S2 (its coupling again from
``first_coupling_ms`` down), S4 the shortest capturing S3. When ``first_coupling_ms`` itself
does not capture (a model whose refractory period at the S1 rate is longer: TP06 tissue
after 600 ms pacing needs ~315 ms), the stage searches upwards in ``coupling_step_ms`` steps
(up to the S1 cycle length) for the shortest interval that captures, as a cardiologist would
lengthen the S2 rather than give up. Every trial starts from the site's
S1 snapshot and replays the chosen earlier extrastimuli (bit-identical to an unbroken run).
Coupling intervals are tried ``speculative_intervals`` at a time side by side; the protocol
then reads them in the order a cardiologist would have tried them one by one, so the answer
does not depend on how many run at once: later, speculative ones are reported as such
(``read_by_protocol`` false), and one that fails (its simulation diverged) fails the site
only if the protocol reads it.

**Atrial rapid pacing** (:func:`rapid_pacing_onsets`; Boyle et al. 2019): one trial per site,
``stimuli_per_cycle_length`` stimuli at each cycle length from ``first_cycle_length_ms``
down to ``last_cycle_length_ms``; a driver is sustained if activity lasts
``atrial_sustained_after_ms`` after the last stimulus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the configuration model (pydantic) is not needed to run
    from cardiotwin.pipeline.config import InductionConfig


STIMULUS_NAMES = ("S2", "S3", "S4", "S5", "S6")


class ProtocolError(ValueError):
    """A protocol that cannot be run as configured; the message names the key."""


def to_steps(ms: float, dt_ms: float, key: str) -> int:
    """``ms`` as a whole number of steps of ``dt_ms``; ``key`` names the setting if not."""
    steps = round(ms / dt_ms)
    if abs(steps * dt_ms - ms) > 1e-6 * max(1.0, abs(ms)):
        raise ProtocolError(
            f"{key} = {ms:g} ms is not a whole number of time steps of {dt_ms:g} ms "
            "(simulation.dt_ms); choose values that are multiples of dt"
        )
    return steps


def validate(config: InductionConfig, chamber: str, dt_ms: float) -> None:
    """Refuse protocols whose stimuli would overlap or that cannot start; names the key."""
    duration = config.stimulus.duration_ms
    to_steps(duration, dt_ms, "induction.stimulus.duration_ms")
    if chamber == "ventricle":
        pes = config.pes
        for key in (
            "s1_cycle_length_ms",
            "first_coupling_ms",
            "coupling_step_ms",
            "min_coupling_ms",
        ):
            to_steps(getattr(pes, key), dt_ms, f"induction.pes.{key}")
        for key in ("s1_cycle_length_ms", "min_coupling_ms", "first_coupling_ms"):
            if getattr(pes, key) <= duration:
                raise ProtocolError(
                    f"induction.pes.{key} ({getattr(pes, key):g} ms) must exceed the stimulus "
                    f"duration ({duration:g} ms, induction.stimulus.duration_ms): the stimuli "
                    "would overlap"
                )
        if pes.first_coupling_ms < pes.min_coupling_ms:
            raise ProtocolError(
                f"induction.pes.first_coupling_ms ({pes.first_coupling_ms:g} ms) is below "
                f"min_coupling_ms ({pes.min_coupling_ms:g} ms): no coupling interval to try"
            )
    else:
        rapid = config.rapid_pacing
        for key in (
            "first_cycle_length_ms",
            "last_cycle_length_ms",
            "cycle_length_step_ms",
            "prepace_cycle_length_ms",
        ):
            to_steps(getattr(rapid, key), dt_ms, f"induction.rapid_pacing.{key}")
        if rapid.last_cycle_length_ms > rapid.first_cycle_length_ms:
            raise ProtocolError(
                "induction.rapid_pacing.last_cycle_length_ms must not exceed "
                "first_cycle_length_ms (the cycle length ramps down)"
            )
        if rapid.last_cycle_length_ms <= duration:
            raise ProtocolError(
                f"induction.rapid_pacing.last_cycle_length_ms ({rapid.last_cycle_length_ms:g} "
                f"ms) must exceed the stimulus duration ({duration:g} ms): stimuli would overlap"
            )


# --- ventricular PES ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PESTiming:
    """The PES protocol in steps: S1 onsets, the snapshot step (the earliest S2 onset), the
    coupling intervals to try (longest first)."""

    s1_onsets: tuple[int, ...]
    snapshot_step: int
    couplings: tuple[int, ...]
    extrastimuli: int
    duration: int
    #: longer intervals tried, shortest first, when the first one does not capture
    longer: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: InductionConfig, dt_ms: float) -> PESTiming:
        pes = config.pes
        cl = to_steps(pes.s1_cycle_length_ms, dt_ms, "induction.pes.s1_cycle_length_ms")
        duration = to_steps(config.stimulus.duration_ms, dt_ms, "induction.stimulus.duration_ms")
        first = to_steps(pes.first_coupling_ms, dt_ms, "induction.pes.first_coupling_ms")
        step = to_steps(pes.coupling_step_ms, dt_ms, "induction.pes.coupling_step_ms")
        low = to_steps(pes.min_coupling_ms, dt_ms, "induction.pes.min_coupling_ms")
        onsets = tuple(i * cl for i in range(pes.s1_count))
        couplings = tuple(range(first, low - 1, -step))
        longer = tuple(range(first + step, cl - duration + 1, step))
        # the snapshot is taken at the earliest S2 onset: every trial branches from there,
        # and the S1 run sees (most of) the last S1's capture window
        return cls(
            onsets, onsets[-1] + couplings[-1], couplings, pes.extrastimuli, duration, longer
        )

    def extrastimulus_onsets(self, couplings: tuple[int, ...]) -> tuple[int, ...]:
        """Onsets (steps) of extrastimuli with these coupling intervals after the last S1."""
        onsets, t = [], self.s1_onsets[-1]
        for c in couplings:
            t += c
            onsets.append(t)
        return tuple(onsets)


@dataclass
class StageRecord:
    """What one extrastimulus stage of a site did."""

    stimulus: str
    prefix: tuple[int, ...]
    tested: dict[int, dict] = field(default_factory=dict)  # coupling -> trial summary
    shortest_capturing: int | None = None
    decided: bool = False


class PESSite:
    """The PES state machine of one site: which trials to run next, what their results mean.

    ``propose(n)`` gives up to ``n`` coupling-interval tuples to run (each the stage's prefix
    plus one new interval); ``record(couplings, captured, induced, diverged=...)`` takes a
    trial's result. ``done`` once the site induced, ran out of stimuli or reached a trial that
    failed; ``induced_by`` is then the inducing tuple (or None), ``failed_at`` the failed one
    (or None). ``read`` holds every trial the protocol read, in a cardiologist's order: a
    trial run side by side that is not in it was speculative and decided nothing, so its
    failure does not fail the site.
    """

    def __init__(self, timing: PESTiming) -> None:
        self.timing = timing
        self.stages: list[StageRecord] = [StageRecord(STIMULUS_NAMES[0], ())]
        self.pending: set[tuple[int, ...]] = set()
        self.induced_by: tuple[int, ...] | None = None
        self.failed_at: tuple[int, ...] | None = None
        self.read: set[tuple[int, ...]] = set()
        self.done = False

    @property
    def stage(self) -> StageRecord:
        return self.stages[-1]

    def _order(self) -> tuple[int, ...]:
        """Intervals of the current stage in the order they are read: the configured ones,
        longest first; once the first of them has not captured, longer ones, shortest
        first (the search goes up to find an interval that captures)."""
        stage = self.stage
        first = stage.tested.get(self.timing.couplings[0])
        if first is not None and not first["captured"] and not first["induced"]:
            return self.timing.longer
        return self.timing.couplings

    def propose(self, n: int) -> list[tuple[int, ...]]:
        if self.done:
            return []
        stage = self.stage
        out = []
        for c in self._order():
            if len(out) + len(self.pending) >= n:
                break
            trial = (*stage.prefix, c)
            if c in stage.tested or trial in self.pending:
                continue
            out.append(trial)
        self.pending.update(out)
        return out

    def record(
        self,
        couplings: tuple[int, ...],
        captured: bool,
        induced: bool,
        diverged: bool = False,
        **info,
    ) -> None:
        self.pending.discard(couplings)
        stage = self.stage
        if self.done or couplings[:-1] != stage.prefix:
            return  # a speculative trial of a stage already decided
        stage.tested[couplings[-1]] = {
            "captured": captured,
            "induced": induced,
            "diverged": diverged,
            **info,
        }
        self._decide()

    def _decide(self) -> None:
        stage = self.stage
        shortest = None
        order = self._order()
        upward = order is self.timing.longer and order != self.timing.couplings
        for c in order:  # in the order a cardiologist tries them
            result = stage.tested.get(c)
            if result is None:
                return  # not known yet
            self.read.add((*stage.prefix, c))
            if result.get("diverged"):  # the protocol needs this answer and has none
                stage.decided, self.failed_at, self.done = True, (*stage.prefix, c), True
                return
            if result["induced"]:
                stage.decided, self.induced_by, self.done = True, (*stage.prefix, c), True
                stage.shortest_capturing = c
                return
            if upward:
                if result["captured"]:
                    shortest = c  # the shortest interval that captures
                    break
                continue
            if not result["captured"]:
                break
            shortest = c
        stage.decided = True
        stage.shortest_capturing = shortest
        if shortest is None or len(self.stages) >= self.timing.extrastimuli:
            self.done = True
            return
        self.stages.append(StageRecord(STIMULUS_NAMES[len(self.stages)], (*stage.prefix, shortest)))

    def final_couplings(self) -> tuple[int, ...]:
        """The inducing intervals, or the shortest capturing interval of each stage."""
        if self.induced_by is not None:
            return self.induced_by
        out = ()
        for stage in self.stages:
            if stage.shortest_capturing is None:
                break
            out = (*stage.prefix, stage.shortest_capturing)
        return out


# --- atrial rapid pacing -----------------------------------------------------------------------


def rapid_pacing_onsets(config: InductionConfig, dt_ms: float) -> tuple[int, ...]:
    """Stimulus onsets (steps) of the rapid-pacing burst, from 0."""
    rapid = config.rapid_pacing
    first = to_steps(
        rapid.first_cycle_length_ms, dt_ms, "induction.rapid_pacing.first_cycle_length_ms"
    )
    last = to_steps(
        rapid.last_cycle_length_ms, dt_ms, "induction.rapid_pacing.last_cycle_length_ms"
    )
    step = to_steps(
        rapid.cycle_length_step_ms, dt_ms, "induction.rapid_pacing.cycle_length_step_ms"
    )
    lengths = [cl for cl in range(first, last - 1, -step)]
    onsets, t = [0], 0
    for cl in lengths:
        for _ in range(rapid.stimuli_per_cycle_length):
            t += cl
            onsets.append(t)
    return tuple(onsets[:-1]) if len(onsets) > 1 else tuple(onsets)


def steps_to_ms(steps, dt_ms: float):
    """Steps (int or tuple) -> ms, rounded to the µs for reports."""
    if isinstance(steps, tuple | list):
        return [steps_to_ms(s, dt_ms) for s in steps]
    return round(steps * dt_ms, 6) if math.isfinite(steps) else steps
