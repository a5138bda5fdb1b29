"""The one mesh type of cardiotwin, structured box meshes and validity checks.

A :class:`Mesh` is linear tetrahedra in millimetres (scanner RAS+ mm when it came from an
image): ``points_mm`` (n, 3) float64, ``tets`` (m, 4) int64 node indices, ``region`` (m,)
int32 element tags (:mod:`cardiotwin.meshing.tags`), optional per-element unit ``fibres`` and
``sheets`` (m, 3), and what a modeller needs around them: named boundary ``surfaces``
(triangles), named ``node_sets`` (pacing sites), ``point_data`` (coordinates, AHA segments)
and the ``affine`` of the image it was built from. Tetrahedra are positively oriented (the
signed volume ``(x1 − x0)·((x2 − x0) × (x3 − x0)) / 6`` is positive); :func:`check_mesh`
enforces that. File formats live in :mod:`cardiotwin.meshing.io`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

#: an element is degenerate when |volume| < this × (longest edge)³; a regular tetrahedron
#: has 0.118, the Kuhn tetrahedra of :func:`box_mesh` 0.032, a sliver of 1e-6 is unusable
DEGENERATE_RELATIVE_VOLUME = 1e-6

#: names of surfaces, node sets and point fields: they become file names (openCARP) and
#: array names (VTU), so letters, digits, '_', '-' and '.' only
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class MeshError(ValueError):
    """An invalid mesh; the message names the offending elements or nodes and the fix."""


def _index_list(indices: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    more = f", … ({indices.size} in all)" if indices.size > limit else ""
    return shown + more


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise MeshError(
            f"{kind} name {name!r} is not usable: use letters, digits, '_', '-' and '.' "
            "(it becomes a file or array name)"
        )
    return name


@dataclass(eq=False)
class Mesh:
    """Linear tetrahedral mesh in mm with element tags, fibres, surfaces, node sets and fields.

    - ``points_mm``: (n, 3) float64 node coordinates, mm (scanner RAS+ when from an image);
    - ``tets``: (m, 4) int64 node indices, positively oriented;
    - ``region``: (m,) int32 element tags (default: all 1; see :mod:`~cardiotwin.meshing.tags`);
    - ``fibres``: optional (m, 3) unit fibre direction per element;
    - ``sheets``: optional (m, 3) unit sheet direction per element;
    - ``surfaces``: name → (k, 3) int64 boundary triangles (node indices), e.g. ``endo``,
      ``epi``, ``base``, ``rv-endo``, vein openings;
    - ``node_sets``: name → (k,) int64 node indices, e.g. one per pacing site;
    - ``point_data``: name → (n,) or (n, c) per-node field (coordinates, AHA segment), kept in
      its dtype;
    - ``affine``: optional (4, 4) voxel → scanner-mm affine of the image the mesh was built
      from (so results can be drawn back on the image).
    """

    points_mm: np.ndarray
    tets: np.ndarray
    region: np.ndarray | None = None
    fibres: np.ndarray | None = None
    sheets: np.ndarray | None = None
    surfaces: dict[str, np.ndarray] = field(default_factory=dict)
    node_sets: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points_mm = np.ascontiguousarray(self.points_mm, dtype=np.float64)
        self.tets = np.ascontiguousarray(self.tets, dtype=np.int64)
        if self.points_mm.ndim != 2 or self.points_mm.shape[1] != 3:
            raise MeshError(f"points_mm must have shape (n, 3), got {self.points_mm.shape}")
        if self.tets.ndim != 2 or self.tets.shape[1] != 4:
            raise MeshError(f"tets must have shape (m, 4), got {self.tets.shape}")
        m = self.tets.shape[0]
        if self.region is None:
            self.region = np.ones(m, dtype=np.int32)
        self.region = np.ascontiguousarray(self.region, dtype=np.int32).reshape(-1)
        if self.region.shape != (m,):
            raise MeshError(f"region must have one tag per element ({m}), got {self.region.size}")
        for name in ("fibres", "sheets"):
            value = getattr(self, name)
            if value is not None:
                value = np.ascontiguousarray(value, dtype=np.float64)
                if value.shape != (m, 3):
                    raise MeshError(
                        f"{name} must have shape ({m}, 3) (one vector per element), "
                        f"got {value.shape}"
                    )
                setattr(self, name, value)
        n = self.points_mm.shape[0]
        surfaces = {}
        for name, triangles in dict(self.surfaces).items():
            triangles = np.ascontiguousarray(triangles, dtype=np.int64).reshape(-1, 3)
            if triangles.size and (triangles.min() < 0 or triangles.max() >= n):
                raise MeshError(f"surface {name!r} refers to nodes outside 0..{n - 1}")
            surfaces[_check_name("surface", name)] = triangles
        self.surfaces = surfaces
        node_sets = {}
        for name, nodes in dict(self.node_sets).items():
            nodes = np.ascontiguousarray(nodes, dtype=np.int64).reshape(-1)
            if nodes.size and (nodes.min() < 0 or nodes.max() >= n):
                raise MeshError(f"node set {name!r} refers to nodes outside 0..{n - 1}")
            node_sets[_check_name("node set", name)] = nodes
        self.node_sets = node_sets
        point_data = {}
        for name, values in dict(self.point_data).items():
            values = np.ascontiguousarray(values)
            if values.ndim not in (1, 2) or values.shape[0] != n:
                raise MeshError(
                    f"point field {name!r} must have one value (or row) per node ({n}), "
                    f"got shape {values.shape}"
                )
            point_data[_check_name("point field", name)] = values
        self.point_data = point_data
        if self.affine is not None:
            affine = np.ascontiguousarray(self.affine, dtype=np.float64)
            if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
                raise MeshError(f"affine must be a finite 4 × 4 matrix, got shape {affine.shape}")
            self.affine = affine

    @property
    def n_points(self) -> int:
        return self.points_mm.shape[0]

    @property
    def n_elements(self) -> int:
        return self.tets.shape[0]

    def signed_volumes_mm3(self) -> np.ndarray:
        """(m,) signed element volumes, mm³ (positive for positively oriented elements)."""
        return volumes_and_longest_edges(self.points_mm, self.tets, longest=False)[0]

    def longest_edges_mm(self) -> np.ndarray:
        """(m,) length of each element's longest edge, mm."""
        return volumes_and_longest_edges(self.points_mm, self.tets)[1]

    def fingerprint(self) -> str:
        """SHA-256 of every field (geometry, tags, fibres, surfaces, node sets, point data,
        affine): results computed on a mesh (an induction run) name the mesh they belong to.

        The simulation's own fingerprint (:meth:`MonodomainProblem.fingerprint`) covers only
        what changes the solution (points, elements, tags, fibres); surfaces, node sets and
        point fields change results only through the stimuli and parameter sets derived from
        them, which it hashes itself.
        """
        h = hashlib.sha256()

        def add(label: str, value) -> None:
            h.update(label.encode())
            if value is None:
                h.update(b"none")
                return
            value = np.ascontiguousarray(value)
            h.update(str((value.dtype.str, value.shape)).encode())
            h.update(value.tobytes())

        add("points", self.points_mm)
        add("tets", self.tets)
        add("region", self.region)
        add("fibres", self.fibres)
        add("sheets", self.sheets)
        for kind, mapping in (
            ("surface", self.surfaces),
            ("node_set", self.node_sets),
            ("point_data", self.point_data),
        ):
            for name in sorted(mapping):
                add(f"{kind}:{name}", mapping[name])
        add("affine", self.affine)
        return h.hexdigest()

    def element_centres_mm(self) -> np.ndarray:
        """(m, 3) element centroids, mm."""
        return self.points_mm[self.tets].mean(axis=1)

    def volume_ml(self, tags=None) -> float:
        """Total volume of the elements (with tag in ``tags``, all when ``None``), ml."""
        volumes = np.abs(self.signed_volumes_mm3())
        if tags is not None:
            volumes = volumes[np.isin(self.region, np.atleast_1d(tags))]
        return float(volumes.sum()) / 1000.0


