"""Pictures of a prepared mesh, off-screen PNGs for a person to check at a glance.

- :func:`save_fibre_picture`: the outer surface coloured by element tag (healthy / border
  zone / dense scar) with epicardial fibres as short dark strokes, then the fibres of the
  front half of the wall in three depth bands (endocardium, mid-wall, epicardium) coloured by
  helix sign, so the transmural turn of the helix is visible.
- :func:`save_aha_picture` (ventricles): the LV coloured by AHA segment from an anterior and
  a posterior view with the pacing sites as labelled balls, and the 17-segment bull's-eye with
  each segment's share of the LV volume.
- :func:`save_site_picture` (atria): the atrium coloured by the valve → vein coordinate with
  the pacing sites.
- :func:`activation_png` (report): one VT's activation map with its exit site, and
  :func:`lesion_png` (report): the ablation lesions on the see-through wall; both PNG bytes.

Rendering uses pyvista/VTK off-screen (as :mod:`cardiotwin.pipeline.qc` does); the 3-D views
are composed with matplotlib into one PNG per picture.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from cardiotwin.files import write_all_or_nothing
from cardiotwin.meshing.boundary import boundary_faces
from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.tags import LESION, NONCONDUCTING
from cardiotwin.pipeline.qc import LABEL_COLOURS, LABEL_TEXT

log = logging.getLogger(__name__)

WINDOW = (700, 700)
_COLOUR_WORDS = {1: "blue", 2: "yellow", 3: "red"}  # LABEL_COLOURS in words, for titles


def _quiet_vtk():
    import vtk

    state = (vtk.vtkLogger.GetCurrentVerbosityCutoff(), vtk.vtkObject.GetGlobalWarningDisplay())
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    vtk.vtkObject.GlobalWarningDisplayOff()
    return state


def _restore_vtk(state) -> None:
    import vtk

    vtk.vtkLogger.SetStderrVerbosity(state[0])
    vtk.vtkObject.SetGlobalWarningDisplay(state[1])


def _polydata(points: np.ndarray, triangles: np.ndarray):
    import pyvista as pv

    cells = np.hstack([np.full((len(triangles), 1), 3), triangles]).astype(np.int64).ravel()
    return pv.PolyData(points, cells)


def _frame(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(centre, up, view direction, extent): the base at the top when the mesh has one, the
    camera on the anterior side when the rotational coordinate is known."""
    points = mesh.points_mm
    centre = points.mean(axis=0)
    _, _, axes = np.linalg.svd(points - centre, full_matrices=False)
    up = axes[0]
    if len(mesh.surfaces.get("base", ())):
        base = mesh.surfaces["base"]
        x = points[base]
        normals = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]).sum(axis=0)
        up = normals / np.linalg.norm(normals)
    elif "valve_vein" in mesh.point_data:  # atria: veins up, valve down
        vv = np.asarray(mesh.point_data["valve_vein"])
        towards = points[vv > 0.9].mean(axis=0) - points[vv < 0.1].mean(axis=0)
        up = towards / np.linalg.norm(towards)
    view = axes[1] - (axes[1] @ up) * up
    if "rotational" in mesh.point_data:
        rotational = np.asarray(mesh.point_data["rotational"])
        anterior = np.abs(rotational - np.pi / 2) < 0.3
        if anterior.any():
            view = points[anterior].mean(axis=0) - centre
            view -= (view @ up) * up
    view /= np.linalg.norm(view)
    extent = float(np.ptp(points, axis=0).max())
    return centre, up, view, extent


def _render(draw, camera, title: str) -> np.ndarray:
    """One off-screen view as an RGB array: ``draw(plotter)`` adds the actors."""
    import pyvista as pv

    state = _quiet_vtk()
    plotter = pv.Plotter(off_screen=True, window_size=list(WINDOW))
    try:
        plotter.set_background("white")
        draw(plotter)
        plotter.add_text(title, font_size=11, color="black")
        plotter.camera_position = camera
        return np.asarray(plotter.screenshot(return_img=True))
    finally:
        plotter.close()
        _restore_vtk(state)


