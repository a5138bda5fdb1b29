"""Induction studies as the ablation loop reads them: from ``induction.json`` or in memory.

- :func:`round_from_file`: ``DIR/induction.json`` (:mod:`cardiotwin.pipeline.risk`) and the
  ``vt-<id>.vtu`` beside it (point field ``activation_ms``: one cycle, ms from its start).
  The file must belong to the mesh: its ``mesh_fingerprint`` is compared with
  :meth:`~cardiotwin.meshing.mesh.Mesh.fingerprint` (a map from another mesh would put the
  lesions in the wrong place).
- :func:`round_from_result`: an :class:`~cardiotwin.pipeline.induction.study.InductionResult`
  just computed (the loop's later rounds), with the same report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cardiotwin.meshing.mesh import Mesh
from cardiotwin.pipeline.ablation.critical import Circuit
from cardiotwin.pipeline.ablation.loop import InductionRound

ACTIVATION_FIELD = "activation_ms"


class InductionInputError(ValueError):
    """An induction file that cannot be used with this mesh; names the file and the fix."""


def _sites(report: dict) -> list[dict]:
    return [
        {
            "name": s["name"],
            "status": s["status"],
            "induced": bool(s.get("induced")),
            "vt_id": s.get("vt_id"),
        }
        for s in report.get("sites", [])
    ]


def _singularities(vt: dict) -> np.ndarray:
    positions = [p["position_mm"] for p in vt.get("phase_singularities", [])]
    return np.asarray(positions, dtype=np.float64).reshape(-1, 3)


def _round(report: dict, circuits: list[Circuit]) -> InductionRound:
    return InductionRound(
        inducible=bool(report["inducible"]),
        complete=bool(report["complete"]),
        note=str(report.get("note", "")),
        circuits=circuits,
        sites=_sites(report),
        report=report,
    )


def read_report(path: Path) -> dict:
    """The JSON of an induction file, with a readable error when it is not one."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InductionInputError(f"cannot read the induction file {path}: {exc}") from None
    keys = ("inducible", "complete", "unique_vts", "sites", "mesh_fingerprint")
    missing = [k for k in keys if k not in report] if isinstance(report, dict) else list(keys)
    if not missing:  # a site without its status would read as answered: never assumed
        missing = [f"sites[{k}].status" for k, s in enumerate(report["sites"]) if "status" not in s]
    if missing:
        raise InductionInputError(
            f"{path} is not an induction file of cardiotwin induce (missing {missing})"
        )
    return report


def round_from_file(path: Path, mesh: Mesh) -> InductionRound:
    """The induction study in ``path`` (``induction.json``) with its VT activation maps."""
    from cardiotwin.meshing.io import read_mesh

    path = Path(path)
    report = read_report(path)
    fingerprint = mesh.fingerprint()
    if report["mesh_fingerprint"] != fingerprint:
        raise InductionInputError(
            f"{path} was computed on another mesh (its mesh fingerprint "
            f"{str(report['mesh_fingerprint'])[:12]}… differs from this mesh's "
            f"{fingerprint[:12]}…): give the mesh the induction ran on, or run cardiotwin "
            "induce on this one"
        )
    circuits = []
    for vt in report["unique_vts"]:
        map_path = path.parent / vt.get("activation_map", f"vt-{vt['id']}.vtu")
        try:
            vt_mesh = read_mesh(map_path)
        except Exception as exc:  # any reader failure: the file is missing or damaged
            raise InductionInputError(
                f"cannot read the activation map of VT {vt['id']} ({map_path.name} next to "
                f"{path.name}): {exc}"
            ) from None
        activation = vt_mesh.point_data.get(ACTIVATION_FIELD)
        if activation is None or np.shape(activation)[0] != mesh.n_points:
            raise InductionInputError(
                f"{map_path.name} has no '{ACTIVATION_FIELD}' point field for the mesh's "
                f"{mesh.n_points} nodes: it does not belong to this induction"
            )
        circuits.append(
            Circuit(
                id=int(vt["id"]),
                cycle_length_ms=float(vt["cycle_length_ms"]),
                activation_ms=np.asarray(activation, dtype=np.float64).reshape(-1),
                phase_singularities_mm=_singularities(vt),
                exit_mm=None if vt.get("exit_site_mm") is None else tuple(vt["exit_site_mm"]),
                sites=tuple(vt.get("sites", ())),
            )
        )
    return _round(report, circuits)


def round_from_result(result, mesh: Mesh) -> InductionRound:
    """An in-memory induction study (``run_induction``'s result) on ``mesh``."""
    from cardiotwin.pipeline.risk import build_report

    report = json.loads(build_report(result, mesh.fingerprint()).model_dump_json())
    by_id = {vt["id"]: vt for vt in report["unique_vts"]}
    circuits = []
    for vt in result.vts:
        a = vt.analysis
        activation = np.full(mesh.n_points, np.nan)
        activation[result.tissue_nodes] = a.activation_ms
        entry = by_id[vt.id]
        circuits.append(
            Circuit(
                id=int(vt.id),
                cycle_length_ms=float(a.cycle_length_ms),
                activation_ms=activation,
                phase_singularities_mm=_singularities(entry),
                exit_mm=None if a.exit_mm is None else tuple(a.exit_mm),
                sites=tuple(entry["sites"]),
            )
        )
    return _round(report, circuits)
