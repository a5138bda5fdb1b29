"""prepare(): adds what a mesh lacks, keeps what it has, and is idempotent."""

import numpy as np
import pytest

from cardiotwin.meshing.coordinates import ventricular_coordinates
from cardiotwin.meshing.ellipsoid import (
    LVGeometry,
    RVGeometry,
    atrial_shell,
    biv_ellipsoid,
    lv_ellipsoid,
)
from cardiotwin.meshing.mesh import Mesh, MeshError
from cardiotwin.meshing.prepare import prepare
from cardiotwin.pipeline.config import AnatomyConfig

CONFIG = AnatomyConfig(septum_point_mm=(10.0, 0.0, 0.0))


@pytest.fixture(scope="module")
def lv():
    return lv_ellipsoid(2.0, LVGeometry.small())


def bare(mesh: Mesh) -> Mesh:
    return Mesh(mesh.points_mm, mesh.tets)


def test_a_bare_ventricle_gets_everything(lv):
    mesh, report = prepare(bare(lv), "ventricle", CONFIG)
    assert {"endo", "epi", "base"} <= set(mesh.surfaces)
    assert mesh.fibres is not None and mesh.sheets is not None
    for name, dtype in (
        ("transmural", np.float64),
        ("apicobasal", np.float64),
        ("rotational", np.float64),
        ("aha_segment", np.int32),
    ):
        assert mesh.point_data[name].dtype == dtype
        assert f"point_data:{name}" in report.added
    assert sorted(mesh.node_sets) == sorted(f"AHA-{k}" for k in range(1, 18))
    assert report.septum_source == "caller" and len(report.sites) == 17
    assert report.kept == []


def test_what_is_there_is_kept_and_a_second_run_adds_nothing(lv):
    # a hand-made base surface (here: in its own face order) and a measured transmural field
    # survive as they were
    own_base = lv.surfaces["base"][::-1]
    own_transmural = np.full(lv.n_points, 0.25)
    given = Mesh(lv.points_mm, lv.tets, surfaces={"base": own_base},
                 point_data={"transmural": own_transmural})  # fmt: skip
    mesh, report = prepare(given, "ventricle", CONFIG)
    np.testing.assert_array_equal(mesh.surfaces["base"], own_base)
    np.testing.assert_array_equal(mesh.point_data["transmural"], own_transmural)
    assert "surface:base" in report.kept and "point_data:transmural" in report.kept
    assert "surface:endo" in report.added
    again, second = prepare(mesh, "ventricle", CONFIG)
    assert second.added == []
    assert again.fingerprint() == mesh.fingerprint()


def test_kept_fibres_get_orthogonal_sheets(lv):
    rng = np.random.default_rng(1)
    fibres = rng.normal(size=(lv.n_elements, 3))
    fibres /= np.linalg.norm(fibres, axis=1, keepdims=True)
    mesh, report = prepare(Mesh(lv.points_mm, lv.tets, fibres=fibres), "ventricle", CONFIG)
    np.testing.assert_array_equal(mesh.fibres, fibres)
    assert "sheets" in report.added and "fibres" in report.kept
    assert np.max(np.abs(np.einsum("ij,ij->i", mesh.fibres, mesh.sheets))) < 1e-12


def test_biventricular_and_atrial_meshes():
    biv, report = prepare(
        bare(biv_ellipsoid(2.0, LVGeometry.small(), RVGeometry.small())), "ventricle", CONFIG
    )
    assert {"rv-endo", "rv-septum"} <= set(biv.surfaces)
    assert {"RV-1", "RV-2"} <= set(biv.node_sets) and len(biv.node_sets) == 19
    assert report.septum_source == "rv"
    assert np.any(biv.point_data["aha_segment"] == 0)  # the RV has no AHA segment
    atrium, report = prepare(
        bare(atrial_shell(2.0)), "atrium", CONFIG.model_copy(update={"atrial_sites": 12})
    )
    assert sorted(atrium.node_sets) == [f"LA-{k:02d}" for k in range(1, 13)]
    assert {"transmural", "valve_vein"} <= set(atrium.point_data)
    assert "surface:valve" in report.added


def test_unknown_kind_is_refused(lv):
    with pytest.raises(ValueError, match="kind"):
        prepare(lv, "atria", CONFIG)


