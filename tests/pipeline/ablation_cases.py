"""A sheet with a figure-of-eight circuit for the ablation tests (a helper module, not tests).

**The sheet** (x 0–40 mm, y 0–30 mm, one 1 mm element layer; fibres along x): a band of
non-conducting scar across the middle (y 11–19 mm) broken by three gaps: a 5 mm border-zone
isthmus in the centre (x 17.5–22.5 mm) and two 4 mm healthy gaps at the sides (x 0–4 and
36–40 mm). Border-zone rims 1.5 mm wide line the scar blocks above and below (tissue for
random control lesions, away from the isthmus). A premature stimulus below the scar blocks
in the still-refractory isthmus (border zone: longer action potential, slow transverse
conduction), runs up both side gaps, over the top and down the isthmus, and re-enters: a
figure-of-eight whose two loops share the isthmus, the designed critical site. The cheapest
cut of the circuit is across the isthmus: 5 mm of border zone against 4 + 4 mm of healthy
side gaps (which would both have to be cut).

Sites: ``AHA-1`` below the isthmus (20, 3), ``AHA-2`` above it (20, 27), ``AHA-3`` at the
left edge (2, 5). The tissue is the induction tests' fast Mitchell–Schaeffer tissue
(``induction_cases.config``): a scaled-down test model, not physiology.
"""

import numpy as np

from cardiotwin.meshing.mesh import boundary_triangles, box_mesh
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR
from cardiotwin.pipeline.config import Config

SIZE_MM = (40.0, 30.0, 1.0)
BAND_Y_MM = (11.0, 19.0)
ISTHMUS_X_MM = (17.5, 22.5)
SIDE_GAP_MM = 4.0
RIM_MM = 1.5
SITES_MM = {"AHA-1": (2.0, 3.0), "AHA-2": (38.0, 27.0)}
#: the isthmus's centre line (x = 20 mm, y 11-19 mm at mid-thickness)
ISTHMUS_CENTRE_X_MM = 0.5 * sum(ISTHMUS_X_MM)
#: isotropic healthy conductivity, S/m (slow conduction, ~0.2 m/s: the circuit fits the sheet)
SIGMA_S_PER_M = 0.05


def sheet(dx_mm: float = 1.0, isthmus: bool = True):
    """The sheet (module docstring); ``isthmus=False`` closes the isthmus with scar."""
    mesh = box_mesh(SIZE_MM, dx_mm)
    c = mesh.element_centres_mm()
    x, y = c[:, 0], c[:, 1]
    blocks = ((x > SIDE_GAP_MM) & (x < ISTHMUS_X_MM[0])) | (
        (x > ISTHMUS_X_MM[1]) & (x < SIZE_MM[0] - SIDE_GAP_MM)
    )
    band = (y > BAND_Y_MM[0]) & (y < BAND_Y_MM[1])
    rims = ((y > BAND_Y_MM[0] - RIM_MM) & (y <= BAND_Y_MM[0])) | (
        (y >= BAND_Y_MM[1]) & (y < BAND_Y_MM[1] + RIM_MM)
    )
    channel = band & (x >= ISTHMUS_X_MM[0]) & (x <= ISTHMUS_X_MM[1])
    mesh.region[(rims & blocks) | channel] = BORDER_ZONE
    mesh.region[band & blocks] = DENSE_SCAR
    if not isthmus:
        mesh.region[channel] = DENSE_SCAR
    # wall faces (endo/epi: not anchors) and the sheet's edge (an opening: an anchor)
    triangles, _ = boundary_triangles(mesh.tets)
    z = mesh.points_mm[triangles][:, :, 2]
    bottom, top = np.all(z < 1e-9, axis=1), np.all(z > SIZE_MM[2] - 1e-9, axis=1)
    mesh.surfaces = {
        "endo": triangles[bottom],
        "epi": triangles[top],
        "edge": triangles[~(bottom | top)],
    }
    for name, centre in SITES_MM.items():
        distance = np.linalg.norm(mesh.points_mm[:, :2] - np.asarray(centre), axis=1)
        nodes = np.nonzero(distance <= 1.5)[0]
        mesh.node_sets[name] = nodes[np.argsort(distance[nodes], kind="stable")]
    return mesh


def config(cache_dir, **sections) -> Config:
    """The sheet's tissue and a short PES (2 S1 at 400 ms, S2 from 200 ms), with
    ``sections`` merged into the configuration."""
    data = {
        "simulation": {"dt_ms": 0.1, "backend": "cpu"},
        "tissue": {
            "cache_dir": str(cache_dir),
            "calibrate_cv": False,
            "ventricle": {
                "model": "mitchell-schaeffer",
                "regions": {
                    "healthy": {
                        "tag": 1,
                        "sigma_s_per_m": [SIGMA_S_PER_M, SIGMA_S_PER_M],
                        "parameter_scale": {"tau_close": 1 / 3, "tau_open": 0.5},
                    },
                    "border_zone": {
                        "tag": 2,
                        "sigma_scale": [0.4, 0.4],
                        "relative_to": "healthy",
                        "parameter_scale": {"tau_close": 2 / 3, "tau_open": 0.75},
                    },
                    "dense_scar": {"tag": 3, "conducting": False},
                    "lesion": {"tag": 4, "conducting": False},
                },
            },
        },
        "induction": {
            "pes": {
                "s1_count": 2,
                "s1_cycle_length_ms": 400,
                "extrastimuli": 1,
                "first_coupling_ms": 200,
                "min_coupling_ms": 120,
            },
            "detection": {"sustained_after_ms": 1000, "capture_probe_mm": [1.0, 3.0]},
            "batch": {"speculative_intervals": 3},
        },
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Config.model_validate(data)
