"""The infarct of ``lv-infarct``, designed on the unrolled mid-wall surface, and its circuit.

Coordinates (mm): ``x`` is the circumferential arc length at mid-wall from the infarct's
centre angle, ``y`` the meridian arc length at mid-wall from its centre height (positive
towards the base). On this map the infarct is:

- a **dense core** (a rounded rectangle, superellipse exponent 2.5-3.5, with low-harmonic
  shape and a patchy, 1-3 mm irregular edge) cut in two **lobes** by
- an **isthmus**: a straight border-zone channel 5-15 mm wide (clinical VT isthmuses,
  e.g. de Chillou 2002, Circulation 105:726) within 10° of the long axis, which runs on past
  the core and its rim into healthy tissue at both ends;
- a **border-zone rim** of varying width (3-8 mm) around the lobes, with islands of viable
  myocardium (a heterogeneous, patchy grey zone);
- per **variant**: ``transmural`` (radial edges), ``subendocardial`` (the dense scar reaches
  8-15 mm further at the endocardium and tapers to nothing at 35-60 % of the wall depth: the
  wavefront phenomenon of Reimer & Jennings 1979; the lobes stay transmural so the circuit
  exists), ``thinned`` (transmural, the wall over the core thinned to 45-65 %).

Why this size (the induction issue: re-entry must be physically possible at published
conduction velocities and refractory periods): one loop of the figure-of-eight (through the
isthmus, back around one lobe) must take longer than the effective refractory period of the
tissue, ≈ 280-320 ms for TP06 at a 600 ms cycle, and patients' VT cycle lengths are 300-500
ms. The loop time is computed on this map as the eikonal travel time (Dijkstra on a
32-direction pixel graph) with anisotropic velocities (fibres circumferential at mid-wall),
border zone slower by a factor, dense scar impassable; :data:`CV_SCENARIOS` lists the
velocities. The core is enlarged (wider lobes and taller, in turn) until even the ``fast``
scenario needs :data:`MIN_FAST_LOOP_MS`, the border zone's refractory period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY

VARIANTS = ("transmural", "subendocardial", "thinned")

#: Map pixel (mm).
MAP_PIXEL_MM = 0.5

#: Conduction velocities (mm/ms) for the circuit estimate: healthy along the circumference
#: (mid-wall fibre direction) and along the long axis, and the border zone as a fraction of
#: healthy. ``nominal``: 0.65 along fibres; 0.40 along the long axis, between the mid-wall
#: transverse 0.30 and the ≈ 0.47 of endo/epi layers whose fibres lie 30° off the long axis
#: (rule-based fibres ±60°); border zone 40 % (GNa × 0.38 and transverse σ reduced ~90 %:
#: 30-50 % of healthy). ``fast``: the top of the published ranges, a lower bound on the loop
#: time. ``slow``: the bottom.
CV_SCENARIOS = {
    "fast": {"healthy_circumferential": 0.70, "healthy_longitudinal": 0.50, "border_zone": 0.50},
    "nominal": {
        "healthy_circumferential": 0.65,
        "healthy_longitudinal": 0.40,
        "border_zone": 0.40,
    },
    "slow": {"healthy_circumferential": 0.60, "healthy_longitudinal": 0.30, "border_zone": 0.30},
}

#: Smallest loop time (ms) in the ``fast`` scenario that a design must reach: the border
#: zone's effective refractory period, 410 ms for TP06 with the published remodelling after
#: 600 ms pacing (healthy TP06: 315 ms; benchmarks/RESULTS.md, "Conduction velocity and
#: refractoriness"). A re-entrant wave comes back to the isthmus one loop after it left it,
#: so the loop must outlast the isthmus's refractory period. Measured on the must-shows' 2 mm
#: mesh (Mitchell–Schaeffer, ``benchmarks/circuit_on_mesh.py``): the channel's ERP is 400 ms
#: and the loop runs 15-30 ms longer than this ``fast`` estimate; at the earlier 300 ms the
#: sample's true anatomy looped in 373 ms and its isthmus carried no VT.
MIN_FAST_LOOP_MS = 410.0

#: Growth of a design too small for :data:`MIN_FAST_LOOP_MS`: lobes wider and the infarct
#: taller by this factor in turn, at most :data:`MAX_GROWTH_STEPS` steps.
GROWTH_FACTOR = 1.04
MAX_GROWTH_STEPS = 16


@dataclass(frozen=True)
class InfarctDesign:
    """The drawn numbers of one infarct (mm, radians); see the module docstring."""

    variant: str
    phi0: float
    w0: float
    half_width_mm: float
    half_height_mm: float
    squareness: float
    harmonics: tuple[tuple[int, float, float], ...]
    channel_width_mm: float
    channel_offset_mm: float
    channel_angle_rad: float
    rim_mm: float
    edge_irregularity_mm: float
    island_share: float
    bz_fibrosis_mean: float
    skirt_mm: float
    skirt_depth: float
    thinning: float

    def widened(self, factor: float) -> InfarctDesign:
        """The same design with lobes ``factor`` times wider (longer return paths)."""
        from dataclasses import replace

        return replace(self, half_width_mm=self.half_width_mm * factor)

    def heightened(self, factor: float) -> InfarctDesign:
        """The same design ``factor`` times taller (a longer isthmus and return paths)."""
        from dataclasses import replace

        return replace(self, half_height_mm=self.half_height_mm * factor)


def draw_infarct(rng: np.random.Generator, variant: str) -> InfarctDesign:
    """Random LAD-territory infarct (anteroseptal to anterolateral) of the given variant.

    Every number is drawn whatever the variant, so the other draws of a seed do not depend
    on it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown scar variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    harmonics = tuple(
        (order, rng.uniform(0.0, 0.05), rng.uniform(0, 2 * math.pi)) for order in (2, 3, 4)
    )
    draws = {
        "phi0": math.radians(rng.uniform(-30.0, 40.0)),
        "w0": rng.uniform(-20.0, -13.0),
        "half_width_mm": rng.uniform(33.0, 40.0),
        "half_height_mm": rng.uniform(13.0, 16.0),
        "squareness": rng.uniform(2.5, 3.5),
        "channel_width_mm": rng.uniform(5.0, 15.0),
        "channel_offset_mm": rng.uniform(-3.0, 3.0),
        "channel_angle_rad": math.radians(rng.uniform(-10.0, 10.0)),
        "rim_mm": rng.uniform(4.0, 6.0),
        "edge_irregularity_mm": rng.uniform(1.0, 2.5),
        "island_share": rng.uniform(0.05, 0.15),
        "bz_fibrosis_mean": rng.uniform(0.28, 0.38),
        "skirt_mm": rng.uniform(8.0, 15.0),
        "skirt_depth": rng.uniform(0.35, 0.60),
        "thinning": rng.uniform(0.35, 0.55),
    }
    if variant != "subendocardial":
        draws["skirt_mm"] = 0.0
        draws["skirt_depth"] = 0.0
    if variant != "thinned":
        draws["thinning"] = 0.0
    return InfarctDesign(variant=variant, harmonics=harmonics, **draws)