def delaunay_lv(g: LVGeometry, seed: int = 0) -> Mesh:
    """An unstructured LV "from elsewhere": VTK's Delaunay tetrahedralisation of random points
    in the wall and on its three surfaces, with the cavity and slivers removed (internal
    voids remain where slivers were: a realistic blemish)."""
    import pyvista as pv

    from cardiotwin.meshing.ellipsoid import orient_positive

    rng = np.random.default_rng(seed)

    def level(p, a, c):
        return (p[:, 0] ** 2 + p[:, 1] ** 2) / a**2 + p[:, 2] ** 2 / c**2

    def on_surface(a, c, count):
        s = rng.uniform(-1, g.base_height_mm / c, count)
        angle = rng.uniform(0, 2 * np.pi, count)
        r = a * np.sqrt(1 - s**2)
        return np.stack([r * np.cos(angle), r * np.sin(angle), c * s], axis=1)

    box = rng.uniform([-18, -18, -31], [18, 18, g.base_height_mm], size=(40000, 3))
    inside = (level(box, g.epi_radius_mm, g.epi_length_mm) < 1) & (
        level(box, g.endo_radius_mm, g.endo_length_mm) > 1
    )
    z = g.base_height_mm
    r_in = g.endo_radius_mm * np.sqrt(1 - (z / g.endo_length_mm) ** 2)
    r_out = g.epi_radius_mm * np.sqrt(1 - (z / g.epi_length_mm) ** 2)
    radius, angle = rng.uniform(r_in, r_out, 800), rng.uniform(0, 2 * np.pi, 800)
    points = np.concatenate(
        [
            box[inside][:6000],
            on_surface(g.endo_radius_mm, g.endo_length_mm, 3000),
            on_surface(g.epi_radius_mm, g.epi_length_mm, 4000),
            np.stack([radius * np.cos(angle), radius * np.sin(angle), np.full(800, z)], axis=1),
        ]
    )
    tets = np.asarray(pv.PolyData(points).delaunay_3d().cells_dict[10], dtype=np.int64)
    centres = points[tets].mean(axis=1)
    tets = tets[(level(centres, g.endo_radius_mm, g.endo_length_mm) > 1) & (centres[:, 2] < z)]
    tets = orient_positive(points, tets)
    x = points[tets]
    volume = np.einsum(
        "ij,ij->i", x[:, 1] - x[:, 0], np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0])
    )
    longest = np.max(
        [np.linalg.norm(x[:, a] - x[:, b], axis=1) for a in range(4) for b in range(a)], axis=0
    )
    tets = tets[volume > 6e-4 * longest**3]
    used, tets = np.unique(tets, return_inverse=True)
    return Mesh(points[used], tets.reshape(-1, 4))


def test_an_unstructured_mesh_from_elsewhere_is_prepared():
    g = LVGeometry.small()
    mesh, report = prepare(delaunay_lv(g), "ventricle", CONFIG)
    p = mesh.points_mm
    for name, a, c in (
        ("endo", g.endo_radius_mm, g.endo_length_mm),
        ("epi", g.epi_radius_mm, g.epi_length_mm),
    ):
        nodes = np.unique(mesh.surfaces[name])
        level = (p[nodes, 0] ** 2 + p[nodes, 1] ** 2) / a**2 + p[nodes, 2] ** 2 / c**2
        # most are the sampled surface points (measured 93 % endo); the rest lie just inside
        assert np.mean(np.abs(level - 1) < 1e-9) > 0.9
    np.testing.assert_allclose(p[np.unique(mesh.surfaces["base"]), 2], g.base_height_mm, atol=0.5)
    assert len(mesh.node_sets) == 17 and len(np.unique(mesh.point_data["aha_segment"])) == 17
    assert any("voids" in note for note in report.notes)


def test_one_endo_for_both_cavities_is_split_into_lv_and_rv():
    biv = biv_ellipsoid(2.0, LVGeometry.small(), RVGeometry.small())
    s = biv.surfaces
    merged = {"endo": np.concatenate([s["endo"], s["rv-septum"], s["rv-endo"]]),
              "epi": s["epi"], "base": s["base"]}  # fmt: skip
    mesh, report = prepare(Mesh(biv.points_mm, biv.tets, surfaces=merged), "ventricle", CONFIG)
    assert any("now split" in note for note in report.notes)
    for name in ("endo", "rv-septum", "rv-endo"):
        truth = set(map(tuple, np.sort(s[name], axis=1).tolist()))
        got = set(map(tuple, np.sort(mesh.surfaces[name], axis=1).tolist()))
        assert len(truth & got) / len(truth) > 0.98
    assert {"RV-1", "RV-2"} <= set(mesh.node_sets)


