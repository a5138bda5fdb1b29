"""cardiotwin prepare: a bare mesh from elsewhere (openCARP files) comes out ready."""

import json

import numpy as np

from cardiotwin.meshing.ellipsoid import LVGeometry, lv_ellipsoid
from cardiotwin.meshing.io import read_mesh, write_mesh
from cardiotwin.meshing.mesh import Mesh, box_mesh
from cardiotwin.pipeline.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def bare_lv(tmp_path):
    lv = lv_ellipsoid(2.0, LVGeometry.small())
    path = tmp_path / "bare" / "lv.pts"
    write_mesh(Mesh(lv.points_mm, lv.tets), path)  # openCARP: no tags, no surfaces
    return lv, path


def test_prepare_an_opencarp_mesh_with_report_and_pictures(tmp_path, capsys):
    lv, source = bare_lv(tmp_path)
    out, report, pictures = tmp_path / "out" / "lv.vtu", tmp_path / "r.json", tmp_path / "pics"
    rc = main(["prepare", "--mesh", str(source), "--out", str(out), "--report", str(report),
               "--pictures", str(pictures), "--septum-mm", "10", "0", "0"])  # fmt: skip
    assert rc == 0
    mesh = read_mesh(out)
    assert {"endo", "epi", "base"} <= set(mesh.surfaces)
    assert sorted(mesh.node_sets) == sorted(f"AHA-{k}" for k in range(1, 18))
    assert mesh.fibres is not None and mesh.point_data["aha_segment"].dtype == np.int32
    summary = json.loads(report.read_text())
    assert summary["septum_source"] == "caller" and len(summary["sites"]) == 17
    assert "node_set:AHA-1" in summary["added"]
    assert json.loads(capsys.readouterr().out)["kind"] == "ventricle"
    for name in ("fibres.png", "sites.png"):
        data = (pictures / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    # the septum point turns the rotational coordinate: 0 towards +x
    p = mesh.points_mm
    side = (np.abs(np.arctan2(p[:, 1], p[:, 0])) < 0.2) & (np.hypot(p[:, 0], p[:, 1]) > 3.0)
    assert np.all(np.abs(mesh.point_data["rotational"][side]) < 0.25)


def test_a_mesh_without_a_base_is_one_clear_error(tmp_path, capsys):
    source, out = tmp_path / "box.vtu", tmp_path / "out.vtu"
    write_mesh(box_mesh((20.0, 10.0, 10.0), 2.0), source)
    assert main(["prepare", "--mesh", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "planar open base" in err and "mm²" in err
    assert not out.exists()


def test_a_bad_config_key_is_refused(tmp_path, capsys):
    _, source = bare_lv(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("config_version: 1\nanatomy:\n  alpha_endo: 60\n")
    out = tmp_path / "out.vtu"
    assert main(["prepare", "--mesh", str(source), "--out", str(out), "--config", str(config)]) == 2
    assert "anatomy.alpha_endo" in capsys.readouterr().err
    assert not out.exists()
