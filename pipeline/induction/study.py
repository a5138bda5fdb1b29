"""The induction study of one mesh: tissue, sites, protocol, detection, unique VTs.

:func:`run_induction` is what ``cardiotwin induce`` runs. Ventricles: the S1 train of every
site runs once (batched over sites) and is snapshotted; then every site's extrastimulus
trials branch from its snapshot (S3 and S4 trials from the state of the trial with the
previous stage's shortest capturing interval, where the new extrastimulus can first come: the
earlier ones are not simulated again; a trial of a stage's search from the state at its own
extrastimulus where another run kept it on its way, see :data:`BRANCH_FROM_PREFIX`; a trial
whose extrastimulus clearly missed ends there, :data:`FINISH_IF_MISSED`), all sites' trials
sharing the batch, each site's protocol
(:class:`~cardiotwin.pipeline.induction.protocols.PESSite`) choosing its next trials as
results arrive. Atria: one rapid-pacing trial per site. Every induced trial is analysed
(:mod:`~cardiotwin.pipeline.induction.detection`) and the induced ones grouped into unique
VTs. A site that cannot be paced (node set in scar, S1 not captured, a trial that blew up)
is reported as such with the reason; the other sites' results are kept.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.pipeline.config import STAGE_SECTIONS, config_hash
from cardiotwin.pipeline.induction import protocols
from cardiotwin.pipeline.induction.anatomy import opening_loops, opening_windings
from cardiotwin.pipeline.induction.detection import (
    VT,
    Geometry,
    TrialAnalysis,
    analyse_trial,
    cluster_vts,
)
from cardiotwin.pipeline.induction.journal import TrialJournal
from cardiotwin.pipeline.induction.protocols import PESSite, PESTiming, steps_to_ms
from cardiotwin.pipeline.induction.runner import Branch, Trial, TrialResult, TrialRunner
from cardiotwin.pipeline.induction.sites import (
    PacingSite,
    chamber_of,
    checked,
    pacing_sites,
    site_names,
)
from cardiotwin.pipeline.tissue import Tissue, build_tissue

if TYPE_CHECKING:  # the configuration model (pydantic) is not needed to run
    from cardiotwin.pipeline.config import Config

log = logging.getLogger(__name__)

#: start each PES trial from its prefix trial's state where the new extrastimulus can first
#: come (an S3 trial from the S2 trial with the stage's shortest capturing interval), not
#: from the S1 snapshot; the same answers (tests/pipeline/test_induction.py), fewer
#: simulated ms: the prefix's extrastimuli are not simulated again. False: every trial
#: starts from the S1 snapshot.
BRANCH_FROM_PREFIX = True

#: end a PES trial as soon as its extrastimulus clearly did not capture (not one probe node
#: activated within the capture window), instead of running on until the previous beat has
#: passed: what follows is the run of its prefix alone (the S1 train, or the previous
#: stage's trial with the shortest capturing interval), which the protocol has already
#: found not inducible; the protocol's decisions are the same (tests/pipeline/
#: test_induction.py). False: every trial runs to rest or to its observation time.
FINISH_IF_MISSED = True

#: a resumed study (a journal) starts a run of the prefix alone only once the journal has
#: answered all it holds of the site. Replayed results arrive one after another, and each
#: proposes the next intervals, so without this the first result of an upward search started
#: a run of the prefix alone up to intervals that the journal then answered (on the clinical
#: run, 190 ms simulated per resume for nothing). False: the old behaviour, for A/B tests.
SKIP_ON_RECORD = True


class InductionError(ValueError):
    """An induction study that cannot run (bad sites, protocol, tissue); names the cause."""


@dataclass
class SiteOutcome:
    """What happened at one pacing site."""

    site: PacingSite
    status: str = "ok"  # or the reason the site gave no answer
    s1_captured: bool | None = None
    induced: bool = False
    coupling_intervals_ms: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    trials: list = field(default_factory=list)  # per trial: couplings, captured, outcome, ...
    vt_id: int | None = None
    analysis: TrialAnalysis | None = None
    stimulus_strength_ua_per_uf: float | None = None


@dataclass
class InductionResult:
    """The whole study (see :mod:`cardiotwin.pipeline.risk` for its JSON)."""

    chamber: str
    protocol: str
    sites: list[SiteOutcome]
    vts: list[VT]
    tissue: Tissue
    geometry: Geometry
    tissue_nodes: np.ndarray
    backend: str
    wall_s: float
    stats: dict
    config: Config


def _trial_record(result: TrialResult, couplings, analysis: TrialAnalysis, dt_ms: float) -> dict:
    return {
        "coupling_intervals_ms": steps_to_ms(list(couplings), dt_ms) if couplings else [],
        "captured": [None if c is None else bool(c) for c in result.captured],
        "outcome": result.outcome,
        "finished_ms": round(result.finished_ms, 3),
        "induced": analysis.induced,
        "reason": result.error or analysis.reason,
    }


def run_induction(
    mesh: Mesh,
    config: Config,
    *,
    backend: str = "cpu",
    sites: list[str] | None = None,
    progress: bool = False,
    journal: str | Path | None = None,
) -> InductionResult:
    """Run the configured protocol from every (or the named) pacing site of ``mesh``.

    ``journal``: a folder where each finished trial is recorded as it ends; a study killed
    part-way and started again with the same folder (and the same mesh, configuration,
    sites and backend) resumes from there and gives the same answer
    (:mod:`~cardiotwin.pipeline.induction.journal`)."""
    started = time.perf_counter()
    induction = config.induction
    chamber = induction.chamber if induction.chamber != "auto" else chamber_of(mesh)
    dt = config.simulation.dt_ms
    protocols.validate(induction, chamber, dt)
    if not site_names(mesh, chamber) and sites is None:
        raise InductionError(
            f"the mesh has no {chamber} pacing sites (node sets "
            f"{'AHA-1..AHA-17, RV-1, RV-2' if chamber == 'ventricle' else 'LA-01..'}); run "
            "the meshing stage's site placement first, or name node sets with --sites"
        )
    try:
        chosen = pacing_sites(mesh, chamber, sites)
    except KeyError as exc:
        raise InductionError(str(exc.args[0])) from None
    chamber_config = getattr(config.tissue, chamber)
    bcl = (
        induction.pes.s1_cycle_length_ms
        if chamber == "ventricle"
        else induction.rapid_pacing.prepace_cycle_length_ms
    )
    tissue = build_tissue(mesh, chamber_config, config.tissue, config.simulation, bcl_ms=bcl)
    runner = TrialRunner(
        mesh, tissue, config.simulation, induction, chosen, backend=backend, progress=progress,
        chamber=chamber,
    )  # fmt: skip
    chosen = [checked(s, runner.tissue_node) for s in chosen]
    runner.sites = chosen
    if journal is not None:
        runner.journal = TrialJournal(
            journal, _setup_fingerprint(mesh, config, chosen, runner.backend_name)
        )
    outcomes = [SiteOutcome(s) for s in chosen]
    for outcome in outcomes:
        if outcome.site.problem:
            outcome.status = f"not paced: {outcome.site.problem}"
            log.warning("site %s: %s", outcome.site.name, outcome.status)
    if all(o.status != "ok" for o in outcomes):
        raise InductionError(
            "no pacing site can be paced: "
            + "; ".join(f"{o.site.name}: {o.status}" for o in outcomes)
        )
    geometry = Geometry.of(runner.base, tissue)
    if chamber == "ventricle":
        _pes(runner, outcomes, geometry, config)
        protocol = "pes"
    else:
        _rapid_pacing(runner, outcomes, geometry, config)
        protocol = "rapid_pacing"
    for i, outcome in enumerate(outcomes):
        if not outcome.site.problem:
            outcome.stimulus_strength_ua_per_uf = runner.strength(i)
        # in protocol order (S2 long to short, then S3, ...), however the batch finished them
        outcome.trials.sort(key=_protocol_order)
    induced = [(o.site.name, o.coupling_intervals_ms, o.analysis) for o in outcomes if o.induced]
    vts = cluster_vts(induced, induction.detection)
    for vt in vts:
        for name, _ in vt.trials:
            next(o for o in outcomes if o.site.name == name).vt_id = vt.id
    if chamber == "atrium" and vts:  # macro-re-entry round veins and valves (DESIGN §7)
        loops = opening_loops(
            mesh.surfaces,
            runner.base.tissue_nodes,
            mesh.n_points,
            geometry.points_mm,
            geometry.adjacency,
            induction.detection.opening_loop_mm,
        )
        for vt in vts:
            a = vt.analysis
            if a.activation_ms is not None and a.cycle_length_ms:
                vt.openings = opening_windings(
                    loops, geometry.points_mm, a.activation_ms, a.cycle_length_ms
                )
    stats = runner.stats
    return InductionResult(
        chamber=chamber,
        protocol=protocol,
        sites=outcomes,
        vts=vts,
        tissue=tissue,
        geometry=geometry,
        tissue_nodes=runner.base.tissue_nodes,
        backend=runner.backend_name,
        wall_s=time.perf_counter() - started,
        stats={
            "batches": stats.generations,
            "batch_sizes": stats.batch_sizes,
            "max_batch_members": runner.max_members,
            "speculative_intervals": runner.speculative_intervals,
            "compact_fraction": runner.compact_fraction,
            "bytes_per_node_member": runner.bytes_per_node_member,
            "tissue_nodes": runner.base.n_nodes,
            "member_steps": stats.member_steps,
            "idle_member_steps": stats.idle_member_steps,
            "node_steps": stats.node_steps,
            "stepping_wall_s": round(stats.wall_s, 3),
            "node_steps_per_s": float(f"{stats.node_steps_per_s:.4g}"),
            "trials_from_journal": 0 if runner.journal is None else runner.journal.reused,
        },
        config=config,
    )


def _protocol_order(record: dict) -> tuple:
    couplings = record["coupling_intervals_ms"]
    return len(couplings), [-c for c in couplings]


def _setup_fingerprint(mesh: Mesh, config: Config, sites, backend: str) -> str:
    """What a journal's trials depend on: mesh, configuration, sites (their nodes), backend."""
    digest = hashlib.sha256()
    digest.update(mesh.fingerprint().encode())
    digest.update(config_hash(config, sections=STAGE_SECTIONS["induce"]).encode())
    for site in sites:
        digest.update(site.name.encode())
        digest.update(np.ascontiguousarray(site.mesh_nodes, dtype=np.int64).tobytes())
    digest.update(backend.encode())
    return digest.hexdigest()