#: elements per chunk of the geometric computations (bounds their temporary memory)
_CHUNK = 200_000
#: the six edges of a tetrahedron as local vertex pairs
TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def volumes_and_longest_edges(
    points_mm: np.ndarray, tets: np.ndarray, *, longest: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """((m,) signed volumes mm³, (m,) longest edge mm or None), in cache-sized chunks."""
    m = len(tets)
    volumes = np.empty(m)
    longest_mm = np.empty(m) if longest else None
    for start in range(0, m, _CHUNK):
        x = points_mm[tets[start : start + _CHUNK]]
        e = x[:, 1:] - x[:, :1]  # edges from vertex 0, (k, 3, 3)
        volumes[start : start + _CHUNK] = np.einsum(
            "ij,ij->i", e[:, 0], np.cross(e[:, 1], e[:, 2])
        ) / 6.0  # fmt: skip
        if longest:
            squared = np.einsum("kij,kij->ki", e, e)  # the three edges from vertex 0
            for a, b in ((1, 2), (1, 3), (2, 3)):
                d = x[:, a] - x[:, b]
                squared = np.maximum(squared, np.einsum("ij,ij->i", d, d)[:, None])
            longest_mm[start : start + _CHUNK] = np.sqrt(squared.max(axis=1))
    return volumes, longest_mm


#: the four faces of a positively oriented tetrahedron, each ordered so its normal points out
TET_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])


