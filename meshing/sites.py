"""AHA 17-segment model of the LV and reproducible pacing sites as named node sets.

**AHA segments** (Cerqueira et al. 2002, Circulation 105:539): the LV is cut perpendicular to
its long axis into the apex (segment 17: the myocardium beyond the end of the cavity, i.e.
below the endocardial apex) and three equal thirds of the cavity's length (apical, mid,
basal; Cerqueira: "three circular sections ... of equal thirds"). Basal and mid thirds hold six
60° segments, the apical third four 90° segments, counted from the septum with the rotational
coordinate (0 mid-septum, +π/2 anterior; :mod:`cardiotwin.meshing.coordinates`), so the
septum spans ±60° (the insertions of the RV) in the basal and mid rings and ±45° apically:

====== ================ ================ ================ ===================
level  anterior         septal           inferior         lateral
====== ================ ================ ================ ===================
basal  1 [60°, 120°)    2 [0, 60°),      4 [−120°, −60°)  5 [−180°, −120°),
                        3 [−60°, 0)                       6 [120°, 180°]
mid    7                8, 9             10               11, 12
apical 13 [45°, 135°)   14 [−45°, 45°)   15 [−135°, −45°) 16 |φ| ≥ 135°
====== ================ ================ ================ ===================

The point field ``aha_segment`` (int32) is 1..17 on LV nodes and 0 elsewhere (RV, atria).

**Pacing sites**: one per AHA segment (node sets ``AHA-1`` .. ``AHA-17``), plus ``RV-1`` (apical
RV free wall) and ``RV-2`` (basal RV free wall, towards the outflow) on a biventricular mesh,
or ``LA-01`` .. ``LA-NN`` spread evenly over an atrium (farthest-point sampling of geodesic
distance on the endocardium, starting from the point farthest from the valve, keeping clear of
the openings). A site's centre is the candidate node nearest the centroid of its candidates:
the segment's endocardial nodes (``placement="endo"``) or its mid-wall nodes
(``placement="midwall"``, transmural within 0.5 ± 0.15). Each node set holds the conducting
nodes within ``radius_mm`` of the centre, **centre first**, then by distance. A centre that
falls in dense scar (a node of no conducting element), or where less than half the wall
around it is viable (healthy myocardium in a ventricle, conducting tissue in an atrium), moves
to the nearest candidate with mostly viable wall around it (else the nearest such node) and
the move is logged and reported. Everything
is deterministic for a given mesh.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from cardiotwin.meshing.boundary import edge_graph
from cardiotwin.meshing.coordinates import VentricularFrame, atrial_openings, surface_nodes
from cardiotwin.meshing.mesh import Mesh, MeshError
from cardiotwin.meshing.tags import HEALTHY, LESION, NONCONDUCTING

log = logging.getLogger(__name__)

AHA_NAMES = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
    17: "apex",
}

#: Cerqueira et al. 2002: 17 segments of about equal mass; by level 35.3 % basal, 35.3 % mid,
#: 29.4 % apical + apex (6/17, 6/17, 5/17), close to autopsy data (35 %, 35 %, 30 %)
AHA_LEVEL_FRACTIONS = {"basal": 6 / 17, "mid": 6 / 17, "apical": 5 / 17}

_BASAL_BY_SECTOR = np.array([5, 4, 3, 2, 1, 6])  # 60° sectors from −180°
_APICAL_BY_SECTOR = np.array([16, 15, 14, 13])  # 90° sectors from −225° (wrapping)


def aha_segments(
    heights_mm: np.ndarray, rotational: np.ndarray, lv: np.ndarray, frame: VentricularFrame
) -> np.ndarray:
    """AHA segment (int32, 1..17; 0 where ``lv`` is False) of points with the given heights
    above the epicardial apex (mm, along the long axis) and rotational coordinates."""
    heights_mm = np.asarray(heights_mm, dtype=np.float64)
    degrees = np.degrees(np.asarray(rotational, dtype=np.float64))
    cavity = frame.base_height_mm - frame.cavity_apex_height_mm
    if cavity <= 0:
        raise MeshError(
            "the LV cavity has no length along the long axis (its apex is not below the base); "
            "check the 'endo' and 'base' surfaces"
        )
    level = np.floor((heights_mm - frame.cavity_apex_height_mm) / (cavity / 3.0))
    level = np.clip(level, -1, 2).astype(np.int64)  # −1 apex cap, 0 apical, 1 mid, 2 basal
    basal_sector = np.clip(np.floor((degrees + 180.0) / 60.0).astype(np.int64), 0, 5)
    apical_sector = np.floor((degrees + 225.0) / 90.0).astype(np.int64) % 4
    segment = np.where(
        level == 2,
        _BASAL_BY_SECTOR[basal_sector],
        np.where(
            level == 1,
            _BASAL_BY_SECTOR[basal_sector] + 6,
            np.where(level == 0, _APICAL_BY_SECTOR[apical_sector], 17),
        ),
    )
    return np.where(lv, segment, 0).astype(np.int32)


# --- pacing sites ---------------------------------------------------------------------------


@dataclass
class PacingSite:
    """One pacing site: its node set and where its centre is (mm)."""

    name: str
    nodes: np.ndarray
    position_mm: np.ndarray
    segment: int = 0
    moved_mm: float = 0.0
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "centre_node": int(self.nodes[0]),
            "position_mm": [round(float(v), 3) for v in self.position_mm],
            "segment": int(self.segment),
            "nodes": int(self.nodes.size),
            "moved_mm": round(float(self.moved_mm), 3),
            **({"note": self.note} if self.note else {}),
        }


@dataclass
class SiteReport:
    sites: list[PacingSite] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)

    @property
    def node_sets(self) -> dict[str, np.ndarray]:
        return {s.name: s.nodes for s in self.sites}


#: tags that block in an atrium: lesions only. The atrial tissue defaults make dense
#: fibrosis (tag 3, IIR > 1.32) conduct as remodelled tissue (Zahid 2016, Boyle 2019,
#: Bifulco 2021: all LGE-enhanced wall of a never-ablated atrium conducts)
ATRIAL_NONCONDUCTING = (LESION,)


def conducting_nodes(mesh: Mesh, blocking=NONCONDUCTING) -> np.ndarray:
    """Nodes of at least one element that conducts (tags not in ``blocking``: by default
    dense scar and lesion, the ventricular meaning)."""
    mask = np.zeros(mesh.n_points, dtype=bool)
    mask[mesh.tets[~np.isin(mesh.region, blocking)].ravel()] = True
    return mask


#: a site's centre needs at least this share of viable wall within :class:`_neighbourhood`'s
#: radius: programmed stimulation paces viable myocardium, and a stimulus in border zone
#: pockets between scar lobes does not capture (at 2 mm on lv-infarct, AHA-7 and AHA-12 in
#: such pockets failed S1 at 4x the strength: the capture probe's shell there lies across
#: the scar)
PACEABLE_SHARE = 0.5
#: nodes tried, nearest first, before giving up on finding a paceable one
MAX_SEARCHED = 20_000


class _neighbourhood:
    """Share of element volume within ``max(2 radius, 4 mm)`` of a node that is viable:
    healthy myocardium in a ventricle (``healthy_only``), any conducting tissue in an atrium
    (its fibrosis conducts and is where drivers are sought)."""

    def __init__(
        self, mesh: Mesh, radius_mm: float, healthy_only: bool = False, blocking=NONCONDUCTING
    ) -> None:
        from scipy.spatial import cKDTree

        self.radius_mm = max(2.0 * radius_mm, 4.0)
        self.mesh = mesh
        self._tree = None
        self._cKDTree = cKDTree
        self._cache: dict[int, float] = {}
        self.healthy_only = healthy_only
        self.blocking = blocking
        self.what = "healthy myocardium" if healthy_only else "conducting tissue"

    def __call__(self, node: int) -> float:
        if node in self._cache:
            return self._cache[node]
        if self._tree is None:
            self._centres = self.mesh.element_centres_mm()
            self._volumes = np.abs(self.mesh.signed_volumes_mm3())
            self._conducts = (
                self.mesh.region == HEALTHY
                if self.healthy_only
                else ~np.isin(self.mesh.region, self.blocking)
            )
            self._tree = self._cKDTree(self._centres)
        near = np.asarray(
            self._tree.query_ball_point(self.mesh.points_mm[node], self.radius_mm), dtype=np.int64
        )
        total = float(self._volumes[near].sum())
        value = float(self._volumes[near][self._conducts[near]].sum()) / total if total else 0.0
        self._cache[node] = value
        return value


def _nearest_paceable(points, pool: np.ndarray, origin: int, share) -> int | None:
    """The node of ``pool`` nearest ``origin`` with mostly conducting tissue around it."""
    order = pool[np.argsort(np.linalg.norm(points[pool] - points[origin], axis=1), kind="stable")]
    for node in order[:MAX_SEARCHED]:
        if share(int(node)) >= PACEABLE_SHARE:
            return int(node)
    return None


def _central(points: np.ndarray, candidates: np.ndarray) -> int:
    """The candidate node nearest the candidates' centroid (lowest index on ties)."""
    centroid = points[candidates].mean(axis=0)
    return int(candidates[np.argmin(np.linalg.norm(points[candidates] - centroid, axis=1))])