def _analyse(result: TrialResult, last_onset: int, sustained_ms: float, geometry, config, dt):
    if result.outcome == "diverged":
        return TrialAnalysis(False, result.error)
    if result.outcome == "missed":
        return TrialAnalysis(
            False,
            "the last extrastimulus did not capture (no probe node activated within the "
            "capture window): the trial ended there",
        )
    return analyse_trial(
        result.beats_ms,
        last_onset * dt,
        result.finished_ms,
        result.outcome == "quiescent",
        geometry,
        config.induction.detection,
        sustained_ms,
    )


def _stronger(runner: TrialRunner, site: int, induction) -> bool:
    """Double the site's stimulus strength if the configured maximum allows (True if so)."""
    factor = runner.strength_factor.get(site, 1.0) * 2.0
    if factor > induction.stimulus.max_strength_factor + 1e-9:
        return False
    runner.strength_factor[site] = factor
    log.info(
        "site %s: no capture, pacing again at %g x the strength", runner.sites[site].name, factor
    )
    return True


def _pes(runner: TrialRunner, outcomes: list[SiteOutcome], geometry, config: Config) -> None:
    induction, dt = config.induction, config.simulation.dt_ms
    timing = PESTiming.from_config(induction, dt)
    detection = induction.detection
    sustain = protocols.to_steps(
        detection.sustained_after_ms, dt, "induction.detection.sustained_after_ms"
    )

    def s1_trial(i: int) -> Trial:
        return Trial(
            key=(i, "S1"),
            site=i,
            start=runner.initial,
            start_step=0,
            onsets=timing.s1_onsets,
            watch=timing.s1_onsets,
            quiet_after=None,
            stop=timing.snapshot_step,
            keep_final=True,
        )

    pending = [i for i, o in enumerate(outcomes) if o.status == "ok"]
    log.info(
        "S1 train: %d sites x %d stimuli at %g ms",
        len(pending),
        len(timing.s1_onsets),
        induction.pes.s1_cycle_length_ms,
    )
    snapshots = {}
    while pending:
        retry = []
        for result in runner.run([s1_trial(i) for i in pending]):
            i = result.trial.site
            outcome = outcomes[i]
            # a capture window that ends after the snapshot (min_coupling_ms shorter than
            # capture_window_ms) leaves the last S1 unchecked (None): not counted as a miss
            captured = result.captured
            outcome.s1_captured = all(c is not False for c in captured)
            if result.outcome == "diverged":
                outcome.s1_captured = None  # the train blew up: capture is not known
                outcome.status = f"S1 train: {result.error}"
            elif not outcome.s1_captured:
                if _stronger(runner, i, induction):
                    retry.append(i)
                    continue
                missed = [k + 1 for k, c in enumerate(captured) if c is False]
                outcome.status = (
                    f"S1 did not capture (stimuli {missed} of {len(captured)}, at "
                    f"{runner.strength(i):g} µA/µF)"
                )
                log.warning("site %s: %s", outcome.site.name, outcome.status)
            else:
                snapshots[i] = result.final
        pending = retry
    machines = {i: PESSite(timing) for i in snapshots}
    induced_analyses: dict[tuple, TrialAnalysis] = {}
    width = runner.speculative_intervals

    # States to start trials from (BRANCH_FROM_PREFIX), per site i:
    # (i, "next", couplings): a captured trial's state where the next stage's earliest
    #   extrastimulus would come, kept while the trial may become the next stage's prefix;
    # (i, "at", couplings): the state at the onset of trial ``couplings`` with only its
    #   prefix's stimuli delivered, taken on its way by a trial of the same stage with a
    #   longer interval (the downward search's next intervals) or by a run of the prefix
    #   alone (the upward search's), ``runner.onset_branches`` of them ahead;
    # (i, "tail", prefix): the latest state of such a run of the prefix alone
    branches: dict[tuple, Branch] = {}
    claims: dict[tuple, list] = {}  # trial key -> the "at" states it will take
    last_stage, lowest = timing.extrastimuli, timing.couplings[-1]
    ahead = runner.onset_branches if BRANCH_FROM_PREFIX else 0

    def on_record(i: int, couplings: tuple[int, ...]) -> bool:
        return SKIP_ON_RECORD and runner.on_record((i, couplings), i)

    def start_of(i: int, couplings: tuple[int, ...]) -> Branch | None:
        if not BRANCH_FROM_PREFIX:
            return None
        at = branches.pop((i, "at", couplings), None)
        if at is not None:
            return at
        # the furthest state of the prefix alone that a run of the upward search reached
        tail = branches.get((i, "tail", couplings[:-1]))
        if tail is not None and tail.step <= timing.extrastimulus_onsets(couplings)[-1]:
            return tail
        return branches.get((i, "next", couplings[:-1]))

    def upward_run(i: int) -> Trial | None:
        """In a stage's upward search (its first interval did not capture), a run of the
        stage's prefix alone, no new stimulus, that keeps the state at the onsets of the
        search's next intervals: their trials start there, each simulating from its own
        extrastimulus on (else each from the stage's earliest onset)."""
        machine = machines[i]
        stage, prefix = machine.stage, machine.stage.prefix
        first = stage.tested.get(timing.couplings[0])
        if not ahead or machine.done or first is None or first["captured"] or first["induced"]:
            return None
        if any(k[0] == i and k[1][0] == "prefix alone" for k in claims):
            return None  # one at a time (results replayed from a journal come all at once)
        if any(on_record(i, c) for c in machine.pending):
            return None  # the journal is still answering this site: its stage may end there
        taken = {c for claimed in claims.values() for c in claimed}
        upcoming = [
            (*prefix, c)
            for c in timing.longer
            if c not in stage.tested and (*prefix, c) not in machine.pending
        ][:ahead]
        wanted = [w for w in upcoming if (i, "at", w) not in branches and (i, w) not in taken]
        if not wanted:
            return None
        steps = tuple(timing.extrastimulus_onsets(w)[-1] for w in wanted)
        origin = start_of(i, wanted[0])
        start_step = timing.snapshot_step if origin is None else origin.step
        key = (i, ("prefix alone", prefix, wanted[-1][-1]))
        claims[key] = [(i, w) for w in wanted]
        return Trial(
            key=key,
            site=i,
            start=snapshots[i] if origin is None else origin.snapshot,
            start_step=start_step,
            start_record=None if origin is None else origin.record,
            onsets=timing.extrastimulus_onsets(prefix) if prefix else (),
            watch=timing.extrastimulus_onsets(prefix) if prefix else (),
            quiet_after=None,
            stop=max(steps),
            branch_at=tuple(s for s in steps if s > start_step),
            journal=False,  # its states are its point, and the journal keeps none of them
        )

    def keep_prefix_alone(result: TrialResult) -> None:
        i, (_, prefix, _) = result.trial.key
        claims.pop(result.trial.key, None)
        if result.outcome == "diverged" or prefix != machines[i].stage.prefix:
            return
        base = timing.extrastimulus_onsets((*prefix, 0))[-1]  # onset of an interval of 0
        for state in result.branches:
            branches[(i, "at", (*prefix, state.step - base))] = state
        if result.branches:
            branches[(i, "tail", prefix)] = result.branches[-1]

    def branch_steps(i: int, couplings: tuple[int, ...], start_step: int) -> tuple[int, ...]:
        onsets = timing.extrastimulus_onsets(couplings)
        steps = set()
        if BRANCH_FROM_PREFIX and len(couplings) < last_stage:
            steps.add(onsets[-1] + lowest)  # the next stage's earliest onset
        machine, prefix = machines[i], couplings[:-1]
        if ahead and couplings[-1] in timing.couplings:  # the downward search
            taken = {c for claimed in claims.values() for c in claimed}
            wanted = [
                (*prefix, c)
                for c in timing.couplings
                if c < couplings[-1]
                and c not in machine.stage.tested
                and (*prefix, c) not in machine.pending
                and (i, "at", (*prefix, c)) not in branches
                and (i, (*prefix, c)) not in taken
                and onsets[-1] - couplings[-1] + c > start_step
            ][:ahead]
            claims[(i, couplings)] = [(i, w) for w in wanted]
            steps.update(onsets[-1] - couplings[-1] + w[-1] for w in wanted)
        return tuple(sorted(s for s in steps if s > start_step))

    def trials_of(i: int) -> list[Trial]:
        out = []
        # shortest interval first: it comes to rest first, so the states it keeps for the
        # search's next intervals are there when their trials are proposed
        for couplings in sorted(machines[i].propose(width), key=lambda c: c[-1]):
            onsets = timing.extrastimulus_onsets(couplings)
            origin = start_of(i, couplings)
            start_step = timing.snapshot_step if origin is None else origin.step
            out.append(
                Trial(
                    key=(i, couplings),
                    site=i,
                    start=snapshots[i] if origin is None else origin.snapshot,
                    start_step=start_step,
                    start_record=None if origin is None else origin.record,
                    onsets=onsets,
                    watch=onsets,
                    quiet_after=onsets[-1] + timing.duration,
                    stop=onsets[-1] + sustain,
                    branch_at=branch_steps(i, couplings, start_step),
                    # a missed extrastimulus leaves the run of its prefix, which was tested
                    finish_if_missed=FINISH_IF_MISSED,
                )
            )
        extra = upward_run(i) if BRANCH_FROM_PREFIX else None
        return out if extra is None else [*out, extra]

    def keep_branches(result: TrialResult, captured: bool) -> None:
        i, couplings = result.trial.key
        machine = machines[i]
        claims.pop((i, couplings), None)
        last_onset = result.trial.onsets[-1]
        for state in result.branches:
            if state.step > last_onset:  # after its own stimulus: the next stage's start
                if captured:
                    branches[(i, "next", couplings)] = state
            else:  # before it: the onset of a shorter interval of the same stage
                shorter = couplings[-1] - (last_onset - state.step)
                branches[(i, "at", (*couplings[:-1], shorter))] = state
        # keep only what the site's protocol can still start from
        prefix, tested = machine.stage.prefix, machine.stage.tested
        for key in [k for k in branches if k[0] == i]:
            _, kind, c = key
            if kind == "next":
                keep = c == prefix or (len(c) == len(prefix) + 1 and c[:-1] == prefix)
            elif kind == "tail":
                keep = c == prefix
            else:
                keep = c[:-1] == prefix and c[-1] not in tested
            if machine.done or not keep:
                del branches[key]

    def on_result(result: TrialResult) -> list[Trial]:
        i, couplings = result.trial.key
        if couplings and couplings[0] == "prefix alone":  # states for the upward search
            keep_prefix_alone(result)
            return trials_of(i)
        outcome = outcomes[i]
        analysis = _analyse(
            result, result.trial.onsets[-1], detection.sustained_after_ms, geometry, config, dt
        )
        captured = bool(result.captured and result.captured[-1])
        outcome.trials.append(_trial_record(result, couplings, analysis, dt))
        machine = machines[i]
        diverged = result.outcome == "diverged"
        if diverged:
            failures[(i, couplings)] = result.error
        machine.record(
            couplings, captured or analysis.induced, analysis.induced and not diverged, diverged
        )
        if analysis.induced:
            induced_analyses[(i, couplings)] = analysis
        keep_branches(result, captured)
        return trials_of(i)

    failures: dict[tuple, str] = {}
    first = [t for i in machines for t in trials_of(i)]
    runner.run(first, on_result=on_result)
    for i, machine in machines.items():
        outcome = outcomes[i]
        for record in outcome.trials:
            intervals = tuple(record["coupling_intervals_ms"])
            record["read_by_protocol"] = any(
                tuple(steps_to_ms(list(c), dt)) == intervals for c in machine.read
            )
        if machine.failed_at is not None:
            error = failures[(i, machine.failed_at)]
            outcome.status = f"trial {steps_to_ms(list(machine.failed_at), dt)} ms: {error}"
            log.warning("site %s: %s", outcome.site.name, outcome.status)
        elif machine.induced_by is None and not machine.final_couplings():
            tried = steps_to_ms(sorted(machine.stages[0].tested), dt)
            outcome.status = (
                f"no extrastimulus captured (S2 at {tried[0]:g}-{tried[-1]:g} ms after the last "
                "S1): the site's answer is unknown"
            )
            log.warning("site %s: %s", outcome.site.name, outcome.status)
        if machine.induced_by is not None:
            outcome.analysis = induced_analyses.get((i, machine.induced_by))
        outcome.induced = outcome.analysis is not None
        outcome.coupling_intervals_ms = steps_to_ms(list(machine.final_couplings()), dt)
        outcome.stages = [
            {
                "stimulus": stage.stimulus,
                "after_ms": steps_to_ms(list(stage.prefix), dt),
                "tested_ms": steps_to_ms(sorted(stage.tested, reverse=True), dt),
                "captured_ms": steps_to_ms(
                    sorted((c for c, r in stage.tested.items() if r["captured"]), reverse=True), dt
                ),
                "shortest_capturing_ms": None
                if stage.shortest_capturing is None
                else steps_to_ms(stage.shortest_capturing, dt),
            }
            for stage in machine.stages
        ]


