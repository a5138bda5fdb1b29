"""The critical site of a re-entrant circuit: the smallest cut of tissue the circuit must pass.

Input: one cycle of the circuit's activation map (ms from the cycle's start, per mesh node;
:class:`Circuit`) and the tissue (:class:`~.graph.TissueGraph`). Method
(:func:`find_critical_site`):

0. **A protected isthmus first.** A scar-related circuit spends part of its cycle in a
   narrow channel of surviving tissue while the rest of the heart is silent: its
   *diastolic* pathway (mid-diastolic potentials mark the isthmus in clinical activation
   and entrainment mapping; Stevenson et al. 1993, de Chillou et al. 2002). The map's
   activated volume per ``DIASTOLE_BIN_MS`` (smoothed over ``DIASTOLE_SMOOTH_MS``) is
   found; the longest stretch of the cycle where it stays below ``DIASTOLE_RATE`` of its
   median, when it lasts at least ``DIASTOLE_MIN_FRACTION`` of the cycle, is the diastole.
   The tissue activated in it (its largest connected piece) is the pathway, and its node
   activated nearest mid-diastole is where the wave is protected. There the *corridor*
   is cut (:func:`corridor_transect`): within ``TRANSECT_RADII_MM`` of that node, the
   minimum vertex cut of all conducting tissue (activated in this cycle or not: both
   limbs of a loop inside one channel, and tissue the wave may use once the circuit is
   changed) between the ball's surface ahead of and behind the node along the corridor.
   The corridor's direction is the one along which the distance to non-conducting tissue
   varies least (the structure tensor of its gradient, in the plane of the wall, whose
   normal is the direction in which the tissue around is thinnest): along the channel
   between two scars. A transect that reaches the ball's edge is not closed by obstacles
   there, and one that touches obstacles at fewer than two separate places is not a
   channel's cross-section (a node squeezed between scar and a pocket of block); then
   the other tissue activated in the diastole is tried, nearest mid-diastole first (at
   most ``DIASTOLE_TRIES`` nodes: mid-diastole can lie just beyond a channel's end, where
   the wave leaves it), then the border zone / fibrosis activated within a quarter
   diastole before or after it (``DIASTOLE_WIDENING``: a diastole can lie wholly beyond
   the channel's end). When none gives a closed transect, the steps below are used,
   as they are for circuits without a diastole (a rotor, macro-re-entry in healthy
   tissue). The cut of the circuit at its own wave front (step 1) is not used first on
   scar maps because, on meshes that resolve slow border-zone conduction coarsely, the
   front ends in small pockets activated late by one-edge crawls; the cheapest cut then
   closes a pocket beside the circuit instead of crossing it (seen on the sample
   patient's 2 mm mesh: a 7-node cut 9 mm off the isthmus, and the VT survived it).
   With ``isthmus_lines="ends"`` (configuration ``ablation.isthmus_lines``) the channel is
   also cut near its two ends (:func:`channel_transects`: stepping along the corridor while
   it stays border zone, the furthest transect closed by two walls on each side), the
   channel's entrance and exit as in scar dechanneling (Berruezo et al. 2015): one transect
   leaves the channel's other part open, and on the sample patient a circuit then entered
   it from its far opening after the first round.
1. **Open the circuit.** A re-entrant cycle has no start: its one-cycle map jumps from ≈ CL
   back to ≈ 0 across the wave front at the cut time (the *wrap*). Edges of the tissue graph
   whose ends activate more than 0.75·CL apart (0.5·CL where the front crosses very slow
   conduction; ``FRONT_FRACTIONS``) are that front: their early
   ends are the sources, their late ends the sinks, and only these edges are removed. Lines
   of conduction block and tissue that did not activate in the cycle stay in the graph: a
   lesion must not lean on block that was only functional (it may conduct once the circuit
   is changed).
   1b. A current map can jump by a cycle where the wave did not wrap: tissue activated
   after all its neighbours (a pocket of slow conduction entered last) reads as the cycle's
   start. Its front edges then bound the pocket and join nothing to the circuit's end, so
   no cut separates them (seen on the sample patient's 2 mm mesh after two rounds of
   lesions: a 63-node border-zone pocket). On a map with no times where the tissue does
   not conduct (as induced on this mesh), those pieces are read as the next cycle and the
   circuit is treated as one whose front the map does not show (step 4); with such times
   the map is from before a lesion and the site is returned interrupted.
2. **Minimum cut.** The smallest set of nodes whose removal disconnects sources from sinks,
   each node costing its volume (× ``border_zone_cost`` in border zone / fibrosis): a
   minimum vertex cut, computed as a maximum flow on the split-node network (each node an
   in→out arc of its cost, each edge two arcs of unbounded capacity; Ford–Fulkerson's
   max-flow/min-cut theorem; scipy's Dinic). It is the narrowest cross-section of the
   circuit, found wherever it lies, whichever cycle cut the map was taken at: for a
   figure-of-eight around two scar islands every path through either loop crosses the
   shared isthmus, so the cut lies across the isthmus, from scar to scar. The cut always
   runs between boundaries of the tissue: around an anatomical obstacle from it to the next
   one; for a functional rotor from its core to the nearest boundary the loop cannot go
   around (the outer boundary, not an island: a line from a core to an island leaves loops
   around both), which is OPTIMA's "connect the driver to the nearest non-conducting
   boundary" found by topology rather than by distance.
3. **Anchor it.** The cut's ends are checked against the anchors (:mod:`.graph`: scar,
   lesions, openings; not the endo/epicardial faces, nor the faces of a mesh whose surfaces
   are not named). A line touching fewer than ``anchors_per_line`` separate anchors is
   extended along the shortest path through the tissue to the nearest further anchor
   (with 2, from its end furthest from the first). No anchor reachable: the site is
   returned ``reachable=False`` with the reason (no lesion is placed), never dropped.
4. **No front edge**: the front at the cycle's cut can run through tissue that did not
   activate in that cycle (block, or conduction slower than a cycle: seen on coarse meshes
   in the border zone), and the circuit cannot be opened. If its latest 5 % of nodes lie
   beside its earliest (the circuit closes there), the target is its **exit**, the
   earliest-activated tissue, joined to an anchor like a cut (``mechanism="exit"``, the note
   says why); if they lie far apart (over half the activated extent), the map spreads from
   a **focus** and the earliest tissue is the target alone (``mechanism="focal"``).

Limitation: the cut is counted in nodes of the mesh graph, whose edges run in preferred
directions (on box meshes the Kuhn diagonals make a cut along them ~√2 cheaper per mm), so a
long cut (a core to a distant boundary) may take a direction up to ~√2 longer than the
Euclidean shortest (metrication error of graph cuts; Boykov & Kolmogorov 2003). Across a
narrow isthmus this does not change where the cut lies.

The site reports where the cut lies, its volume and cross-section, the share of border
zone, the local conduction velocity there against the circuit's median (1/|∇t| per element)
and the line joining its two ends (principal axis of the site's nodes), all in mesh mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components, maximum_flow
from scipy.spatial import cKDTree

from cardiotwin.meshing.laplace import gradient_per_element
from cardiotwin.pipeline.ablation.graph import Anchors, TissueGraph
from cardiotwin.solvers.fem import element_gradients

#: edges whose ends activate further apart than this fraction of the cycle length are the
#: wave front at the cycle's cut (they separate the circuit's start from its end): 0.75
#: first (clear of lines of block, whose sides differ by about half a cycle); where the
#: front crosses conduction so slow that one edge takes a quarter cycle (coarse meshes in
#: the border zone), 0.5, the least a wrap can differ by (the delay across the edge, CL − gap,
#: is then below half a cycle)
FRONT_FRACTIONS = (0.75, 0.5)
#: diastole (step 0): activated volume counted per bin of this, ms, ...
DIASTOLE_BIN_MS = 5.0
#: ... smoothed (circular moving mean) over this, ms; ...
DIASTOLE_SMOOTH_MS = 35.0
#: ... below this fraction of its median rate ...
DIASTOLE_RATE = 0.1
#: ... for at least this fraction of the cycle
DIASTOLE_MIN_FRACTION = 0.1
#: at most this many diastolic nodes are tried as the transect's centre (step 0)
DIASTOLE_TRIES = 40
#: the windows about mid-diastole tried in turn, in half-diastoles: the diastole, then the
#: stretches of a quarter diastole just before and after it (the wave may enter the channel
#: just before the quiet stretch begins, or leave it just after it ends); not wider, or a
#: long diastole's window would cover the whole cycle
DIASTOLE_WIDENING = (1.0, 1.5)
#: at most this many border-zone nodes tried in a widened window (nearest the diastole first)
WIDENED_TRIES = 200
#: radii of the ball around mid-diastole within which the corridor is cut, mm (the first
#: that gives a transect closed by obstacles wins)
TRANSECT_RADII_MM = (15.0, 10.0)
#: the corridor's direction: from non-conducting tissue within this of the node, mm
CORRIDOR_REACH_MM = 6.0
#: channel ends (``isthmus_lines: ends``): step along the corridor, mm, ...
CHANNEL_STEP_MM = 4.0
#: ... at most this many steps each way, ...
CHANNEL_MAX_STEPS = 15
#: ... at most this many ball centres tried per step (the step's node, then the border-zone
#: nodes within half a step of it)
CHANNEL_TRIES = 8
#: integer resolution of the node costs in the flow network (scipy needs integers)
COST_LEVELS = 10_000
#: capacity of the unbounded arcs (above any cut: COST_LEVELS × nodes stays far below it for
#: meshes of up to ~10⁵ nodes in a cut)
UNBOUNDED = 2**30
#: without a front edge: the earliest and latest this fraction of the activated nodes ...
BAND_FRACTION = 0.05
#: ... lying further apart than this fraction of the activated tissue's extent (from the
#: earliest) make a focal map; closer, a circuit whose front the map does not show
FOCAL_APART = 0.5
#: focal target: nodes activated within this of the earliest, ms
FOCAL_WINDOW_MS = 5.0


class CriticalSiteError(ValueError):
    """An activation map that cannot be used (wrong size, no activation); names the circuit."""


@dataclass(frozen=True, eq=False)
class Circuit:
    """One induced circuit (a VT, an atrial driver) as the ablation stage needs it.

    ``activation_ms``: (n_mesh_nodes,) one cycle of activation, ms from the cycle's start
    (0 ≤ t < CL), NaN where a node did not activate; ``phase_singularities_mm`` (k, 3).
    """

    id: int
    cycle_length_ms: float
    activation_ms: np.ndarray
    phase_singularities_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    exit_mm: tuple | None = None
    sites: tuple[str, ...] = ()


@dataclass(eq=False)
class CriticalSite:
    """Where a circuit must be cut (tissue-node indices of :attr:`graph`); see module doc."""

    circuit_id: int
    mechanism: str  # "isthmus", "re-entry", "exit" (no front in the map) or "focal"
    reachable: bool
    note: str
    nodes: np.ndarray  # cut + extension: every node the lesion must remove
    cut_nodes: np.ndarray
    centre_mm: np.ndarray
    line_ends_mm: np.ndarray  # (2, 3)
    anchors: list[str]  # names of the anchors the line touches
    cut_volume_mm3: float
    cross_section_mm2: float
    border_zone_fraction: float
    extension_mm: float
    cv_site_m_per_s: float | None
    cv_median_m_per_s: float | None

    def as_dict(self) -> dict:
        def vec(v):
            return [round(float(x), 3) for x in v]

        return {
            "vt_id": self.circuit_id,
            "mechanism": self.mechanism,
            "reachable": self.reachable,
            "note": self.note,
            "centre_mm": vec(self.centre_mm),
            "line_ends_mm": [vec(p) for p in self.line_ends_mm],
            "anchors": list(self.anchors),
            "cut_nodes": int(self.cut_nodes.size),
            "cut_volume_mm3": round(self.cut_volume_mm3, 3),
            "cross_section_mm2": round(self.cross_section_mm2, 3),
            "border_zone_fraction": round(self.border_zone_fraction, 4),
            "extension_mm": round(self.extension_mm, 3),
            "cv_site_m_per_s": None
            if self.cv_site_m_per_s is None
            else round(self.cv_site_m_per_s, 4),
            "cv_median_m_per_s": None
            if self.cv_median_m_per_s is None
            else round(self.cv_median_m_per_s, 4),
        }


def node_costs(graph: TissueGraph, border_zone_cost: float) -> np.ndarray:
    """(N,) cost of removing each node: lumped volume mm³, × ``border_zone_cost`` in border
    zone / fibrosis."""
    return graph.volume_mm3 * np.where(graph.border, border_zone_cost, 1.0)


def minimum_vertex_cut(
    graph: TissueGraph,
    cost: np.ndarray,
    sources: np.ndarray,
    sinks: np.ndarray,
    keep_edges: np.ndarray,
) -> np.ndarray:
    """Tissue nodes of a minimum-cost set separating ``sources`` from ``sinks`` over the
    ``keep_edges`` (max flow on the split-node network)."""
    n = graph.n
    s_node, t_node = 2 * n, 2 * n + 1
    scale = COST_LEVELS / max(float(np.percentile(cost, 99)), 1e-12)
    capacity = np.clip(np.rint(cost * scale), 1, 50 * COST_LEVELS).astype(np.int64)
    act = np.arange(n)
    e = graph.edges[keep_edges]
    rows = [act, n + e[:, 0], n + e[:, 1], np.full(len(sources), s_node), n + sinks]
    cols = [n + act, e[:, 1], e[:, 0], sources, np.full(len(sinks), t_node)]
    caps = [
        capacity[act],
        np.full(len(e), UNBOUNDED),
        np.full(len(e), UNBOUNDED),
        np.full(len(sources), UNBOUNDED),
        np.full(len(sinks), UNBOUNDED),
    ]
    size = 2 * n + 2
    network = sp.csr_array(
        (np.concatenate(caps), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
    )
    network.sum_duplicates()
    flow = maximum_flow(network, s_node, t_node, method="dinic").flow
    residual = (network - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    reached = np.zeros(size, dtype=bool)
    reached[breadth_first_order(residual, s_node, directed=True, return_predecessors=False)] = True
    return np.nonzero(reached[:n] & ~reached[n : 2 * n])[0]


@dataclass(frozen=True)
class Diastole:
    """The diastolic pathway of a map (module docstring, step 0): its stretch of the cycle
    (``start_ms``, ``length_ms``), the share of the tissue volume activated in it, its
    tissue nodes (largest connected piece) and the node activated nearest mid-diastole."""

    start_ms: float
    length_ms: float
    volume_fraction: float
    nodes: np.ndarray
    centre: int


def diastolic_pathway(graph: TissueGraph, t: np.ndarray, cycle_ms: float) -> Diastole | None:
    """The diastole of map ``t`` (tissue-node ms, 0 ≤ t < ``cycle_ms``, NaN: not activated)
    or None when the map has none (module docstring, step 0)."""
    active = np.isfinite(t)
    if not active.any():
        return None
    bins = max(int(np.ceil(cycle_ms / DIASTOLE_BIN_MS)), 3)
    which = np.minimum((t[active] / cycle_ms * bins).astype(np.int64), bins - 1)
    rate = np.bincount(which, weights=graph.volume_mm3[active], minlength=bins)
    half = int(round(DIASTOLE_SMOOTH_MS / DIASTOLE_BIN_MS)) // 2
    window = np.arange(-half, half + 1)
    smooth = rate[(np.arange(bins)[:, None] + window[None, :]) % bins].mean(axis=1)
    median = float(np.median(smooth))
    low = smooth < DIASTOLE_RATE * median
    if median <= 0 or not low.any() or low.all():
        return None
    # the longest circular run of quiet bins: start after a busy bin
    begin = int(np.nonzero(~low)[0][-1]) + 1
    rolled = np.roll(low, -begin)
    best_len, best_start, run = 0, 0, 0
    for k, quiet in enumerate(rolled):
        run = run + 1 if quiet else 0
        if run > best_len:
            best_len, best_start = run, k - run + 1
    bin_ms = cycle_ms / bins
    length = best_len * bin_ms
    if length < DIASTOLE_MIN_FRACTION * cycle_ms:
        return None
    start = ((best_start + begin) % bins) * bin_ms
    phase = np.where(active, (np.nan_to_num(t) - start) % cycle_ms, np.inf)
    inside = np.nonzero(phase < length)[0]
    if inside.size == 0:
        return None
    link = graph.adjacency()[inside][:, inside]
    _, label = connected_components(link, directed=False)
    weight = np.bincount(label, weights=graph.volume_mm3[inside])
    nodes = inside[label == np.argmax(weight)]
    centre = int(nodes[np.argmin(np.abs(phase[nodes] - 0.5 * length))])
    total = float(graph.volume_mm3[active].sum())
    return Diastole(
        start_ms=start,
        length_ms=length,
        volume_fraction=float(graph.volume_mm3[inside].sum()) / total,
        nodes=nodes,
        centre=centre,
    )


def corridor_axis(graph: TissueGraph, centre: int) -> np.ndarray | None:
    """Unit direction of the conducting corridor at tissue node ``centre``: the direction in
    which the distance to non-conducting tissue varies least (smallest eigenvector of its
    gradient's structure tensor over the elements within ``CORRIDOR_REACH_MM``), in the
    wall's plane (normal: the direction in which the tissue within the largest transect
    radius is thinnest). None without non-conducting tissue."""
    mesh = graph.mesh
    blocked = mesh.tets[~graph.conducting]
    if blocked.size == 0:
        return None
    walls = mesh.points_mm[np.unique(blocked)]
    tets = graph.local[mesh.tets[graph.conducting]]
    where = graph.points_mm[centre]
    near = np.linalg.norm(graph.points_mm[tets].mean(axis=1) - where, axis=1)
    near = near <= CORRIDOR_REACH_MM
    if not near.any():
        return None
    local = tets[near]
    distance = np.zeros(graph.n)
    used = np.unique(local)
    distance[used] = cKDTree(walls).query(graph.points_mm[used])[0]
    grads, volumes = element_gradients(graph.points_mm, local)
    g = gradient_per_element(grads, local, distance)
    tensor = np.einsum("e,ei,ej->ij", np.abs(volumes), g, g)
    # the wall's normal: the direction in which the tissue around is thinnest
    around = graph.points_mm[
        np.linalg.norm(graph.points_mm - where, axis=1) <= max(TRANSECT_RADII_MM)
    ]
    normal = np.linalg.svd(around - around.mean(axis=0), full_matrices=False)[2][-1]
    basis = np.linalg.svd(np.eye(3) - np.outer(normal, normal))[0][:, :2]
    axis = basis @ np.linalg.eigh(basis.T @ tensor @ basis)[1][:, 0]
    return axis / np.linalg.norm(axis)


def corridor_transect(
    graph: TissueGraph, cost: np.ndarray, centre: int, axis: np.ndarray, radius_mm: float
) -> np.ndarray | None:
    """Minimum vertex cut of the conducting tissue within ``radius_mm`` of tissue node
    ``centre`` between the ball's surface ahead of and behind it along ``axis``; None when
    the cut reaches the ball's surface (the corridor is not closed by obstacles there) or
    the ball has no surface on one side."""
    points = graph.points_mm
    inside = np.linalg.norm(points - points[centre], axis=1) <= radius_mm
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    crossing = inside[i] != inside[j]
    surface = np.unique(np.where(inside[i[crossing]], i[crossing], j[crossing]))
    along = (points[surface] - points[centre]) @ axis
    margin = 2.0 * graph.spacing_mm
    sources, sinks = surface[along > margin], surface[along < -margin]
    if sources.size == 0 or sinks.size == 0:
        return None
    cut = minimum_vertex_cut(graph, cost, sources, sinks, inside[i] & inside[j])
    if cut.size == 0 or np.isin(cut, surface).any():
        return None
    return cut


def _touch_clusters(
    graph: TissueGraph, anchors: Anchors, nodes: np.ndarray, tolerance_mm: float
) -> list[tuple[int, np.ndarray]]:
    """Places where ``nodes`` touch an anchor: (component, touching nodes) per place. Touching
    nodes of one component within 2 mesh spacings of each other are one place."""
    anchor_nodes = np.nonzero(anchors.component >= 0)[0]
    if anchor_nodes.size == 0 or nodes.size == 0:
        return []
    tree = cKDTree(graph.points_mm[anchor_nodes])
    distance, nearest = tree.query(graph.points_mm[nodes])
    touching = distance <= tolerance_mm
    if not touching.any():
        return []
    t_nodes = nodes[touching]
    t_comp = anchors.component[anchor_nodes[nearest[touching]]]
    pairs = cKDTree(graph.points_mm[t_nodes]).query_pairs(
        2.0 * graph.spacing_mm, output_type="ndarray"
    )
    if pairs.size:
        pairs = pairs[t_comp[pairs[:, 0]] == t_comp[pairs[:, 1]]]
    link = sp.csr_array(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])) if len(pairs) else ([], ([], [])),
        shape=(t_nodes.size,) * 2,
    )
    _, label = connected_components(link, directed=False)
    return [(int(t_comp[label == k][0]), t_nodes[label == k]) for k in range(label.max() + 1)]


def line_ends(points: np.ndarray) -> np.ndarray:
    """The two extreme points along the principal axis of ``points`` (k, 3)."""
    if len(points) == 1:
        return np.vstack([points[0], points[0]])
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    s = centred @ axis
    return np.vstack([points[np.argmin(s)], points[np.argmax(s)]])


def _velocities(graph: TissueGraph, t: np.ndarray, cycle_ms: float):
    """Per conducting element local CV (m/s = mm/ms) from the map, NaN where not defined."""
    tets = graph.local[graph.mesh.tets[graph.conducting]]
    te = t[tets]
    valid = np.all(np.isfinite(te), axis=1)
    valid &= np.where(valid, np.ptp(np.nan_to_num(te), axis=1), np.inf) < 0.5 * cycle_ms
    speed = np.full(len(tets), np.nan)
    if valid.any():
        grads, _ = element_gradients(graph.points_mm, tets[valid])
        g = np.einsum("mk,mkj->mj", te[valid], grads)
        speed[valid] = 1.0 / np.maximum(np.linalg.norm(g, axis=1), 1e-9)
    return tets, speed


def _unwrap_pockets(
    graph: TissueGraph,
    t: np.ndarray,
    cycle_ms: float,
    front: np.ndarray,
    sources: np.ndarray,
    sinks: np.ndarray,
) -> np.ndarray:
    """Tissue-node times with the pieces the ``front`` edges cut off put back in sequence
    (module docstring, step 1b): without the front, the pieces holding early ends only (a
    pocket activated after its late neighbours, its times wrapped to the cycle's start)
    move one cycle later, or, when they outweigh the pieces holding late ends only, those
    move one cycle earlier; shifted to start at 0."""
    _, label = connected_components(graph.adjacency(~front), directed=False)
    has_source = np.isin(np.arange(label.max() + 1), label[sources])
    has_sink = np.isin(np.arange(label.max() + 1), label[sinks])
    weight = np.bincount(label, weights=graph.volume_mm3)
    early_only = np.nonzero(has_source & ~has_sink)[0]
    late_only = np.nonzero(has_sink & ~has_source)[0]
    out = t.copy()
    if weight[early_only].sum() <= weight[late_only].sum():
        out[np.isin(label, early_only)] += cycle_ms
    else:
        out[np.isin(label, late_only)] -= cycle_ms
    return out - np.nanmin(out)


def _interrupted(graph, circuit, sources, mechanism, cv_median) -> CriticalSite:
    where = graph.points_mm[sources]
    centre = where[np.argmin(np.linalg.norm(where - where.mean(axis=0), axis=1))]
    return CriticalSite(
        circuit_id=circuit.id,
        mechanism=mechanism,
        reachable=False,
        note=f"the circuit of VT {circuit.id} is already interrupted in this mesh: its map "
        "shows conduction through tissue that no longer conducts (a map from before a lesion?); "
        "re-induce on this mesh for a current map",
        nodes=np.zeros(0, dtype=np.int64),
        cut_nodes=np.zeros(0, dtype=np.int64),
        centre_mm=centre.copy(),
        line_ends_mm=np.vstack([centre, centre]),
        anchors=[],
        cut_volume_mm3=0.0,
        cross_section_mm2=0.0,
        border_zone_fraction=0.0,
        extension_mm=0.0,
        cv_site_m_per_s=None,
        cv_median_m_per_s=cv_median,
    )


def _isthmus_cut(
    graph: TissueGraph,
    anchors: Anchors,
    t: np.ndarray,
    cl: float,
    cost: np.ndarray,
    ends: bool = False,
):
    """Step 0 of the module docstring: (transect, note, end transects) or (None, "", []). A
    transect counts when it is closed within its ball and touches obstacles at two separate
    places (a channel's two walls; a node or two squeezed between one obstacle and a pocket
    of block is not a channel). ``ends``: also the transects at the channel's two ends
    (:func:`channel_transects`)."""
    diastole = diastolic_pathway(graph, t, cl)
    if diastole is None:
        return None, "", []
    first = True
    for inner, widen in zip((0.0, *DIASTOLE_WIDENING), DIASTOLE_WIDENING, strict=False):
        # beyond the quiet stretch: the channel's own remodelled tissue only, and of the
        # transects found there the cheapest (healthy tissue and other border zone activate
        # there too, so the first found need not be the channel)
        among = graph.border if widen > 1.0 else None
        found = []
        for centre in _diastolic_candidates(t, cl, diastole, widen, inner, among):
            transect = _closed_transect(graph, anchors, cost, centre)
            if transect is not None:
                found.append((float(cost[transect[0]].sum()), centre, *transect))
                if widen == 1.0:
                    break
            first = False
        if not found:
            continue
        _, centre, cut, radius = min(found, key=lambda f: f[0])
        where = (
            "where the wave is at mid-diastole"
            if first
            else f"{abs(_phase_from_mid(t[centre], cl, diastole)):.0f} ms from "
            "mid-diastole (nearer it the corridor is not closed by obstacles)"
        )
        note = (
            f"diastolic pathway: for {diastole.length_ms:.0f} of the {cl:.0f} ms cycle "
            f"only {100 * diastole.volume_fraction:.1f} % of the tissue activates; the "
            f"corridor is cut across within {radius:.0f} mm of {where}"
        )
        extra = channel_transects(graph, anchors, cost, centre, cut) if ends else []
        if extra:
            span = np.linalg.norm(
                graph.points_mm[extra[0]].mean(axis=0) - graph.points_mm[extra[-1]].mean(axis=0)
            )
            note += (
                f", and at the channel's {'two ends' if len(extra) == 2 else 'one end found'} "
                f"({len(extra)} more transect(s)"
                + (f", {span:.0f} mm apart" if len(extra) == 2 else "")
                + "; ablation.isthmus_lines: ends)"
            )
        elif ends:
            note += (
                " (ablation.isthmus_lines: ends, but no other transect closed by two walls was "
                "found along the channel: it stops being border zone or widens to the surface "
                "within a step; this one transect only)"
            )
        return cut, note, extra
    return None, "", []


def _closed_transect(graph: TissueGraph, anchors: Anchors, cost: np.ndarray, centre: int):
    """(cut, radius mm) of the corridor at ``centre`` closed by two walls, or None."""
    axis = corridor_axis(graph, centre)
    if axis is None:
        return None
    for radius in TRANSECT_RADII_MM:
        cut = corridor_transect(graph, cost, centre, axis, radius)
        if cut is None:
            continue
        if len(_touch_clusters(graph, anchors, cut, max(graph.max_edge_mm, 1e-9))) >= 2:
            return cut, radius
    return None


def channel_transects(
    graph: TissueGraph,
    anchors: Anchors,
    cost: np.ndarray,
    centre: int,
    middle: np.ndarray,
    step_mm: float = CHANNEL_STEP_MM,
) -> list[np.ndarray]:
    """Transects of the channel through tissue node ``centre`` near its two ends: stepping
    ``step_mm`` at a time along the corridor from the middle of ``middle`` (its axis
    re-estimated at each step and the walk moved sideways onto each closed transect's
    middle, so a curved channel is followed; at each step the nodes within half a step
    are tried too, :func:`_closed_transect_near`) in both directions while the steps stay
    in border zone / fibrosis, the transect closed by two walls furthest from ``centre`` on
    each side that shares no node with ``middle`` (the transect at ``centre``). (Not every
    step gives one: where the channel widens, the cheapest cut in the ball runs to its
    surface.) Empty where the channel does not go on."""
    ends = []
    tree = cKDTree(graph.points_mm)
    # walk the channel's middle: from the middle transect's centroid, moved sideways onto
    # each closed transect's middle (a walk from a node near one wall drifts into the wall
    # and out of the channel, where no transect is closed)
    start = _centroid_node(graph, tree, middle)
    axis0 = corridor_axis(graph, start)
    if axis0 is None:
        return ends
    for sign in (1.0, -1.0):
        here, axis, last = start, sign * axis0, None
        for _ in range(CHANNEL_MAX_STEPS):
            target = graph.points_mm[here] + step_mm * axis
            nxt = int(tree.query(target)[1])
            if nxt == here or not graph.border[nxt]:
                break
            new_axis = corridor_axis(graph, nxt)
            if new_axis is None:
                break
            axis = new_axis if new_axis @ axis >= 0 else -new_axis
            here = nxt
            found = _closed_transect_near(graph, anchors, cost, tree, nxt, 0.5 * step_mm)
            if found is None:
                continue
            across = graph.border[found[0]].mean() >= 0.5  # not round the channel's mouth
            if across and not np.isin(found[0], middle).any():
                last = found[0]
            # only sideways: the cheapest transect in the ball need not lie at the step
            middle_of = graph.points_mm[found[0]].mean(axis=0)
            offset = graph.points_mm[here] - middle_of
            centred = int(tree.query(middle_of + (offset @ axis) * axis)[1])
            if graph.border[centred]:
                here = centred
        if last is not None:
            ends.append(last)
    return ends


def _closed_transect_near(
    graph: TissueGraph,
    anchors: Anchors,
    cost: np.ndarray,
    tree: cKDTree,
    node: int,
    reach_mm: float,
):
    """:func:`_closed_transect` at ``node`` or, failing that, at the border-zone nodes within
    ``reach_mm`` of it, nearest first (at most ``CHANNEL_TRIES``). Whether the cheapest cut
    in a ball is closed depends on the ball's centre: on the lv-infarct phantom's 2 mm mesh,
    near the channel's apical end, of the border-zone nodes within 3.5 mm of the centreline
    about two in three give a closed transect and the others not."""
    near = np.asarray(tree.query_ball_point(graph.points_mm[node], reach_mm), dtype=np.int64)
    near = np.sort(near[graph.border[near] & (near != node)])
    # nearest first; equal distances (a regular grid has many) by node number, so the order
    # does not depend on the k-d tree's or the sort's implementation
    distance = np.linalg.norm(graph.points_mm[near] - graph.points_mm[node], axis=1)
    near = near[np.argsort(distance, kind="stable")]
    for candidate in (node, *near[: CHANNEL_TRIES - 1]):
        found = _closed_transect(graph, anchors, cost, int(candidate))
        if found is not None:
            return found
    return None


def _centroid_node(graph: TissueGraph, tree: cKDTree, nodes: np.ndarray) -> int:
    """The tissue node nearest the centroid of ``nodes`` (tissue indices)."""
    return int(tree.query(graph.points_mm[nodes].mean(axis=0))[1])


def _phase_from_mid(t, cl: float, diastole: Diastole):
    """Activation time(s) ``t`` relative to mid-diastole, ms in [−CL/2, CL/2)."""
    mid = diastole.start_ms + 0.5 * diastole.length_ms
    return (np.asarray(t) - mid + 0.5 * cl) % cl - 0.5 * cl


def _diastolic_candidates(
    t: np.ndarray,
    cl: float,
    diastole: Diastole,
    widen: float = 1.0,
    inner: float = 0.0,
    among: np.ndarray | None = None,
) -> list[int]:
    """Where to try the corridor transect: the node at mid-diastole first, then every tissue
    node activated in the diastole (not only its largest piece: the wave can be hidden
    between pieces in tissue slower than the map resolves), nearest mid-diastole first, at
    most ``DIASTOLE_TRIES`` of them spread evenly along that order. On the sample patient's
    mesh with the default 2 s observation, mid-diastole of one VT lies 5 mm beyond the
    channel's apical end, where no transect is closed, while the channel's own
    diastolic nodes come later in the order.

    ``widen`` > 1: the nodes activated within ``widen`` half-diastoles of mid-diastole but
    not within ``inner`` of them (the window already tried), without the mid-diastole node,
    only those of ``among`` (a mask) when given. Another VT there has its whole diastole
    beyond the channel's other end: the wave is in the channel 44 ms from mid-diastole,
    9 ms outside its 70 ms diastole, when healthy tissue beyond the exit activates too."""
    half = 0.5 * diastole.length_ms
    offset = np.abs(_phase_from_mid(np.nan_to_num(t), cl, diastole))
    inside = np.isfinite(t) & (offset < widen * half) & ~(offset < inner * half)
    if among is not None:
        inside &= among
    nodes = np.nonzero(inside)[0]
    nodes = nodes[np.argsort(offset[nodes], kind="stable")]
    if widen > 1.0:  # every one (few: the remodelled tissue activated in the window)
        return [int(n) for n in nodes[:WIDENED_TRIES] if n != diastole.centre]
    step = max(1, int(np.ceil(nodes.size / DIASTOLE_TRIES)))
    spread = [int(n) for n in nodes[::step] if n != diastole.centre]
    return [diastole.centre, *spread][: DIASTOLE_TRIES + 1]


def find_critical_site(
    graph: TissueGraph,
    anchors: Anchors,
    circuit: Circuit,
    *,
    border_zone_cost: float = 0.5,
    anchors_per_line: int = 1,
    radius_mm: float = 4.0,
    isthmus_lines: str = "ends",
) -> CriticalSite:
    """The critical site of ``circuit`` on ``graph`` (module docstring)."""
    t_mesh = np.asarray(circuit.activation_ms, dtype=np.float64)
    if t_mesh.shape != (graph.mesh.n_points,):
        raise CriticalSiteError(
            f"VT {circuit.id}: the activation map has {t_mesh.size} values, the mesh "
            f"{graph.mesh.n_points} nodes; the map belongs to another mesh"
        )
    cl = float(circuit.cycle_length_ms)
    if not (np.isfinite(cl) and cl > 0):
        raise CriticalSiteError(f"VT {circuit.id}: cycle length {cl} ms is not positive")
    t = t_mesh[graph.nodes]
    active = np.isfinite(t)
    if not active.any():
        raise CriticalSiteError(f"VT {circuit.id}: no tissue node activated in its map")
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    both = active[i] & active[j]
    gap = np.where(both, np.abs(np.nan_to_num(t[j]) - np.nan_to_num(t[i])), 0.0)
    cost = node_costs(graph, border_zone_cost)
    tets, speed = _velocities(graph, t, cl)
    cv_median = float(np.nanmedian(speed)) if np.isfinite(speed).any() else None

    sources = sinks = np.zeros(0, dtype=np.int64)
    unwrapped = False
    cut, isthmus_note, channel_ends = _isthmus_cut(
        graph, anchors, t, cl, cost, ends=isthmus_lines == "ends"
    )
    for fraction in FRONT_FRACTIONS if cut is None else ():
        front = both & (gap > fraction * cl)
        early = np.where(t[i] < t[j], i, j)[front]
        late = np.where(t[i] < t[j], j, i)[front]
        sources, sinks = np.unique(early), np.unique(late)
        both_ends = np.intersect1d(sources, sinks)
        sources, sinks = np.setdiff1d(sources, both_ends), np.setdiff1d(sinks, both_ends)
        if sources.size and sinks.size:
            break
    if cut is not None:
        mechanism = "isthmus"
    elif sources.size and sinks.size:
        mechanism = "re-entry"
        cut = minimum_vertex_cut(graph, cost, sources, sinks, ~front)
        if cut.size == 0:
            if np.isfinite(np.delete(t_mesh, graph.nodes)).any():
                # sources and sinks are not connected and the map has times where the
                # tissue no longer conducts: a map from before a lesion, nothing left to cut
                return _interrupted(graph, circuit, sources, mechanism, cv_median)
            # a current map whose front edges do not join the circuit's two ends: they
            # border tissue activated in sequence across the cycle's cut (step 1b)
            t = _unwrap_pockets(graph, t, cl, front, sources, sinks)
            cut, unwrapped = None, True
    if cut is None:
        # no front edge: the front at the cycle's cut runs through tissue that did not
        # activate in the cycle (block, or conduction slower than a cycle), so the circuit
        # cannot be opened there. Its exit, the earliest-activated tissue, is the target
        # (an exit-site lesion, joined to an anchor below) when the latest activation lies
        # beside it (the circuit closes there); when it lies far away, the map spreads
        # from a focus and the earliest tissue is ablated as such
        low, high = np.nanquantile(t, [BAND_FRACTION, 1.0 - BAND_FRACTION])
        earliest = np.nonzero(active & (t <= low))[0]
        tree = cKDTree(graph.points_mm[earliest])
        apart = tree.query(graph.points_mm[active & (t >= high)])[0].min()
        extent = tree.query(graph.points_mm[active])[0].max()
        mechanism = "focal" if apart > FOCAL_APART * extent else "exit"
        cut = np.nonzero(active & (t <= np.nanmin(t) + FOCAL_WINDOW_MS))[0]

    nodes = np.unique(np.concatenate([cut, *channel_ends])) if channel_ends else cut
    extension = 0.0
    reachable, note = True, ""
    tolerance = max(graph.max_edge_mm, 1e-9)
    if mechanism != "focal":
        far = max(2.0 * radius_mm, 4.0 * graph.spacing_mm)
        clusters = _touch_clusters(graph, anchors, nodes, tolerance)
        for _ in range(anchors_per_line):
            if len(clusters) >= anchors_per_line:
                break
            anchor_nodes = np.nonzero(anchors.component >= 0)[0]
            if clusters:
                # reach a different side: anchors away from where the line already touches,
                # starting from the line's end furthest from there
                touched = graph.points_mm[np.concatenate([c for _, c in clusters])]
                d_anchor = cKDTree(touched).query(graph.points_mm[anchor_nodes])[0]
                targets = anchor_nodes[d_anchor > far]
                d_nodes = cKDTree(touched).query(graph.points_mm[nodes])[0]
                start = nodes[d_nodes >= d_nodes.max() - 2.0 * graph.spacing_mm]
            else:
                targets, start = anchor_nodes, nodes
            path, length = graph.nearest_path(start, targets)
            before = len(clusters)
            if path.size:
                nodes = np.union1d(nodes, path)
                extension += length
                clusters = _touch_clusters(graph, anchors, nodes, tolerance)
            if len(clusters) <= before:
                reachable = False
                what = "an anchor" if not before else "a second, separate anchor"
                note = (
                    f"the cut of VT {circuit.id} ends in conducting tissue and no path reaches "
                    f"{what} (no scar, earlier lesion or opening such as the base, a valve or "
                    "a vein); a lesion here would leave a gap the wave can turn around"
                )
                break
        if reachable and extension > 0:
            note = f"cut extended {extension:.1f} mm through tissue to reach an anchor"
        if mechanism == "isthmus":
            note = f"{isthmus_note}; {note}" if note else isthmus_note
        if mechanism == "exit":
            hidden = (
                "no wave front in the map (it runs through tissue that did not activate in "
                "the cycle: block or very slow conduction), so the circuit could not be "
                "opened; the target is its exit, the earliest-activated tissue"
            )
            if unwrapped:
                hidden += (
                    " (the map's only jumps by a cycle border tissue activated after its "
                    "neighbours, read as the next cycle)"
                )
            note = f"{hidden}; {note}" if note else hidden
    else:
        clusters = _touch_clusters(graph, anchors, nodes, tolerance)
        note = (
            "no re-entrant wrap in the map and its latest activation lies far from its "
            "earliest: a focal source; the earliest-activated tissue is the target"
        )

    points = graph.points_mm[cut]
    # the site's centre: the cut node nearest the circuit's phase singularities (a driver's
    # core), else nearest the cut's centroid (the middle of an isthmus)
    singularities = np.asarray(circuit.phase_singularities_mm, dtype=np.float64).reshape(-1, 3)
    if singularities.size:
        near = cKDTree(singularities).query(points)[0]
    else:
        near = np.linalg.norm(points - points.mean(axis=0), axis=1)
    centre = points[np.argmin(near)]
    if mechanism == "isthmus":
        # a transect's centre is its centroid, the middle of the channel, where it lies
        # within one mesh spacing of the cut's nodes (a cut that bends round may not)
        middle = points.mean(axis=0)
        if np.linalg.norm(points - middle, axis=1).min() <= graph.spacing_mm:
            centre = middle
    cut_volume = float(graph.volume_mm3[cut].sum())
    site_elements = np.any(np.isin(tets, cut), axis=1) & np.isfinite(speed)
    return CriticalSite(
        circuit_id=circuit.id,
        mechanism=mechanism,
        reachable=reachable,
        note=note,
        nodes=nodes,
        cut_nodes=cut,
        centre_mm=centre.copy(),
        line_ends_mm=line_ends(graph.points_mm[nodes]),
        anchors=[anchors.names[c] for c, _ in clusters],
        cut_volume_mm3=cut_volume,
        cross_section_mm2=cut_volume / max(graph.spacing_mm, 1e-12),
        border_zone_fraction=float(graph.border[cut].mean()) if cut.size else 0.0,
        extension_mm=extension,
        cv_site_m_per_s=float(np.median(speed[site_elements])) if site_elements.any() else None,
        cv_median_m_per_s=cv_median,
    )