def _midwall(transmural: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Nodes of ``pool`` with transmural within 0.5 ± 0.15 (or the closest available)."""
    off = np.abs(transmural[pool] - 0.5)
    if off.size == 0:
        return pool
    return pool[off <= max(0.15, off.min() + 0.05)]


def _place(
    mesh: Mesh,
    name: str,
    candidates: np.ndarray,
    conducting: np.ndarray,
    radius_mm: float,
    segment: int = 0,
    fallback_target: np.ndarray | None = None,
    share: _neighbourhood | None = None,
) -> PacingSite:
    points = mesh.points_mm
    if candidates.size:
        centre = _central(points, candidates)
    elif fallback_target is not None:  # no candidate: the conducting node nearest the target
        pool = np.nonzero(conducting)[0]
        centre = int(pool[np.argmin(np.linalg.norm(points[pool] - fallback_target, axis=1))])
    else:
        raise MeshError(f"pacing site {name}: no candidate nodes")
    moved, note = 0.0, ""
    share = share or _neighbourhood(mesh, radius_mm)
    if not conducting[centre] or share(centre) < PACEABLE_SHARE:
        why = (
            "centre fell in dense scar"
            if not conducting[centre]
            else f"too little {share.what} around the centre ({100 * share(centre):.0f} % of "
            f"the wall within {share.radius_mm:g} mm)"
        )
        pool = candidates[conducting[candidates]] if candidates.size else candidates
        if pool.size == 0:
            pool = np.nonzero(conducting)[0]
        if pool.size == 0:
            raise MeshError("no conducting node in the mesh: every element is scar or lesion")
        new = _nearest_paceable(points, pool, centre, share)
        if new is None:  # none in the candidates: anywhere in the mesh
            new = _nearest_paceable(points, np.nonzero(conducting)[0], centre, share)
        if new is None:  # nowhere paceable: the nearest conducting node, said so
            new = int(pool[np.argmin(np.linalg.norm(points[pool] - points[centre], axis=1))])
            why += f"; no node with mostly {share.what} around it"
        moved = float(np.linalg.norm(points[new] - points[centre]))
        note = f"{why} (node {centre}); moved {moved:.1f} mm to node {new}"
        log.warning("pacing site %s: %s", name, note)
        centre = new
    distance = np.linalg.norm(points - points[centre], axis=1)
    near = np.nonzero((distance <= radius_mm) & conducting)[0]
    near = near[np.argsort(distance[near], kind="stable")]
    nodes = np.concatenate([[centre], near[near != centre]]).astype(np.int64)
    return PacingSite(name, nodes, points[centre].copy(), segment, moved, note)


def ventricular_sites(mesh: Mesh, *, placement: str = "endo", radius_mm: float = 2.0) -> SiteReport:
    """``AHA-1`` .. ``AHA-17`` (+ ``RV-1``, ``RV-2`` on a biventricular mesh) from the point
    fields ``aha_segment``, ``transmural`` and ``apicobasal`` and the surfaces."""
    _check_placement(placement, radius_mm)
    for name in ("aha_segment", "transmural", "apicobasal"):
        if name not in mesh.point_data:
            raise MeshError(f"pacing sites need the point field {name!r}; run prepare first")
    aha = np.asarray(mesh.point_data["aha_segment"])
    transmural = np.asarray(mesh.point_data["transmural"], dtype=np.float64)
    apicobasal = np.asarray(mesh.point_data["apicobasal"], dtype=np.float64)
    conducting = conducting_nodes(mesh)
    share = _neighbourhood(mesh, radius_mm, healthy_only=True)
    endo = surface_nodes(mesh, "endo")
    report = SiteReport()
    for segment in range(1, 18):
        in_segment = np.nonzero(aha == segment)[0]
        if in_segment.size == 0:
            raise MeshError(
                f"AHA segment {segment} ({AHA_NAMES[segment]}) holds no node; the mesh may be "
                "too coarse or the LV truncated: check the 'aha_segment' field"
            )
        if placement == "endo":
            candidates = in_segment[endo[in_segment]]
        else:
            candidates = _midwall(transmural, in_segment)
        target = mesh.points_mm[in_segment].mean(axis=0)
        if candidates.size == 0 and placement == "endo":  # the apex cap: nearest endocardium
            pool = np.nonzero(endo & conducting)[0]
            candidates = pool[[np.argmin(np.linalg.norm(mesh.points_mm[pool] - target, axis=1))]]
        report.sites.append(
            _place(
                mesh, f"AHA-{segment}", candidates, conducting, radius_mm, segment, target, share
            )
        )
    rv_endo = surface_nodes(mesh, "rv-endo")
    if rv_endo.any():
        rv_nodes = np.nonzero((aha == 0) & ~surface_nodes(mesh, "endo"))[0]
        pool = np.nonzero(rv_endo)[0] if placement == "endo" else _midwall(transmural, rv_nodes)
        low, high = apicobasal[pool].min(), apicobasal[pool].max()
        third = (high - low) / 3.0
        for name, chosen in (
            ("RV-1", pool[apicobasal[pool] <= low + third]),
            ("RV-2", pool[apicobasal[pool] >= high - third]),
        ):
            report.sites.append(_place(mesh, name, chosen, conducting, radius_mm, share=share))
    report.moved = [s.name for s in report.sites if s.moved_mm > 0]
    return report


def atrial_sites(mesh: Mesh, count: int, *, placement: str, radius_mm: float) -> SiteReport:
    """``LA-01`` .. ``LA-NN``: ``count`` sites spread evenly over the atrial wall."""
    _check_placement(placement, radius_mm)
    if count < 1:
        raise ValueError(f"the number of atrial sites must be at least 1, got {count}")
    endo_faces = mesh.surfaces.get("endo")
    if endo_faces is None or len(endo_faces) == 0:
        raise MeshError("atrial pacing sites need the 'endo' surface; run prepare first")
    valve, veins = atrial_openings(mesh)
    points = mesh.points_mm
    conducting = conducting_nodes(mesh, ATRIAL_NONCONDUCTING)
    share = _neighbourhood(mesh, radius_mm, blocking=ATRIAL_NONCONDUCTING)
    endo = np.unique(endo_faces)
    rims = np.nonzero(surface_nodes(mesh, valve, *veins))[0]
    # keep a site's disc clear of the openings
    clear = cKDTree(points[rims]).query(points[endo])[0] > radius_mm + 1.0
    if not clear.any():
        raise MeshError(
            f"no endocardial node lies more than {radius_mm + 1:.1f} mm from an opening; "
            "the atrium is too small for the site radius"
        )
    graph = edge_graph(points, endo_faces)
    valve_nodes = np.unique(mesh.surfaces[valve])
    # farthest-point sampling: first the point farthest from the valve, then each next point
    # farthest from all chosen ones (geodesic distance on the endocardium)
    distance = csgraph.dijkstra(graph, indices=valve_nodes, min_only=True)
    chosen: list[int] = []
    for _ in range(count):
        score = np.where(clear, np.nan_to_num(distance[endo], posinf=1e12), -1.0)
        pick = int(endo[np.argmax(score)])
        chosen.append(pick)
        from_pick = csgraph.dijkstra(graph, indices=pick)
        distance = from_pick if len(chosen) == 1 else np.minimum(distance, from_pick)
    report = SiteReport()
    width = max(2, len(str(count)))
    transmural = mesh.point_data.get("transmural")
    for k, node in enumerate(chosen, start=1):
        candidates = np.array([node])
        if placement == "midwall":
            if transmural is None:
                raise MeshError("mid-wall sites need the point field 'transmural'")
            near = np.nonzero(np.linalg.norm(points - points[node], axis=1) <= radius_mm + 2.0)[0]
            mid = _midwall(np.asarray(transmural, dtype=np.float64), near)
            candidates = mid[[np.argmin(np.linalg.norm(points[mid] - points[node], axis=1))]]
        report.sites.append(
            _place(mesh, f"LA-{k:0{width}d}", candidates, conducting, radius_mm, share=share)
        )
    report.moved = [s.name for s in report.sites if s.moved_mm > 0]
    return report


def _check_placement(placement: str, radius_mm: float) -> None:
    if placement not in ("endo", "midwall"):
        raise ValueError(f"site placement must be 'endo' or 'midwall', got {placement!r}")
    if not (math.isfinite(radius_mm) and radius_mm > 0):
        raise ValueError(f"site radius must be a positive number of mm, got {radius_mm}")
