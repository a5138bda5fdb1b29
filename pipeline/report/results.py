"""``results.json``: one case's answers in a documented, machine-readable form.

The schema is this pydantic model (``CaseResults.model_json_schema()``; the generated JSON
schema is checked in as ``configs/schema/results.schema.json``). Lengths in mm, volumes in
ml, times in ms, positions in the scanner RAS+ frame of the input image. A stage that did not
run is ``null``. ``provenance`` maps each stage to its provenance block
(:func:`cardiotwin.pipeline.provenance.provenance`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: bump when a field changes meaning or is removed
RESULTS_SCHEMA_VERSION = 1


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentationResult(_Result):
    method: str = Field(description="intensity method: nsd, fwhm or iir")
    wall_volume_ml: float
    healthy_volume_ml: float
    border_zone_volume_ml: float = Field(description="border zone (ventricle) or fibrosis")
    scar_volume_ml: float = Field(description="dense scar")
    border_zone_percent: float = Field(description="of the wall volume")
    scar_percent: float = Field(description="of the wall volume")
    fibrosis_percent: float | None = Field(None, description="atria: label 2 + 3, % of wall")
    utah_stage: str | None = Field(None, description="atria: Utah / DECAAF stage I-IV")


class MeshResult(_Result):
    n_nodes: int
    n_elements: int
    volume_ml_by_tissue: dict[str, float] = Field(description="tissue name -> ml")
    mean_edge_mm: float | None = None
    min_dihedral_deg: float | None = None


class VTResult(_Result):
    id: int
    cycle_length_ms: float | None
    exit_site_mm: list[float] | None = Field(description="[x, y, z], scanner mm")
    sites: list[str] = Field(description="pacing sites that induced this VT")


class SiteResult(_Result):
    name: str
    position_mm: list[float]
    captured: bool
    induced: bool
    coupling_intervals_ms: list[float] = Field(default_factory=list)
    aha_segment: int | None = None
    note: str | None = Field(None, description="e.g. 'S1 did not capture'")


class InductionResult(_Result):
    inducible: bool
    n_unique_vts: int
    unique_vts: list[VTResult]
    n_sites: int
    fraction_inducing_sites: float
    sites: list[SiteResult]


class LesionResult(_Result):
    center_mm: list[float]
    radius_mm: float
    volume_ml: float
    vt_ids: list[int]


class AblationResult(_Result):
    lesions: list[LesionResult]
    total_volume_ml: float
    rounds: int
    non_inducible_after: bool


class CaseResults(_Result):
    """Everything the pipeline concluded for one case."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    case_id: str = Field(description="the cohort sheet's (pseudonymous) case id")
    kind: str = Field(description="ventricle or atrium")
    segmentation: SegmentationResult | None = None
    mesh: MeshResult | None = None
    induction: InductionResult | None = None
    ablation: AblationResult | None = None
    provenance: dict[str, dict] = Field(default_factory=dict, description="stage -> block")
