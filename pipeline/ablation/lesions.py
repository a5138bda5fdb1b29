"""Lesions shaped like clinical ones: ablation points of 3–5 mm radius along a line.

A radiofrequency lesion is roughly a sphere around the catheter tip; a clinical line is a
row of such points. Here (:func:`plan_lesion`) the nodes a critical site must remove are
covered with the fewest spheres of radius ``r`` centred on tissue nodes (greedy set cover,
within ``r`` minus the distance from a node to the centroids of its elements, so that every
element touching a covered node falls inside a sphere and the node leaves the tissue). The
points are listed from the one nearest the site's centre outwards. :func:`apply_lesions`
tags every conducting element whose centroid lies inside a sphere
:data:`~cardiotwin.meshing.tags.LESION` (non-conducting: the engine drops it, no tiny σ)
and gives each point the volume of the elements nearest to it, so the points' volumes add
up to the lesion's.

Controls and baselines: :func:`random_control` puts a line of the same volume at a random
border-zone location away from the targets (the target, not the volume, should matter);
:func:`pvi_lesions` isolates each pulmonary vein (surfaces ``vein-1``..) with a ring of
points at a fixed path distance from its opening (wide antral PVI, the atrial baseline).
Every position is in mesh mm (scanner mm for meshes from images).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.tags import LESION, NONCONDUCTING
from cardiotwin.pipeline.ablation.critical import CriticalSite, line_ends
from cardiotwin.pipeline.ablation.graph import TissueGraph

log = logging.getLogger(__name__)

VEIN_SURFACE = re.compile(r"^vein-\d+$")


class LesionError(ValueError):
    """A lesion that cannot be made (mesh too coarse, nothing to cover); names the fix."""


@dataclass(eq=False)
class LesionPoint:
    """One ablation point: centre (mesh mm), radius (mm), volume (ml, set when applied)."""

    centre_mm: np.ndarray
    radius_mm: float
    vt_ids: list[int] = field(default_factory=list)
    volume_ml: float = 0.0

    def as_dict(self) -> dict:
        return {
            "center_mm": [round(float(v), 3) for v in self.centre_mm],
            "radius_mm": round(float(self.radius_mm), 3),
            "volume_ml": round(float(self.volume_ml), 5),
            "vt_ids": list(self.vt_ids),
        }


@dataclass(eq=False)
class LesionSet:
    """A lesion line: its points, the line's end points, what it targets (``kind``:
    ``target``, ``pvi``, ``random-control``), the anchors it joins."""

    kind: str
    points: list[LesionPoint]
    line_ends_mm: np.ndarray
    vt_ids: list[int] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    label: str = ""
    #: :func:`line_pieces` with ends from the cut's nodes (targets); None: from the centres
    pieces: list[dict] | None = None

    @property
    def volume_ml(self) -> float:
        return float(sum(p.volume_ml for p in self.points))

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "vt_ids": list(self.vt_ids),
            "points": len(self.points),
            "line_ends_mm": [[round(float(v), 3) for v in p] for p in self.line_ends_mm],
            "anchors": list(self.anchors),
            "volume_ml": round(self.volume_ml, 5),
        }


def overlap_clusters(centres_mm, radii_mm) -> list[np.ndarray]:
    """Ablation points grouped where their spheres overlap (centres closer than the sum of
    their radii), transitively: each group's indices into ``centres_mm``, ascending, the
    groups in order of their first point."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_mm, dtype=np.float64), (len(centres),))
    if len(centres) == 0:
        return []
    pairs = cKDTree(centres).query_pairs(r=2 * float(radii.max()), output_type="ndarray")
    pairs = pairs[np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1)
                  < radii[pairs[:, 0]] + radii[pairs[:, 1]]]  # fmt: skip
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(centres),) * 2)
    _, cluster = connected_components(graph, directed=False)
    order = sorted(set(cluster.tolist()), key=lambda c: int(np.flatnonzero(cluster == c)[0]))
    return [np.flatnonzero(cluster == c) for c in order]