def _camera(centre, up, view, extent, turn: float = 0.0):
    side = np.cross(up, view)
    direction = np.cos(turn) * view + np.sin(turn) * side
    return [tuple(centre + 2.6 * extent * direction), tuple(centre), tuple(up)]


def _strokes(centres: np.ndarray, vectors: np.ndarray, length: float):
    import pyvista as pv

    ends = np.concatenate([centres - 0.5 * length * vectors, centres + 0.5 * length * vectors])
    n = len(centres)
    lines = np.stack([np.full(n, 2), np.arange(n), np.arange(n) + n], axis=1).ravel()
    return pv.PolyData(ends, lines=lines)


def _compose(images: list[np.ndarray], path, title: str, extra=None, colourbar=None) -> None:
    """The views side by side under ``title`` as a PNG in ``path`` (a file name or a binary
    buffer); ``extra(fig, ax)`` draws one more panel; ``colourbar`` = (cmap, low, high, label)
    adds one horizontal colour bar under the views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(images) + (1 if extra else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.6 + (0.5 if colourbar else 0)))
    axes = np.atleast_1d(axes)
    for ax, image in zip(axes, images, strict=False):
        ax.imshow(image)
        ax.axis("off")
    if extra:
        extra(fig, axes[-1])
    fig.suptitle(title, fontsize=12)
    if colourbar:
        cmap, low, high, label = colourbar
        fig.tight_layout(rect=(0, 0.14, 1, 1))
        scale = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(low, high), cmap)
        bar = fig.colorbar(scale, cax=fig.add_axes((0.25, 0.11, 0.5, 0.03)),
                           orientation="horizontal")  # fmt: skip
        bar.set_label(label)
    else:
        fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def _png(images: list[np.ndarray], title: str, colourbar=None) -> bytes:
    buffer = io.BytesIO()
    _compose(images, buffer, title, colourbar=colourbar)
    return buffer.getvalue()


def _edge_mm(mesh: Mesh, faces: np.ndarray) -> float:
    """Median edge length of the surface triangles, mm (sets the size of balls and strokes)."""
    return float(np.median(np.linalg.norm(np.diff(mesh.points_mm[faces[:, :2]], axis=1), axis=2)))


def _outer_faces(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    faces, owner = boundary_faces(mesh.tets)
    return faces, owner


def save_fibre_picture(mesh: Mesh, path: str | Path, *, title: str = "fibres") -> Path:
    """PNG: surface by tag with epicardial fibre strokes, then fibres at three wall depths."""
    path = Path(path)
    if mesh.fibres is None:
        raise ValueError("the mesh has no fibres to draw")
    centre, up, view, extent = _frame(mesh)
    camera = _camera(centre, up, view, extent)
    faces, owner = _outer_faces(mesh)
    colours = np.array([LABEL_COLOURS.get(int(r), (0.6, 0.6, 0.6)) for r in range(5)])
    face_colour = colours[np.clip(mesh.region[owner], 0, 4)]
    edge = _edge_mm(mesh, faces)
    element_centres = mesh.element_centres_mm()
    transmural = mesh.point_data.get("transmural")
    depth = None if transmural is None else np.asarray(transmural)[mesh.tets].mean(axis=1)
    epi_faces = mesh.surfaces.get("epi")
    on_epi = np.zeros(mesh.n_elements, dtype=bool)
    if epi_faces is not None and len(epi_faces):
        epi_nodes = np.zeros(mesh.n_points, dtype=bool)
        epi_nodes[epi_faces.ravel()] = True
        on_epi = epi_nodes[mesh.tets].sum(axis=1) >= 3
    step = max(1, int(on_epi.sum() // 2500))
    chosen = np.nonzero(on_epi)[0][::step]

    def surface(plotter):
        poly = _polydata(mesh.points_mm, faces)
        poly.cell_data["colour"] = (face_colour * 255).astype(np.uint8)
        plotter.add_mesh(poly, scalars="colour", rgb=True, smooth_shading=False)
        if chosen.size:
            lift = element_centres[chosen] + 0.3 * edge * _outward(
                element_centres[chosen], centre, up
            )
            plotter.add_mesh(
                _strokes(lift, mesh.fibres[chosen], 2.5 * edge), color="black", line_width=2
            )

    abnormal = mesh.region != 1
    tag_camera = camera
    if abnormal.any():  # look at the scar from outside, as the QC picture does
        towards = element_centres[abnormal].mean(axis=0) - centre
        towards -= (towards @ up) * up
        if np.linalg.norm(towards) > 1e-6:
            tag_camera = _camera(centre, up, towards / np.linalg.norm(towards), extent)
    images = [_render(surface, tag_camera, "tags + epicardial fibres")]
    front = (element_centres - centre) @ view > 0
    if depth is not None:
        for name, low, high in (
            ("endocardium", 0.0, 0.2),
            ("mid-wall", 0.4, 0.6),
            ("epicardium", 0.8, 1.0),
        ):
            band = np.nonzero(front & (depth >= low) & (depth <= high))[0]
            band = band[:: max(1, band.size // 3000)]
            if band.size == 0:  # a thin wall may have no element in a band
                continue
            helix_sign = np.sign(
                np.einsum("ij,j->i", mesh.fibres[band], up)
                * np.einsum("ij,j->i", mesh.fibres[band], np.cross(up, view))
            )

            def layer(plotter, band=band, helix_sign=helix_sign):
                plotter.add_mesh(
                    _polydata(mesh.points_mm, faces), color=(0.85, 0.85, 0.85), opacity=0.08
                )
                strokes = _strokes(element_centres[band], mesh.fibres[band], 2.5 * edge)
                strokes.point_data["helix"] = np.concatenate([helix_sign, helix_sign])
                plotter.add_mesh(
                    strokes,
                    scalars="helix",
                    cmap="coolwarm",
                    clim=[-1, 1],
                    line_width=2,
                    show_scalar_bar=False,
                )

            images.append(_render(layer, camera, f"{name} fibres (front wall)"))
    present = sorted(set(np.unique(mesh.region).tolist()) & set(LABEL_TEXT))
    legend = ", ".join(f"{_COLOUR_WORDS[t]} {LABEL_TEXT[t]}" for t in present)
    _write(path, images, f"{title}: {legend}; strokes red/blue = fibre rising to the right/left")
    return path


def _outward(points: np.ndarray, centre: np.ndarray, up: np.ndarray) -> np.ndarray:
    radial = points - centre
    radial -= np.outer(radial @ up, up)
    return radial / np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)


def _write(path: Path, images, title: str, extra=None) -> None:
    write_all_or_nothing({path: lambda tmp: _compose(images, Path(tmp), title, extra)})


def _face_values(values: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """A categorical per-node value per triangle: the value two or three corners share, else
    the first corner's."""
    a, b, c = values[triangles].T
    return np.where((a == b) | (a == c), a, np.where(b == c, b, a))


