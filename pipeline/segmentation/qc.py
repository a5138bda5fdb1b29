"""Quality-control pictures of a segmentation, for a person to check at a glance.

- :func:`save_montage`: PNG montage of the LGE slices (along the slice axis) that hold wall,
  each shown plain and with the label overlay (healthy blue, border zone yellow, dense scar
  red), with a legend; optionally the contours of a reference label map (a phantom's
  truth) drawn on the overlay.
- :func:`save_render`: a 3-D view in scanner mm of the dense scar and border-zone surfaces
  inside the translucent wall, rendered off-screen with pyvista/VTK. Where VTK cannot render
  (no OpenGL at all), it falls back to a matplotlib 3-D scatter of the surface points and
  logs a warning.

Both write the PNG to the given path (the caller chooses temporary names; see
:func:`cardiotwin.files.write_all_or_nothing`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cardiotwin.pipeline.images import ImageVolume
from cardiotwin.pipeline.segmentation.inputs import slice_axis

log = logging.getLogger(__name__)

#: RGB per label for the overlay and the 3-D view.
LABEL_COLOURS = {
    1: (0.25, 0.55, 1.0),
    2: (1.0, 0.85, 0.1),
    3: (0.9, 0.1, 0.1),
}
LABEL_TEXT = {1: "healthy", 2: "border zone / fibrosis", 3: "dense scar"}


def save_montage(
    lge: ImageVolume,
    labels: ImageVolume,
    path: str | Path,
    *,
    title: str = "",
    reference: ImageVolume | None = None,
    max_slices: int = 16,
    pairs_per_row: int = 2,
) -> Path:
    """Write a PNG montage: each slice with wall as (plain LGE | LGE + labels).

    Slices run along the coarsest axis in stored order, at most ``max_slices`` of those
    holding wall, evenly chosen; each is cropped to the wall's bounding box plus a margin
    and shown with the first in-plane axis to the right and the second upwards.
    ``reference`` (e.g. a phantom's truth) adds dashed contours of its border zone (>= 2)
    and dense scar on the overlay panels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    path = Path(path)
    axis = slice_axis(lge.spacing_mm)
    image = np.moveaxis(np.asarray(lge.array, dtype=np.float64), axis, -1)
    label_array = np.moveaxis(np.asarray(labels.array), axis, -1)
    ref_array = None if reference is None else np.moveaxis(np.asarray(reference.array), axis, -1)
    with_wall = np.flatnonzero(label_array.any(axis=(0, 1)))
    if with_wall.size == 0:
        with_wall = np.arange(label_array.shape[-1])
    picks = np.unique(np.linspace(0, with_wall.size - 1, max_slices).round().astype(int))
    chosen = with_wall[picks]

    # Crop the planes to the wall's bounding box plus a margin, so the heart fills them.
    occupied = label_array > 0 if label_array.any() else np.ones(label_array.shape, bool)
    box = []
    for plane_axis in (0, 1):
        hits = np.flatnonzero(occupied.any(axis=tuple(a for a in range(3) if a != plane_axis)))
        box.append(slice(max(0, hits[0] - 8), hits[-1] + 9))
    high = float(np.percentile(image, 99.5)) or 1.0
    grey = np.clip(image[box[0], box[1]] / high, 0, 1)
    label_array = label_array[box[0], box[1]]
    if ref_array is not None:
        ref_array = ref_array[box[0], box[1]]

    def display(section: np.ndarray) -> np.ndarray:
        # (first axis, second axis) -> rows from the top = second axis descending.
        return np.swapaxes(section, 0, 1)[::-1]

    tile_h, tile_w = display(grey[:, :, 0]).shape
    gap = 3
    rows = int(np.ceil(len(chosen) / pairs_per_row))
    mosaic = np.ones((rows * (tile_h + gap), pairs_per_row * 2 * (tile_w + gap), 3))
    ref_mosaic = np.zeros(mosaic.shape[:2]) if ref_array is not None else None
    corners = []
    for n, index in enumerate(chosen):
        row, pair = divmod(n, pairs_per_row)
        top, left = row * (tile_h + gap), pair * 2 * (tile_w + gap)
        plain = np.repeat(display(grey[:, :, index])[:, :, None], 3, axis=2)
        over = plain.copy()
        current = display(label_array[:, :, index])
        for value, colour in LABEL_COLOURS.items():
            alpha = 0.25 if value == 1 else 0.6
            mask = current == value
            over[mask] = (1 - alpha) * over[mask] + alpha * np.asarray(colour)
        mosaic[top : top + tile_h, left : left + tile_w] = plain
        right = left + tile_w + gap
        mosaic[top : top + tile_h, right : right + tile_w] = over
        if ref_mosaic is not None:
            ref_mosaic[top : top + tile_h, right : right + tile_w] = display(ref_array[:, :, index])
        corners.append((top, left, index))

    spacing = lge.spacing_mm
    in_plane = [a for a in range(3) if a != axis]
    aspect = spacing[in_plane[1]] / spacing[in_plane[0]]
    height_in = 1.0 + 7.5 * mosaic.shape[0] * aspect / mosaic.shape[1]
    fig, ax = plt.subplots(figsize=(7.5, height_in))
    ax.imshow(mosaic, aspect=aspect, interpolation="nearest")
    ax.axis("off")
    for top, left, index in corners:
        ax.text(left + 1, top + 1, f"{index}", color="white", fontsize=7, va="top")
    if ref_mosaic is not None:
        for value in (2, 3):
            if np.any(ref_mosaic >= value):
                ax.contour(
                    (ref_mosaic >= value).astype(float),
                    levels=[0.5],
                    colors=[LABEL_COLOURS[value]],
                    linewidths=0.8,
                    linestyles="dashed",
                )
    handles = [Patch(color=LABEL_COLOURS[v], alpha=0.8, label=LABEL_TEXT[v]) for v in LABEL_COLOURS]
    if reference is not None:
        handles += [
            Line2D(
                [], [], color=LABEL_COLOURS[v], linestyle="dashed", label=f"truth {LABEL_TEXT[v]}"
            )
            for v in (2, 3)
        ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    spacing_text = " x ".join(f"{s:.3g}" for s in spacing)
    fig.suptitle(
        f"{title}\nslice index (axis {axis}): plain LGE | LGE + labels; spacing {spacing_text} mm",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return path


def _surface(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes surface of a boolean mask: (vertices in scanner mm, triangles)."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    if np.count_nonzero(mask) < 2:
        return None
    padded = np.pad(mask.astype(np.float32), 1)
    # A slight blur turns voxel stairs into a surface a person can read.
    padded = ndimage.gaussian_filter(padded, 0.6)
    if padded.max() <= 0.5:
        return None
    vertices, faces, _, _ = marching_cubes(padded, level=0.5)
    vertices -= 1.0
    vertices = vertices @ affine[:3, :3].T + affine[:3, 3]
    return vertices, faces


def _surfaces_iso(labels: ImageVolume, spacing_mm: float) -> dict[str, tuple | None]:
    from cardiotwin.pipeline.images import resample_isotropic

    array = np.asarray(labels.array)
    volume = ImageVolume(array.astype(np.uint8), labels.affine, labels.source)
    if labels.spacing_mm.max() > 1.5 * labels.spacing_mm.min():
        volume = resample_isotropic(volume, spacing_mm, kind="labels")
    grid = np.asarray(volume.array)
    return {
        "wall": _surface(grid > 0, volume.affine),
        "border zone": _surface(grid == 2, volume.affine),
        "dense scar": _surface(grid == 3, volume.affine),
    }


def save_render(
    labels: ImageVolume,
    path: str | Path,
    *,
    title: str = "",
    window_size: tuple[int, int] = (900, 720),
    iso_spacing_mm: float | None = None,
) -> Path:
    """Write a 3-D PNG of scar (red) and border zone (yellow) inside the translucent wall.

    Anisotropic label maps are first resampled (shape-based) to ``iso_spacing_mm``
    (default: the finest voxel size, at least 2 mm, plenty for a picture) so the surfaces
    are not staircases of thick slices.
    The camera looks at the enhanced region from outside the heart.
    """
    path = Path(path)
    spacing = iso_spacing_mm or max(2.0, float(labels.spacing_mm.min()))
    surfaces = _surfaces_iso(labels, spacing)
    try:
        _render_pyvista(surfaces, path, title, window_size)
    except (ImportError, RuntimeError, OSError) as exc:
        log.warning("off-screen VTK rendering failed (%s); drawing a matplotlib scatter", exc)
        _render_matplotlib(surfaces, path, title)
    return path


@contextmanager
def _offscreen_plotter(path: Path, **options):
    """An off-screen pyvista plotter, closed afterwards; refuses an empty picture.

    Without an X display VTK warns, then renders off-screen (EGL/OSMesa): that noise is kept
    out of the user's terminal and the global settings are restored afterwards.
    """
    import pyvista as pv
    import vtk

    verbosity = vtk.vtkLogger.GetCurrentVerbosityCutoff()
    warnings_shown = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    vtk.vtkObject.GlobalWarningDisplayOff()
    plotter = pv.Plotter(off_screen=True, **options)
    try:
        yield plotter
    finally:
        plotter.close()
        vtk.vtkLogger.SetStderrVerbosity(verbosity)
        vtk.vtkObject.SetGlobalWarningDisplay(warnings_shown)
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError("VTK wrote no image")


def _render_pyvista(surfaces: dict, path: Path, title: str, window_size) -> None:
    import pyvista as pv

    with _offscreen_plotter(path, window_size=list(window_size)) as plotter:
        plotter.set_background("white")
        style = {
            "wall": dict(color=(0.75, 0.75, 0.75), opacity=0.18),
            "border zone": dict(color=LABEL_COLOURS[2], opacity=0.75),
            "dense scar": dict(color=LABEL_COLOURS[3], opacity=1.0),
        }
        for name, surface in surfaces.items():
            if surface is None:
                continue
            vertices, faces = surface
            cells = np.hstack([np.full((len(faces), 1), 3), faces]).astype(np.int64).ravel()
            mesh = pv.PolyData(vertices, cells)
            plotter.add_mesh(mesh, smooth_shading=True, **style[name])
        plotter.add_text(title or "segmentation", font_size=10, color="black")
        # Coloured words as the legend: VTK's legend box overflows off-screen windows.
        for row, name in enumerate(style):
            colour = (0.45, 0.45, 0.45) if name == "wall" else style[name]["color"]
            plotter.add_text(
                {"wall": "wall (translucent)", "border zone": LABEL_TEXT[2]}.get(name, name),
                position=(12, window_size[1] - 60 - 24 * row),
                font_size=11,
                color=colour,
            )
        plotter.show_axes()
        _aim_camera(plotter, surfaces)
        plotter.screenshot(str(path))


def _aim_camera(plotter, surfaces: dict) -> None:
    """Side view of the heart (across its longest axis), from the enhanced region's side."""
    wall = surfaces.get("wall")
    if wall is None:
        return
    points = wall[0]
    centre = points.mean(axis=0)
    # Principal axes of the wall surface: the first is the long axis of the chamber.
    _, _, axes = np.linalg.svd(points - centre, full_matrices=False)
    long_axis = axes[0]
    enhanced = [s[0] for k, s in surfaces.items() if k != "wall" and s is not None]
    direction = axes[1]
    if enhanced:
        towards = np.concatenate(enhanced).mean(axis=0) - centre
        towards -= (towards @ long_axis) * long_axis
        if np.linalg.norm(towards) > 1.0:
            direction = towards / np.linalg.norm(towards)
    extent = float(np.ptp(points, axis=0).max())
    plotter.camera_position = [
        tuple(centre + 2.4 * extent * direction),
        tuple(centre),
        tuple(long_axis),
    ]


def _render_matplotlib(surfaces: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    colours = {
        "wall": (0.6, 0.6, 0.6),
        "border zone": LABEL_COLOURS[2],
        "dense scar": LABEL_COLOURS[3],
    }
    for name, surface in surfaces.items():
        if surface is None:
            continue
        points = surface[0][:: 7 if name == "wall" else 2]
        ax.scatter(
            *points.T, s=1, color=colours[name], alpha=0.15 if name == "wall" else 0.8, label=name
        )
    ax.set_xlabel("x (mm, R)")
    ax.set_ylabel("y (mm, A)")
    ax.set_zlabel("z (mm, S)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title((title or "segmentation") + " (matplotlib fallback)", fontsize=10)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def save_surface_render(
    surface, path: str | Path, *, title: str = "", window_size: tuple[int, int] = (1200, 560)
) -> Path:
    """Write a PNG of the atrial endocardial surface from two sides (posterior, anterior).

    Vertices are coloured by class: healthy blue, fibrosis yellow, dense red, no wall under
    the vertex (openings) light grey; the title carries the fibrosis % of the surface.
    """
    path = Path(path)
    colours = np.full((len(surface.points_mm), 3), 0.85)
    for value, colour in LABEL_COLOURS.items():
        colours[surface.classes == value] = colour
    counted = surface.has_wall
    total = float(surface.area_mm2[counted].sum()) or 1.0
    percent = 100.0 * float(surface.area_mm2[counted & (surface.classes >= 2)].sum()) / total
    caption = f"{title or 'atrial surface'}: fibrosis {percent:.1f} % of the surface with wall"
    try:
        _render_surface_pyvista(surface, colours, path, caption, window_size)
    except (ImportError, RuntimeError, OSError) as exc:
        log.warning("off-screen VTK rendering failed (%s); drawing a matplotlib scatter", exc)
        _render_surface_matplotlib(surface, colours, path, caption)
    return path


def _render_surface_pyvista(surface, colours, path: Path, caption: str, window_size) -> None:
    import pyvista as pv

    with _offscreen_plotter(path, window_size=list(window_size), shape=(1, 2)) as plotter:
        cells = np.hstack([np.full((len(surface.triangles), 1), 3), surface.triangles])
        mesh = pv.PolyData(surface.points_mm, cells.astype(np.int64).ravel())
        mesh.point_data["rgb"] = (np.clip(colours, 0, 1) * 255).astype(np.uint8)
        points = surface.points_mm
        centre = points.mean(axis=0)
        _, _, axes = np.linalg.svd(points - centre, full_matrices=False)
        extent = float(np.ptp(points, axis=0).max())
        # Scanner RAS: look from posterior (-y) and from anterior (+y), head up (+z).
        for column, (side, name) in enumerate(((-1.0, "posterior view"), (1.0, "anterior view"))):
            plotter.subplot(0, column)
            plotter.set_background("white")
            plotter.add_mesh(mesh, scalars="rgb", rgb=True, smooth_shading=True)
            plotter.add_text(name, font_size=10, color="black", position="lower_left")
            eye = centre + np.array([0.0, side * 2.6 * extent, 0.0])
            plotter.camera_position = [tuple(eye), tuple(centre), (0.0, 0.0, 1.0)]
        plotter.subplot(0, 0)
        plotter.add_text(caption, font_size=10, color="black")
        for row, (value, text) in enumerate(LABEL_TEXT.items()):
            plotter.add_text(
                text,
                position=(12, window_size[1] - 60 - 24 * row),
                font_size=11,
                color=LABEL_COLOURS[value],
            )
        plotter.screenshot(str(path))


def _render_surface_matplotlib(surface, colours, path: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(*surface.points_mm[::3].T, s=1, c=colours[::3])
    ax.set_title(caption + " (matplotlib fallback)", fontsize=9)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
