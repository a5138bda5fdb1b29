"""``results.json``: one case's answers in a documented, machine-readable form.

The schema is this pydantic model (``CaseResults.model_json_schema()``; the generated JSON
schema is checked in as ``pipeline/schemas/results.schema.json``, kept equal by a test).
Lengths in mm, volumes in ml, times in ms, positions in the scanner RAS+ frame of the input
image. A stage that did not run is ``null``. ``provenance`` maps each stage to its provenance block
(:func:`cardiotwin.pipeline.provenance.provenance`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: bump when a field changes meaning or is removed
RESULTS_SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "results.schema.json"


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentationResult(_Result):
    method: str = Field(description="intensity method: nsd, fwhm, iir or iir-surface")
    wall_volume_ml: float
    healthy_volume_ml: float
    border_zone_volume_ml: float = Field(description="border zone (ventricle) or fibrosis")
    scar_volume_ml: float = Field(description="dense scar")
    border_zone_percent: float = Field(
        description="of the wall volume (iir-surface: of the wall's endocardial surface area)"
    )
    scar_percent: float = Field(
        description="of the wall volume (iir-surface: of the wall's endocardial surface area)"
    )
    fibrosis_percent: float | None = Field(
        None, description="atria: label 2 + 3, as border_zone_percent + scar_percent"
    )
    utah_stage: str | None = Field(None, description="atria: Utah / DECAAF stage I-IV")


class MeshResult(_Result):
    n_nodes: int
    n_elements: int
    volume_ml_by_tissue: dict[str, float] = Field(description="tissue name -> ml")
    mean_edge_mm: float | None = None
    min_dihedral_deg: float | None = None
    biventricular: bool | None = Field(None, description="the mesh has RV pacing sites")


class VTResult(_Result):
    id: int
    cycle_length_ms: float | None
    exit_site_mm: list[float] | None = Field(description="[x, y, z], scanner mm")
    sites: list[str] = Field(description="pacing sites that induced this VT")
    macro_reentry_around: list[str] | None = Field(
        None, description="atria: openings the driver circles (empty: in the wall; null: ventricle)"
    )


class SiteResult(_Result):
    name: str
    position_mm: list[float] | None = Field(description="site centre [x, y, z], scanner mm")
    captured: bool | None = Field(description="every S1 captured (null: not paced)")
    induced: bool
    coupling_intervals_ms: list[float] = Field(default_factory=list)
    aha_segment: int | None = None
    outcome: str = Field("not tested", description="induced, not induced, no capture or not tested")
    vt_id: int | None = Field(None, description="the unique VT this site induced")
    vt_cycle_length_ms: float | None = Field(None, description="that VT's cycle length, ms")
    note: str | None = Field(None, description="e.g. 'S1 did not capture'")


class InductionResult(_Result):
    inducible: bool
    complete: bool = Field(True, description="every requested site gave an answer")
    note: str | None = Field(None, description="the induction study's one-line conclusion")
    n_unique_vts: int
    unique_vts: list[VTResult]
    n_sites: int = Field(description="sites paced")
    fraction_inducing_sites: float | None = Field(
        description="risk score: fraction of the paced sites that induced sustained re-entry "
        "(null: no site could be paced)"
    )
    sites: list[SiteResult]


class LesionResult(_Result):
    center_mm: list[float]
    radius_mm: float
    volume_ml: float
    vt_ids: list[int] = Field(
        description="the VTs of its round's induction (ids restart with each re-induction)"
    )
    round: int | None = Field(None, description="the ablation round that placed it")


class AblationResult(_Result):
    status: str | None = Field(None, description="how the ablation loop ended")
    note: str | None = None
    input_inducible: bool | None = Field(None, description="inducible before ablation")
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


def results_schema() -> dict:
    """The JSON schema of ``results.json``."""
    return CaseResults.model_json_schema()
