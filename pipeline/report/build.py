"""Build one case's report: gather the stage outputs, render HTML, print PDF.

Inputs are the stage outputs the workflow wrote (any may be missing: its section then says
the stage has not run): the segmentation JSON and its QC pictures, the mesh, the induction
and ablation JSON. Pictures are embedded as data URIs, so the HTML is one file that can be
mailed or archived; the PDF is the same page printed by WeasyPrint.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cardiotwin.meshing.tags import TISSUE_NAMES
from cardiotwin.pipeline.report.results import CaseResults, MeshResult, SegmentationResult

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"


class ReportError(ValueError):
    """A stage output the report cannot use; the message names the file and the fix."""


@dataclass
class CaseInputs:
    """The stage outputs of one case (paths; ``None`` where a stage has not run)."""

    case_id: str
    kind: str
    segmentation_json: Path | None = None
    pictures: dict[str, Path] = field(default_factory=dict)  # role -> PNG
    mesh: Path | None = None
    mesh_quality_json: Path | None = None
    induction_json: Path | None = None
    ablation_json: Path | None = None


def _read_json(path: Path | None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist; run its stage first") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}); re-run its stage") from None


def _segmentation(data: dict) -> SegmentationResult:
    keys = SegmentationResult.model_fields
    return SegmentationResult(**{k: data.get(k) for k in keys if k in data})


def _mesh(path: Path, quality: dict | None) -> MeshResult:
    from cardiotwin.meshing.io import read_mesh

    mesh = read_mesh(path)
    volumes = {TISSUE_NAMES.get(int(t), f"tag {int(t)}"): mesh.volume_ml(int(t))
               for t in sorted(set(mesh.region.tolist()))}  # fmt: skip
    quality = quality or {}
    return MeshResult(
        n_nodes=mesh.n_points,
        n_elements=mesh.n_elements,
        volume_ml_by_tissue=volumes,
        mean_edge_mm=quality.get("edge_mm", {}).get("mean"),
        min_dihedral_deg=quality.get("dihedral_deg", {}).get("min"),
    )


def collect(inputs: CaseInputs) -> tuple[CaseResults, dict]:
    """The case's :class:`CaseResults` and the raw stage JSON (for the template)."""
    raw = {
        "segmentation": _read_json(inputs.segmentation_json),
        "mesh": _read_json(inputs.mesh_quality_json),
        "induction": _read_json(inputs.induction_json),
        "ablation": _read_json(inputs.ablation_json),
    }
    provenance = {
        stage: data["provenance"]
        for stage, data in raw.items()
        if data is not None and isinstance(data.get("provenance"), dict)
    }
    results = CaseResults(
        case_id=inputs.case_id,
        kind=inputs.kind,
        segmentation=None if raw["segmentation"] is None else _segmentation(raw["segmentation"]),
        mesh=None if inputs.mesh is None else _mesh(inputs.mesh, raw["mesh"]),
        provenance=provenance,
    )
    return results, raw


def _data_uri(path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def render_html(inputs: CaseInputs, results: CaseResults, raw: dict, config=None) -> str:
    """The self-contained HTML page of one case."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    pictures = {role: _data_uri(p) for role, p in inputs.pictures.items() if Path(p).is_file()}
    missing = sorted(set(inputs.pictures) - set(pictures))
    if missing:
        paths = ", ".join(str(inputs.pictures[m]) for m in missing)
        raise ReportError(f"pictures {missing} do not exist ({paths}); re-run their stage")
    template = env.get_template("case.html.j2")
    return template.render(
        results=results,
        raw=raw,
        pictures=pictures,
        config=None if config is None else config.model_dump(mode="json"),
        kind=inputs.kind,
    )


def write_report(
    inputs: CaseInputs, out_dir: str | os.PathLike, config=None, *, pdf: bool = True
) -> dict[str, Path]:
    """Write ``report.html``, ``report.pdf`` (unless ``pdf=False``) and ``results.json``."""
    from cardiotwin.files import write_all_or_nothing

    out_dir = Path(out_dir)
    results, raw = collect(inputs)
    html = render_html(inputs, results, raw, config)
    targets = {
        "html": out_dir / "report.html",
        "results": out_dir / "results.json",
    }
    writers = {
        targets["html"]: lambda p: Path(p).write_text(html, encoding="utf-8"),
        targets["results"]: lambda p: Path(p).write_text(
            results.model_dump_json(indent=2) + "\n", encoding="utf-8"
        ),
    }
    if pdf:
        targets["pdf"] = out_dir / "report.pdf"
        writers[targets["pdf"]] = lambda p: _write_pdf(html, Path(p))
    write_all_or_nothing(writers)
    return targets


def _write_pdf(html: str, path: Path) -> None:
    import weasyprint

    for name in ("weasyprint", "weasyprint.progress"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html).write_pdf(str(path))