def number_runs(numbers) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1–3, 7, 9–10"`` (the report's lesion numbers)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size == 0:
        return ""
    runs = np.split(numbers, np.flatnonzero(np.diff(numbers) != 1) + 1)
    return ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def line_pieces(centres_mm, radii_mm, nodes_mm=None) -> list[dict]:
    """A line's ablation points grouped into pieces whose spheres overlap
    (:func:`overlap_clusters`): each piece's point indices (into ``centres_mm``), its two
    ends (mm) and the length between them (mm). The ends are the extreme points along the
    piece's principal axis: of the tissue nodes ``nodes_mm`` nearest to the piece's points
    when given (the cut the piece removes), else of its centres (one point: that point
    twice). A line has more than one piece where its cut crosses scar or has separate
    parts (a channel cut at both ends, a circuit with two corridors): the clinician
    ablates the pieces, not the stretch between them."""
    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    nearest = None
    if nodes_mm is not None and len(centres):
        nodes_mm = np.asarray(nodes_mm, dtype=np.float64).reshape(-1, 3)
        nearest = cKDTree(centres).query(nodes_mm)[1]
    pieces = []
    for members in overlap_clusters(centres, radii_mm):
        points = centres[members]
        if nearest is not None and np.isin(nearest, members).any():
            points = nodes_mm[np.isin(nearest, members)]
        ends = line_ends(points)
        pieces.append({
            "points": [int(m) for m in members],
            "ends_mm": ends,
            "length_mm": float(np.linalg.norm(ends[1] - ends[0])),
        })  # fmt: skip
    return pieces


def pieces_of_line(centres_mm, radii_mm, line_ends_mm) -> list[dict]:
    """:func:`line_pieces` of a line whose cut nodes are not at hand (a PVI ring, a random
    control, an ``ablation.json`` written before pieces were recorded): ends from the
    centres, except that a line in one piece keeps its own recorded ends."""
    pieces = line_pieces(centres_mm, radii_mm)
    if len(pieces) == 1:
        ends = np.asarray(line_ends_mm, dtype=np.float64).reshape(-1, 3)[[0, -1]]
        pieces[0]["ends_mm"] = ends
        pieces[0]["length_mm"] = float(np.linalg.norm(ends[1] - ends[0]))
    return pieces


def _element_reach_mm(graph: TissueGraph, nodes: np.ndarray) -> float:
    """Largest distance from one of ``nodes`` to the centroid of a conducting element it
    belongs to, mm (a sphere reaching that far past a node takes its whole star)."""
    mesh = graph.mesh
    tets = mesh.tets[graph.conducting]
    mesh_nodes = graph.nodes[nodes]
    rows = np.nonzero(np.isin(tets, mesh_nodes).any(axis=1))[0]
    if rows.size == 0:
        return 0.0
    t = tets[rows]
    centroid = mesh.points_mm[t].mean(axis=1)
    d = np.linalg.norm(mesh.points_mm[t] - centroid[:, None, :], axis=2)
    return float(d[np.isin(t, mesh_nodes)].max())


def cover_points(
    graph: TissueGraph, nodes: np.ndarray, radius_mm: float, first_mm: np.ndarray | None = None
) -> np.ndarray:
    """(k, 3) centres of the fewest spheres found greedily whose reach (``radius_mm`` less
    the element reach) covers every one of ``nodes``: ``first_mm`` first when given, then
    tissue node positions."""
    nodes = np.unique(np.asarray(nodes, dtype=np.int64))
    if nodes.size == 0:
        raise LesionError("nothing to cover: the critical site has no tissue node")
    reach = radius_mm - _element_reach_mm(graph, nodes)
    if reach <= 0:
        raise LesionError(
            f"the mesh is too coarse for lesions of radius {radius_mm} mm: its elements reach "
            f"{radius_mm - reach:.2f} mm from a node; use a finer mesh or a larger "
            "ablation.lesion_radius_mm"
        )
    points = graph.points_mm[nodes]
    tree = cKDTree(points)
    covers = [np.asarray(c, dtype=np.int64) for c in tree.query_ball_point(points, reach)]
    uncovered = np.ones(nodes.size, dtype=bool)
    first = []
    if first_mm is not None:
        first = [np.asarray(first_mm, dtype=np.float64).reshape(3)]
        uncovered[np.asarray(tree.query_ball_point(first[0], reach), dtype=np.int64)] = False
    chosen = []
    while uncovered.any():
        gain = np.array([np.count_nonzero(uncovered[c]) for c in covers])
        best = int(np.argmax(gain))
        chosen.append(best)
        uncovered[covers[best]] = False
    return np.vstack(first + [points[chosen]])


