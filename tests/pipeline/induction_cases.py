"""Small meshes and a fast tissue for the induction tests (a helper module, not tests).

**The ring** (Mines' classic set-up for anatomical re-entry): a 3 mm wide annulus of
conducting tissue (radius 16.5–19.5 mm) around a non-conducting core, fibres along the ring,
one element layer thick, 1 mm elements; outside it everything is tagged dense scar. A 60°
arc (−30°..+30°) is border zone with longer action potentials. A premature stimulus next to
one end of the arc blocks in the still-refractory border zone, runs the long way round and
re-enters the arc from its far end: a circuit of 2π·18 ≈ 113 mm, whose conduction time
(~200 ms at the calibrated 0.6 m/s) exceeds the refractory period (~100 ms), so it lasts.
Without the arc the ring is uniform and a premature wave splits, runs both ways and
annihilates: nothing to induce. Sites: ``AHA-1`` at +45° (next to the arc's +30° end),
``AHA-2`` at −45° (the other end), ``AHA-3`` at 180° (opposite).

**The fast tissue**: Mitchell–Schaeffer with τ_open and τ_close × 0.3 (APD ~90 ms, so the
circuit fits a small test mesh); border zone τ_close × 0.45 (longer APD, the unidirectional
block), τ_in × 1.5 (weaker upstroke), transverse σ × 0.1. These time constants are a
scaled-down test model for the protocol and detection machinery, not physiology: the
physiological checks run on the phantoms with TP06 (benchmarks/).
"""

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR
from cardiotwin.pipeline.config import Config

R_IN_MM, R_OUT_MM = 16.5, 19.5
R_MID_MM = 0.5 * (R_IN_MM + R_OUT_MM)
BORDER_ZONE_DEG = (-30.0, 30.0)
SITES_DEG = {"AHA-1": 45.0, "AHA-2": -45.0, "AHA-3": 180.0}


def ring(with_border_zone: bool = True, dx_mm: float = 1.0):
    size = 2 * R_OUT_MM + 2 * dx_mm
    mesh = box_mesh((size, size, dx_mm), dx_mm, origin_mm=(-size / 2, -size / 2, 0.0))
    c = mesh.element_centres_mm()
    r = np.hypot(c[:, 0], c[:, 1])
    angle = np.degrees(np.arctan2(c[:, 1], c[:, 0]))
    mesh.region[(r < R_IN_MM) | (r > R_OUT_MM)] = DENSE_SCAR
    if with_border_zone:
        arc = (angle > BORDER_ZONE_DEG[0]) & (angle < BORDER_ZONE_DEG[1])
        mesh.region[(r >= R_IN_MM) & (r <= R_OUT_MM) & arc] = BORDER_ZONE
    tangent = np.stack([-c[:, 1], c[:, 0], np.zeros(len(c))], axis=1)
    mesh.fibres[:] = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    for name, deg in SITES_DEG.items():
        centre = R_MID_MM * np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])
        distance = np.linalg.norm(mesh.points_mm[:, :2] - centre, axis=1)
        nodes = np.nonzero(distance <= 1.5)[0]
        mesh.node_sets[name] = nodes[np.argsort(distance[nodes], kind="stable")]
    return mesh


def config(cache_dir, **induction) -> Config:
    """The fast tissue and a short PES (3 S1 at 200 ms, S2 and S3 from 130 ms)."""
    data = {
        "simulation": {"dt_ms": 0.1, "backend": "cpu"},
        "tissue": {
            "cache_dir": str(cache_dir),
            "ventricle": {
                "model": "mitchell-schaeffer",
                "regions": {
                    "healthy": {
                        "tag": 1,
                        "cv_m_per_s": [0.6, 0.22],
                        "parameter_scale": {"tau_close": 0.3, "tau_open": 0.3},
                    },
                    "border_zone": {
                        "tag": 2,
                        "sigma_scale": [1.0, 0.1],
                        "relative_to": "healthy",
                        "parameter_scale": {"tau_close": 0.45, "tau_open": 0.3, "tau_in": 1.5},
                    },
                    "dense_scar": {"tag": 3, "conducting": False},
                },
            },
        },
        "induction": {
            "pes": {
                "s1_count": 3,
                "s1_cycle_length_ms": 200,
                "extrastimuli": 2,
                "first_coupling_ms": 130,
                "min_coupling_ms": 90,
            },
            "detection": {"sustained_after_ms": 500, "capture_probe_mm": [1.0, 3.0]},
            "batch": {"speculative_intervals": 3},
        },
    }
    for key, value in induction.items():
        data["induction"][key] = {**data["induction"].get(key, {}), **value}
    return Config.model_validate(data)


def angle_deg(point_mm) -> float:
    return float(np.degrees(np.arctan2(point_mm[1], point_mm[0])))


def ring_runner(tmp_path, max_members, compact_fraction=0.5):
    """A TrialRunner on the ring's fast tissue, sites AHA-1..3, batches as given."""
    from cardiotwin.pipeline.induction.runner import TrialRunner
    from cardiotwin.pipeline.induction.sites import pacing_sites
    from cardiotwin.pipeline.tissue import build_tissue

    mesh = ring()
    settings = config(
        tmp_path, batch={"max_members": max_members, "compact_fraction": compact_fraction}
    )
    tissue = build_tissue(
        mesh, settings.tissue.ventricle, settings.tissue, settings.simulation, bcl_ms=200.0
    )
    sites = pacing_sites(mesh, "ventricle", ["AHA-1", "AHA-2", "AHA-3"])
    return TrialRunner(mesh, tissue, settings.simulation, settings.induction, sites)
