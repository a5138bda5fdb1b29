"""Make a mesh ready to simulate: add the surfaces, coordinates, fibres, AHA segments and
pacing sites it lacks, keep everything it has.

:func:`prepare` is what ``cardiotwin prepare --mesh M --out M2`` runs on a mesh from
elsewhere (openCARP, CemrgApp, gmsh: no tags, no surfaces) and what ``cardiotwin mesh`` runs
after meshing. Nothing present is overwritten: a surface, point field, node set or fibre
field already on the mesh is kept as it is (and the report says so), so a hand-made ``base``
or a measured fibre field survives. What is added (module that computes it):

- ventricles: surfaces ``endo``, ``epi``, ``base`` (+ ``rv-endo``, ``rv-septum``)
  (:mod:`.coordinates`; an ``endo`` that holds both cavities, as a mesher may name them, is
  split into the LV ``endo`` and the RV surfaces, and a supplied surface wound inward is
  re-wound so its normals point out of the tissue, counted in the report: the two changes to
  what was there); point fields ``transmural``, ``apicobasal``, ``rotational``
  (:mod:`.coordinates`), ``aha_segment`` (:mod:`.sites`); per-element ``fibres`` and
  ``sheets`` (:mod:`.fibres`); node sets ``AHA-1`` .. ``AHA-17`` (+ ``RV-1``, ``RV-2``)
  (:mod:`.sites`).
- atria: surfaces ``endo``, ``epi``, ``valve``, ``vein-1`` …; point fields ``transmural``,
  ``valve_vein``; fibres and sheets; node sets ``LA-01`` .. ``LA-NN``.

``config`` is the ``anatomy`` section of the cardiotwin configuration
(:class:`cardiotwin.pipeline.config.AnatomyConfig`; any object with the same attributes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from cardiotwin.meshing.coordinates import (
    BIV_SURFACES,
    VENTRICLE_SURFACES,
    atrial_coordinates,
    atrial_openings,
    identify_surfaces,
    is_biventricular,
    split_endocardium,
    ventricular_coordinates,
    wind_ventricular_surfaces_outward,
)
from cardiotwin.meshing.fibres import (
    FibreAngles,
    atrial_fibres,
    scar_border_fibres,
    ventricular_fibres,
)
from cardiotwin.meshing.mesh import Mesh, check_mesh
from cardiotwin.meshing.sites import aha_segments, atrial_sites, ventricular_sites
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR

log = logging.getLogger(__name__)

VENTRICULAR_FIELDS = ("transmural", "apicobasal", "rotational", "aha_segment")
ATRIAL_FIELDS = ("transmural", "valve_vein")


class AnatomySettings(Protocol):
    """What :func:`prepare` reads from the configuration (``AnatomyConfig``)."""

    alpha_endo_deg: float
    alpha_epi_deg: float
    beta_endo_deg: float
    beta_epi_deg: float
    border_zone_fibres: str
    border_zone_fibre_reach_mm: float
    site_placement: str
    site_radius_mm: float
    atrial_sites: int
    septum_point_mm: tuple[float, float, float] | None
    feature_angle_deg: float


@dataclass
class PrepareReport:
    """What :func:`prepare` added, kept and decided; ``as_dict`` for a JSON report."""

    kind: str
    added: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sites: list[dict] = field(default_factory=list)
    moved_sites: list[str] = field(default_factory=list)
    surfaces: dict[str, int] = field(default_factory=dict)
    rewound_triangles: dict[str, int] = field(default_factory=dict)
    septum_source: str = ""
    degenerate_fibre_elements: int = 0

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "added": self.added,
            "kept": self.kept,
            "notes": self.notes,
            "surfaces_triangles": self.surfaces,
            "rewound_triangles": self.rewound_triangles,
            "septum_source": self.septum_source,
            "degenerate_fibre_elements": self.degenerate_fibre_elements,
            "moved_sites": self.moved_sites,
            "sites": self.sites,
        }


def _fibre_angles(config: AnatomySettings) -> FibreAngles:
    return FibreAngles(
        config.alpha_endo_deg, config.alpha_epi_deg, config.beta_endo_deg, config.beta_epi_deg
    )


def _has_surface(mesh: Mesh, name: str) -> bool:
    return name in mesh.surfaces and len(mesh.surfaces[name]) > 0


def _wind_outward(mesh: Mesh, report: PrepareReport) -> Mesh:
    """Supplied ventricular surfaces re-wound so their normals point out of the tissue (the
    coordinates tell LV from RV and find the long axis by them), each re-winding reported."""
    mesh, rewound = wind_ventricular_surfaces_outward(mesh)
    report.rewound_triangles = {name: count for name, count in rewound.items() if count}
    for name, count in report.rewound_triangles.items():
        report.notes.append(
            f"surface {name!r}: {count} of {len(mesh.surfaces[name])} triangles were wound "
            "inward (normal into the tissue) and are re-wound outward"
        )
    return mesh


def _add_surfaces(mesh: Mesh, kind: str, config: AnatomySettings, report: PrepareReport) -> Mesh:
    given = set(mesh.surfaces)
    if kind == "ventricle":
        mesh = _wind_outward(mesh, report)
        complete = all(_has_surface(mesh, n) for n in VENTRICLE_SURFACES)
    else:
        openings = [n for n in mesh.surfaces if n not in ("endo", "epi") and len(mesh.surfaces[n])]
        complete = _has_surface(mesh, "endo") and _has_surface(mesh, "epi") and len(openings) >= 2
    if complete:
        split = split_endocardium(mesh) if kind == "ventricle" else None
        if split is not None:  # one 'endo' for both cavities: the RV gets its own surfaces
            surfaces, note = split
            mesh.surfaces = {**mesh.surfaces, **surfaces}
            report.notes.append(f"'endo' held the LV and RV cavities, now split; {note}")
            report.added.extend(["surface:rv-septum", "surface:rv-endo"])
        report.kept.extend(f"surface:{n}" for n in sorted(mesh.surfaces) if n in given)
        return mesh
    found, notes = identify_surfaces(mesh, kind, feature_angle_deg=config.feature_angle_deg)
    report.notes.extend(notes)
    surfaces = dict(mesh.surfaces)
    for name, triangles in found.items():
        if _has_surface(mesh, name):
            report.kept.append(f"surface:{name}")
            report.notes.append(f"surface {name!r} was on the mesh and is kept as it was")
        else:
            surfaces[name] = triangles
            report.added.append(f"surface:{name}")
    mesh.surfaces = surfaces
    return mesh


def _set_point_field(mesh: Mesh, name: str, values: np.ndarray, report: PrepareReport) -> None:
    if name in mesh.point_data:
        report.kept.append(f"point_data:{name}")
    else:
        mesh.point_data[name] = values
        report.added.append(f"point_data:{name}")


def _set_fibres(mesh: Mesh, fibres: np.ndarray, sheets: np.ndarray, report: PrepareReport):
    if mesh.fibres is None:
        mesh.fibres, mesh.sheets = fibres, sheets
        report.added.extend(["fibres", "sheets"])
        return
    report.kept.append("fibres")
    if mesh.sheets is None:  # rule-based sheets made orthogonal to the kept fibres
        f = mesh.fibres / np.linalg.norm(mesh.fibres, axis=1, keepdims=True)
        s = sheets - np.einsum("ij,ij->i", sheets, f)[:, None] * f
        norm = np.linalg.norm(s, axis=1, keepdims=True)
        fallback = np.cross(f, np.where(np.abs(f[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
        s = np.where(norm > 1e-6, s / np.maximum(norm, 1e-300), fallback)
        mesh.sheets = s / np.linalg.norm(s, axis=1, keepdims=True)
        report.added.append("sheets")
    else:
        report.kept.append("sheets")


def _add_sites(mesh: Mesh, site_report, report: PrepareReport) -> None:
    for site in site_report.sites:
        if site.name in mesh.node_sets:
            report.kept.append(f"node_set:{site.name}")
            continue
        mesh.node_sets[site.name] = site.nodes
        report.added.append(f"node_set:{site.name}")
        report.sites.append(site.as_dict())
    report.moved_sites = list(site_report.moved)


def _prepare_ventricle(mesh: Mesh, config: AnatomySettings, report: PrepareReport) -> Mesh:
    biv = is_biventricular(mesh)
    site_names = [f"AHA-{k}" for k in range(1, 18)] + (["RV-1", "RV-2"] if biv else [])
    needs = (
        any(n not in mesh.point_data for n in VENTRICULAR_FIELDS)
        or mesh.fibres is None
        or mesh.sheets is None
        or any(n not in mesh.node_sets for n in site_names)
    )
    if not needs:
        report.kept.extend(VENTRICULAR_FIELDS)
        return mesh
    fields = ventricular_coordinates(mesh, septum_point_mm=config.septum_point_mm)
    report.notes.extend(fields.notes)
    report.septum_source = fields.frame.septum_source
    _set_point_field(mesh, "transmural", fields.transmural, report)
    _set_point_field(mesh, "apicobasal", fields.apicobasal, report)
    _set_point_field(mesh, "rotational", fields.rotational, report)
    aha = aha_segments(
        fields.frame.heights_mm(mesh.points_mm),
        np.asarray(mesh.point_data["rotational"], dtype=np.float64),
        fields.lv,
        fields.frame,
    )
    _set_point_field(mesh, "aha_segment", aha, report)
    if mesh.fibres is None or mesh.sheets is None:
        result = ventricular_fibres(mesh, _fibre_angles(config), fields)
        report.degenerate_fibre_elements = result.degenerate_elements
        fibres = result.fibres
        if getattr(config, "border_zone_fibres", "scar_border") == "scar_border":
            fibres, turned = scar_border_fibres(
                mesh,
                fibres,
                result.sheets,
                border_tags=(BORDER_ZONE,),
                scar_tags=(DENSE_SCAR,),
                reach_mm=getattr(config, "border_zone_fibre_reach_mm", 10.0),
            )
            if turned:
                report.notes.append(
                    f"{turned} border-zone elements: fibres along the dense scar's border "
                    "(anatomy.border_zone_fibres)"
                )
        _set_fibres(mesh, fibres, result.sheets, report)
    else:
        report.kept.extend(["fibres", "sheets"])
    if any(n not in mesh.node_sets for n in site_names):
        sites = ventricular_sites(
            mesh, placement=config.site_placement, radius_mm=config.site_radius_mm
        )
        _add_sites(mesh, sites, report)
    return mesh


def _prepare_atrium(mesh: Mesh, config: AnatomySettings, report: PrepareReport) -> Mesh:
    has_sites = any(n.startswith("LA-") for n in mesh.node_sets)
    if all(n in mesh.point_data for n in ATRIAL_FIELDS) and mesh.fibres is not None and has_sites:
        report.kept.extend(ATRIAL_FIELDS)
        return mesh
    fields = atrial_coordinates(mesh)
    report.notes.append(f"valve: {fields.valve!r}; veins: {', '.join(fields.veins)}")
    _set_point_field(mesh, "transmural", fields.transmural, report)
    _set_point_field(mesh, "valve_vein", fields.valve_vein, report)
    if mesh.fibres is None or mesh.sheets is None:
        result = atrial_fibres(mesh, fields)
        report.degenerate_fibre_elements = result.degenerate_elements
        _set_fibres(mesh, result.fibres, result.sheets, report)
    else:
        report.kept.extend(["fibres", "sheets"])
    if has_sites:
        report.kept.append("node_set:LA-*")
    else:
        sites = atrial_sites(
            mesh,
            config.atrial_sites,
            placement=config.site_placement,
            radius_mm=config.site_radius_mm,
        )
        _add_sites(mesh, sites, report)
    return mesh


def prepare(mesh: Mesh, kind: str, config: AnatomySettings) -> tuple[Mesh, PrepareReport]:
    """A copy of ``mesh`` with whatever it lacked added (module docstring), and the report.

    ``kind``: ``"ventricle"`` (LV or biventricular) or ``"atrium"``. Raises
    :class:`~cardiotwin.meshing.mesh.MeshError` (surfaces that cannot be identified say what
    was found) for a mesh that cannot be prepared.
    """
    if kind not in ("ventricle", "atrium"):
        raise ValueError(f"kind must be 'ventricle' or 'atrium', got {kind!r}")
    check_mesh(mesh)
    mesh = _copy(mesh)
    report = PrepareReport(kind=kind)
    mesh = _add_surfaces(mesh, kind, config, report)
    if kind == "ventricle":
        mesh = _prepare_ventricle(mesh, config, report)
        if is_biventricular(mesh):
            report.notes.append("biventricular: RV surfaces " + ", ".join(BIV_SURFACES))
    else:
        atrial_openings(mesh)  # refuses a mesh without a valve and a vein before any solve
        mesh = _prepare_atrium(mesh, config, report)
    report.surfaces = {name: int(len(t)) for name, t in sorted(mesh.surfaces.items())}
    for note in report.notes:
        log.info("prepare: %s", note)
    return _copy(mesh), report  # the copy validates what was added


def _copy(mesh: Mesh) -> Mesh:
    return Mesh(
        points_mm=mesh.points_mm,
        tets=mesh.tets,
        region=mesh.region,
        fibres=mesh.fibres,
        sheets=mesh.sheets,
        surfaces=dict(mesh.surfaces),
        node_sets=dict(mesh.node_sets),
        point_data=dict(mesh.point_data),
        affine=mesh.affine,
    )