def covered_nodes(graph: TissueGraph, lesion_set: LesionSet, nodes: np.ndarray) -> np.ndarray:
    """(len(nodes),) bool: which of ``nodes`` (tissue indices) ``lesion_set`` removes (every
    conducting element around them lies inside one of its spheres)."""
    nodes = np.asarray(nodes, dtype=np.int64)
    if not lesion_set.points or nodes.size == 0:
        return np.zeros(nodes.size, dtype=bool)
    centres = np.array([p.centre_mm for p in lesion_set.points])
    radii = np.array([p.radius_mm for p in lesion_set.points])
    mesh = graph.mesh
    inside = lesion_elements(mesh, centres, radii) >= 0
    tets = mesh.tets[graph.conducting]
    outside_nodes = np.zeros(mesh.n_points, dtype=bool)
    outside_nodes[tets[~inside[graph.conducting]].ravel()] = True
    return ~outside_nodes[graph.nodes[nodes]]


def plan_lesion(graph: TissueGraph, site: CriticalSite, radius_mm: float) -> LesionSet:
    """Ablation points of ``radius_mm`` covering ``site``'s nodes: the first at its centre,
    the others nearest it first."""
    centres = cover_points(graph, site.nodes, radius_mm, first_mm=site.centre_mm)
    order = np.argsort(np.linalg.norm(centres - site.centre_mm, axis=1), kind="stable")
    points = [LesionPoint(c.copy(), radius_mm, [site.circuit_id]) for c in centres[order]]
    return LesionSet(
        kind="target",
        points=points,
        line_ends_mm=site.line_ends_mm.copy(),
        vt_ids=[site.circuit_id],
        anchors=list(site.anchors),
        label=f"critical site of VT {site.circuit_id} ({site.mechanism})",
        pieces=line_pieces(centres[order], radius_mm, graph.points_mm[site.nodes]),
    )


def lesion_elements(
    mesh: Mesh,
    centres_mm: np.ndarray,
    radii_mm: np.ndarray,
    centroid_tree: tuple[np.ndarray, cKDTree] | None = None,
) -> np.ndarray:
    """(m,) index of the sphere nearest each element centroid among those containing it
    (−1: none). ``centroid_tree``: the mesh's element centroids and their k-d tree, for a
    caller that asks many times (building them is most of one call's time)."""
    out = np.full(mesh.n_elements, -1, dtype=np.int64)
    if len(centres_mm) == 0:
        return out
    centroids, tree = centroid_tree or element_centroid_tree(mesh)
    best = np.full(mesh.n_elements, np.inf)
    for k, (c, r) in enumerate(zip(centres_mm, radii_mm, strict=True)):
        rows = np.asarray(tree.query_ball_point(c, r), dtype=np.int64)
        if rows.size == 0:
            continue
        d = np.linalg.norm(centroids[rows] - c, axis=1)
        closer = d < best[rows]
        out[rows[closer]] = k
        best[rows[closer]] = d[closer]
    return out


def element_centroid_tree(mesh: Mesh) -> tuple[np.ndarray, cKDTree]:
    """The element centroids (mm) of ``mesh`` and a k-d tree of them."""
    centroids = mesh.element_centres_mm()
    return centroids, cKDTree(centroids)


def apply_lesions(
    mesh: Mesh, lesion_sets: list[LesionSet], blocking: tuple[int, ...] = NONCONDUCTING
) -> Mesh:
    """A copy of ``mesh`` with every conducting element (tag not in ``blocking``, the
    tissue's non-conducting tags: in an atrium dense fibrosis conducts and is ablated too)
    inside a lesion point tagged ``LESION``; each point's ``volume_ml`` is set to the newly
    lesioned volume nearest it."""
    points = [p for s in lesion_sets for p in s.points]
    centres = np.array([p.centre_mm for p in points]).reshape(-1, 3)
    radii = np.array([p.radius_mm for p in points])
    owner = lesion_elements(mesh, centres, radii)
    new = (owner >= 0) & ~np.isin(mesh.region, blocking)
    volume = np.abs(mesh.signed_volumes_mm3())
    per_point = np.bincount(owner[new], volume[new], len(points)) / 1000.0
    for p, v in zip(points, per_point, strict=True):
        p.volume_ml = float(v)
    region = mesh.region.copy()
    region[new] = LESION
    return Mesh(
        points_mm=mesh.points_mm,
        tets=mesh.tets,
        region=region,
        fibres=mesh.fibres,
        sheets=mesh.sheets,
        surfaces=mesh.surfaces,
        node_sets=mesh.node_sets,
        point_data=mesh.point_data,
        affine=mesh.affine,
    )


