"""The one configuration model of cardiotwin: every setting, its unit and its default, once.

A configuration file (YAML or JSON, e.g. ``configs/demo.yaml``) is validated strictly: an
unknown key or a wrong type is refused before anything runs, with the key's dotted path and
what is expected. Each pipeline stage has its own section; every section has defaults, so
``{"config_version": 1}`` is a complete configuration. Bump :data:`CONFIG_VERSION` when a
change would make an old file mean something else.

Sections (one per stage, each owned by the stage's code):

- ``workflow``: the cohort sheet and the results folder (Snakemake).
- ``segmentation``: the intensity method per kind of chamber.
- ``simulation``: numerics shared by every simulation (backend, time step, mass lumping).
- ``mesh``: labels -> tetrahedra (target edge length, ...).
- ``anatomy``: surfaces, anatomical coordinates, fibres and pacing sites on the mesh.
- ``tissue``: region tag -> ionic model, parameter scaling, conductivities.
- ``induction``: pacing protocols and re-entry detection.
- ``ablation``: lesion size and budget.

Stages add their section model below, in the block marked for them, and one field in
:class:`Config`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: version of the configuration format this code reads
CONFIG_VERSION = 1


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the key and the fix."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- simulation (shared numerics) ----------------------------------------------------------


class SimulationConfig(StrictModel):
    """Numerics of every tissue simulation (solvers.stepping.SplitStepper)."""

    backend: Literal["auto", "cpu", "cuda", "reference"] = Field(
        "auto", description="auto: a CUDA GPU when one is usable, else the CPU (recorded)"
    )
    dt_ms: float = Field(0.05, gt=0, le=1.0, description="time step, ms")
    mass: Literal["lumped", "consistent"] = "lumped"
    diffusion: Literal["explicit", "implicit"] = "explicit"


# --- workflow (which cases, where results go) ---------------------------------------------


class WorkflowConfig(StrictModel):
    """Where the Snakemake workflow finds its cases and writes its results."""

    cohort: str = Field(
        "configs/cohort.tsv",
        description="cohort sheet (tab-separated: case_id, kind, lge, wall, blood), relative "
        "to the working directory",
    )
    results: str = Field("results", description="folder for every output, one folder per case")


# --- segmentation ---------------------------------------------------------------------------


class SegmentationConfig(StrictModel):
    """Which published intensity method classifies the wall (pipeline.segment)."""

    ventricle_method: Literal["nsd", "fwhm"] = Field(
        "fwhm", description="ventricles: n-SD above remote myocardium or full width at half max"
    )
    atrium_method: Literal["iir"] = Field("iir", description="atria: image intensity ratio")


# --- mesh section (meshing issue: labels -> tetrahedra) -----------------------------------


class MeshConfig(StrictModel):
    """Labels -> tetrahedra (meshing.from_labels for ventricles, meshing.atrium for atria)."""

    edge_mm: float = Field(
        1.0, gt=0, le=10, description="target mean edge length, mm (0.35-2 for patients)"
    )
    resample_mm: float = Field(
        1.0,
        gt=0,
        le=5,
        description="labels coarser than this (e.g. 8 mm slices) are first resampled with "
        "shape-based interpolation onto an isotropic grid of this spacing, mm",
    )
    smoothing_mm: float = Field(
        1.0, ge=0, le=5, description="Gaussian sigma that smooths the wall boundary, mm"
    )
    tag_smoothing_mm: float = Field(
        0.5,
        ge=0,
        le=5,
        description="Gaussian sigma of the tissue-label indicators sampled at element centres "
        "(healthy / border zone / dense scar interfaces), mm; 0: nearest voxel",
    )
    max_island_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="pieces not connected to the main mesh are dropped with a warning; above "
        "this fraction of the volume the wall counts as fragmented (an error)",
    )
    max_elements: int = Field(
        60_000_000, gt=0, description="refuse edge lengths that would need more elements"
    )
    atrial_wall_mm: float | None = Field(
        None,
        gt=0,
        le=10,
        description="atrial wall thickness the blood-pool surface is extruded by, mm; "
        "null: measured from the wall mask (2 x volume / area)",
    )
    atrial_layers: int = Field(
        2, ge=2, le=20, description="fewest element layers across the atrial wall"
    )


# --- anatomy section (meshing issue: surfaces, coordinates, fibres, pacing sites) ----------


class AnatomyConfig(StrictModel):
    """Surfaces, anatomical coordinates, rule-based fibres and pacing sites on a mesh
    (meshing.prepare). Fibre angles follow Bayer et al. 2012: helix angle α (positive: a
    right-handed helix rising towards the base), sheet angle β about the fibre."""

    alpha_endo_deg: float = Field(60.0, ge=-90, le=90, description="fibre helix angle, endo")
    alpha_epi_deg: float = Field(-60.0, ge=-90, le=90, description="fibre helix angle, epi")
    beta_endo_deg: float = Field(0.0, ge=-90, le=90, description="sheet angle, endocardium")
    beta_epi_deg: float = Field(0.0, ge=-90, le=90, description="sheet angle, epicardium")
    site_placement: Literal["endo", "midwall"] = Field(
        "endo", description="pacing site centres on the endocardium or at mid-wall"
    )
    site_radius_mm: float = Field(
        2.0, gt=0, le=20, description="a pacing site's node set: nodes within this radius, mm"
    )
    atrial_sites: int = Field(20, ge=1, le=200, description="number of atrial pacing sites")
    septum_point_mm: tuple[float, float, float] | None = Field(
        None,
        description="a point in the septum (scanner mm) orienting the rotational coordinate "
        "and AHA segments of an LV-only mesh; ignored when the mesh has an RV",
    )
    feature_angle_deg: float = Field(
        50.0, gt=5, lt=90, description="atrial surfaces: edges sharper than this split patches"
    )


# --- tissue section (induction issue) ------------------------------------------------------

# --- induction section (induction issue) ---------------------------------------------------

# --- ablation section (ablation issue) -----------------------------------------------------


class Config(StrictModel):
    """A whole cardiotwin configuration."""

    config_version: Literal[1] = Field(
        CONFIG_VERSION, description="format version of this file; this code reads version 1"
    )
    workflow: WorkflowConfig = Field(default_factory=WorkflowConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    mesh: MeshConfig = Field(default_factory=MeshConfig)
    anatomy: AnatomyConfig = Field(default_factory=AnatomyConfig)


def _location(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def config_from_dict(data: object, source: str = "configuration") -> Config:
    """Validate ``data`` (parsed YAML/JSON) into a :class:`Config`; errors name every bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _location(error)
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown key '{where}' (check its spelling and section)")
            elif error["type"] == "literal_error" and where == "config_version":
                problems.append(
                    f"config_version {error.get('input')!r} is not supported; this cardiotwin "
                    f"reads version {CONFIG_VERSION}"
                )
            else:
                problems.append(f"'{where}': {error['msg']} (got {error.get('input')!r})")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | os.PathLike | None) -> Config:
    """Read and validate a YAML or JSON configuration file (``None``: all defaults)."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # a syntax error of either format
        raise ConfigError(f"{path}: not valid YAML/JSON ({exc})") from exc
    return config_from_dict({} if data is None else data, source=str(path))


def config_hash(config: Config) -> str:
    """SHA-256 of the configuration's canonical JSON (defaults included): provenance."""
    import hashlib

    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
