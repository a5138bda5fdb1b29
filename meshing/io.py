"""Mesh files: VTU (ParaView), openCARP's text file set, and whatever meshio reads.

:func:`write_mesh` / :func:`read_mesh` pick the format from the name:

- ``*.vtu``: one VTK XML file. Tetrahedra with cell data ``region`` (int32), ``fibres``,
  ``sheets``; every point field as point data; surfaces, node sets and the image affine as
  field data (``surface:<name>`` (k, 3), ``node_set:<name>`` (k,), ``affine``), so ParaView
  shows the volume and nothing is lost. Written and read with pyvista (VTK).
- ``*.pts`` / ``*.elem`` / ``*.lon`` (or a base name whose ``.pts`` exists): openCARP's file
  set, the field's lingua franca (openCARP, meshtool, CemrgApp). ``base.pts`` (node count,
  then x y z in **µm**, openCARP's unit), ``base.elem`` (count, then ``Tt a b c d tag``),
  ``base.lon`` (``1`` or ``2``, then the fibre or fibre + sheet per element), one
  ``base.<name>.surf`` per surface (count, then ``Tr a b c``), one ``base.<name>.vtx`` per node
  set (count, ``intra``, indices), one ``base.<name>.dat`` per point field (a row per node),
  and ``base.cardiotwin.json`` with what openCARP has no file for (the affine, field dtypes).
  Coordinates are converted mm ↔ µm through extended precision, so a round trip returns the
  same doubles (on platforms whose ``long double`` is wider than a double: x86-64, aarch64).
- ``*.xdmf``, ``*.vtk``, ``*.msh``, ``*.mesh``, …: through meshio (tetrahedra, tags, fibres
  and point data only).

Every write goes through :func:`cardiotwin.files.write_all_or_nothing`: a failure leaves no
half-written mesh (an openCARP set appears complete or not at all).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from cardiotwin.files import write_all_or_nothing
from cardiotwin.meshing.mesh import Mesh, MeshError, check_mesh

log = logging.getLogger(__name__)

#: cell-data names accepted as the element tag when reading (first found wins); ``elemTag``
#: is meshtool's
REGION_NAMES = ("region", "tag", "elemTag", "gmsh:physical", "medit:ref", "CellEntityIds")
FIBRE_NAMES = ("fibres", "fibers", "fibre", "fiber")
SHEET_NAMES = ("sheets", "sheet")
OPENCARP_SUFFIXES = (".pts", ".elem", ".lon")
MANIFEST_SUFFIX = ".cardiotwin.json"
MANIFEST_FORMAT = 1
_MICROMETRES_PER_MM = 1000


class MeshFileError(MeshError):
    """A mesh file that cannot be read or written; the message names the file and the fix."""


def _file_error(path: Path, problem: str, fix: str) -> MeshFileError:
    return MeshFileError(f"{path}: {problem}. {fix}")


# --- dispatch -----------------------------------------------------------------------------


def _opencarp_base(path: Path) -> Path | None:
    if path.suffix.lower() in OPENCARP_SUFFIXES:
        return path.with_suffix("")
    if path.suffix == "" or not path.exists():
        if (
            path.with_name(path.name + ".pts").exists()
            or path.with_name(path.name + ".elem").exists()
        ):
            return path
    return None


def write_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` to ``path`` in the format its name says (see the module docstring).

    Returns the path written (the ``.elem`` file for an openCARP set).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".vtu":
        return write_vtu(mesh, path)
    if suffix in OPENCARP_SUFFIXES:
        return write_opencarp(mesh, path.with_suffix(""))
    if suffix in (".xdmf", ".xmf", ".vtk", ".msh", ".mesh"):
        return _write_meshio(mesh, path)
    raise MeshFileError(
        f"{path}: unknown mesh format {suffix or '(no suffix)'!r}. Name the file *.vtu "
        "(ParaView, everything kept), *.elem (an openCARP file set) or *.xdmf"
    )


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Read a mesh from ``path`` (VTU, an openCARP file set or anything meshio reads).

    The mesh is checked with :func:`~cardiotwin.meshing.mesh.check_mesh` (inverted, duplicate
    or degenerate elements are errors naming the file). A mesh whose elements are *all*
    negatively oriented (another program's vertex-order convention) is reoriented.
    """
    path = Path(path)
    base = _opencarp_base(path)
    if base is not None:
        mesh, source = read_opencarp(base), _set_name(base, ".elem")
    elif not path.is_file():
        raise FileNotFoundError(f"mesh file {path} does not exist")
    elif path.suffix.lower() == ".vtu":
        mesh, source = read_vtu(path), path
    else:
        mesh, source = _read_meshio(path), path
    mesh = _orient(mesh, source)
    try:
        return check_mesh(mesh)
    except MeshError as exc:
        raise MeshFileError(f"{source}: {exc}") from exc