def inward(triangles: np.ndarray) -> np.ndarray:
    """The same triangles wound the other way (normals into the tissue)."""
    return triangles[:, [0, 2, 1]]


def assert_same_preparation(got: Mesh, expected: Mesh) -> None:
    assert sorted(got.surfaces) == sorted(expected.surfaces)
    for name, triangles in expected.surfaces.items():
        np.testing.assert_array_equal(got.surfaces[name], triangles, err_msg=name)
    assert sorted(got.node_sets) == sorted(expected.node_sets)
    for name, nodes in expected.node_sets.items():
        np.testing.assert_array_equal(got.node_sets[name], nodes, err_msg=name)
    for name, values in expected.point_data.items():
        np.testing.assert_array_equal(got.point_data[name], values, err_msg=name)


@pytest.fixture(scope="module")
def biv():
    return biv_ellipsoid(2.0, LVGeometry.small(), RVGeometry.small())


@pytest.mark.parametrize("rv", ["in endo", "own surfaces"])
def test_surfaces_wound_inward_give_the_same_ventricles(biv, rv):
    # surfaces from elsewhere may be wound inward: re-wound, the LV/RV split, the RV surfaces
    # and the pacing sites are those of the outward-wound surfaces (before the fix the RV was
    # taken as the LV, or the long axis pointed from base to apex)
    s = biv.surfaces
    if rv == "in endo":  # one 'endo' for both cavities, as a mesher may name them
        given = {"endo": np.concatenate([s["rv-endo"], s["rv-septum"], s["endo"]]),
                 "epi": s["epi"], "base": s["base"]}  # fmt: skip
        turned = ("endo", "base")
    else:
        given = dict(s)
        turned = ("endo", "rv-endo", "rv-septum", "base")
    outward, _ = prepare(Mesh(biv.points_mm, biv.tets, surfaces=given), "ventricle", CONFIG)
    flipped = {n: inward(t) if n in turned else t for n, t in given.items()}
    mesh, report = prepare(Mesh(biv.points_mm, biv.tets, surfaces=flipped), "ventricle", CONFIG)
    assert_same_preparation(mesh, outward)
    for name in ("endo", "rv-septum", "rv-endo"):  # the true LV and RV faces
        truth = set(map(tuple, np.sort(s[name], axis=1).tolist()))
        got = set(map(tuple, np.sort(mesh.surfaces[name], axis=1).tolist()))
        assert len(truth & got) / len(truth) > 0.98
    assert report.rewound_triangles == {n: len(given[n]) for n in turned}
    assert report.as_dict()["rewound_triangles"] == report.rewound_triangles
    assert sum("re-wound outward" in note for note in report.notes) == len(turned)


def test_an_lv_with_a_base_wound_inward_gets_the_same_axis_and_sites(lv):
    s = lv.surfaces
    outward, _ = prepare(Mesh(lv.points_mm, lv.tets, surfaces=s), "ventricle", CONFIG)
    epi = s["epi"].copy()
    epi[::2] = inward(epi[::2])  # each triangle on its own: every other one turned
    turned = {"endo": s["endo"], "epi": epi, "base": inward(s["base"])}
    fields = ventricular_coordinates(
        Mesh(lv.points_mm, lv.tets, surfaces=turned), septum_point_mm=CONFIG.septum_point_mm
    )
    np.testing.assert_allclose(fields.frame.long_axis, [0.0, 0.0, 1.0], atol=1e-12)  # +z
    mesh, report = prepare(Mesh(lv.points_mm, lv.tets, surfaces=turned), "ventricle", CONFIG)
    assert_same_preparation(mesh, outward)
    assert report.rewound_triangles == {"epi": (len(epi) + 1) // 2, "base": len(s["base"])}


def test_a_surface_off_the_boundary_is_refused_by_name(lv):
    faces = np.sort(lv.tets[:, [0, 1, 2]], axis=1)
    boundary = set(map(tuple, np.sort(np.concatenate(list(lv.surfaces.values())), 1).tolist()))
    interior = next(f for f in faces.tolist() if tuple(f) not in boundary)
    base = np.concatenate([lv.surfaces["base"], [interior]])
    given = Mesh(lv.points_mm, lv.tets, surfaces={**lv.surfaces, "base": base})
    with pytest.raises(MeshError, match=r"surface 'base': 1 of \d+ triangles are not boundary"):
        prepare(given, "ventricle", CONFIG)