def _site_actors(plotter, mesh: Mesh, names: list[str], radius: float, facing) -> None:
    """Balls at the site centres; labels (drawn through the wall, sites sit on the
    endocardium) for the sites on the camera's side only."""
    points = np.array([mesh.points_mm[mesh.node_sets[n][0]] for n in names])
    labels = [n.replace("AHA-", "") for n in names]
    _ball_actors(plotter, points, labels, radius, facing)


def _ball_actors(plotter, points, labels, radius: float, facing, colour="black") -> None:
    """Balls of ``radius`` mm at ``points``, with their labels (drawn through the wall) for
    the points on the camera's side only; a ``None`` radius draws labels alone."""
    import pyvista as pv

    centre, direction = facing
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if radius is not None:
        for p in points:
            plotter.add_mesh(pv.Sphere(radius=radius, center=p), color=colour)
    near = (points - centre) @ direction > 0
    if labels and near.any():
        plotter.add_point_labels(
            points[near], [t for t, keep in zip(labels, near, strict=True) if keep],
            font_size=14, point_size=1, text_color="black", shape_opacity=0.6,
            always_visible=True,
        )  # fmt: skip


def save_aha_picture(mesh: Mesh, path: str | Path, *, title: str = "AHA segments") -> Path:
    """PNG: the LV by AHA segment with the pacing sites (two views) and the bull's-eye."""
    path = Path(path)
    aha = np.asarray(mesh.point_data["aha_segment"])
    centre, up, view, extent = _frame(mesh)
    faces, _ = _outer_faces(mesh)
    face_segment = _face_values(aha, faces)
    names = [n for n in mesh.node_sets if n.startswith(("AHA-", "RV-"))]
    names.sort(key=lambda n: (n.startswith("RV-"), int(n.split("-")[1])))
    edge = _edge_mm(mesh, faces)
    cmap = _segment_colours()

    def draw(direction):
        def add(plotter):
            poly = _polydata(mesh.points_mm, faces)
            poly.cell_data["segment"] = face_segment
            plotter.add_mesh(
                poly,
                scalars="segment",
                cmap=cmap,
                clim=[-0.5, 17.5],
                n_colors=18,
                show_scalar_bar=False,
            )
            _site_actors(plotter, mesh, names, 1.2 * edge, (centre, direction))

        return add

    images = _two_views(mesh, draw)
    volumes = _segment_volumes(mesh, aha)
    _write(path, images, title, lambda fig, ax: _bullseye(fig, ax, volumes, cmap))
    return path


