"""Pacing sites: the mesh's named node sets, checked, with a capture probe around each.

The meshing stage names one node set per site (``AHA-1`` .. ``AHA-17`` on the LV, ``RV-1``,
``RV-2`` on a biventricular mesh, ``LA-01`` .. ``LA-NN`` on an atrium), each the nodes within
a small radius of the site, **centre node first**: the site's position is that node's
coordinates (scanner mm when the mesh came from an image). Here a site is checked against
the tissue (a site with no conducting node is reported, not paced) and gets its capture
probe: the conducting nodes in a shell ``capture_probe_mm`` beyond the site's radius; a
stimulus captured when the wave reached the probe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.mesh import Mesh

#: node-set names of pacing sites, by chamber
SITE_PATTERNS = {
    "ventricle": re.compile(r"^(AHA|RV)-(\d+)$"),
    "atrium": re.compile(r"^(LA|RA)-(\d+)$"),
}
AHA_FIELD = "aha_segment"


@dataclass(frozen=True, eq=False)
class PacingSite:
    """A named pacing site: mesh nodes (centre first), position (mm), AHA segment (0: none),
    and, once checked, its conducting nodes and capture probe (tissue-node indices)."""

    name: str
    mesh_nodes: np.ndarray
    position_mm: np.ndarray
    segment: int
    radius_mm: float
    problem: str = ""  # why the site cannot be paced ("" when it can)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "position_mm": [round(float(v), 3) for v in self.position_mm],
            "aha_segment": int(self.segment) if self.segment else None,
        }


def chamber_of(mesh: Mesh) -> str:
    """``atrium`` when the mesh names atrial sites, else ``ventricle``."""
    if any(SITE_PATTERNS["atrium"].match(n) for n in mesh.node_sets):
        return "atrium"
    return "ventricle"


def _order(name: str) -> tuple:
    prefix, number = re.match(r"^([A-Za-z]+)-(\d+)$", name).groups()
    return ({"AHA": 0, "RV": 1, "LA": 2, "RA": 3}.get(prefix, 9), int(number))


def site_names(mesh: Mesh, chamber: str) -> list[str]:
    """The mesh's pacing-site node sets for ``chamber``, in protocol order (AHA 1..17, RV)."""
    pattern = SITE_PATTERNS[chamber]
    return sorted((n for n in mesh.node_sets if pattern.match(n)), key=_order)


def pacing_sites(mesh: Mesh, chamber: str, names: list[str] | None = None) -> list[PacingSite]:
    """The pacing sites of ``mesh`` (all of the chamber's, or ``names``). An unknown name is a
    ``KeyError`` whose message lists the available ones."""
    available = site_names(mesh, chamber)
    if names is None:
        names = available
    unknown = [n for n in names if n not in mesh.node_sets]
    if unknown:
        raise KeyError(
            f"pacing site(s) {', '.join(unknown)} not in the mesh; its {chamber} sites are: "
            f"{', '.join(available) or 'none (the meshing stage names them AHA-1.., LA-01..)'}"
        )
    sites = []
    for name in names:
        nodes = np.asarray(mesh.node_sets[name], dtype=np.int64)
        if nodes.size == 0:
            sites.append(PacingSite(name, nodes, np.full(3, np.nan), 0, 0.0, "empty node set"))
            continue
        centre = mesh.points_mm[nodes[0]]
        radius = float(np.linalg.norm(mesh.points_mm[nodes] - centre, axis=1).max())
        segment = 0
        if AHA_FIELD in mesh.point_data:
            segment = int(np.asarray(mesh.point_data[AHA_FIELD]).reshape(-1)[nodes[0]])
        match = re.match(r"^AHA-(\d+)$", name)
        if not segment and match:
            segment = int(match.group(1))
        sites.append(PacingSite(name, nodes, centre.copy(), segment, radius))
    return sites


def checked(site: PacingSite, tissue_node_of_mesh: np.ndarray) -> PacingSite:
    """``site`` with ``problem`` set when none of its nodes carries conducting tissue."""
    if site.problem or site.mesh_nodes.size == 0:
        return site
    if not np.any(tissue_node_of_mesh[site.mesh_nodes] >= 0):
        from dataclasses import replace

        return replace(
            site,
            problem="inside non-conducting tissue (dense scar or lesion): none of its "
            f"{site.mesh_nodes.size} nodes belongs to a conducting element",
        )
    return site


def probe_nodes(
    site: PacingSite, tissue_points_mm: np.ndarray, probe_mm: tuple[float, float]
) -> np.ndarray:
    """Tissue nodes at distance radius + probe_mm[0] .. radius + probe_mm[1] from the site's
    centre; the shell is widened (outer radius doubled, up to 4 times) until it holds a node."""
    distance = np.linalg.norm(tissue_points_mm - site.position_mm, axis=1)
    inner = site.radius_mm + probe_mm[0]
    outer = site.radius_mm + probe_mm[1]
    for _ in range(4):
        shell = np.nonzero((distance >= inner) & (distance <= outer))[0]
        if shell.size:
            return shell
        outer = inner + 2.0 * (outer - inner)
    beyond = np.nonzero(distance >= inner)[0]
    return beyond[np.argmin(distance[beyond])][None] if beyond.size else beyond  # the nearest