@dataclass
class InfarctMap:
    """The design rasterised on the unrolled mid-wall surface (``MAP_PIXEL_MM`` pixels).

    ``x0``, ``y0``: map coordinates of pixel (0, 0); arrays are indexed ``[ix, iy]``.
    """

    design: InfarctDesign
    x0: float
    y0: float
    dense: np.ndarray  # the transmural lobes
    dist_dense_mm: np.ndarray  # distance to the lobes (0 inside)
    rim_width_mm: np.ndarray  # local border-zone rim width
    channel: np.ndarray  # the forced border-zone strip (all depths)
    island: np.ndarray  # viable islands inside the rim
    thin_weight: np.ndarray  # 1 deep in the core, 0 away from it
    valid: np.ndarray  # the map pixel lies on the ventricle
    channel_half_length_mm: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.dense.shape

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest pixel of map points; ``inside`` is False off the map."""
        ix = np.rint((np.asarray(x) - self.x0) / MAP_PIXEL_MM).astype(np.int64)
        iy = np.rint((np.asarray(y) - self.y0) / MAP_PIXEL_MM).astype(np.int64)
        inside = (ix >= 0) & (ix < self.shape[0]) & (iy >= 0) & (iy < self.shape[1])
        return np.clip(ix, 0, self.shape[0] - 1), np.clip(iy, 0, self.shape[1] - 1), inside

    def classify(self, x: np.ndarray, y: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Tissue class of wall points at map ``(x, y)``, transmural ``depth`` (0 endo, 1 epi)."""
        ix, iy, inside = self.index(x, y)
        design = self.design
        extra = np.zeros(np.shape(depth), dtype=np.float32)
        if design.skirt_mm > 0:
            extra = design.skirt_mm * np.clip(1.0 - np.asarray(depth) / design.skirt_depth, 0, 1)
            # The skirt fades out towards the channel line, so the two lobes' skirts never
            # meet around the channel's ends (the dense scar stays in two pieces).
            across = (np.asarray(x) - design.channel_offset_mm) * math.cos(
                design.channel_angle_rad
            ) - np.asarray(y) * math.sin(design.channel_angle_rad)
            fade = np.clip((np.abs(across) - 0.5 * design.channel_width_mm) / 6.0, 0.0, 1.0)
            extra = extra * fade
        distance = self.dist_dense_mm[ix, iy]
        classes = np.full(np.shape(x), HEALTHY, dtype=np.uint8)
        bz = (distance <= extra + self.rim_width_mm[ix, iy]) & ~self.island[ix, iy]
        classes[bz] = BORDER_ZONE
        classes[distance <= extra] = DENSE_SCAR
        classes[self.channel[ix, iy]] = BORDER_ZONE
        classes[~inside] = HEALTHY
        return classes

    def thinning_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fraction of the wall thickness lost at map points (0 without thinning)."""
        if self.design.thinning <= 0:
            return np.zeros(np.shape(x), dtype=np.float32)
        ix, iy, inside = self.index(x, y)
        return np.where(inside, self.design.thinning * self.thin_weight[ix, iy], 0.0)

    def conduction_classes(self) -> np.ndarray:
        """Class of each pixel for conduction: the most conductive layer across the wall.

        Dense where the scar is transmural (the lobes), border zone where any layer is
        border zone and none healthy (rim, channel), healthy elsewhere (including over a
        subendocardial skirt, whose epicardial layer conducts).
        """
        classes = np.full(self.shape, HEALTHY, dtype=np.uint8)
        classes[(self.dist_dense_mm <= self.rim_width_mm) & ~self.island] = BORDER_ZONE
        classes[self.dense] = DENSE_SCAR
        classes[self.channel] = BORDER_ZONE
        return classes


def build_map(
    design: InfarctDesign,
    rng: np.random.Generator,
    half_circumference_mm,
    y_limits_mm: tuple[float, float],
) -> InfarctMap:
    """Rasterise ``design``; ``half_circumference_mm(y)`` gives π × mid-wall radius at ``y``
    and ``y_limits_mm`` the map heights that lie on the ventricle (apex side, base side).
    """
    from scipy import ndimage

    px = MAP_PIXEL_MM
    skirt = design.skirt_mm
    margin = 12.0 + 1.6 * design.rim_mm + skirt
    half_x = design.half_width_mm + margin
    half_y = design.half_height_mm + margin
    nx, ny = int(math.ceil(2 * half_x / px)) + 1, int(math.ceil(2 * half_y / px)) + 1
    x0, y0 = -half_x, -half_y
    x = (x0 + px * np.arange(nx))[:, None] * np.ones((1, ny))
    y = (y0 + px * np.arange(ny))[None, :] * np.ones((nx, 1))

    # Core: superellipse with low harmonics, then an irregular edge from a smooth field.
    theta = np.arctan2(y / design.half_height_mm, x / design.half_width_mm)
    factor = np.ones_like(theta)
    for order, amplitude, phase in design.harmonics:
        factor += amplitude * np.cos(order * theta + phase)
    p = design.squareness
    radius = (np.abs(x / design.half_width_mm) ** p + np.abs(y / design.half_height_mm) ** p) ** (
        1 / p
    ) / factor
    core0 = radius <= 1.0
    signed = ndimage.distance_transform_edt(~core0, sampling=px) - ndimage.distance_transform_edt(
        core0, sampling=px
    )
    edge_field = _smooth_field(rng, (nx, ny), sigma_px=3.0 / px)
    core = signed <= design.edge_irregularity_mm * edge_field

    cos_a, sin_a = math.cos(design.channel_angle_rad), math.sin(design.channel_angle_rad)
    across = (x - design.channel_offset_mm) * cos_a - y * sin_a
    along = (x - design.channel_offset_mm) * sin_a + y * cos_a
    in_strip = np.abs(across) <= 0.5 * design.channel_width_mm
    dense = core & ~in_strip
    dense = _two_lobes(dense, across)

    rim_field = _smooth_field(rng, (nx, ny), sigma_px=4.0 / px)
    rim_width = np.clip(design.rim_mm * (1.0 + 0.35 * rim_field), 3.0, 8.0).astype(np.float32)
    dist_dense = ndimage.distance_transform_edt(~dense, sampling=px).astype(np.float32)

    # The channel runs through the core and its rim and opens into healthy tissue where the
    # rim ends (with the local rim width at the core's edge).
    core_along = np.abs(along[core0 & in_strip])
    reach = float(core_along.max()) if core_along.size else design.half_height_mm
    channel = in_strip & (signed <= design.edge_irregularity_mm + rim_width)
    channel_along = np.abs(along[channel])
    channel_half_length = float(channel_along.max()) if channel_along.size else reach
    channel &= np.abs(along) <= channel_half_length

    island_field = _smooth_field(rng, (nx, ny), sigma_px=1.2 / px)
    rim = (dist_dense > 0) & (dist_dense <= rim_width) & ~channel
    island = np.zeros_like(rim)
    if design.island_share > 0 and rim.any():
        limit = np.quantile(island_field[rim], 1.0 - design.island_share)
        # Islands stay off the lobes' edge: the grey zone touching dense scar stays grey.
        island = rim & (island_field >= limit) & (dist_dense > 1.5)

    thin_weight = ndimage.gaussian_filter((core0 | dense).astype(np.float32), 4.0 / px)
    thin_weight = np.clip(thin_weight / max(float(thin_weight.max()), 1e-6), 0, 1)

    half_circ = half_circumference_mm(y)
    valid = (np.abs(x) < half_circ) & (y > y_limits_mm[0]) & (y < y_limits_mm[1])
    return InfarctMap(
        design=design,
        x0=x0,
        y0=y0,
        dense=dense,
        dist_dense_mm=dist_dense,
        rim_width_mm=rim_width,
        channel=channel,
        island=island,
        thin_weight=thin_weight.astype(np.float32),
        valid=valid,
        channel_half_length_mm=channel_half_length,
    )


def _smooth_field(rng: np.random.Generator, shape, sigma_px: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return (field / max(float(field.std()), 1e-12)).astype(np.float32)


def _two_lobes(dense: np.ndarray, across: np.ndarray) -> np.ndarray:
    """Keep the largest dense component on each side of the channel; drop crumbs."""
    from scipy import ndimage

    components, n = ndimage.label(dense)
    if n == 0:
        return dense
    sizes = np.bincount(components.ravel())
    keep = np.zeros(n + 1, dtype=bool)
    for side in (across < 0, across > 0):
        on_side = np.unique(components[side & dense])
        on_side = on_side[on_side > 0]
        if on_side.size:
            keep[on_side[np.argmax(sizes[on_side])]] = True
    return keep[components]


# ---------------------------------------------------------------------------------------
# The circuit: isthmus, return paths, loop time
# ---------------------------------------------------------------------------------------

#: Graph steps (and their reverses): 32 directions. Over a homogeneous anisotropic map the
#: graph time overestimates the exact eikonal time by at most 2.5 % (0.70/0.50 mm/ms) to 5 %
#: (0.65/0.30 mm/ms); a test checks it.
_STEPS = [
    (1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2),
    (3, 1), (1, 3), (3, -1), (1, -3), (3, 2), (2, 3), (3, -2), (2, -3),
]  # fmt: skip


def _travel_times(
    passable: np.ndarray,
    slowness_circ: np.ndarray,
    slowness_long: np.ndarray,
    source: tuple[int, int],
    pixel_mm: float,
) -> np.ndarray:
    """Eikonal travel time (ms) from ``source`` over passable pixels (Dijkstra, 32 directions).

    ``slowness_*`` (ms/mm) per pixel along x (circumferential) and y (longitudinal); a step
    at angle θ to x costs length · √(cos²θ s_c² + sin²θ s_l²), averaged over its two ends.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    nx, ny = passable.shape
    index = np.arange(nx * ny).reshape(nx, ny)
    rows, cols, costs = [], [], []
    for dx, dy in _STEPS:
        length = pixel_mm * math.hypot(dx, dy)
        cos2 = dx * dx / (dx * dx + dy * dy)
        a = (slice(max(0, -dx), nx - max(0, dx)), slice(max(0, -dy), ny - max(0, dy)))
        b = (slice(max(0, dx), nx - max(0, -dx)), slice(max(0, dy), ny - max(0, -dy)))
        both = passable[a] & passable[b]
        per_mm_a = np.sqrt(cos2 * slowness_circ[a] ** 2 + (1 - cos2) * slowness_long[a] ** 2)
        per_mm_b = np.sqrt(cos2 * slowness_circ[b] ** 2 + (1 - cos2) * slowness_long[b] ** 2)
        rows.append(index[a][both])
        cols.append(index[b][both])
        costs.append(0.5 * length * (per_mm_a[both] + per_mm_b[both]))
    rows, cols, costs = (np.concatenate(v) for v in (rows, cols, costs))
    graph = coo_matrix((costs, (rows, cols)), shape=(nx * ny, nx * ny)).tocsr()
    times = dijkstra(graph, directed=False, indices=index[source])
    return times.reshape(nx, ny)