def _tangent_direction(graph: TissueGraph, node: int, span_mm: float, rng) -> np.ndarray:
    """A random unit direction in the local plane of the wall around ``node`` (the two main
    axes of the tissue within ``span_mm``)."""
    near = cKDTree(graph.points_mm).query_ball_point(graph.points_mm[node], span_mm)
    local = graph.points_mm[near] - graph.points_mm[near].mean(axis=0)
    axes = np.linalg.svd(local, full_matrices=False)[2] if len(near) >= 3 else np.eye(3)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    d = np.cos(angle) * axes[0] + np.sin(angle) * axes[1]
    return d / np.linalg.norm(d)


def random_control(
    graph: TissueGraph,
    targets: list[LesionSet],
    avoid_nodes: np.ndarray,
    volume_ml: float,
    radius_mm: float,
    rng: np.random.Generator,
    attempts: int = 200,
) -> LesionSet:
    """A line of points of ``radius_mm`` at a random border-zone location, grown point by
    point along a random direction in the wall until its volume reaches ``volume_ml``. Every
    point is at least two radii from every target point (no sphere overlaps a target's), the
    line starts three radii away, and no sphere holds an ``avoid_nodes`` node. A draw that
    cannot reach the volume (the wall ends) or breaks these rules is drawn again."""
    mesh = graph.mesh
    target_centres = np.array([p.centre_mm for s in targets for p in s.points]).reshape(-1, 3)
    candidates = np.nonzero(graph.border)[0]
    if target_centres.size:
        d = cKDTree(target_centres).query(graph.points_mm[candidates])[0]
        candidates = candidates[d > 3.0 * radius_mm]
    if candidates.size == 0:
        raise LesionError(
            "no border-zone / fibrosis tissue lies away from the targets: a random control "
            "lesion cannot be placed"
        )
    tree = cKDTree(graph.points_mm)
    avoid = graph.points_mm[np.asarray(avoid_nodes, dtype=np.int64)]
    volume = np.abs(mesh.signed_volumes_mm3())
    conducting = graph.conducting
    centroid_tree = element_centroid_tree(mesh)
    best = 0.0
    for attempt in range(attempts):
        if attempt and attempt % 50 == 0:
            log.info(
                "random control: %d of %d draws, none of %.3g ml yet (largest %.3g ml)",
                attempt, attempts, volume_ml, best,
            )  # fmt: skip
        start = int(rng.choice(candidates))
        direction = _tangent_direction(graph, start, 3.0 * radius_mm, rng)
        centres: list[np.ndarray] = []
        steps = [0]
        for k in range(1, 64):
            steps += [k, -k]

        def lesioned_ml(points) -> float:
            owner = lesion_elements(
                mesh, np.array(points), np.full(len(points), radius_mm), centroid_tree
            )
            return volume[(owner >= 0) & conducting].sum() / 1000.0

        for k in steps:
            # the point that completes the volume is moved in from a full step as far as it
            # can be while still reaching it: the control matches the target's volume
            # from above as closely as its spheres allow
            for fraction in (0.25, 0.5, 0.75, 1.0) if k else (1.0,):
                offset = (abs(k) - 1 + fraction) * np.sign(k)
                wanted = graph.points_mm[start] + offset * 1.5 * radius_mm * direction
                centre = graph.points_mm[tree.query(wanted)[1]]
                if any(np.linalg.norm(centre - c) < 0.5 * radius_mm for c in centres):
                    continue
                if fraction == 1.0 or lesioned_ml([*centres, centre]) >= volume_ml:
                    break
            else:
                continue
            centres.append(centre)
            if lesioned_ml(centres) >= volume_ml:
                break
        centres_arr = np.array(centres)
        if avoid.size and (cKDTree(centres_arr).query(avoid)[0] <= radius_mm).any():
            continue  # it would cut the target itself: draw again
        if (
            target_centres.size
            and (cKDTree(target_centres).query(centres_arr)[0] < 2.0 * radius_mm).any()
        ):
            continue  # a sphere would overlap a target's
        reached = lesioned_ml(centres)
        best = max(best, reached)
        if reached < volume_ml * (1.0 - 1e-9):
            continue  # too small to compare with the targets: draw again
        points = [LesionPoint(c.copy(), radius_mm) for c in centres_arr]
        return LesionSet(
            kind="random-control",
            points=points,
            line_ends_mm=centres_arr[[0, -1]] if len(centres_arr) > 1 else centres_arr[[0, 0]],
            label=f"random border-zone control of {volume_ml:.3g} ml",
        )
    raise LesionError(
        f"no random border-zone location away from the targets took a line of {volume_ml:.3g} "
        f"ml in {attempts} draws (the largest reached {best:.3g} ml): the wall is too small "
        "or the border zone too close to the targets for a control of their volume"
    )


