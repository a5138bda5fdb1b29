"""The one configuration model of cardiotwin: every setting, its unit and its default, once.

A configuration file (YAML or JSON, e.g. ``configs/demo.yaml``) is validated strictly: an
unknown key or a wrong type is refused before anything runs, with the key's dotted path and
what is expected. Each pipeline stage has its own section; every section has defaults, so
``{"config_version": 1}`` is a complete configuration. Bump :data:`CONFIG_VERSION` when a
change would make an old file mean something else.

Sections (one per stage, each owned by the stage's code):

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


# --- mesh section (meshing issue: labels -> tetrahedra) -----------------------------------

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
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
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
