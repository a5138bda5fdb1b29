"""The virtual ablation loop: target, ablate, re-induce from every site, repeat.

:func:`run_ablation` starts from an induction study of the mesh (an :class:`InductionRound`)
and, while the heart is inducible and the budget (``max_rounds``, ``max_total_volume_ml``)
allows, finds the critical site of every induced circuit (:mod:`.critical`), places a lesion
line on each (:mod:`.lesions`), and re-runs the *whole* induction protocol on the ablated mesh
through the caller's ``induce(mesh, round)`` (new circuits may appear after ablation; VAAT,
Prakosa et al. 2018). Every round's targets, lesions and induction summary are kept. With
``strategy: pvi`` the one round is pulmonary vein isolation (the atrial baseline);
``pvi+targeted`` isolates the veins first, then targets what is still induced (OPTIMA,
Boyle et al. 2019, ablates drivers that persist after PVI).

How it ends (``status``), never a silent "non-inducible":

- ``not inducible before ablation``: the input induced nothing (an empty, valid result);
- ``non-inducible after ablation``: the last induction induced nothing from any site that
  answered, and every site answered except those swallowed by a lesion and those that gave
  no answer before ablation either (e.g. S1 not captured next to scar): both are listed,
  in the JSON and the note (``non_inducible_after`` true);
- ``budget reached (rounds)`` / ``budget reached (volume)``: still inducible when the budget
  ran out (the lesions that would have exceeded the volume are reported, not placed);
- ``target unreachable``: no circuit of the round had a site that can be anchored;
- ``induction incomplete``: a site that answered before ablation and is not in a lesion
  gave no answer after it (the induction's note says why), so non-inducibility cannot be
  claimed;
- ``pvi done``: the PVI baseline was applied and re-induced.

Random controls (``random_controls`` > 0): copies of the input mesh each get one line of the
targeted lesions' total volume (at least that, never less) at a random border-zone location
away from the targets (no sphere overlapping theirs); when no line of that volume fits in the
wall, one random line per targeted line, each of its volume
(:func:`~cardiotwin.pipeline.ablation.lesions.random_control_lines`); plus the PVI rings
when the strategy placed them, and are re-induced; how many stay inducible shows that the
target, not the volume, matters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.sparse.csgraph import connected_components

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.tags import LESION, NONCONDUCTING
from cardiotwin.pipeline.ablation.critical import Circuit, find_critical_site
from cardiotwin.pipeline.ablation.graph import TissueGraph, anchors
from cardiotwin.pipeline.ablation.lesions import (
    LesionError,
    LesionSet,
    apply_lesions,
    covered_nodes,
    plan_lesion,
    pvi_lesions,
    random_control_lines,
)
from cardiotwin.pipeline.config import AblationConfig

log = logging.getLogger(__name__)


class AblationError(ValueError):
    """An ablation run that cannot start (zero budget, unusable input); names the fix."""


@dataclass(eq=False)
class InductionRound:
    """One induction study as the loop needs it: the verdict, the circuits (activation maps on
    mesh nodes) and a JSON-ready summary (``report``: the induction's own report)."""

    inducible: bool
    complete: bool
    note: str
    circuits: list[Circuit]
    sites: list[dict]  # per site: name, status, induced, vt_id
    report: dict = field(default_factory=dict)

    def summary(self, mesh: Mesh | None = None, blocking: tuple[int, ...] = NONCONDUCTING) -> dict:
        """JSON-ready verdict and per-site lists; with ``mesh`` (and its tissue's
        non-conducting tags ``blocking``) also the sites a lesion swallowed or cut off."""
        swallowed = [] if mesh is None else sites_in_lesions(mesh, self.sites, blocking)
        isolated = [] if mesh is None else sites_isolated(mesh, self.sites, blocking)
        return {
            "inducible": self.inducible,
            "complete": self.complete,
            "note": self.note,
            "sites_paced": sum(1 for s in self.sites if s["status"] == "ok"),
            "sites_inducing": [s["name"] for s in self.sites if s["induced"]],
            "sites_without_answer": [
                {"name": s["name"], "status": s["status"]}
                for s in self.sites
                if s["status"] != "ok"
            ],
            "sites_in_lesions": swallowed,
            "sites_isolated": isolated,
            "sites_inducing_not_isolated": [
                s["name"] for s in self.sites if s["induced"] and s["name"] not in isolated
            ],
            "unique_vts": [
                {
                    "id": c.id,
                    "cycle_length_ms": round(float(c.cycle_length_ms), 3),
                    "exit_site_mm": None if c.exit_mm is None else list(c.exit_mm),
                    "sites": list(c.sites),
                }
                for c in self.circuits
            ],
        }


#: induce(mesh, round number) -> the induction study of that mesh
Inducer = Callable[[Mesh, int], InductionRound]


def sites_in_lesions(
    mesh: Mesh, sites: list[dict], blocking: tuple[int, ...] = NONCONDUCTING
) -> list[str]:
    """Names of the sites that gave no answer because every node of theirs lies in
    non-conducting tissue (tags ``blocking``) that includes a lesion."""
    lesion_nodes = np.zeros(mesh.n_points, dtype=bool)
    lesion_nodes[mesh.tets[mesh.region == LESION].ravel()] = True
    graph_nodes = np.zeros(mesh.n_points, dtype=bool)
    graph_nodes[mesh.tets[~np.isin(mesh.region, blocking)].ravel()] = True
    out = []
    for s in sites:
        nodes = mesh.node_sets.get(s["name"])
        if s["status"] == "ok" or nodes is None or nodes.size == 0:
            continue
        if not graph_nodes[nodes].any() and lesion_nodes[nodes].any():
            out.append(s["name"])
    return out


def sites_isolated(
    mesh: Mesh, sites: list[dict], blocking: tuple[int, ...] = NONCONDUCTING
) -> list[str]:
    """Names of the sites whose conducting nodes all lie outside the atrium's or ventricle's
    main body once lesions are placed: outside the largest connected piece of conducting
    tissue (by volume), e.g. a site on a vein sleeve after pulmonary vein isolation. Pacing
    there can only answer for the isolated piece, so a comparison of inducing sites between
    lesion strategies counts these apart. Empty for a mesh without lesions."""
    if not np.any(mesh.region == LESION):
        return []
    graph = TissueGraph.of(mesh, blocking)
    count, label = connected_components(graph.adjacency(), directed=False)
    if count < 2:
        return []
    main = int(np.argmax(np.bincount(label, graph.volume_mm3, count)))
    out = []
    for s in sites:
        nodes = mesh.node_sets.get(s["name"])
        local = graph.local[nodes] if nodes is not None else np.zeros(0, dtype=np.int64)
        local = local[local >= 0]
        if local.size and not np.any(label[local] == main):
            out.append(s["name"])
    return out


@dataclass(eq=False)
class AblationResult:
    """Everything the loop did (see :mod:`cardiotwin.pipeline.ablation.report`)."""

    status: str
    note: str
    non_inducible_after: bool
    lesion_sets: list[tuple[int, LesionSet]]  # (round, set)
    per_round: list[dict]
    rounds: int
    total_volume_ml: float
    mesh: Mesh
    controls: list[dict] = field(default_factory=list)


def unanswered(induction: InductionRound) -> set[str]:
    """Sites of a study that gave no answer (not paced, S1 not captured, ...)."""
    return {s["name"] for s in induction.sites if s["status"] != "ok"}


#: How the statuses of sites that could not be paced begin (pipeline/induction/study.py):
#: the only answers a site that failed before ablation is excused for giving again.
PACING_FAILURES = ("not paced:", "S1 did not capture", "the first stimulus did not capture")


def unpaced(sites: list[dict]) -> set[str]:
    """Sites (records with ``name`` and ``status``) that could not be paced."""
    return {s["name"] for s in sites if str(s["status"]).startswith(PACING_FAILURES)}


def _still_unpaced(induction: InductionRound, before: set[str]) -> set[str]:
    """Sites that could not be paced before ablation (``before``) and still cannot. A site
    that fails in another way now (a trial that diverged, say) is not excused: it was paced
    and its answer is missing."""
    return unpaced(induction.sites) & before


def _non_inducible(
    mesh: Mesh, induction: InductionRound, before: set[str], blocking: tuple[int, ...]
) -> bool:
    """Nothing induced, and every site answered except those a lesion swallowed and those
    that could not be paced before ablation and still cannot (``before``: :func:`unpaced` of
    the induction before ablation)."""
    if induction.inducible:
        return False
    if induction.complete:
        return True
    excused = set(sites_in_lesions(mesh, induction.sites, blocking))
    return unanswered(induction) <= excused | _still_unpaced(induction, before)


def _unpaced_note(induction: InductionRound, before: set[str]) -> str:
    both = sorted(_still_unpaced(induction, before))
    if not both:
        return ""
    return (
        f" (site(s) {', '.join(both)} gave no answer before ablation either and are not "
        "counted: " + "; ".join(
            f"{s['name']}: {s['status']}" for s in induction.sites if s["name"] in both
        ) + ")"
    )  # fmt: skip


#: the note of a circuit left for the next round because this one cuts an isthmus
DEFERRED = (
    "not targeted in this round: a protected isthmus was found, and its line comes first "
    "(this circuit may run through it; the re-induction tells)"
)


def _targets(
    mesh: Mesh,
    circuits: list[Circuit],
    config: AblationConfig,
    blocking: tuple[int, ...] = NONCONDUCTING,
):
    """Critical sites of ``circuits`` and their lesion lines. A circuit whose site the lines
    planned so far already cover (the same circuit turning the other way, a second VT
    through the same isthmus) adds its id to those lines instead of a new one; a partly
    covered site gets points for the rest only. When a protected isthmus is found, only
    isthmus lines are planned in this round (:data:`DEFERRED` on the others)."""
    graph = TissueGraph.of(mesh, blocking)
    anchor_set = anchors(graph)
    radius = config.lesion_radius_mm
    sites = [
        find_critical_site(
            graph,
            anchor_set,
            circuit,
            border_zone_cost=config.border_zone_cost,
            anchors_per_line=config.anchors_per_line,
            radius_mm=radius,
            isthmus_lines=config.isthmus_lines,
        )
        for circuit in circuits
    ]
    # protected isthmuses first (the classic target of scar-related VT ablation), then
    # the other circuits' cuts, each group in VT order. A round that found an isthmus places
    # only its lines: the other circuits often run through the same channel (on the sample
    # patient the two VTs without a protected diastole from AHA-12 and AHA-7 died within
    # 1.6 s once the channel was cut), and the re-induction says which are left
    order = sorted(range(len(sites)), key=lambda k: sites[k].mechanism != "isthmus")
    isthmus = any(s.mechanism == "isthmus" and s.reachable for s in sites)
    sets = []
    for k in order:
        site, circuit = sites[k], circuits[k]
        if isthmus and site.mechanism != "isthmus":
            sites[k] = replace(site, note=(site.note + "; " if site.note else "") + DEFERRED)
            continue
        if not site.reachable:
            log.warning("VT %d: %s", circuit.id, site.note)
            continue
        covered = np.zeros(site.nodes.size, dtype=bool)
        for lesion_set in sets:
            inside = covered_nodes(graph, lesion_set, site.nodes)
            if inside.any():
                lesion_set.vt_ids.append(circuit.id)
                for point in lesion_set.points:
                    point.vt_ids.append(circuit.id)
                covered |= inside
        if covered.all():
            continue
        rest = replace(site, nodes=site.nodes[~covered])
        if covered.any():  # the first point: the uncovered node nearest the site's centre
            left = graph.points_mm[rest.nodes]
            rest.centre_mm = left[np.argmin(np.linalg.norm(left - site.centre_mm, axis=1))]
        sets.append(plan_lesion(graph, rest, radius))
    return graph, sites, sets


def run_ablation(
    mesh: Mesh,
    first: InductionRound,
    induce: Inducer,
    config: AblationConfig,
    blocking: tuple[int, ...] = NONCONDUCTING,
) -> AblationResult:
    """The ablation loop on ``mesh`` from its induction study ``first`` (module docstring).
    ``blocking``: the element tags the tissue does not conduct (the tissue configuration's
    non-conducting regions for the mesh's chamber): the graph the targets are found on, the
    elements a lesion turns into ``LESION`` and the sites it swallows or cuts off follow it."""
    if config.max_rounds == 0 or config.max_total_volume_ml == 0:
        raise AblationError(
            "the lesion budget is zero (ablation.max_rounds = "
            f"{config.max_rounds}, ablation.max_total_volume_ml = {config.max_total_volume_ml}"
            "): nothing can be ablated; give at least one round and a positive volume"
        )
    per_round = [{"round": 0, "induction": first.summary(mesh, blocking)}]
    if not first.inducible:
        if first.complete:
            status, note = (
                "not inducible before ablation",
                f"the input is not inducible ({first.note}): nothing to ablate",
            )
        else:
            status, note = (
                "induction incomplete",
                f"the input induced nothing, but not every site gave an answer ({first.note}):"
                " nothing targeted, and non-inducibility is not claimed",
            )
        log.info("%s", note)
        return AblationResult(status, note, first.complete, [], per_round, 0, 0.0, mesh)

    current, induction = mesh, first
    placed: list[tuple[int, LesionSet]] = []
    total = 0.0
    status, note = "budget reached (rounds)", ""
    for round_no in range(1, config.max_rounds + 1):
        record: dict = {"round": round_no, "targets": []}
        use_pvi = config.strategy == "pvi" or (config.strategy == "pvi+targeted" and round_no == 1)
        if use_pvi:
            sets = pvi_lesions(
                TissueGraph.of(current, blocking), config.pvi_distance_mm, config.lesion_radius_mm
            )
        else:
            _, sites, sets = _targets(current, induction.circuits, config, blocking)
            record["targets"] = [s.as_dict() for s in sites]
            if not sets:
                status = "target unreachable"
                note = "; ".join(s.note for s in sites) or "no circuit to target"
                record["note"] = note
                per_round.append(record)
                break
        ablated = apply_lesions(current, sets, blocking)
        volume = sum(s.volume_ml for s in sets)
        record["lesion_sets"] = [s.as_dict() for s in sets]
        record["volume_ml"] = round(volume, 5)
        if total + volume > config.max_total_volume_ml + 1e-12:
            status = "budget reached (volume)"
            note = (
                f"round {round_no} would bring the lesion volume to {total + volume:.3g} ml, "
                f"above ablation.max_total_volume_ml = {config.max_total_volume_ml} ml; its "
                "lesions were not placed"
            )
            record["placed"] = False
            record["note"] = note
            per_round.append(record)
            break
        record["placed"] = True
        total += volume
        record["total_volume_ml"] = round(total, 5)
        placed += [(round_no, s) for s in sets]
        current = ablated
        pieces = sum(len(s.pieces) if s.pieces else 1 for s in sets)
        log.info(
            "round %d: %d lesion line(s)%s, %d points, %.3g ml (total %.3g ml); re-inducing",
            round_no, len(sets), f" in {pieces} pieces" if pieces > len(sets) else "",
            sum(len(s.points) for s in sets), volume, total,
        )  # fmt: skip
        induction = induce(current, round_no)
        record["induction"] = induction.summary(current, blocking)
        per_round.append(record)
        log.info("round %d: %s", round_no, induction.note)
        if _non_inducible(current, induction, unpaced(first.sites), blocking):
            status = "non-inducible after ablation"
            note = (
                f"non-inducible after {round_no} round(s), {total:.3g} ml of lesions"
                + _unpaced_note(induction, unpaced(first.sites))
            )
            break
        if not induction.inducible:
            status = "induction incomplete"
            missing = "; ".join(
                f"{site['name']}: {site['status']}"
                for site in induction.sites
                if site["status"] != "ok"
            )
            note = f"nothing induced after round {round_no}, but {induction.note}" + (
                f" (no answer from {missing})" if missing else ""
            )
            break
        if config.strategy == "pvi":
            status = "pvi done"
            note = f"still inducible after pulmonary vein isolation: {induction.note}"
            break
    else:
        note = (
            f"still inducible after ablation.max_rounds = {config.max_rounds} round(s) "
            f"({total:.3g} ml of lesions): {induction.note}"
        )
    # the last re-induction's summary already lists them (no second graph of the mesh)
    last = next((r["induction"] for r in reversed(per_round) if "induction" in r), {})
    isolated = last.get("sites_isolated", [])
    if isolated:
        note += (
            f"; site(s) {', '.join(isolated)} lie in tissue the lesions cut off from the main "
            "body (e.g. inside a vein's isolation ring): pacing there answers for that piece "
            "only, so they are listed apart (sites_isolated)"
        )
    rounds = sum(1 for r in per_round[1:] if r.get("placed"))
    non_inducible = status == "non-inducible after ablation"
    return AblationResult(status, note, non_inducible, placed, per_round, rounds, total, current)


def run_controls(
    mesh: Mesh,
    result: AblationResult,
    induce: Inducer,
    config: AblationConfig,
    blocking: tuple[int, ...] = NONCONDUCTING,
) -> list[dict]:
    """Random border-zone controls of the targeted volume on the input ``mesh`` (module
    docstring); one record per draw. With ``pvi+targeted`` each control has the same PVI
    rings as the ablation and the random line in place of the targets, so it differs from
    the ablation only in where the targeted volume went. ``blocking`` as for
    :func:`run_ablation`."""
    targets = [s for _, s in result.lesion_sets if s.kind == "target"]
    volume = sum(s.volume_ml for s in targets)
    if config.random_controls == 0 or not targets or volume <= 0:
        return []
    before = unpaced(result.per_round[0]["induction"]["sites_without_answer"])
    baseline = [s for _, s in result.lesion_sets if s.kind == "pvi"]
    if baseline:
        mesh = apply_lesions(mesh, baseline, blocking)
    graph = TissueGraph.of(mesh, blocking)
    avoid = graph.local[_target_mesh_nodes(mesh, targets)]
    avoid = avoid[avoid >= 0]
    rng = np.random.default_rng(np.random.SeedSequence(config.seed))
    controls = []
    for draw in range(1, config.random_controls + 1):
        try:
            lines = random_control_lines(graph, targets, avoid, config.lesion_radius_mm, rng)
        except LesionError as exc:
            controls.append({"draw": draw, "placed": False, "note": str(exc)})
            break
        ablated = apply_lesions(mesh, lines, blocking)
        placed_ml = sum(line.volume_ml for line in lines)
        log.info(
            "control %d: %.3g ml at random border zone (%d line(s)); re-inducing",
            draw, placed_ml, len(lines),
        )  # fmt: skip
        induction = induce(ablated, -draw)
        controls.append(
            {
                "draw": draw,
                "placed": True,
                "lesion_sets": [line.as_dict() for line in lines],
                "lesions": [p.as_dict() for line in lines for p in line.points],
                "volume_ml": round(placed_ml, 5),
                "with_pvi": bool(baseline),
                "non_inducible_after": _non_inducible(ablated, induction, before, blocking),
                "induction": induction.summary(ablated, blocking),
            }
        )
    return controls


def _target_mesh_nodes(mesh: Mesh, targets: list[LesionSet]) -> np.ndarray:
    """Mesh nodes inside the targets' spheres, less one radius (their core)."""
    centres = np.array([p.centre_mm for s in targets for p in s.points]).reshape(-1, 3)
    radii = np.array([p.radius_mm for s in targets for p in s.points])
    from scipy.spatial import cKDTree

    d, k = cKDTree(centres).query(mesh.points_mm)
    return np.nonzero(d <= 0.5 * radii[k])[0]
