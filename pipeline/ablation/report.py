"""``ablation.json``: where the lesions go and what they achieved.

The schema is the pydantic model :class:`AblationReport` (``pipeline/schemas/
ablation.schema.json`` is generated from it; a test keeps them equal). ``lesions`` lists every
ablation point placed (centre and radius in scanner mm, volume in ml, the VTs it targets,
its round and the line it belongs to); ``lesion_sets`` the lines (end points, the anchors
they join, volume, and their pieces: points whose spheres overlap); ``per_round`` every
round's targets, lesions and the induction that followed; ``controls`` the random
border-zone controls. ``status`` and ``note`` say how the loop ended (:mod:`.loop`);
``non_inducible_after`` is true only when the last induction paced every site it could and
induced nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cardiotwin import __version__
from cardiotwin.pipeline.ablation.lesions import pieces_of_line
from cardiotwin.pipeline.ablation.loop import AblationResult

REPORT_FORMAT = 1
SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "ablation.schema.json"
STATUSES = (
    "not inducible before ablation",
    "non-inducible after ablation",
    "budget reached (rounds)",
    "budget reached (volume)",
    "target unreachable",
    "induction incomplete",
    "pvi done",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lesion(_Model):
    center_mm: list[float] = Field(description="centre of the ablation point, scanner mm")
    radius_mm: float
    volume_ml: float = Field(description="tissue made non-conducting nearest this point, ml")
    vt_ids: list[int] = Field(description="the VTs / drivers this point targets")
    round: int
    line: int = Field(description="index into lesion_sets")


class LinePiece(_Model):
    points: list[int] = Field(description="indices into lesions")
    ends_mm: list[list[float]] = Field(description="the piece's two ends, scanner mm")
    length_mm: float = Field(description="distance between the ends, mm")
    volume_ml: float


class LesionLine(_Model):
    line: int
    round: int
    kind: Literal["target", "pvi"]
    label: str
    vt_ids: list[int]
    line_ends_mm: list[list[float]] = Field(description="the line's two ends, scanner mm")
    anchors: list[str] = Field(description="non-conducting obstacles the line joins")
    volume_ml: float
    points: list[int] = Field(description="indices into lesions")
    pieces: list[LinePiece] = Field(
        default_factory=list,
        description="the line's points grouped where their spheres overlap; more than one "
        "piece where the cut crosses scar or has separate parts (a channel cut at both "
        "ends): the pieces are ablated, not the stretch between them (empty in files "
        "written before 2026-12-05)",
    )


class ControlSummary(_Model):
    draws: int
    placed: int
    non_inducible_after: int = Field(description="controls after which nothing was induced")
    volume_ml: float | None = Field(description="targeted volume each control matches, ml")


class AblationReport(_Model):
    """The content of ``ablation.json``."""

    format: Literal[1] = REPORT_FORMAT
    cardiotwin_version: str
    status: Literal[STATUSES]
    note: str
    input_inducible: bool
    non_inducible_after: bool
    rounds: int = Field(description="rounds whose lesions were placed")
    total_volume_ml: float
    lesion_radius_mm: float
    strategy: str
    lesions: list[Lesion]
    lesion_sets: list[LesionLine]
    per_round: list[dict] = Field(
        description="round 0: the input induction; then per round: targets (critical sites), "
        "lesion_sets, volume_ml, placed, total_volume_ml, induction (the re-induction: "
        "inducible, sites_inducing, sites_in_lesions (every node ablated), sites_isolated "
        "(cut off from the main body of the tissue, e.g. inside a vein's isolation ring), "
        "sites_inducing_not_isolated, unique_vts)"
    )
    controls: list[dict]
    controls_summary: ControlSummary
    mesh_fingerprint: str = Field(description="of the input mesh")
    ablated_mesh: str = Field(description="VTU file of the ablated mesh (lesion tag 4)")
    ablated_mesh_fingerprint: str
    units: dict
    provenance: dict


def build_report(
    result: AblationResult,
    *,
    input_inducible: bool,
    mesh_fingerprint: str,
    ablated_mesh: str,
    radius_mm: float,
    strategy: str,
    provenance: dict,
) -> AblationReport:
    """The report of an :class:`~.loop.AblationResult`."""
    lesions, lines = [], []
    for line, (round_no, lesion_set) in enumerate(result.lesion_sets):
        indices = []
        for point in lesion_set.points:
            indices.append(len(lesions))
            lesions.append(Lesion(**point.as_dict(), round=round_no, line=line))
        entry = lesion_set.as_dict()
        pieces = lesion_set.pieces or pieces_of_line(
            [p.centre_mm for p in lesion_set.points],
            [p.radius_mm for p in lesion_set.points],
            lesion_set.line_ends_mm,
        )
        lines.append(
            LesionLine(
                line=line,
                round=round_no,
                kind=entry["kind"],
                label=entry["label"],
                vt_ids=entry["vt_ids"],
                line_ends_mm=entry["line_ends_mm"],
                anchors=entry["anchors"],
                volume_ml=entry["volume_ml"],
                points=indices,
                pieces=[
                    LinePiece(
                        points=[indices[k] for k in piece["points"]],
                        ends_mm=[[round(float(v), 3) for v in e] for e in piece["ends_mm"]],
                        length_mm=round(piece["length_mm"], 2),
                        volume_ml=round(
                            sum(lesion_set.points[k].volume_ml for k in piece["points"]), 5
                        ),
                    )
                    for piece in pieces
                ],
            )
        )
    placed = [c for c in result.controls if c.get("placed")]
    targeted = sum(s.volume_ml for _, s in result.lesion_sets if s.kind == "target")
    return AblationReport(
        cardiotwin_version=__version__,
        status=result.status,
        note=result.note,
        input_inducible=input_inducible,
        non_inducible_after=result.non_inducible_after,
        rounds=result.rounds,
        total_volume_ml=round(result.total_volume_ml, 5),
        lesion_radius_mm=radius_mm,
        strategy=strategy,
        lesions=lesions,
        lesion_sets=lines,
        per_round=result.per_round,
        controls=result.controls,
        controls_summary=ControlSummary(
            draws=len(result.controls),
            placed=len(placed),
            non_inducible_after=sum(1 for c in placed if c["non_inducible_after"]),
            volume_ml=round(targeted, 5) if placed else None,
        ),
        mesh_fingerprint=mesh_fingerprint,
        ablated_mesh=ablated_mesh,
        ablated_mesh_fingerprint=result.mesh.fingerprint(),
        units={
            "length": "mm",
            "volume": "ml",
            "time": "ms",
            "velocity": "m/s",
            "positions": "mesh frame (scanner RAS+ mm for meshes from images)",
        },
        provenance=provenance,
    )


def report_schema() -> dict:
    """The JSON schema of ``ablation.json``."""
    return AblationReport.model_json_schema()