def _orient(mesh: Mesh, source: Path) -> Mesh:
    volumes = mesh.signed_volumes_mm3()
    if volumes.size and np.all(volumes < 0):
        log.info("%s: every element is negatively oriented; swapping two nodes of each", source)
        mesh.tets = np.ascontiguousarray(mesh.tets[:, [0, 2, 1, 3]])
    return mesh


def _first(mapping, names):
    return next((mapping[n] for n in names if n in mapping), None)


# --- VTU ----------------------------------------------------------------------------------


def _pyvista():
    """pyvista, or ``None`` where it (or VTK under it) cannot be imported."""
    try:
        import pyvista
    except ImportError:
        return None
    return pyvista


def check_vtu_support(path: str | os.PathLike) -> None:
    """Raise :class:`MeshFileError` now if VTU files cannot be written here (neither pyvista
    nor meshio): for commands that would find out only at their last write, hours later."""
    if _pyvista() is None:
        _need_meshio(Path(path), "writing")


#: why a VTU file goes through meshio, for the warning
NO_VTK = "pyvista (VTK) cannot be imported here"


def _need_meshio(path: Path, doing: str) -> None:
    if importlib.util.find_spec("meshio") is None:
        raise MeshFileError(
            f"{path}: {doing} a VTU file needs pyvista (VTK) or meshio, and neither can be "
            "imported here. Install pyvista, or meshio, or use an openCARP file set (*.elem)"
        )


