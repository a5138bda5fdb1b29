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
import re
from dataclasses import dataclass, field
from pathlib import Path

from cardiotwin.meshing.tags import TISSUE_NAMES
from cardiotwin.pipeline.report.results import (
    AblationResult,
    CaseResults,
    InductionResult,
    LesionResult,
    MeshResult,
    SegmentationResult,
    SiteResult,
    VTResult,
)

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
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path} does not exist; run its stage first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON ({exc}); re-run its stage") from None
    except OSError as exc:  # a folder, no permission
        raise ReportError(f"{path} cannot be read ({type(exc).__name__}); give the file") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} holds a JSON {type(data).__name__}, not a stage's output")
    return data


def _segmentation(data: dict, source: Path) -> SegmentationResult:
    from pydantic import ValidationError

    keys = SegmentationResult.model_fields
    try:
        return SegmentationResult(**{k: data.get(k) for k in keys if k in data})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ReportError(
            f"{source}: not a segmentation JSON of cardiotwin segment ({problems}); re-run "
            "the segment stage"
        ) from None


def _mesh(path: Path, quality: dict | None, raw: dict | None = None) -> MeshResult:
    from cardiotwin.meshing.io import read_mesh
    from cardiotwin.meshing.mesh import MeshError

    try:
        mesh = read_mesh(path)
    except (MeshError, OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read the mesh ({exc}); re-run the mesh stage") from None
    fingerprint = mesh.fingerprint()
    for stage in ("induction", "ablation"):
        recorded = (raw or {}).get(stage) or {}
        if recorded.get("mesh_fingerprint") not in (None, fingerprint):
            raise ReportError(
                f"the {stage} ran on another mesh than {path.name} (mesh fingerprint "
                f"{str(recorded['mesh_fingerprint'])[:12]}… against {fingerprint[:12]}…): give "
                "the mesh it ran on, or re-run it"
            )
    volumes = {TISSUE_NAMES.get(int(t), f"tag {int(t)}"): mesh.volume_ml(int(t))
               for t in sorted(set(mesh.region.tolist()))}  # fmt: skip
    quality = quality or {}
    return MeshResult(
        n_nodes=mesh.n_points,
        n_elements=mesh.n_elements,
        volume_ml_by_tissue=volumes,
        mean_edge_mm=quality.get("edge_mm", {}).get("mean"),
        min_dihedral_deg=quality.get("dihedral_deg", {}).get("min"),
        biventricular=any(name.startswith("RV-") for name in mesh.node_sets),
    )


def _site_outcome(site: dict) -> str:
    """One of the bullseye's outcomes (:data:`cardiotwin.pipeline.report.figures.OUTCOMES`)."""
    if site.get("induced"):
        return "induced"
    if site.get("captured") is False:
        return "no capture"
    if site.get("status", "ok") != "ok" or site.get("captured") is None:
        return "not tested"
    return "not induced"


def _induction(data: dict, source: Path) -> InductionResult:
    """The report's summary of ``induction.json`` (:class:`cardiotwin.pipeline.risk.
    InductionReport`)."""
    try:
        vts = [
            VTResult(id=v["id"], cycle_length_ms=v.get("cycle_length_ms"),
                     exit_site_mm=v.get("exit_site_mm"), sites=list(v.get("sites", [])),
                     macro_reentry_around=(v.get("macro_reentry_around")
                                           if data.get("chamber") == "atrium" else None))
            for v in data["unique_vts"]
        ]  # fmt: skip
        cycle = {v.id: v.cycle_length_ms for v in vts}
        sites = []
        for site in data["sites"]:
            outcome = _site_outcome(site)
            vt_id = site.get("vt_id")
            status = site.get("status", "ok")
            sites.append(
                SiteResult(
                    name=site["name"],
                    position_mm=site.get("position_mm"),
                    captured=site.get("captured"),
                    induced=bool(site["induced"]),
                    coupling_intervals_ms=list(site.get("coupling_intervals_ms") or []),
                    aha_segment=site.get("aha_segment"),
                    outcome=outcome,
                    vt_id=vt_id,
                    vt_cycle_length_ms=cycle.get(vt_id),
                    note=_site_note(site["name"], site.get("aha_segment"), status),
                )
            )
        return InductionResult(
            inducible=bool(data["inducible"]),
            complete=bool(data.get("complete", True)),
            note=data.get("note"),
            n_unique_vts=len(vts),
            unique_vts=vts,
            n_sites=int(data.get("sites_paced", len(sites))),
            fraction_inducing_sites=data.get("fraction_inducing_sites"),
            sites=sites,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(
            f"{source}: not an induction.json of cardiotwin induce ({exc}); re-run the induce stage"
        ) from None


def _ablation(data: dict, source: Path) -> AblationResult:
    """The report's summary of ``ablation.json`` (:class:`cardiotwin.pipeline.ablation.
    report.AblationReport`)."""
    try:
        return AblationResult(
            status=data.get("status"),
            note=data.get("note"),
            input_inducible=data.get("input_inducible"),
            lesions=[
                LesionResult(
                    center_mm=x["center_mm"],
                    radius_mm=x["radius_mm"],
                    volume_ml=x["volume_ml"],
                    vt_ids=list(x.get("vt_ids", [])),
                    round=x.get("round"),
                )
                for x in data["lesions"]
            ],  # fmt: skip
            total_volume_ml=float(data["total_volume_ml"]),
            rounds=int(data["rounds"]),
            non_inducible_after=bool(data["non_inducible_after"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(
            f"{source}: not an ablation.json of cardiotwin ablate ({exc}); re-run the ablate stage"
        ) from None


def _induction_provenance(data: dict) -> dict:
    """induction.json keeps its provenance as top-level fields: the same block as the other
    stages' (:func:`cardiotwin.pipeline.provenance.provenance`), as far as it records it."""
    return {
        "stage": "induction",
        "cardiotwin_version": data.get("cardiotwin_version"),
        "git_commit": None,
        "config_sha256": data.get("config_hash"),
        "backend": {"requested": None, "used": data.get("backend"), "device": None,
                    "fallback_reason": None},
        "wall_s": data.get("wall_s"),
    }  # fmt: skip


def _site_note(name: str, segment: int | None, status: str) -> str | None:
    """The site's status when it is not ``ok``; for an ``AHA-k`` site paced in another
    segment, why (the meshing stage moves a site whose segment centre lies in scar)."""
    if status != "ok":
        return status
    match = re.fullmatch(r"AHA-(\d+)", name)
    if match and segment and int(match.group(1)) != segment:
        return (
            f"paced in segment {segment}: segment {match.group(1)}'s centre lies in scar or "
            "beside too little healthy wall, and the site was moved out of it (mesh log)"
        )
    return None


def _bullseye(induction: InductionResult) -> bytes | None:
    """The AHA bullseye of the sites' outcomes (a segment shows its worst outcome), or
    ``None`` when no site lies in an AHA segment (atria)."""
    from cardiotwin.pipeline.report.figures import OUTCOMES, bullseye_png

    rank = list(OUTCOMES)  # induced first: a segment with any inducing site is "induced"
    by_segment: dict[int, str] = {}
    for site in induction.sites:
        segment = site.aha_segment
        if segment is None or not 1 <= segment <= 17:
            continue
        current = by_segment.get(segment, "not tested")
        by_segment[segment] = min(current, site.outcome, key=rank.index)
    return bullseye_png(by_segment) if by_segment else None


#: the first bytes of every PNG file
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_inputs(inputs: CaseInputs, raw: dict) -> None:
    """Refuse inputs that contradict each other before they make a wrong report: a chamber
    other than the stages', pictures that are not PNG files."""
    segmented = (raw["segmentation"] or {}).get("chamber")
    stated = {
        "segmentation": segmented.get("chamber") if isinstance(segmented, dict) else None,
        "induction": (raw["induction"] or {}).get("chamber"),
    }
    for stage, chamber in stated.items():
        if chamber in ("ventricle", "atrium") and chamber != inputs.kind:
            raise ReportError(
                f"--kind is {inputs.kind}, but the {stage} stage ran on a {chamber}: give the "
                f"case's chamber (--kind {chamber}) or that case's {stage} output"
            )
    needs = {"montage": ("segmentation", inputs.segmentation_json),
             "scar_3d": ("segmentation", inputs.segmentation_json),
             "mesh": ("mesh", inputs.mesh), "sites": ("mesh", inputs.mesh)}  # fmt: skip
    for role, (stage, given) in needs.items():
        if role in inputs.pictures and given is None:
            raise ReportError(
                f"the {role} picture belongs to the {stage} section, which needs the {stage} "
                f"stage's output too (--{stage}); it would be left out"
            )
    for role, path in inputs.pictures.items():
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(PNG_SIGNATURE))
        except OSError:
            continue  # a missing picture is reported with the others, below
        if head != PNG_SIGNATURE:
            raise ReportError(f"the {role} picture {Path(path).name} is not a PNG file")


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
    _check_inputs(inputs, raw)
    if raw["induction"] is not None and "induction" not in provenance:
        provenance["induction"] = _induction_provenance(raw["induction"])
    results = CaseResults(
        case_id=inputs.case_id,
        kind=inputs.kind,
        segmentation=None
        if raw["segmentation"] is None
        else _segmentation(raw["segmentation"], inputs.segmentation_json),
        mesh=None if inputs.mesh is None else _mesh(inputs.mesh, raw["mesh"], raw),
        induction=None
        if raw["induction"] is None
        else _induction(raw["induction"], inputs.induction_json),
        ablation=None
        if raw["ablation"] is None
        else _ablation(raw["ablation"], inputs.ablation_json),
        provenance=provenance,
    )
    return results, raw


def _data_uri(path: Path) -> str:
    return _png_uri(Path(path).read_bytes())


def _png_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"


class _Pictures(dict):
    """Role -> data URI; a role without a picture reads as ``None`` in the template."""

    def __missing__(self, key):
        return None


def _stage_mesh(path: Path, stage: str):
    """(the mesh at ``path``, None) or (None, the report's note why there is no picture).
    The note names the file, never its folder (which may carry the patient's identity)."""
    from cardiotwin.meshing.io import read_mesh

    if not path.is_file():
        return None, f"No picture: {path.name} of the {stage} stage is missing; re-run {stage}."
    try:
        return read_mesh(path), None
    except Exception as exc:  # a damaged picture input must not cost the whole report
        log.warning("%s of the %s stage could not be read (%s)", path.name, stage,
                    type(exc).__name__)  # fmt: skip
        return None, (
            f"No picture: {path.name} of the {stage} stage could not be read "
            f"({type(exc).__name__}); re-run {stage}."
        )


def _activation_maps(source: Path, data: dict, induction: InductionResult, pictures, notes):
    """``activation_<id>``: each VT's activation map (``unique_vts[i].activation_map``, a VTU
    next to induction.json) rendered off-screen, or a note why not."""
    from cardiotwin.pipeline.mesh_pictures import activation_png

    files = {v["id"]: v.get("activation_map") or f"vt-{v['id']}.vtu" for v in data["unique_vts"]}
    for vt in induction.unique_vts:
        role = f"activation_{vt.id}"
        if role in pictures:
            continue
        mesh, notes[role] = _stage_mesh(Path(source).parent / files[vt.id], "induce")
        if mesh is None:
            continue
        if "activation_ms" not in mesh.point_data or not vt.cycle_length_ms:
            notes[role] = f"No picture: {files[vt.id]} carries no activation map; re-run induce."
            continue
        png = activation_png(
            mesh,
            cycle_length_ms=vt.cycle_length_ms,
            exit_site_mm=vt.exit_site_mm,
            title=f"VT {vt.id}: cycle length {vt.cycle_length_ms:.0f} ms",
        )
        pictures[role] = _png_uri(png)


def _targets(source: Path, data: dict, ablation: AblationResult, pictures, notes) -> None:
    """``targets``: the lesions on the ablated mesh (``ablated_mesh``, a VTU next to
    ablation.json), or a note why not; nothing when there was nothing to ablate."""
    from cardiotwin.pipeline.mesh_pictures import lesion_png

    if ablation.input_inducible is False or not ablation.lesions:
        return
    mesh, notes["targets"] = _stage_mesh(
        Path(source).parent / data.get("ablated_mesh", "ablated.vtu"), "ablate"
    )
    if mesh is not None:
        png = lesion_png(
            mesh,
            [x.center_mm for x in ablation.lesions],
            [x.radius_mm for x in ablation.lesions],
            title=f"ablation targets: {len(ablation.lesions)} lesion"
            + ("s" if len(ablation.lesions) != 1 else ""),
        )
        pictures["targets"] = _png_uri(png)


def stage_settings(results: CaseResults, raw: dict, config=None) -> dict:
    """What the stages ran with, read from their own outputs where they record it (the
    configuration given to the report may be another): the mesh's requested edge (mm), the
    sites paced, the image's voxel size (mm), and whether the induction's configuration hash
    differs from the report's configuration in the sections an induction reads."""
    from cardiotwin.pipeline.config import STAGE_SECTIONS, AblationConfig, config_hash

    mesh_input = (raw.get("mesh") or {}).get("input") or {}
    grid = (raw.get("segmentation") or {}).get("grid") or {}
    sites = "-"
    if results.induction is not None:
        names = [site.name for site in results.induction.sites]
        sites = ", ".join(names) if names else "none"
    elif config is not None:
        sites = ", ".join(config.induction.sites) if config.induction.sites else "all"
    differs = False
    recorded = (raw.get("induction") or {}).get("config_hash")
    if config is not None and recorded:
        differs = recorded not in (
            config_hash(config, sections=STAGE_SECTIONS["induce"]),
            # induction files written before the hash covered only the induction's sections
            config_hash(config),
            config_hash(config.model_copy(update={"ablation": AblationConfig()})),
        )
    return {
        "edge_mm": mesh_input.get("edge_mm_requested"),
        "sites": sites,
        "voxel_mm": grid.get("spacing_mm"),
        "config_differs": differs,
    }


def lesion_lines(ablation: dict | None) -> list[dict]:
    """The ablation's lines for the report, each with its pieces (points whose spheres
    overlap; :func:`~cardiotwin.pipeline.ablation.lesions.line_pieces`): as recorded, or
    grouped here for an ``ablation.json`` written before pieces were recorded. Each piece:
    ``numbers`` (its points as the report numbers them, e.g. ``1–6``), ``points``,
    ``ends_mm``, ``length_mm``, ``volume_ml``."""
    from cardiotwin.pipeline.ablation.lesions import number_runs, pieces_of_line

    if not ablation:
        return []
    lesions = ablation.get("lesions") or []
    out = []
    for line in ablation.get("lesion_sets") or []:
        pieces = line.get("pieces") or []
        if not pieces and line.get("points"):
            members = line["points"]
            grouped = pieces_of_line(
                [lesions[m]["center_mm"] for m in members],
                [lesions[m]["radius_mm"] for m in members],
                line["line_ends_mm"],
            )
            pieces = [
                {
                    "points": [members[k] for k in piece["points"]],
                    "ends_mm": [[float(v) for v in end] for end in piece["ends_mm"]],
                    "length_mm": piece["length_mm"],
                    "volume_ml": sum(lesions[members[k]]["volume_ml"] for k in piece["points"]),
                }
                for piece in grouped
            ]
        if not pieces:  # a line without points: its recorded ends only
            pieces = [{"points": [], "ends_mm": line["line_ends_mm"], "length_mm": None,
                       "volume_ml": line["volume_ml"]}]  # fmt: skip
        out.append({**line, "pieces": [
            {**piece, "numbers": number_runs([k + 1 for k in piece["points"]])} for piece in pieces
        ]})  # fmt: skip
    return out


def render_html(inputs: CaseInputs, results: CaseResults, raw: dict, config=None) -> str:
    """The self-contained HTML page of one case."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    pictures = _Pictures(
        (role, _data_uri(p)) for role, p in inputs.pictures.items() if Path(p).is_file()
    )
    missing = sorted(set(inputs.pictures) - set(pictures))
    if missing:
        paths = ", ".join(str(inputs.pictures[m]) for m in missing)
        raise ReportError(f"pictures {missing} do not exist ({paths}); re-run their stage")
    if results.induction is not None and "bullseye" not in pictures:
        png = _bullseye(results.induction)
        if png is not None:
            pictures["bullseye"] = _png_uri(png)
    notes = _Pictures()  # role -> why its picture is missing
    if results.induction is not None:
        _activation_maps(inputs.induction_json, raw["induction"], results.induction, pictures,
                         notes)  # fmt: skip
    if results.ablation is not None and "targets" not in pictures:
        _targets(inputs.ablation_json, raw["ablation"], results.ablation, pictures, notes)
    template = env.get_template("case.html.j2")
    return template.render(
        results=results,
        raw=raw,
        pictures=pictures,
        notes=notes,
        config=None if config is None else config.model_dump(mode="json"),
        stage_settings=stage_settings(results, raw, config),
        kind=inputs.kind,
        lesion_lines=lesion_lines(raw["ablation"]),
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
    try:
        import weasyprint
    except OSError as exc:  # WeasyPrint loads the system's Pango when imported
        raise ReportError(
            f"the PDF needs the Pango text library, which WeasyPrint could not load ({exc}). "
            "Install it (Debian/Ubuntu: apt-get install libpango-1.0-0 libpangoft2-1.0-0; "
            "macOS: brew install pango), or write the HTML alone with --no-pdf."
        ) from None

    for name in ("weasyprint", "weasyprint.progress"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html).write_pdf(str(path))