def sorted_row_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of ``rows`` (k, c) sorted lexicographically, and the group id of each row in that
    order (equal rows share an id, ids count up from 0). ``np.lexsort`` on the columns is
    10-20× faster and leaner than ``np.unique(axis=0)`` on millions of rows."""
    rows = np.asarray(rows)
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    return order, np.cumsum(starts) - 1


def group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group identical rows of an integer array: ``(group id per row, rows per group)``,
    group ids numbered in sorted row order."""
    rows = np.asarray(rows)
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order, sorted_group = sorted_row_groups(rows)
    group = np.empty(len(rows), dtype=np.int64)
    group[order] = sorted_group
    return group, np.bincount(group)


def boundary_triangles(tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces that belong to one element only: ((k, 3) triangles with outward normals,
    (k,) index of the element each belongs to). ``tets`` must be positively oriented."""
    tets = np.asarray(tets, dtype=np.int64)
    faces = tets[:, TET_FACES].reshape(-1, 3)
    owner = np.repeat(np.arange(tets.shape[0]), 4)
    group, counts = group_rows(np.sort(faces, axis=1))
    once = counts[group] == 1
    return faces[once], owner[once]


def outward_surfaces(
    tets: np.ndarray, surfaces: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """``surfaces`` (name → (k, 3) triangles) with every triangle wound like the boundary face
    of the same three nodes, so its normal points out of the tissue, and how many triangles of
    each surface were re-wound (a re-wound triangle keeps its first node, the other two swap).

    Surfaces from elsewhere (openCARP ``.surf``, VTU field data, a hand-made base) may be wound
    either way. ``tets`` must be positively oriented. Raises :class:`MeshError` naming each
    surface with triangles that are not boundary faces of the mesh.
    """
    names = list(surfaces)
    triangles = [np.asarray(surfaces[n], dtype=np.int64).reshape(-1, 3) for n in names]
    given = np.concatenate(triangles + [np.zeros((0, 3), dtype=np.int64)])
    if len(given) == 0:
        return {n: t for n, t in zip(names, triangles, strict=True)}, dict.fromkeys(names, 0)
    faces, _ = boundary_triangles(tets)
    # the boundary face of each given triangle: equal sorted node rows share a group
    group, _ = group_rows(np.sort(np.concatenate([faces, given]), axis=1))
    face_of_group = np.full(group.max() + 1, -1, dtype=np.int64)
    face_of_group[group[: len(faces)]] = np.arange(len(faces))
    match = face_of_group[group[len(faces) :]]
    wound, rewound, problems = {}, {}, []
    start = 0
    for name, own in zip(names, triangles, strict=True):
        found = match[start : start + len(own)]
        start += len(own)
        missing = np.nonzero(found < 0)[0]
        if missing.size:
            problems.append(
                f"surface {name!r}: {missing.size} of {len(own)} triangles are not boundary "
                f"faces of the mesh (triangles {_index_list(missing)}; the first has nodes "
                f"{own[missing[0]].tolist()})"
            )
            continue
        face = faces[found]
        # same winding: the given triangle is a cyclic rotation of the outward face
        same = np.zeros(len(own), dtype=bool)
        for shift in range(3):
            rotated = np.roll(face, -shift, axis=1)
            same |= (rotated[:, 0] == own[:, 0]) & (rotated[:, 1] == own[:, 1])
        wound[name] = np.where(same[:, None], own, own[:, [0, 2, 1]])
        rewound[name] = int(np.count_nonzero(~same))
    if problems:
        raise MeshError(
            "; ".join(problems) + ". A surface must lie on the mesh's boundary: check that it "
            "belongs to this mesh (the same node numbering, from 0) or remove those triangles"
        )
    return wound, rewound


def box_mesh(
    size_mm: tuple[float, float, float] = (20.0, 7.0, 3.0),
    dx_mm: float = 0.5,
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    region: int = 1,
) -> Mesh:
    """Structured tetrahedral box: cubes of side ``dx_mm``, each split into 6 Kuhn tetrahedra.

    The Kuhn (Freudenthal) split uses the same diagonal in every cube, so neighbouring cubes
    share faces conformingly. Fibres point along x. Nodes are numbered x fastest, then y, z.
    Each side must be a whole number of ``dx_mm`` cells (the N-version slab 20 × 7 × 3 mm
    works with 0.5, 0.2 and 0.1 mm). With fibres along an axis, the P1 stiffness of this mesh
    couples only axis-aligned neighbours (the diagonal-edge entries are exactly zero), so
    with lumped mass it equals the 7-point finite-difference Laplacian.
    """
    if not (np.isfinite(dx_mm) and dx_mm > 0):
        raise ValueError(f"mesh spacing must be a positive number of mm, got dx = {dx_mm}")
    size = np.asarray(size_mm, dtype=np.float64)
    if size.shape != (3,) or not np.all(size > 0):
        raise ValueError(f"box size must be three positive lengths in mm, got {size_mm}")
    cells = np.rint(size / dx_mm).astype(np.int64)
    if np.any(cells < 1) or np.any(np.abs(cells * dx_mm - size) > 1e-6 * size):
        raise ValueError(
            f"box {tuple(size.tolist())} mm is not a whole number of dx = {dx_mm} mm cells; "
            "choose a dx that divides every side"
        )
    nx, ny, nz = (cells + 1).tolist()
    axes = [np.linspace(0.0, s, c + 1) + o for s, c, o in zip(size, cells, origin_mm, strict=True)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)

    def node(i, j, k):
        return i + nx * (j + ny * k)

    k, j, i = np.meshgrid(
        np.arange(cells[2]), np.arange(cells[1]), np.arange(cells[0]), indexing="ij"
    )
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    unit = np.eye(3, dtype=np.int64)
    tets = []
    # one tetrahedron per ordering of the axes: the monotone path 000 -> 111 through the cube
    for order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        corners = [np.zeros(3, dtype=np.int64)]
        for axis in order:
            corners.append(corners[-1] + unit[axis])
        verts = [node(i + c[0], j + c[1], k + c[2]) for c in corners]
        # odd permutations of the axes give negatively oriented paths: swap two vertices
        a, b, c = (unit[order[0]], unit[order[0]] + unit[order[1]], np.ones(3))
        if np.linalg.det(np.stack([a, b, c])) < 0:
            verts[1], verts[2] = verts[2], verts[1]
        tets.append(np.stack(verts, axis=1))
    tets = np.stack(tets, axis=1).reshape(-1, 4)
    m = tets.shape[0]
    fibres = np.zeros((m, 3))
    fibres[:, 0] = 1.0
    sheets = np.zeros((m, 3))
    sheets[:, 1] = 1.0
    return Mesh(
        points_mm=points,
        tets=tets,
        region=np.full(m, region, dtype=np.int32),
        fibres=fibres,
        sheets=sheets,
    )


def check_mesh(mesh: Mesh, degenerate_relative_volume: float = DEGENERATE_RELATIVE_VOLUME):
    """Raise :class:`MeshError` if ``mesh`` cannot be simulated; return it unchanged otherwise.

    Checks: finite coordinates; node indices in range; no inverted (negative volume) and no
    degenerate (|V| < ``degenerate_relative_volume`` × longest edge³) elements; fibres and
    sheets, when present, finite and non-zero. The message names the first offending element
    or node indices.
    """
    problems = []
    bad_points = np.nonzero(~np.all(np.isfinite(mesh.points_mm), axis=1))[0]
    if bad_points.size:
        problems.append(
            f"non-finite (NaN/inf) coordinates at nodes {_index_list(bad_points)}; "
            "fix or remove these nodes"
        )
    n = mesh.n_points
    out_of_range = np.nonzero(np.any((mesh.tets < 0) | (mesh.tets >= n), axis=1))[0]
    if out_of_range.size:
        problems.append(
            f"elements {_index_list(out_of_range)} refer to nodes outside 0..{n - 1}; "
            "the element list does not match the node list"
        )
    if not problems:
        corners = np.sort(mesh.tets, axis=1)
        group, counts = group_rows(corners)
        if np.any(counts > 1):
            first = np.full(counts.size, mesh.n_elements)
            np.minimum.at(first, group, np.arange(mesh.n_elements))
            repeated = np.nonzero(first[group] != np.arange(mesh.n_elements))[0]
            problems.append(
                f"duplicate elements (same four nodes as an earlier one) {_index_list(repeated)};"
                " remove the repeats"
            )
        repeated_node = np.nonzero(
            (corners[:, 0] == corners[:, 1])
            | (corners[:, 1] == corners[:, 2])
            | (corners[:, 2] == corners[:, 3])
        )[0]
        if repeated_node.size:
            problems.append(
                f"elements {_index_list(repeated_node)} use one node twice; remove them"
            )
        volumes, longest = volumes_and_longest_edges(mesh.points_mm, mesh.tets)
        scale = longest**3
        degenerate = np.abs(volumes) < degenerate_relative_volume * scale
        inverted = np.nonzero((volumes < 0) & ~degenerate)[0]
        degenerate = np.nonzero(degenerate)[0]
        if inverted.size:
            problems.append(
                f"inverted elements (negative volume) {_index_list(inverted)}; "
                "swap two node indices of each to fix the orientation"
            )
        if degenerate.size:
            problems.append(
                f"degenerate elements (volume < {degenerate_relative_volume:g} × longest "
                f"edge³) {_index_list(degenerate)}; remesh or remove them"
            )
    for name in ("fibres", "sheets"):
        vectors = getattr(mesh, name)
        if vectors is None:
            continue
        norms = np.linalg.norm(vectors, axis=1)
        bad = np.nonzero(~np.isfinite(norms) | (norms < 1e-12))[0]
        if bad.size:
            problems.append(
                f"{name} of elements {_index_list(bad)} are zero or not finite; "
                f"assign a unit {name[:-1]} direction to every element"
            )
    if problems:
        raise MeshError("invalid mesh: " + "; ".join(problems))
    return mesh