def random_control_lines(
    graph: TissueGraph,
    targets: list[LesionSet],
    avoid_nodes: np.ndarray,
    radius_mm: float,
    rng: np.random.Generator,
    attempts: int = 200,
) -> list[LesionSet]:
    """The targets' whole volume at random border zone (:func:`random_control`): one line
    when a line of that volume fits in the wall; else, when the targets are several lines
    (a loop's later rounds add up to more than one wall can take in a line), one random
    line per targeted line, each of its volume and kept two radii from the others. Each
    line's ``label`` says which it is; :class:`LesionError` when neither can be placed."""
    total = sum(s.volume_ml for s in targets)
    try:
        line = random_control(graph, targets, avoid_nodes, total, radius_mm, rng, attempts)
    except LesionError as exc:
        if len(targets) < 2:
            raise
        single = exc
    else:
        return [line]
    lines: list[LesionSet] = []
    for k, target in enumerate(targets, start=1):
        try:
            line = random_control(
                graph, [*targets, *lines], avoid_nodes, target.volume_ml, radius_mm, rng, attempts
            )
        except LesionError as exc:
            raise LesionError(
                f"{single}; nor as {len(targets)} lines of the targeted lines' volumes (line "
                f"{k}: {exc})"
            ) from exc
        line.label = (
            f"random border-zone control, line {k} of {len(targets)} ({target.volume_ml:.3g} ml, "
            f"as targeted line {k}: no single line of {total:.3g} ml fits)"
        )
        lines.append(line)
    return lines


def pvi_lesions(graph: TissueGraph, distance_mm: float, radius_mm: float) -> list[LesionSet]:
    """Pulmonary vein isolation: per surface ``vein-N`` a ring of points at ``distance_mm``
    path distance (through the tissue) from the vein's opening. An atrium without vein
    surfaces cannot be isolated (:class:`LesionError`)."""
    veins = sorted(name for name in graph.mesh.surfaces if VEIN_SURFACE.match(name))
    if not veins:
        raise LesionError(
            "pulmonary vein isolation needs the vein openings as surfaces vein-1..vein-N "
            "(the atrial mesher names them); this mesh has none"
        )
    adjacency = graph.adjacency()
    sets = []
    for name in veins:
        ostium = graph.local[np.unique(graph.mesh.surfaces[name])]
        ostium = ostium[ostium >= 0]
        if ostium.size == 0:
            continue
        d = dijkstra(adjacency, directed=False, indices=ostium, min_only=True)
        ring = np.nonzero((d >= distance_mm) & (d <= distance_mm + graph.max_edge_mm))[0]
        if ring.size == 0:
            raise LesionError(
                f"no tissue lies {distance_mm} mm from the opening of {name}: lower "
                "ablation.pvi_distance_mm"
            )
        centres = cover_points(graph, ring, radius_mm)
        sets.append(
            LesionSet(
                kind="pvi",
                points=[LesionPoint(c.copy(), radius_mm) for c in centres],
                line_ends_mm=centres[[0, -1]] if len(centres) > 1 else centres[[0, 0]],
                anchors=[f"surface {name}"],
                label=f"isolation of {name} at {distance_mm:g} mm",
            )
        )
    return sets