def _segment_colours():
    import matplotlib

    colours = [(0.8, 0.8, 0.8)] + [matplotlib.colormaps["tab20"](k) for k in range(17)]
    return matplotlib.colors.ListedColormap(colours)


def _segment_volumes(mesh: Mesh, aha: np.ndarray) -> np.ndarray:
    """Share of the LV volume per segment 1..17 (lumped: a quarter of each element per node)."""
    nodal = np.zeros(mesh.n_points)
    np.add.at(nodal, mesh.tets.ravel(), np.repeat(np.abs(mesh.signed_volumes_mm3()) / 4, 4))
    volumes = np.bincount(aha, weights=nodal, minlength=18)[1:18]
    return volumes / max(volumes.sum(), 1e-300)


def _bullseye(fig, ax, fractions: np.ndarray, cmap) -> None:
    """The AHA bull's-eye (Cerqueira 2002 layout: anterior up, septum left)."""
    ax.remove()
    ax = fig.add_subplot(1, 3, 3, projection="polar")
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise: anterior (top) → septum (left)
    # (inner radius, outer radius, segments, first): basal outside, apex (17) in the middle;
    # the first of each ring is centred on anterior (top), the next turn towards the septum
    for inner, outer, count, first in ((2, 3, 6, 1), (1, 2, 6, 7), (0.35, 1, 4, 13)):
        width = 2 * np.pi / count
        for k in range(count):
            segment = first + k
            angle = k * width
            ax.bar(angle, outer - inner, width=width, bottom=inner, color=cmap(segment),
                   edgecolor="white")  # fmt: skip
            ax.text(angle, (inner + outer) / 2, f"{segment}\n{100 * fractions[segment - 1]:.1f}%",
                    ha="center", va="center", fontsize=7)  # fmt: skip
    ax.bar(0, 0.35, width=2 * np.pi, bottom=0, color=cmap(17), edgecolor="white")
    ax.text(0, 0, f"17\n{100 * fractions[16]:.1f}%", ha="center", va="center", fontsize=7)
    ax.set_axis_off()
    ax.set_title("bull's-eye: % of LV volume", fontsize=9)


