"""Mesh files: VTU and openCARP round trips keep everything exactly; bad file sets are named."""

import json

import numpy as np
import pytest

from cardiotwin.meshing.io import MeshFileError, read_mesh, write_mesh
from cardiotwin.meshing.mesh import Mesh, MeshError, boundary_triangles, box_mesh


@pytest.fixture
def full_mesh():
    """A box with every field a Mesh can carry, at awkward (non-round) coordinates."""
    rng = np.random.default_rng(7)
    mesh = box_mesh((2.0, 1.5, 1.0), 0.5, origin_mm=(-91.123456789, 26.5500360001, -11.2264))
    mesh.points_mm += rng.normal(scale=0.01, size=mesh.points_mm.shape)  # not on a grid
    mesh.region[::3] = 2
    mesh.region[::7] = 3
    fibres = rng.normal(size=(mesh.n_elements, 3))
    mesh.fibres = fibres / np.linalg.norm(fibres, axis=1, keepdims=True)
    sheets = np.cross(mesh.fibres, [0.3, 0.4, 0.5])
    mesh.sheets = sheets / np.linalg.norm(sheets, axis=1, keepdims=True)
    triangles, _ = boundary_triangles(mesh.tets)
    centres = mesh.points_mm[triangles].mean(axis=1)
    low_z = centres[:, 2] < centres[:, 2].min() + 1e-3
    mesh.surfaces = {"endo": triangles[low_z], "epi": triangles[~low_z]}
    mesh.node_sets = {"AHA-1": np.array([3, 1, 2]), "rv.site-2": np.array([0])}
    mesh.point_data = {
        "transmural": rng.random(mesh.n_points),
        "uvc": rng.random((mesh.n_points, 3)),
        "aha_segment": rng.integers(0, 18, mesh.n_points).astype(np.int32),
    }
    mesh.affine = np.array(
        [[0.636356, 1.089828, 4.324031, -90.713424], [-0.631077, 1.030032, -4.742694, 26.55],
         [-1.202827, 0.036155, 4.77594, -11.226489], [0, 0, 0, 1]]
    )  # fmt: skip
    return Mesh(**{k: getattr(mesh, k) for k in mesh.__dataclass_fields__})


def assert_same(back: Mesh, mesh: Mesh) -> None:
    np.testing.assert_array_equal(back.points_mm, mesh.points_mm)  # bit for bit
    np.testing.assert_array_equal(back.tets, mesh.tets)
    np.testing.assert_array_equal(back.region, mesh.region)
    np.testing.assert_array_equal(back.fibres, mesh.fibres)
    np.testing.assert_array_equal(back.sheets, mesh.sheets)
    assert back.surfaces.keys() == mesh.surfaces.keys()
    for name in mesh.surfaces:
        np.testing.assert_array_equal(back.surfaces[name], mesh.surfaces[name])
    assert back.node_sets.keys() == mesh.node_sets.keys()
    for name in mesh.node_sets:
        np.testing.assert_array_equal(back.node_sets[name], mesh.node_sets[name])
    assert back.point_data.keys() == mesh.point_data.keys()
    for name in mesh.point_data:
        np.testing.assert_array_equal(back.point_data[name], mesh.point_data[name])
        assert back.point_data[name].dtype == mesh.point_data[name].dtype
    np.testing.assert_array_equal(back.affine, mesh.affine)
    assert back.region.dtype == np.int32 and back.tets.dtype == np.int64
    assert back.fingerprint() == mesh.fingerprint()


def test_vtu_round_trip_keeps_everything(tmp_path, full_mesh):
    path = write_mesh(full_mesh, tmp_path / "heart.vtu")
    assert_same(read_mesh(path), full_mesh)
    assert [p.name for p in tmp_path.iterdir()] == ["heart.vtu"]  # no temporary left


def test_opencarp_round_trip_keeps_everything(tmp_path, full_mesh):
    elem = write_mesh(full_mesh, tmp_path / "heart.elem")
    assert elem.name == "heart.elem"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["heart.pts", "heart.elem", "heart.lon", "heart.endo.surf", "heart.epi.surf",
         "heart.AHA-1.vtx", "heart.rv.site-2.vtx", "heart.transmural.dat", "heart.uvc.dat",
         "heart.aha_segment.dat", "heart.cardiotwin.json"]
    )  # fmt: skip
    assert_same(read_mesh(tmp_path / "heart"), full_mesh)  # by base name
    assert_same(read_mesh(tmp_path / "heart.pts"), full_mesh)