def circuit(infarct_map: InfarctMap, stride: int = 2) -> dict:
    """Isthmus, return paths and loop times of the designed circuit (see the module docstring).

    The isthmus time is the fastest way from one channel opening to the other that stays
    within 20 mm of the channel (so it cannot go round a lobe); a return time is the fastest
    way back around one lobe with the channel closed. Path lengths are from the same search
    with unit speed everywhere. The search runs on every ``stride``-th map pixel.
    """
    design = infarct_map.design
    pick = (slice(None, None, stride), slice(None, None, stride))
    classes = infarct_map.conduction_classes()[pick]
    valid = infarct_map.valid[pick]
    channel = infarct_map.channel[pick]
    passable = valid & (classes != DENSE_SCAR)
    px = MAP_PIXEL_MM * stride
    nx, ny = classes.shape
    x = (infarct_map.x0 + px * np.arange(nx))[:, None] * np.ones((1, ny))
    y = (infarct_map.y0 + px * np.arange(ny))[None, :] * np.ones((nx, 1))
    cos_a, sin_a = math.cos(design.channel_angle_rad), math.sin(design.channel_angle_rad)
    across = (x - design.channel_offset_mm) * cos_a - y * sin_a
    end = infarct_map.channel_half_length_mm + 1.5

    def point(along: float) -> tuple[int, int]:
        ix = int(round((design.channel_offset_mm + along * sin_a - infarct_map.x0) / px))
        iy = int(round((along * cos_a - infarct_map.y0) / px))
        return min(max(ix, 0), nx - 1), min(max(iy, 0), ny - 1)

    apical, basal = point(-end), point(end)
    half = 0.5 * design.channel_width_mm
    corridor = passable & (np.abs(across) <= half + 20.0)
    closed = passable & ~channel
    sides = {"left_lobe": closed & ~(across > half), "right_lobe": closed & ~(across < -half)}
    result: dict = {"scenarios": {}}
    ones = np.ones(classes.shape)
    for name, speeds in list(CV_SCENARIOS.items()) + [("length_mm", None)]:
        if speeds is None:
            slow_c = slow_l = ones
        else:
            scale = np.where(classes == BORDER_ZONE, speeds["border_zone"], 1.0)
            slow_c = 1.0 / (scale * speeds["healthy_circumferential"])
            slow_l = 1.0 / (scale * speeds["healthy_longitudinal"])
        isthmus = _travel_times(corridor, slow_c, slow_l, basal, px)[apical]
        returns = {
            side: float(_travel_times(mask, slow_c, slow_l, basal, px)[apical])
            for side, mask in sides.items()
        }
        entry = {
            "isthmus": round(float(isthmus), 1),
            "return_left_lobe": round(returns["left_lobe"], 1),
            "return_right_lobe": round(returns["right_lobe"], 1),
            "loop": round(float(isthmus + min(returns.values())), 1),
        }
        if speeds is None:
            result["path_length_mm"] = entry
        else:
            result["scenarios"][name] = {"cv_mm_per_ms": speeds, "times_ms": entry}
    return result


def distance_to_centreline_mm(point_mm, centreline_mm) -> float:
    """Shortest distance (mm) from a point to a polyline such as ``truth.json``'s isthmus
    ``centerline_mm`` (scanner mm): how the must-shows judge whether a VT's exit, a slow
    segment or a lesion lies on the designed isthmus."""
    points = np.asarray(centreline_mm, dtype=float)
    p = np.asarray(point_mm, dtype=float)
    if len(points) == 1:
        return float(np.linalg.norm(points[0] - p))
    a, b = points[:-1], points[1:]
    ab = b - a
    length2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-300)
    t = np.clip(np.einsum("ij,ij->i", p - a, ab) / length2, 0.0, 1.0)
    return float(np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=1)))