def save_site_picture(mesh: Mesh, path: str | Path, *, title: str = "atrial sites") -> Path:
    """PNG: the atrium coloured by valve → vein coordinate with its pacing sites."""
    path = Path(path)
    centre, up, view, extent = _frame(mesh)
    faces, _ = _outer_faces(mesh)
    values = np.asarray(mesh.point_data.get("valve_vein", np.zeros(mesh.n_points)))
    names = sorted(n for n in mesh.node_sets if n.startswith("LA-"))
    edge = _edge_mm(mesh, faces)

    def draw(direction):
        def add(plotter):
            poly = _polydata(mesh.points_mm, faces)
            poly.point_data["valve_vein"] = values
            plotter.add_mesh(poly, scalars="valve_vein", cmap="viridis", show_scalar_bar=False)
            _site_actors(plotter, mesh, names, 1.2 * edge, (centre, direction))

        return add

    images = _two_views(mesh, draw, ("front", "back"))
    _write(path, images, f"{title}: colour = valve (0, purple) → veins (1, yellow)")
    return path


#: activation colour map: red earliest → purple latest, as electro-anatomical mapping shows it
ACTIVATION_CMAP = "turbo_r"
NOT_EXCITED_GREY = (0.62, 0.62, 0.62)
LESION_MAGENTA = (0.85, 0.0, 0.85)  # magenta: in none of LABEL_COLOURS


def _two_views(
    mesh: Mesh, draw, names: tuple[str, str] = ("anterior view", "posterior view")
) -> list[np.ndarray]:
    """Anterior and posterior views: ``draw(direction)`` returns the function that adds the
    actors for a camera on the ``direction`` side of the mesh."""
    centre, up, view, extent = _frame(mesh)
    return [
        _render(draw(view), _camera(centre, up, view, extent), names[0]),
        _render(draw(-view), _camera(centre, up, view, extent, np.pi), names[1]),
    ]


def activation_png(
    mesh: Mesh, *, cycle_length_ms: float, exit_site_mm=None, title: str = "activation"
) -> bytes:
    """PNG of one VT's activation map: the outer surface coloured by ``activation_ms`` (point
    data, ms over one cycle, 0..``cycle_length_ms``), non-conducting and unexcited tissue grey,
    the exit site (scanner mm) a magenta ball on the surface point nearest to it; anterior and
    posterior views, one colour bar."""
    if "activation_ms" not in mesh.point_data:
        raise ValueError("the mesh has no activation_ms point data (not a VT map of induce)")
    if not (np.isfinite(cycle_length_ms) and cycle_length_ms > 0):
        raise ValueError(f"cycle length must be a positive number of ms, got {cycle_length_ms}")
    activation = np.asarray(mesh.point_data["activation_ms"], dtype=np.float64)
    faces, owner = _outer_faces(mesh)
    corners = activation[faces]
    known = np.isfinite(corners)
    count = known.sum(axis=1)
    value = np.where(known, corners, 0.0).sum(axis=1) / np.maximum(count, 1)
    # grey: faces with no activation time, and faces of tissue tagged non-conducting
    # (dense scar, lesions) not wholly timed; in an atrium dense fibrosis conducts and
    # carries times at every node, so it is coloured like the rest
    silent = (count == 0) | (np.isin(mesh.region[owner], NONCONDUCTING) & (count < 3))
    value[silent] = np.nan
    edge = _edge_mm(mesh, faces)
    centre = mesh.points_mm.mean(axis=0)
    radius = max(1.5 * edge, 0.025 * float(np.ptp(mesh.points_mm, axis=0).max()))
    if exit_site_mm is not None:  # on the surface nearest to it, where the views can see it
        surface = np.unique(faces)
        nearest = np.argmin(np.linalg.norm(mesh.points_mm[surface] - exit_site_mm, axis=1))
        exit_site_mm = mesh.points_mm[surface[nearest]]

    def draw(direction):
        def add(plotter):
            poly = _polydata(mesh.points_mm, faces)
            poly.cell_data["activation_ms"] = value
            plotter.add_mesh(poly, scalars="activation_ms", cmap=ACTIVATION_CMAP,
                             clim=[0.0, float(cycle_length_ms)], nan_color=NOT_EXCITED_GREY,
                             show_scalar_bar=False)  # fmt: skip
            if exit_site_mm is not None:
                _ball_actors(plotter, [exit_site_mm], ["exit"], radius, (centre, direction),
                             colour=LESION_MAGENTA)  # fmt: skip

        return add

    legend = "grey: dense scar (not excited)" + (", magenta ball: exit site" if exit_site_mm
                                                  is not None else "")  # fmt: skip
    return _png(
        _two_views(mesh, draw),
        f"{title}\n{legend}",
        colourbar=(ACTIVATION_CMAP, 0.0, float(cycle_length_ms), "activation (ms)"),
    )


