"""AHA segments against the Cerqueira 2002 layout and proportions; pacing sites."""

import logging

import numpy as np
import pytest

from cardiotwin.meshing.coordinates import atrial_coordinates, ventricular_coordinates
from cardiotwin.meshing.ellipsoid import (
    AtrialGeometry,
    LVGeometry,
    RVGeometry,
    atrial_shell,
    biv_ellipsoid,
    lv_ellipsoid,
)
from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.sites import (
    AHA_LEVEL_FRACTIONS,
    aha_segments,
    atrial_sites,
    conducting_nodes,
    ventricular_sites,
)
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY, LESION

SEPTUM = (10.0, 0.0, 0.0)  # the analytic meshes' septum is towards +x


def with_coordinates(mesh: Mesh, fields) -> Mesh:
    aha = aha_segments(
        fields.frame.heights_mm(mesh.points_mm), fields.rotational, fields.lv, fields.frame
    )
    mesh.point_data.update(
        transmural=fields.transmural,
        apicobasal=fields.apicobasal,
        rotational=fields.rotational,
        aha_segment=aha,
    )
    return mesh


@pytest.fixture(scope="module")
def adult():
    mesh = lv_ellipsoid(2.0, LVGeometry())
    fields = ventricular_coordinates(mesh, septum_point_mm=SEPTUM)
    return with_coordinates(mesh, fields), fields


def test_segments_follow_the_bullseye_layout(adult):
    _, fields = adult
    frame = fields.frame
    cavity = frame.base_height_mm - frame.cavity_apex_height_mm
    heights = frame.cavity_apex_height_mm + cavity * np.array([5 / 6, 1 / 2, 1 / 6])
    # Cerqueira 2002, Fig. 1: rotational 0 = mid-septum, +90° anterior, ±180° lateral
    expected = {
        0: {90: 1, 30: 2, -30: 3, -90: 4, -150: 5, 150: 6},
        1: {90: 7, 30: 8, -30: 9, -90: 10, -150: 11, 150: 12},
        2: {90: 13, 0: 14, -90: 15, 180: 16, -170: 16},
    }
    for level, table in expected.items():
        angles = np.radians(list(table))
        got = aha_segments(
            np.full(angles.size, heights[level]), angles, np.ones(angles.size, bool), frame
        )
        assert got.tolist() == list(table.values())
    apex = aha_segments(
        np.array([0.5 * frame.cavity_apex_height_mm]), np.zeros(1), np.ones(1, bool), frame
    )
    assert apex.tolist() == [17]
    outside = aha_segments(np.array([heights[0]]), np.zeros(1), np.zeros(1, bool), frame)
    assert outside.tolist() == [0] and outside.dtype == np.int32


def test_segment_sizes_are_those_of_the_aha_standard(adult):
    # Cerqueira et al. 2002: 17 segments of roughly equal myocardial mass (1/17 = 5.9 % each),
    # 35 % basal, 35 % mid-cavity and 30 % apical (with the apex) by autopsy data
    mesh, fields = adult
    c = mesh.element_centres_mm()
    segment = aha_segments(
        fields.frame.heights_mm(c), fields.frame.rotational(c), np.ones(len(c), bool), fields.frame
    )
    volume = np.abs(mesh.signed_volumes_mm3())
    share = np.bincount(segment, weights=volume, minlength=18)[1:] / volume.sum()
    assert np.all(share > 0)
    assert np.all(np.abs(share[:16] / (1 / 17) - 1) < 0.25)  # measured 5.7-6.5 %
    assert 0.01 < share[16] < 1 / 17  # the apex cap beyond the cavity (measured 2.8 %)
    for level, part in (("basal", share[:6]), ("mid", share[6:12]), ("apical", share[12:])):
        assert abs(part.sum() - AHA_LEVEL_FRACTIONS[level]) < 0.05
    # the node field: every segment holds nodes
    assert set(np.unique(mesh.point_data["aha_segment"]).tolist()) == set(range(1, 18))


@pytest.mark.parametrize("placement", ["endo", "midwall"])
def test_one_site_per_segment_centre_first(adult, placement):
    mesh, _ = adult
    report = ventricular_sites(mesh, placement=placement, radius_mm=2.5)
    assert [s.name for s in report.sites] == [f"AHA-{k}" for k in range(1, 18)]
    endo = np.zeros(mesh.n_points, bool)
    endo[mesh.surfaces["endo"].ravel()] = True
    aha = mesh.point_data["aha_segment"]
    t = mesh.point_data["transmural"]
    for site in report.sites:
        centre = site.nodes[0]
        distance = np.linalg.norm(mesh.points_mm[site.nodes] - mesh.points_mm[centre], axis=1)
        assert np.all(distance <= 2.5) and np.all(np.diff(distance) >= 0)
        assert site.nodes.size >= 3  # enough to stimulate on a 2 mm mesh
        assert site.moved_mm == 0.0
        np.testing.assert_array_equal(site.position_mm, mesh.points_mm[centre])
        if placement == "endo":
            assert endo[centre]
        else:
            assert abs(t[centre] - 0.5) <= 0.15
        if site.segment != 17 or placement == "midwall":
            assert aha[centre] == site.segment
    again = ventricular_sites(mesh, placement=placement, radius_mm=2.5)
    assert all(
        np.array_equal(a.nodes, b.nodes) for a, b in zip(report.sites, again.sites, strict=True)
    )


