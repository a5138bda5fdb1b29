"""Arrhythmia risk from an induction study: the ``induction.json`` a cardiologist reads.

The JSON's schema is the pydantic model :class:`InductionReport` below (every field with its
unit); ``pipeline/schemas/induction.schema.json`` is generated from it (a test keeps them
equal). What it says:

- ``inducible``: whether any site induced sustained re-entry (VARP-style). When no site
  induced but some gave no answer (site in scar, S1 not captured, a trial that blew up),
  ``complete`` is false and ``note`` says so: never a silent "non-inducible".
- ``unique_vts``: one entry per distinct circuit (ventricles: VTs; atria: drivers) with cycle
  length, exit site and slowest segment (scanner mm: the mesh's frame), stability, phase
  singularities, the sites and coupling intervals that induced it, and the VTU file with
  its activation maps;
- ``sites``: the per-site table (position, AHA segment, status, S1 capture, coupling
  intervals of each extrastimulus stage, induced, VT id, every trial run);
- ``fraction_inducing_sites`` (of the sites that were paced) and ``per_aha_segment`` (for a
  bullseye plot);
- provenance: ``mesh_fingerprint`` (:meth:`cardiotwin.meshing.mesh.Mesh.fingerprint`, so the
  ablation stage can refuse an induction file from another mesh), ``config_hash``,
  ``backend``, ``wall_s``, the tissue set-up and batch statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cardiotwin import __version__
from cardiotwin.pipeline.config import STAGE_SECTIONS, config_hash
from cardiotwin.pipeline.induction.anatomy import circled

REPORT_FORMAT = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "induction.schema.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhaseSingularity(_Model):
    position_mm: list[float] = Field(description="scanner mm")
    chirality: Literal[-1, 1] = Field(description="+1 counter-clockwise seen from outside")
    samples: int = Field(description="of the 8 samples over the last cycle that showed it")


class VTTrial(_Model):
    site: str
    coupling_intervals_ms: list[float]


class UniqueVT(_Model):
    id: int
    cycle_length_ms: float
    exit_site_mm: list[float] | None = Field(description="earliest healthy activation, mm")
    exit_adjacent_to_border_zone: bool | None
    exit_to_border_zone_mm: float | None
    slowest_segment_mm: list[float] | None = Field(description="slowest conduction, mm")
    slowest_cv_m_per_s: float | None
    stable: bool | None = Field(description="monomorphic: the last cycles agree")
    reentrant_beats: int = Field(description="re-entrant beats observed after the last stimulus")
    phase_singularities: list[PhaseSingularity]
    sites: list[str]
    trials: list[VTTrial]
    activation_map: str = Field(description="VTU file (in the output folder) of this VT")
    opening_winding: dict[str, float | None] = Field(
        default_factory=dict,
        description="atria: phase winding (turns) of one cycle round each opening (veins, "
        "valves) on a loop induction.detection.opening_loop_mm from it; ±1: the driver "
        "circles it, 0: it does not, None: no loop activated (pipeline/induction/anatomy.py)",
    )
    macro_reentry_around: list[str] = Field(
        default_factory=list,
        description="atria: the openings the driver circles (winding ±1): macro-re-entry, "
        "reported apart from drivers in the wall (empty: none)",
    )


class StageResult(_Model):
    stimulus: str = Field(description="S2, S3, S4")
    after_ms: list[float] = Field(description="the earlier extrastimuli's coupling intervals")
    tested_ms: list[float]
    captured_ms: list[float]
    shortest_capturing_ms: float | None


class TrialRecord(_Model):
    coupling_intervals_ms: list[float]
    captured: list[bool | None] = Field(description="per stimulus of the trial")
    outcome: Literal["quiescent", "observed", "missed", "diverged"] = Field(
        description="came to rest, observed to its end, ended when its last stimulus clearly "
        "did not capture, or blew up"
    )
    finished_ms: float
    induced: bool
    reason: str
    read_by_protocol: bool = Field(
        True,
        description="false for a trial run side by side that the protocol, read in a "
        "cardiologist's order, never needed (speculative): it decided nothing",
    )


class SiteResult(_Model):
    name: str
    position_mm: list[float] | None
    aha_segment: int | None
    status: str = Field(description="'ok' or why the site gave no answer")
    captured: bool | None = Field(description="every S1 (atria: the first stimulus) captured")
    stimulus_strength_ua_per_uf: float | None = Field(
        description="stimulus used (raised from the configured one when S1 did not capture)"
    )
    induced: bool
    coupling_intervals_ms: list[float] = Field(
        description="inducing intervals, else the shortest capturing one of each stage"
    )
    stages: list[StageResult]
    trials: list[TrialRecord]
    vt_id: int | None


class SegmentSummary(_Model):
    segment: int
    sites: list[str]
    induced_sites: list[str]
    vt_ids: list[int]


class InductionReport(_Model):
    """The content of ``induction.json``."""

    format: Literal[1] = REPORT_FORMAT
    cardiotwin_version: str
    chamber: Literal["ventricle", "atrium"]
    protocol: Literal["pes", "rapid_pacing"]
    inducible: bool
    complete: bool = Field(description="every requested site gave an answer")
    note: str
    unique_vts: list[UniqueVT]
    sites: list[SiteResult]
    sites_paced: int
    sites_inducing: int
    fraction_inducing_sites: float | None
    per_aha_segment: list[SegmentSummary]
    mesh_fingerprint: str
    config_hash: str
    backend: str
    precision: Literal["fp64", "mixed"] | None = Field(
        None,
        description="storage precision the simulations ran in (simulation.precision or "
        "--precision); absent from files written before it was recorded",
    )
    wall_s: float
    tissue: dict
    batch: dict
    units: dict
    provenance: dict | None = Field(
        None,
        description="what made this file (pipeline/provenance.py): cardiotwin version and "
        "commit, library versions, configuration hash, the mesh's content hash, the backend "
        "asked for and used (device, fallback reason), wall time",
    )


def _vector(values) -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in values]
    return None if any(not np.isfinite(v) for v in values) else [round(v, 3) for v in values]


def vt_file_name(vt_id: int) -> str:
    return f"vt-{vt_id}.vtu"


def build_report(result, mesh_fingerprint: str) -> InductionReport:
    """The report of an :class:`~cardiotwin.pipeline.induction.study.InductionResult`."""
    sites = []
    for o in result.sites:
        sites.append(
            SiteResult(
                name=o.site.name,
                position_mm=_vector(o.site.position_mm),
                aha_segment=o.site.segment or None,
                status=o.status,
                captured=o.s1_captured,
                stimulus_strength_ua_per_uf=o.stimulus_strength_ua_per_uf,
                induced=o.induced,
                coupling_intervals_ms=list(o.coupling_intervals_ms),
                stages=[StageResult(**s) for s in o.stages],
                trials=[TrialRecord(**t) for t in o.trials],
                vt_id=o.vt_id,
            )
        )
    vts = []
    for vt in result.vts:
        a = vt.analysis
        vts.append(
            UniqueVT(
                id=vt.id,
                cycle_length_ms=round(float(a.cycle_length_ms), 3),
                exit_site_mm=a.exit_mm,
                exit_adjacent_to_border_zone=a.exit_adjacent_to_border_zone,
                exit_to_border_zone_mm=a.exit_to_border_zone_mm,
                slowest_segment_mm=a.slowest_mm,
                slowest_cv_m_per_s=a.slowest_cv_m_per_s,
                stable=a.stable,
                reentrant_beats=a.reentrant_beats,
                phase_singularities=[PhaseSingularity(**p) for p in a.phase_singularities],
                sites=sorted({s for s, _ in vt.trials}),
                trials=[VTTrial(site=s, coupling_intervals_ms=list(c)) for s, c in vt.trials],
                activation_map=vt_file_name(vt.id),
                opening_winding=dict(vt.openings),
                macro_reentry_around=circled(vt.openings),
            )
        )
    paced = [s for s in sites if s.status == "ok"]
    inducing = [s for s in sites if s.induced]
    missing = [s for s in sites if s.status != "ok"]
    inducible = bool(inducing)
    if inducible:
        note = f"inducible from {len(inducing)} of {len(paced)} paced sites"
    elif missing:
        note = (
            f"not induced from the {len(paced)} sites paced, but {len(missing)} site(s) gave no "
            "answer (" + "; ".join(f"{s.name}: {s.status}" for s in missing) + ")"
        )
    else:
        note = f"not inducible from any of the {len(paced)} sites"
    segments: dict[int, SegmentSummary] = {}
    for s in sites:
        if s.aha_segment:
            entry = segments.setdefault(
                s.aha_segment,
                SegmentSummary(segment=s.aha_segment, sites=[], induced_sites=[], vt_ids=[]),
            )
            entry.sites.append(s.name)
            if s.induced:
                entry.induced_sites.append(s.name)
            if s.vt_id is not None and s.vt_id not in entry.vt_ids:
                entry.vt_ids.append(s.vt_id)
    tissue = result.tissue.record
    return InductionReport(
        cardiotwin_version=__version__,
        chamber=result.chamber,
        protocol=result.protocol,
        inducible=inducible,
        complete=not missing,
        note=note,
        unique_vts=vts,
        sites=sites,
        sites_paced=len(paced),
        sites_inducing=len(inducing),
        fraction_inducing_sites=round(len(inducing) / len(paced), 4) if paced else None,
        per_aha_segment=[segments[k] for k in sorted(segments)],
        mesh_fingerprint=mesh_fingerprint,
        config_hash=config_hash(result.config, sections=STAGE_SECTIONS["induce"]),
        backend=result.backend,
        precision=result.config.simulation.precision,
        wall_s=round(result.wall_s, 3),
        tissue=json.loads(json.dumps(tissue, default=_plain)),
        batch=result.stats,
        units={
            "time": "ms",
            "length": "mm",
            "velocity": "m/s",
            "positions": "mesh frame (scanner RAS+ mm for meshes from images)",
        },
    )


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def report_schema() -> dict:
    """The JSON schema of ``induction.json``."""
    return InductionReport.model_json_schema()


def vt_mesh(mesh, result, vt):
    """A copy of ``mesh`` with the VT's activation maps as point data: ``activation_ms``
    (one cycle, from its start), ``phase_rad``, ``beat_01_ms`` .. ``beat_K_ms`` (the last K
    activation times kept per node, oldest first, in the trial's time); NaN where a node has
    none or no tissue."""
    from cardiotwin.meshing.mesh import Mesh

    a = vt.analysis

    def field(values):
        out = np.full((mesh.n_points, *np.shape(values)[1:]), np.nan)
        out[result.tissue_nodes] = values
        return out

    point_data = dict(mesh.point_data)
    point_data["activation_ms"] = field(a.activation_ms)
    point_data["phase_rad"] = field(2 * np.pi * a.activation_ms / a.cycle_length_ms)
    # one scalar array per kept beat: VTK cannot read back the norm range of a vector array
    # holding NaN (no beat)
    for k in range(a.beats_ms.shape[1]):
        point_data[f"beat_{k + 1:02d}_ms"] = field(a.beats_ms[:, k])
    return Mesh(
        points_mm=mesh.points_mm,
        tets=mesh.tets,
        region=mesh.region,
        fibres=mesh.fibres,
        sheets=mesh.sheets,
        surfaces=mesh.surfaces,
        node_sets=mesh.node_sets,
        point_data=point_data,
        affine=mesh.affine,
    )