def write_vtu(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write ``mesh`` with everything it carries as one VTU file (atomically)."""
    path = Path(path)
    if path.suffix.lower() != ".vtu":
        raise ValueError(f"write_vtu writes VTU files; name the file *.vtu, got {path}")
    pv = _pyvista()
    if pv is None:
        _need_meshio(path, "writing")
        return _write_meshio(mesh, path, reason=NO_VTK)
    m = mesh.n_elements
    cells = np.hstack([np.full((m, 1), 4, dtype=np.int64), mesh.tets]).reshape(-1)
    grid = pv.UnstructuredGrid(cells, np.full(m, pv.CellType.TETRA, dtype=np.uint8), mesh.points_mm)
    grid.cell_data["region"] = mesh.region
    for name in ("fibres", "sheets"):
        if getattr(mesh, name) is not None:
            grid.cell_data[name] = getattr(mesh, name)
    for name, values in mesh.point_data.items():
        grid.point_data[name] = values
    for name, triangles in mesh.surfaces.items():
        grid.field_data[f"surface:{name}"] = triangles.reshape(-1, 3)
    for name, nodes in mesh.node_sets.items():
        grid.field_data[f"node_set:{name}"] = nodes
    if mesh.affine is not None:
        grid.field_data["affine"] = mesh.affine
    grid.field_data["cardiotwin_mesh_format"] = np.array([MANIFEST_FORMAT], dtype=np.int64)
    return write_all_or_nothing({path: lambda tmp: grid.save(str(tmp), binary=True)})[0]


def read_vtu(path: str | os.PathLike) -> Mesh:
    """Read the tetrahedra of a VTU file, with whatever cardiotwin fields it carries."""
    path = Path(path)
    pv = _pyvista()
    if pv is None:
        _need_meshio(path, "reading")
        log.warning(
            "%s: %s, so it is read with meshio: the volume, tags, fibres and point fields, "
            "without the surfaces, node sets and affine", path, NO_VTK,
        )  # fmt: skip
        return _read_meshio(path)
    try:
        grid = pv.read(str(path))
    except Exception as exc:
        raise _file_error(path, f"cannot be read as VTU ({exc})", "Check the file") from exc
    if not isinstance(grid, pv.UnstructuredGrid):
        raise _file_error(path, "is not an unstructured grid", "Export a tetrahedral mesh")
    is_tet = grid.celltypes == pv.CellType.TETRA
    if not np.any(is_tet):
        types = sorted({pv.CellType(t).name for t in np.unique(grid.celltypes)})
        raise _file_error(
            path, f"has no tetrahedra (cell types: {', '.join(types) or 'none'})",
            "Give a volume mesh of linear tetrahedra",
        )  # fmt: skip
    if not np.all(is_tet):
        log.info("%s: %d non-tetrahedral cells ignored", path, int((~is_tet).sum()))
    offsets = grid.cell_offsets if hasattr(grid, "cell_offsets") else grid.offset
    offsets = np.asarray(offsets)[:-1][is_tet]
    tets = grid.cell_connectivity[offsets[:, None] + np.arange(4)]
    cell = {k: np.asarray(grid.cell_data[k])[is_tet] for k in grid.cell_data.keys()}
    fields = {k: np.asarray(grid.field_data[k]) for k in grid.field_data.keys()}
    surfaces = {k[8:]: v.reshape(-1, 3) for k, v in fields.items() if k.startswith("surface:")}
    node_sets = {k[9:]: v.reshape(-1) for k, v in fields.items() if k.startswith("node_set:")}
    point_data = {
        k: np.asarray(grid.point_data[k]) for k in grid.point_data.keys() if not k.startswith("vtk")
    }
    try:
        return Mesh(
            points_mm=np.asarray(grid.points, dtype=np.float64),
            tets=tets,
            region=_first(cell, REGION_NAMES),
            fibres=_first(cell, FIBRE_NAMES),
            sheets=_first(cell, SHEET_NAMES),
            surfaces=surfaces,
            node_sets=node_sets,
            point_data=point_data,
            affine=fields.get("affine"),
        )
    except MeshError as exc:
        raise MeshFileError(f"{path}: {exc}") from exc


# --- meshio (XDMF, legacy VTK, Gmsh, Medit, ...) ------------------------------------------


def _write_meshio(mesh: Mesh, path: Path, reason: str | None = None) -> Path:
    """Write through meshio; ``reason``: why a VTU file is not written by VTK."""
    import meshio

    cell_data = {"region": [mesh.region]}
    for name in ("fibres", "sheets"):
        if getattr(mesh, name) is not None:
            cell_data[name] = [getattr(mesh, name)]
    out = meshio.Mesh(
        mesh.points_mm, [("tetra", mesh.tets)], cell_data=cell_data,
        point_data=dict(mesh.point_data),
    )  # fmt: skip
    if reason is not None:
        log.warning(
            "%s: %s, so it is written with meshio: the volume, tags, fibres and point fields, "
            "without the surfaces, node sets and affine", path, reason,
        )  # fmt: skip
    elif mesh.surfaces or mesh.node_sets or mesh.affine is not None:
        log.warning(
            "%s: surfaces, node sets and the affine are kept only in VTU and openCARP files; "
            "this file has the volume, tags, fibres and point fields", path,
        )  # fmt: skip

    def write(tmp: Path) -> None:
        if path.suffix.lower() in (".xdmf", ".xmf"):  # data inline: one file, no HDF5 sidecar
            meshio.xdmf.write(tmp, out, data_format="XML")
        else:
            meshio.write(tmp, out)

    return write_all_or_nothing({path: write})[0]


def _read_meshio(path: Path) -> Mesh:
    import meshio

    try:
        raw = meshio.read(path)
    except Exception as exc:
        raise _file_error(path, f"cannot be read ({exc})", "Check the file and its format") from exc
    blocks = [i for i, block in enumerate(raw.cells) if block.type == "tetra"]
    if not blocks:
        types = sorted({block.type for block in raw.cells})
        raise _file_error(
            path, f"has no tetrahedra (cell types: {', '.join(types) or 'none'})",
            "Give a volume mesh of linear tetrahedra",
        )  # fmt: skip
    tets = np.concatenate([raw.cells[i].data for i in blocks])

    def cell_field(names):
        name = next((n for n in names if n in raw.cell_data), None)
        if name is None:
            return None
        return np.concatenate([np.asarray(raw.cell_data[name][i]) for i in blocks])

    try:
        return Mesh(
            points_mm=raw.points[:, :3],
            tets=tets,
            region=cell_field(REGION_NAMES),
            fibres=cell_field(FIBRE_NAMES),
            sheets=cell_field(SHEET_NAMES),
            point_data={k: np.asarray(v) for k, v in raw.point_data.items()},
        )
    except MeshError as exc:
        raise MeshFileError(f"{path}: {exc}") from exc


# --- openCARP ------------------------------------------------------------------------------


def _format_reals(values: np.ndarray) -> list[str]:
    """Shortest text that reads back to the same value at the array's precision."""
    return [np.format_float_scientific(v, unique=True, trim="-") for v in values.reshape(-1)]


def _rows(tokens: list[str], columns: int) -> str:
    return "".join(" ".join(tokens[i : i + columns]) + "\n" for i in range(0, len(tokens), columns))


def _set_name(base: Path, suffix: str) -> Path:
    return base.with_name(base.name + suffix)


def write_opencarp(mesh: Mesh, base: str | os.PathLike) -> Path:
    """Write ``mesh`` as an openCARP file set ``base.pts``, ``base.elem``, … (atomically).

    Returns the ``.elem`` path. Points are written in µm (openCARP's unit).
    """
    base = Path(base)
    if base.suffix.lower() in OPENCARP_SUFFIXES:
        base = base.with_suffix("")
    micrometres = mesh.points_mm.astype(np.longdouble) * _MICROMETRES_PER_MM
    writers = {}

    def text_writer(text: str):
        return lambda tmp: Path(tmp).write_text(text, encoding="ascii")

    writers[_set_name(base, ".pts")] = text_writer(
        f"{mesh.n_points}\n" + _rows(_format_reals(micrometres), 3)
    )
    table = np.column_stack([mesh.tets, mesh.region.astype(np.int64)])
    writers[_set_name(base, ".elem")] = text_writer(
        f"{mesh.n_elements}\n" + "".join("Tt {} {} {} {} {}\n".format(*row) for row in table)
    )
    if mesh.fibres is not None:
        vectors = mesh.fibres if mesh.sheets is None else np.hstack([mesh.fibres, mesh.sheets])
        count = 1 if mesh.sheets is None else 2
        writers[_set_name(base, ".lon")] = text_writer(
            f"{count}\n" + _rows(_format_reals(vectors), 3 * count)
        )
    for name, triangles in mesh.surfaces.items():
        writers[_set_name(base, f".{name}.surf")] = text_writer(
            f"{len(triangles)}\n" + "".join("Tr {} {} {}\n".format(*t) for t in triangles)
        )
    for name, nodes in mesh.node_sets.items():
        writers[_set_name(base, f".{name}.vtx")] = text_writer(
            f"{nodes.size}\nintra\n" + "".join(f"{int(i)}\n" for i in nodes)
        )
    fields = {}
    for name, values in mesh.point_data.items():
        columns = 1 if values.ndim == 1 else values.shape[1]
        if np.issubdtype(values.dtype, np.integer) or values.dtype == bool:
            tokens = [str(int(v)) for v in values.reshape(-1)]
        else:
            tokens = _format_reals(values)
        writers[_set_name(base, f".{name}.dat")] = text_writer(_rows(tokens, columns))
        fields[name] = {"dtype": values.dtype.str, "columns": columns}
    manifest = {
        "cardiotwin_mesh_format": MANIFEST_FORMAT,
        "units": {"pts": "um", "elsewhere": "mm"},
        "surfaces": sorted(mesh.surfaces),
        "node_sets": sorted(mesh.node_sets),
        "point_data": fields,
        "affine_voxel_to_mm": None if mesh.affine is None else mesh.affine.tolist(),
        "fingerprint": mesh.fingerprint(),
    }
    writers[_set_name(base, MANIFEST_SUFFIX)] = text_writer(json.dumps(manifest, indent=1) + "\n")
    written = write_all_or_nothing(writers)
    return written[1]


def _read_table(path: Path, what: str) -> tuple[int, list[str]]:
    """Header count and the remaining whitespace-separated tokens of an openCARP text file."""
    if not path.is_file():
        raise _file_error(path, f"is missing ({what})", "Give the complete openCARP file set")
    tokens = path.read_text(encoding="ascii", errors="replace").split()
    if not tokens or not re.fullmatch(r"\d+", tokens[0]):
        raise _file_error(
            path, "does not start with a count", f"An openCARP {what} file starts with its size"
        )
    return int(tokens[0]), tokens[1:]


def _reshape(path: Path, tokens: list[str], count: int, per_row: int, what: str) -> list[str]:
    if len(tokens) != count * per_row:
        raise _file_error(
            path,
            f"announces {count} {what} but holds {len(tokens) / per_row:g}",
            "The file is truncated or inconsistent; re-export it",
        )
    return tokens


def read_opencarp(base: str | os.PathLike) -> Mesh:
    """Read an openCARP file set (``base.pts``, ``base.elem``, optional ``.lon``, ``.surf``,
    ``.vtx``, ``.dat`` and cardiotwin's manifest). Points are converted from µm to mm."""
    base = Path(base)
    if base.suffix.lower() in OPENCARP_SUFFIXES:
        base = base.with_suffix("")
    pts_path, elem_path = _set_name(base, ".pts"), _set_name(base, ".elem")
    n, tokens = _read_table(pts_path, "points")
    _reshape(pts_path, tokens, n, 3, "points")
    try:
        micrometres = np.array(tokens, dtype=np.longdouble).reshape(n, 3)
    except ValueError as exc:
        raise _file_error(pts_path, f"has a non-number ({exc})", "Fix or re-export it") from exc
    points = (micrometres / _MICROMETRES_PER_MM).astype(np.float64)

    m, tokens = _read_table(elem_path, "elements")
    per_row = len(tokens) // m if m else 6
    if m and per_row not in (5, 6):
        raise _file_error(elem_path, "has rows of an unexpected length",
                          "Each row must be 'Tt a b c d [tag]'")  # fmt: skip
    _reshape(elem_path, tokens, m, per_row, "elements")
    rows = np.array(tokens, dtype=object).reshape(m, per_row)
    types = set(rows[:, 0].tolist())
    if types != {"Tt"} and m:
        raise _file_error(
            elem_path, f"holds element types {sorted(types)}",
            "cardiotwin simulates linear tetrahedra ('Tt') only; convert the mesh with meshtool",
        )  # fmt: skip
    numbers = rows[:, 1:].astype(np.int64)
    tets = numbers[:, :4]
    region = numbers[:, 4] if per_row == 6 else None
    if tets.size and (tets.min() < 0 or tets.max() >= n):
        raise _file_error(
            elem_path, f"refers to nodes {tets.min()}..{tets.max()} but {pts_path.name} has {n}",
            "The .elem and .pts files are not from the same mesh",
        )  # fmt: skip

    fibres = sheets = None
    lon_path = _set_name(base, ".lon")
    if lon_path.is_file():
        tokens = lon_path.read_text(encoding="ascii", errors="replace").split()
        if len(tokens) in (3 * m, 6 * m):  # older files have no header line
            count = len(tokens) // (3 * m)
        else:
            count = int(tokens[0]) if tokens and tokens[0] in ("1", "2") else 0
            tokens = tokens[1:]
            if count == 0 or len(tokens) != 3 * count * m:
                raise _file_error(
                    lon_path, f"does not hold one fibre (or fibre + sheet) per element ({m})",
                    "The .lon file is truncated or from another mesh",
                )  # fmt: skip
        vectors = np.array(tokens, dtype=np.float64).reshape(m, 3 * count)
        fibres = vectors[:, :3]
        sheets = vectors[:, 3:] if count == 2 else None

    manifest_path = _set_name(base, MANIFEST_SUFFIX)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    prefix = base.name + "."
    surfaces, node_sets, point_data = {}, {}, {}
    for path in sorted(base.parent.glob(f"{glob_escape(base.name)}.*.surf")):
        name = path.name[len(prefix) : -len(".surf")]
        k, tokens = _read_table(path, "surface")
        _reshape(path, tokens, k, 4, "triangles")
        rows = np.array(tokens, dtype=object).reshape(k, 4)
        if k and set(rows[:, 0].tolist()) != {"Tr"}:
            raise _file_error(path, "holds elements other than triangles ('Tr')",
                              "A surface file lists 'Tr a b c' rows")  # fmt: skip
        surfaces[name] = rows[:, 1:].astype(np.int64)
    for path in sorted(base.parent.glob(f"{glob_escape(base.name)}.*.vtx")):
        name = path.name[len(prefix) : -len(".vtx")]
        k, tokens = _read_table(path, "node set")
        if tokens and tokens[0] in ("intra", "extra"):
            tokens = tokens[1:]
        _reshape(path, tokens, k, 1, "nodes")
        node_sets[name] = np.array(tokens, dtype=np.int64)
    for path in sorted(base.parent.glob(f"{glob_escape(base.name)}.*.dat")):
        name = path.name[len(prefix) : -len(".dat")]
        info = manifest.get("point_data", {}).get(name, {"dtype": "<f8", "columns": 1})
        tokens = path.read_text(encoding="ascii", errors="replace").split()
        _reshape(path, tokens, n, info["columns"], "values (one row per node)")
        values = np.array(tokens, dtype=np.float64 if "f" in info["dtype"] else np.int64)
        values = values.astype(np.dtype(info["dtype"]))
        point_data[name] = values if info["columns"] == 1 else values.reshape(n, -1)
    for kind, found in (("surfaces", surfaces), ("node_sets", node_sets)):
        missing = sorted(set(manifest.get(kind, ())) - set(found))
        if missing:
            raise _file_error(
                manifest_path, f"lists {kind.replace('_', ' ')} {missing} whose files are missing",
                "Copy the whole file set (every base.* file) together",
            )  # fmt: skip
    affine = manifest.get("affine_voxel_to_mm")
    for name, nodes in node_sets.items():
        if nodes.size and (nodes.min() < 0 or nodes.max() >= n):
            raise _file_error(_set_name(base, f".{name}.vtx"),
                              f"refers to nodes outside 0..{n - 1}",
                              "The node set is from another mesh")  # fmt: skip
    try:
        return Mesh(
            points_mm=points, tets=tets, region=region, fibres=fibres, sheets=sheets,
            surfaces=surfaces, node_sets=node_sets, point_data=point_data,
            affine=None if affine is None else np.asarray(affine),
        )  # fmt: skip
    except MeshError as exc:
        raise MeshFileError(f"{elem_path}: {exc}") from exc


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)