def _rapid_pacing(runner, outcomes: list[SiteOutcome], geometry, config: Config) -> None:
    induction, dt = config.induction, config.simulation.dt_ms
    detection = induction.detection
    onsets = protocols.rapid_pacing_onsets(induction, dt)
    sustain = protocols.to_steps(
        detection.atrial_sustained_after_ms, dt, "induction.detection.atrial_sustained_after_ms"
    )
    duration = round(induction.stimulus.duration_ms / dt)

    def burst(i: int) -> Trial:
        return Trial(
            key=(i, ()),
            site=i,
            start=runner.initial,
            start_step=0,
            onsets=onsets,
            watch=onsets,
            quiet_after=onsets[-1] + duration,
            stop=onsets[-1] + sustain,
        )

    pending = [i for i, o in enumerate(outcomes) if o.status == "ok"]
    while pending:
        retry = []
        for result in runner.run([burst(i) for i in pending]):
            i = result.trial.site
            outcome = outcomes[i]
            captured = bool(result.captured and result.captured[0])
            if result.outcome != "diverged" and not captured and _stronger(runner, i, induction):
                retry.append(i)
                continue
            analysis = _analyse(
                result, onsets[-1], detection.atrial_sustained_after_ms, geometry, config, dt
            )
            outcome.trials.append(_trial_record(result, (), analysis, dt))
            outcome.s1_captured = captured
            if result.outcome == "diverged":
                outcome.status = result.error
            elif not captured:
                outcome.status = (
                    f"the first stimulus did not capture (at {runner.strength(i):g} µA/µF)"
                )
            outcome.induced = analysis.induced
            outcome.analysis = analysis if analysis.induced else None
            outcome.coupling_intervals_ms = steps_to_ms(
                [b - a for a, b in zip(onsets[:-1], onsets[1:], strict=True)], dt
            )
        pending = retry