def test_a_site_in_dense_scar_moves_to_conducting_tissue_and_says_so(adult, caplog):
    mesh, _ = adult
    before = ventricular_sites(mesh, placement="endo", radius_mm=2.0)
    target = before.sites[6].position_mm  # AHA-7, mid anterior
    c = mesh.element_centres_mm()
    region = mesh.region.copy()
    region[np.linalg.norm(c - target, axis=1) < 6.0] = DENSE_SCAR
    scarred = Mesh(
        mesh.points_mm, mesh.tets, region=region, surfaces=mesh.surfaces, point_data=mesh.point_data
    )
    with caplog.at_level(logging.WARNING):
        after = ventricular_sites(scarred, placement="endo", radius_mm=2.0)
    assert after.moved == ["AHA-7"]
    moved = after.sites[6]
    conducting = conducting_nodes(scarred)
    assert conducting[moved.nodes].all()
    assert 0 < moved.moved_mm < 12.0
    assert "dense scar" in moved.note and "AHA-7" in caplog.text
    assert np.linalg.norm(moved.position_mm - target) == pytest.approx(moved.moved_mm)


def test_a_site_in_border_zone_inside_scar_moves_to_healthy_wall(adult, caplog):
    # at 2 mm on lv-infarct, AHA-7's centre landed in a border-zone pocket between scar lobes
    # and S1 never captured there; programmed stimulation paces viable myocardium
    mesh, _ = adult
    before = ventricular_sites(mesh, placement="endo", radius_mm=2.0)
    target = before.sites[6].position_mm  # AHA-7
    c = mesh.element_centres_mm()
    distance = np.linalg.norm(c - target, axis=1)
    region = mesh.region.copy()
    region[distance < 7.0] = DENSE_SCAR
    region[distance < 2.0] = BORDER_ZONE  # conducting, but a sliver inside the scar
    sliver = Mesh(
        mesh.points_mm, mesh.tets, region=region, surfaces=mesh.surfaces, point_data=mesh.point_data
    )
    with caplog.at_level(logging.WARNING):
        after = ventricular_sites(sliver, placement="endo", radius_mm=2.0)
    assert after.moved == ["AHA-7"]
    moved = after.sites[6]
    assert "too little healthy myocardium" in moved.note and "AHA-7" in caplog.text
    # the new centre has mostly healthy wall within max(2 x 2 mm, 4 mm) = 4 mm: it lies
    # outside the scar ball (7 mm), at least 7 - 4 = 3 mm from the old centre
    volumes = np.abs(sliver.signed_volumes_mm3())
    near = np.linalg.norm(c - moved.position_mm, axis=1) <= 4.0
    assert volumes[near & (region == HEALTHY)].sum() >= 0.5 * volumes[near].sum()
    assert 3.0 <= moved.moved_mm < 14.0


def test_biventricular_mesh_gets_two_rv_sites():
    mesh = biv_ellipsoid(2.0, LVGeometry.small(), RVGeometry.small())
    fields = ventricular_coordinates(mesh)
    with_coordinates(mesh, fields)
    report = ventricular_sites(mesh, placement="endo", radius_mm=2.0)
    names = [s.name for s in report.sites]
    assert names == [f"AHA-{k}" for k in range(1, 18)] + ["RV-1", "RV-2"]
    rv_endo = np.unique(mesh.surfaces["rv-endo"])
    rv1, rv2 = report.sites[-2:]
    assert rv1.nodes[0] in rv_endo and rv2.nodes[0] in rv_endo
    ab = mesh.point_data["apicobasal"]
    assert ab[rv1.nodes[0]] < ab[rv2.nodes[0]]  # RV-1 apical, RV-2 basal


def test_atrial_sites_are_spread_evenly_and_clear_of_the_openings():
    mesh = atrial_shell(1.5, AtrialGeometry())
    fields = atrial_coordinates(mesh)
    mesh.point_data.update(transmural=fields.transmural, valve_vein=fields.valve_vein)
    count = 20
    report = atrial_sites(mesh, count, placement="endo", radius_mm=2.0)
    assert [s.name for s in report.sites] == [f"LA-{k:02d}" for k in range(1, count + 1)]
    centres = np.array([s.position_mm for s in report.sites])
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    endo_area = 4 * np.pi * 25.0**2 * 0.85  # the sphere less its openings (~15 %)
    ideal = np.sqrt(endo_area / count)  # spacing of an even spread
    assert distance.min() > 0.6 * ideal  # measured 15.3 mm against 18.3
    rims = np.unique(
        np.concatenate([mesh.surfaces[n] for n in mesh.surfaces if n not in ("endo", "epi")])
    )
    to_rim = np.linalg.norm(centres[:, None] - mesh.points_mm[rims][None], axis=2).min(axis=1)
    assert to_rim.min() > 3.0


def test_atrial_sites_stay_in_dense_fibrosis_which_conducts():
    # in an atrium only lesions block (tissue defaults: dense fibrosis, IIR > 1.32, conducts
    # as remodelled tissue), so a site on dense fibrosis stays; one on a lesion moves
    mesh = atrial_shell(1.5, AtrialGeometry())
    fields = atrial_coordinates(mesh)
    mesh.point_data.update(transmural=fields.transmural, valve_vein=fields.valve_vein)
    before = atrial_sites(mesh, 6, placement="endo", radius_mm=2.0)
    c = mesh.element_centres_mm()
    target = before.sites[0].position_mm
    near = np.linalg.norm(c - target, axis=1) < 6.0
    for tag, moves in ((DENSE_SCAR, False), (LESION, True)):
        region = mesh.region.copy()
        region[near] = tag
        tagged = Mesh(
            mesh.points_mm, mesh.tets, region=region, surfaces=mesh.surfaces,
            point_data=mesh.point_data,
        )  # fmt: skip
        after = atrial_sites(tagged, 6, placement="endo", radius_mm=2.0)
        assert (after.sites[0].moved_mm > 0) == moves, tag