def test_opencarp_files_follow_the_format(tmp_path):
    # openCARP: .pts in micrometres with a count line; .elem 'Tt a b c d tag'; .lon header
    # '1' (fibres only); .vtx count then 'intra' (openCARP file-format documentation)
    mesh = box_mesh((1.0, 0.5, 0.5), 0.5, region=5)
    mesh.sheets = None
    mesh.node_sets = {"site": np.array([2, 4])}
    write_mesh(mesh, tmp_path / "m.pts")
    pts = (tmp_path / "m.pts").read_text().split("\n")
    assert pts[0] == str(mesh.n_points)
    np.testing.assert_allclose([float(v) for v in pts[2].split()], mesh.points_mm[1] * 1000)
    elem = (tmp_path / "m.elem").read_text().split("\n")
    assert elem[0] == str(mesh.n_elements)
    assert elem[1].split() == ["Tt", *map(str, mesh.tets[0]), "5"]
    lon = (tmp_path / "m.lon").read_text().split("\n")
    assert lon[0] == "1" and [float(v) for v in lon[1].split()] == [1.0, 0.0, 0.0]
    assert (tmp_path / "m.site.vtx").read_text() == "2\nintra\n2\n4\n"


def test_mesh_from_another_tool_without_extras(tmp_path):
    # an openCARP set as meshtool writes it: no manifest, no tags column, old .lon (no header)
    mesh = box_mesh((1.0, 0.5, 0.5), 0.5)
    (tmp_path / "x.pts").write_text(
        f"{mesh.n_points}\n"
        + "".join(f"{a * 1000} {b * 1000} {c * 1000}\n" for a, b, c in mesh.points_mm)
    )
    (tmp_path / "x.elem").write_text(
        f"{mesh.n_elements}\n" + "".join("Tt {} {} {} {}\n".format(*t) for t in mesh.tets)
    )
    (tmp_path / "x.lon").write_text("".join("1 0 0\n" for _ in range(mesh.n_elements)))
    back = read_mesh(tmp_path / "x")
    np.testing.assert_allclose(back.points_mm, mesh.points_mm, atol=1e-12)
    np.testing.assert_array_equal(back.tets, mesh.tets)
    assert np.all(back.region == 1) and back.sheets is None and not back.surfaces
    np.testing.assert_array_equal(back.fibres, mesh.fibres)


def test_all_negative_orientation_is_another_convention(tmp_path):
    mesh = box_mesh((1.0, 0.5, 0.5), 0.5)
    flipped = Mesh(mesh.points_mm, mesh.tets[:, [1, 0, 2, 3]], mesh.region, mesh.fibres)
    write_mesh(flipped, tmp_path / "f.elem")
    back = read_mesh(tmp_path / "f.elem")
    assert np.all(back.signed_volumes_mm3() > 0)
    np.testing.assert_allclose(back.volume_ml(), mesh.volume_ml())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "m.pts").unlink(), r"m\.pts: is missing"),
        (lambda d: (d / "m.elem").unlink(), r"m\.elem: is missing"),
        (lambda d: (d / "m.pts").write_text("12\n0 0 0\n"), r"m\.pts: announces 12 points but"),
        (lambda d: (d / "m.lon").write_text("1\n1 0 0\n"), r"m\.lon: does not hold one fibre"),
        (lambda d: (d / "m.epi.surf").unlink(), r"lists surfaces \['epi'\] whose files are"),
        (lambda d: (d / "m.site.vtx").write_text("1\nintra\n999\n"), r"m\.site\.vtx: refers"),
        (
            lambda d: (d / "m.elem").write_text(
                (d / "m.elem").read_text().replace("Tt 0 ", "Tt 9999 ", 1)
            ),
            r"m\.elem: refers to nodes .* not from the same mesh",
        ),
    ],
)
def test_broken_opencarp_sets_are_named(tmp_path, damage, message):
    mesh = box_mesh((1.0, 0.5, 0.5), 0.5)
    triangles, _ = boundary_triangles(mesh.tets)
    mesh.surfaces = {"endo": triangles[:4], "epi": triangles[4:]}
    mesh.node_sets = {"site": np.array([1])}
    write_mesh(mesh, tmp_path / "m.elem")
    damage(tmp_path)
    with pytest.raises((MeshFileError, FileNotFoundError), match=message):
        read_mesh(tmp_path / "m")