def lesion_labels(centres_mm, radii_mm) -> tuple[np.ndarray, list[str]]:
    """One label per cluster of overlapping lesions: (where, text). Lesions whose spheres
    overlap (centres closer than the sum of their radii) share a label such as ``1–9`` (the
    table's numbers, runs joined), placed on the member nearest the cluster's middle, so the
    points of an ablation line, a few mm apart, do not print their numbers over each other."""
    from cardiotwin.pipeline.ablation.lesions import number_runs, overlap_clusters

    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    if len(centres) == 0:
        return centres, []
    where, texts = [], []
    for members in overlap_clusters(centres, radii_mm):
        middle = centres[members].mean(axis=0)
        where.append(centres[members[np.argmin(np.linalg.norm(centres[members] - middle, axis=1))]])
        texts.append(number_runs(members + 1))
    return np.array(where), texts


def lesion_png(mesh: Mesh, centres_mm, radii_mm, *, title: str = "ablation targets") -> bytes:
    """PNG of the ablation lesions on the mesh: the wall see-through, coloured by tissue
    (LABEL_COLOURS), the lesion elements (tag ``LESION``) solid magenta, or magenta balls of
    ``radii_mm`` at ``centres_mm`` (scanner mm) where the mesh carries no lesion tag; each
    lesion numbered as in the report's table; anterior and posterior views."""
    import pyvista as pv

    centres = np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_mm, dtype=np.float64), len(centres))
    faces, owner = _outer_faces(mesh)
    colours = np.array(
        [LABEL_COLOURS.get(r, NOT_EXCITED_GREY) for r in range(LESION)] + [LESION_MAGENTA]
    )
    face_colour = colours[np.clip(mesh.region[owner], 0, LESION)]
    lesion_tets = mesh.tets[mesh.region == LESION]
    lesion_faces = boundary_faces(lesion_tets)[0] if len(lesion_tets) else None
    centre = mesh.points_mm.mean(axis=0)
    label_at, labels = lesion_labels(centres, radii)

    def draw(direction):
        def add(plotter):
            poly = _polydata(mesh.points_mm, faces)
            poly.cell_data["colour"] = (face_colour * 255).astype(np.uint8)
            plotter.add_mesh(poly, scalars="colour", rgb=True, opacity=0.3)
            if lesion_faces is not None:
                plotter.add_mesh(_polydata(mesh.points_mm, lesion_faces), color=LESION_MAGENTA)
            else:
                for c, r in zip(centres, radii, strict=True):
                    plotter.add_mesh(pv.Sphere(radius=r, center=c), color=LESION_MAGENTA)
            _ball_actors(plotter, label_at, labels, None, (centre, direction))

        return add

    present = sorted(set(np.unique(mesh.region).tolist()) & set(LABEL_TEXT))
    legend = ", ".join(f"{_COLOUR_WORDS[t]} {LABEL_TEXT[t]}" for t in present)
    return _png(_two_views(mesh, draw), f"{title}\nmagenta: lesion; wall see-through: {legend}")


def save_pictures(mesh: Mesh, folder: str | Path, kind: str) -> list[Path]:
    """The pictures for a prepared mesh of ``kind`` in ``folder``: ``fibres.png`` and
    ``sites.png`` (AHA segments and sites, or the atrial sites); returns their paths."""
    folder = Path(folder)
    paths = [save_fibre_picture(mesh, folder / "fibres.png")]
    if kind == "ventricle":
        paths.append(save_aha_picture(mesh, folder / "sites.png"))
    else:
        paths.append(save_site_picture(mesh, folder / "sites.png"))
    return paths