def test_inverted_and_duplicate_elements_in_a_file_are_named(tmp_path):
    mesh = box_mesh((1.0, 0.5, 0.5), 0.5)
    tets = mesh.tets.copy()
    tets[3] = tets[3, [1, 0, 2, 3]]
    write_mesh(Mesh(mesh.points_mm, tets), tmp_path / "inv.vtu")
    with pytest.raises(MeshFileError, match=r"inv\.vtu: .*inverted elements .* 3;"):
        read_mesh(tmp_path / "inv.vtu")
    write_mesh(Mesh(mesh.points_mm, np.vstack([mesh.tets, mesh.tets[5]])), tmp_path / "dup.vtu")
    with pytest.raises(MeshFileError, match=r"dup\.vtu: .*duplicate elements .* 12;"):
        read_mesh(tmp_path / "dup.vtu")


def test_failed_opencarp_write_leaves_nothing(tmp_path, monkeypatch, full_mesh):
    import cardiotwin.meshing.io as io

    calls = []

    def flaky(values):
        calls.append(1)
        if len(calls) > 1:  # the .pts file is staged, then the .lon values fail
            raise OSError("disk full")
        return [str(v) for v in values.reshape(-1)]

    monkeypatch.setattr(io, "_format_reals", flaky)
    with pytest.raises(OSError, match="disk full"):
        write_mesh(full_mesh, tmp_path / "out" / "heart.elem")
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_bad_names(tmp_path):
    with pytest.raises(MeshFileError, match="unknown mesh format '.stl'"):
        write_mesh(box_mesh((1.0, 1.0, 1.0), 0.5), tmp_path / "m.stl")
    with pytest.raises(MeshError, match="node set name 'a b'"):
        Mesh(np.eye(4, 3), np.array([[0, 1, 2, 3]]), node_sets={"a b": [0]})
    with pytest.raises(MeshError, match="surface 'endo' refers to nodes outside"):
        Mesh(np.eye(4, 3), np.array([[0, 1, 2, 3]]), surfaces={"endo": [[0, 1, 9]]})


def test_manifest_records_units_and_fingerprint(tmp_path, full_mesh):
    write_mesh(full_mesh, tmp_path / "h.elem")
    manifest = json.loads((tmp_path / "h.cardiotwin.json").read_text())
    assert manifest["units"]["pts"] == "um"
    assert manifest["fingerprint"] == full_mesh.fingerprint()


def test_xdmf_keeps_volume_tags_and_fibres(tmp_path, full_mesh):
    write_mesh(full_mesh, tmp_path / "h.xdmf")
    back = read_mesh(tmp_path / "h.xdmf")
    np.testing.assert_array_equal(back.tets, full_mesh.tets)
    np.testing.assert_array_equal(back.region, full_mesh.region)
    np.testing.assert_allclose(back.fibres, full_mesh.fibres)


def test_vtu_without_vtk_keeps_the_volume_and_point_fields(
    tmp_path, full_mesh, monkeypatch, caplog
):
    """A GPU node without VTK still writes and reads VTU (through meshio), and says what is
    not kept; the file is one VTK itself reads with the same fields."""
    import pyvista as pv

    import cardiotwin.meshing.io as io

    monkeypatch.setattr(io, "_pyvista", lambda: None)
    path = write_mesh(full_mesh, tmp_path / "vt-1.vtu")
    back = read_mesh(path)
    np.testing.assert_array_equal(back.points_mm, full_mesh.points_mm)
    np.testing.assert_array_equal(back.tets, full_mesh.tets)
    np.testing.assert_array_equal(back.region, full_mesh.region)
    np.testing.assert_array_equal(back.fibres, full_mesh.fibres)
    for name, values in full_mesh.point_data.items():
        np.testing.assert_array_equal(back.point_data[name], values)
    assert back.node_sets == {} and back.surfaces == {}  # field data: VTK only
    assert caplog.text.count("without the surfaces, node sets and affine") == 2  # write, read
    grid = pv.read(str(path))  # the real VTK reader agrees
    for name, values in full_mesh.point_data.items():
        np.testing.assert_array_equal(np.asarray(grid.point_data[name]), values)
    assert grid.n_cells == full_mesh.n_elements

    real_find_spec = io.importlib.util.find_spec
    monkeypatch.setattr(
        io.importlib.util,
        "find_spec",
        lambda name: None if name == "meshio" else real_find_spec(name),
    )
    with pytest.raises(MeshFileError, match="needs pyvista \\(VTK\\) or meshio"):
        write_mesh(full_mesh, tmp_path / "vt-2.vtu")
    assert not (tmp_path / "vt-2.vtu").exists()
