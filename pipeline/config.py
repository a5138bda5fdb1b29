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
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardiotwin.meshing.tags import LESION

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
    precision: Literal["fp64", "mixed"] = Field(
        "fp64",
        description="storage precision of the tissue runs: fp64, or mixed (float32 V, gates "
        "and matrix values; the concentrations float32 cannot resolve per step stay float64; "
        "solvers/precision.py). Tissue calibration always runs in fp64",
    )


# --- workflow (which cases, where results go) ---------------------------------------------


class WorkflowConfig(StrictModel):
    """Where the Snakemake workflow finds its cases and writes its results."""

    cohort: str = Field(
        "configs/cohort.tsv",
        description="cohort sheet (tab-separated: case_id, kind, lge, wall, blood), relative "
        "to the working directory",
    )
    results: str = Field("results", description="folder for every output, one folder per case")
    simulation_threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads of each simulation job (induce, ablate); null: every core the "
        "run was given (snakemake --cores)",
    )


# --- segmentation ---------------------------------------------------------------------------


class SegmentationConfig(StrictModel):
    """Which published intensity method classifies the wall (pipeline.segment)."""

    ventricle_method: Literal["nsd", "fwhm"] = Field(
        "fwhm", description="ventricles: n-SD above remote myocardium or full width at half max"
    )
    atrium_method: Literal["iir-surface", "iir"] = Field(
        "iir-surface",
        description="atria: image intensity ratio sampled along the endocardial surface's "
        "normals (Utah / CemrgApp), or per wall voxel (iir)",
    )


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
    border_zone_fibres: Literal["scar_border", "rule"] = Field(
        "scar_border",
        description="ventricular border-zone fibres: 'scar_border' turns them along the dense "
        "scar's border (surviving bundles run along the channels between scar, de Bakker "
        "1988), 'rule' keeps the rule-based (Bayer) fibres",
    )
    border_zone_fibre_reach_mm: float = Field(
        10.0, gt=0, le=50, description="border-zone elements this close to dense scar turn, mm"
    )
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


class RegionConfig(StrictModel):
    """One tissue class of a chamber: its element tag, cell remodelling and conductivity.

    A conducting region takes exactly one of ``cv_m_per_s`` (σ calibrated on a strip
    discretised like the mesh, :mod:`cardiotwin.solvers.calibration`), ``sigma_s_per_m``
    (used as given) or ``sigma_scale`` (× the σ of region ``relative_to``).
    """

    tag: int = Field(ge=0, description="element tag (cardiotwin.meshing.tags)")
    conducting: bool = Field(True, description="false: elements dropped (no-flux), e.g. scar")
    parameter_scale: dict[str, float] = Field(
        default_factory=dict,
        description="ionic parameter name -> factor on the cell variant's default (e.g. g_Na)",
    )
    cv_m_per_s: tuple[float, float] | None = Field(
        None, description="target conduction velocity (along, across fibres), m/s"
    )
    sigma_s_per_m: tuple[float, float] | None = Field(
        None, description="monodomain conductivity (along, across fibres), S/m"
    )
    sigma_scale: tuple[float, float] | None = Field(
        None, description="factors (along, across fibres) on the σ of region relative_to"
    )
    relative_to: str | None = Field(None, description="region whose σ sigma_scale multiplies")


class TransmuralConfig(StrictModel):
    """Endo/M/epi cell variants by the mesh's ``transmural`` coordinate (0 endo .. 1 epi);
    only for a model family with variants (``tp06``)."""

    enabled: bool = True
    endo_below: float = Field(0.3, ge=0, le=1, description="transmural < this: endocardial")
    epi_from: float = Field(0.6, ge=0, le=1, description="transmural ≥ this: epicardial")


def _ventricle_regions() -> dict[str, RegionConfig]:
    return {
        # CV_l at the low end of the 60-70 cm/s of DESIGN §4; CV_l/CV_t = 2.75, the ratio that
        # the monodomain σ of Niederer et al. 2011 (0.1334 / 0.01761 S/m) gives (√7.6)
        "healthy": RegionConfig(tag=1, cv_m_per_s=(0.6, 0.22)),
        # Arevalo et al. 2016 (Nat Commun 7:11437) border zone: I_Na 38 %, I_CaL 31 %,
        # I_Kr 30 %, I_Ks 20 % of normal, transverse conductivity reduced by 90 %
        "border_zone": RegionConfig(
            tag=2,
            parameter_scale={"g_Na": 0.38, "g_CaL": 0.31, "g_Kr": 0.30, "g_Ks": 0.20},
            sigma_scale=(1.0, 0.1),
            relative_to="healthy",
        ),
        "dense_scar": RegionConfig(tag=3, conducting=False),
        "lesion": RegionConfig(tag=4, conducting=False),
    }


#: Courtemanche AF remodelling (DESIGN §4; Bifulco 2021 restating Zahid 2016 / Boyle 2019)
_AF = {"g_Kur_scale": 0.5, "g_to": 0.5, "g_CaL": 0.3}


def _atrium_regions() -> dict[str, RegionConfig]:
    # fibrotic: further I_CaL -50 %, I_Na -40 %, I_K1 -50 %; σ 0.177/0.0221 S/m against
    # 0.409/0.082 S/m healthy (Bifulco 2021)
    fibrotic = {
        "parameter_scale": {**_AF, "g_CaL": 0.15, "g_Na": 0.6, "g_K1": 0.5},
        "sigma_scale": (0.177 / 0.409, 0.0221 / 0.082),
        "relative_to": "healthy",
    }
    return {
        "healthy": RegionConfig(tag=1, parameter_scale=dict(_AF), cv_m_per_s=(0.71, 0.37)),
        "fibrosis": RegionConfig(tag=2, **fibrotic),
        # IIR > 1.32 (Benito 2017) in an atrium never ablated is dense *fibrosis*, not a hole:
        # the patient-derived AF models (Zahid 2016, Cardiovasc Res 110:443; Boyle 2019, Nat
        # Biomed Eng 3:870; Bifulco 2021) model all LGE-enhanced wall as conducting, remodelled
        # fibrotic tissue, and only ablation lesions (tag 4) as non-conducting. No published
        # σ or ionic change separates dense from interstitial atrial fibrosis, so it takes the
        # fibrotic remodelling as it is (a separate region, so a config can change it).
        "dense_scar": RegionConfig(tag=3, **fibrotic),
        "lesion": RegionConfig(tag=4, conducting=False),
    }


class ChamberTissueConfig(StrictModel):
    """Cell model and tissue classes of one kind of chamber."""

    model: str = Field(
        description="ionic model: a registered name (e.g. mitchell-schaeffer), or 'tp06' for "
        "ten Tusscher-Panfilov 2006 with endo/M/epi variants by the transmural coordinate"
    )
    regions: dict[str, RegionConfig]
    transmural: TransmuralConfig = Field(default_factory=TransmuralConfig)

    def nonconducting_tags(self) -> tuple[int, ...]:
        """Element tags this chamber's tissue does not conduct (its non-conducting regions),
        always with the ablation lesion tag 4: by default dense scar and lesions in a
        ventricle, lesions only in an atrium (dense fibrosis conducts there)."""
        tags = {r.tag for r in self.regions.values() if not r.conducting} | {LESION}
        return tuple(sorted(tags))


class PrepacingConfig(StrictModel):
    """Single-cell pre-pacing of every parameter set to steady state at the S1 cycle length
    (its result is cached per model, parameters, cycle length and dt)."""

    enabled: bool = True
    block_beats: int = Field(10, ge=1, description="beats between steady-state checks")
    max_beats: int = Field(500, ge=1, description="stop pacing after this many beats")
    rel_tol: float = Field(
        1e-3, gt=0, description="steady: no state changes by more than this (relative) per block"
    )
    hold_slow_states: bool = Field(
        True,
        description="hold the model's slow states (Courtemanche: Na_i, K_i; none for TP06) at "
        "their initial values while pre-pacing, so the other states reach a steady beat "
        "instead of following a drift of many minutes",
    )


class TissueConfig(StrictModel):
    """Region tag -> ionic model variant, parameter scaling and conductivities (pipeline.tissue)."""

    ventricle: ChamberTissueConfig = Field(
        default_factory=lambda: ChamberTissueConfig(model="tp06", regions=_ventricle_regions())
    )
    atrium: ChamberTissueConfig = Field(
        default_factory=lambda: ChamberTissueConfig(model="courtemanche", regions=_atrium_regions())
    )
    node_rule: Literal["majority", "priority"] = Field(
        "majority",
        description="a node touching several tissues takes the one with most element volume "
        "around it (ties: node_priority), or the first of node_priority it touches",
    )
    node_priority: tuple[str, ...] = Field(
        ("border_zone", "fibrosis", "healthy"), description="region order for node_rule"
    )
    calibrate_cv: bool = Field(True, description="calibrate σ to cv_m_per_s on the mesh's dx")
    cv_rel_tol: float = Field(0.02, gt=0, le=0.2, description="calibration tolerance on CV")
    scaled_sigma: Literal["match_cv", "scale"] = Field(
        "match_cv",
        description="a region's sigma_scale applies at reference_spacing_mm and its CV there is "
        "matched on the mesh (match_cv), or applies on the mesh as given (scale)",
    )
    reference_spacing_mm: float = Field(
        0.1, gt=0, le=1.0, description="resolved spacing where sigma_scale is applied, mm"
    )
    prepacing: PrepacingConfig = Field(default_factory=PrepacingConfig)
    cache_dir: str | None = Field(
        None,
        description="where calibrations and pre-paced states are cached "
        "(default: $CARDIOTWIN_CACHE_DIR or ~/.cache/cardiotwin)",
    )


# --- induction section (induction issue) ---------------------------------------------------


class StimulusConfig(StrictModel):
    """The pacing stimulus at a site: a square current on the site's node set."""

    strength_ua_per_uf: float = Field(
        60.0, gt=0, le=1000, description="stimulus current, µA/µF (per unit capacitance)"
    )
    duration_ms: float = Field(2.0, gt=0, le=20, description="pulse duration, ms")
    max_strength_factor: float = Field(
        4.0,
        ge=1,
        le=16,
        description="a site whose S1 does not capture is paced again at 2x, 4x ... the "
        "strength, up to this factor (as a cardiologist raises the output)",
    )


class PESConfig(StrictModel):
    """Ventricular programmed electrical stimulation (Arevalo et al. 2016; Prakosa et al.
    2018): per site ``s1_count`` S1 at ``s1_cycle_length_ms``; then up to
    ``extrastimuli`` premature stimuli (S2, S3, S4), each from ``first_coupling_ms`` after the
    previous one, shortened by ``coupling_step_ms`` until induction or loss of capture (not
    below ``min_coupling_ms``); S3 follows the shortest capturing S2, S4 the shortest
    capturing S3."""

    s1_count: int = Field(6, ge=1, le=50, description="number of S1 stimuli")
    s1_cycle_length_ms: float = Field(600.0, gt=0, description="S1 cycle length, ms")
    extrastimuli: int = Field(3, ge=1, le=5, description="premature stimuli: 3 = S2, S3, S4")
    first_coupling_ms: float = Field(300.0, gt=0, description="first coupling interval, ms")
    coupling_step_ms: float = Field(10.0, gt=0, description="shortening per trial, ms")
    min_coupling_ms: float = Field(150.0, gt=0, description="shortest coupling tried, ms")

    @model_validator(mode="after")
    def _couplings_in_order(self):
        if self.first_coupling_ms < self.min_coupling_ms:
            raise ValueError(
                f"first_coupling_ms ({self.first_coupling_ms:g} ms) is below min_coupling_ms "
                f"({self.min_coupling_ms:g} ms): the coupling intervals run from the first "
                "down to the shortest"
            )
        if self.first_coupling_ms >= self.s1_cycle_length_ms:
            raise ValueError(
                f"first_coupling_ms ({self.first_coupling_ms:g} ms) is not shorter than "
                f"s1_cycle_length_ms ({self.s1_cycle_length_ms:g} ms): an extrastimulus is "
                "premature"
            )
        return self


class RapidPacingConfig(StrictModel):
    """Atrial rapid pacing (Boyle et al. 2019): ``stimuli_per_cycle_length`` stimuli at each
    cycle length from ``first_cycle_length_ms`` down to ``last_cycle_length_ms`` in steps of
    ``cycle_length_step_ms`` (defaults: 12 stimuli, 300 -> 200 ms in 20 ms steps)."""

    first_cycle_length_ms: float = Field(300.0, gt=0)
    last_cycle_length_ms: float = Field(200.0, gt=0)
    cycle_length_step_ms: float = Field(20.0, gt=0)
    stimuli_per_cycle_length: int = Field(2, ge=1)
    prepace_cycle_length_ms: float = Field(
        500.0, gt=0, description="cells are pre-paced at this cycle length before the burst, ms"
    )

    @model_validator(mode="after")
    def _ramp_down(self):
        if self.last_cycle_length_ms > self.first_cycle_length_ms:
            raise ValueError(
                f"last_cycle_length_ms ({self.last_cycle_length_ms:g} ms) is above "
                f"first_cycle_length_ms ({self.first_cycle_length_ms:g} ms): the burst ramps "
                "down"
            )
        return self


class DetectionConfig(StrictModel):
    """Re-entry detection and VT characterisation (pipeline.induction.detection)."""

    # Ventricles as atria: -40 / -60 mV. At 0 mV the demo's lv-infarct VT (Mitchell-Schaeffer,
    # 2 mm) lost 441 of its 3,811 border-zone nodes: premature beats there peak at -20..0 mV
    # (the gate not yet recovered), so the maps showed no isthmus and the ablation cut
    # elsewhere; no node peaked in [-60, -40) mV, so -40 counts no electrotonic bump
    # (benchmarks/RESULTS.md, "The activation threshold hid the isthmus")
    threshold_mv: float = Field(-40.0, description="activation: upward crossing of this, mV")
    rearm_mv: float = Field(-60.0, description="a node counts a new beat after V < this, mV")
    # Courtemanche with AF remodelling peaks at about +3 mV in tissue paced at 500 ms and at
    # -2 to -8 mV at 220-200 ms; fibrotic cells at -9 mV, and -25 to -37 mV during a burst
    # (a 0.25 mm strip, sigma 0.128 S/m): at 0 mV their beats would not count
    atrial_threshold_mv: float = Field(
        -40.0, description="atria: activation is an upward crossing of this, mV"
    )
    atrial_rearm_mv: float = Field(
        -60.0, description="atria: a node counts a new beat after V < this, mV"
    )
    quiet_mv: float = Field(-50.0, description="at rest when V < this everywhere, mV")
    # 2 s: two cycles of a VT at 500-800 ms (border-zone ERP ~410 ms at 600 ms pacing sets the
    # shortest cycle a circuit through it can have) still fit after the paced beat
    sustained_after_ms: float = Field(
        2000.0, gt=0, description="induced: activity this long after the last stimulus, ms"
    )
    atrial_sustained_after_ms: float = Field(
        5000.0, gt=0, description="atria: sustained driver after the last stimulus, ms"
    )
    min_cycles: int = Field(2, ge=1, description="re-entrant cycles after the last paced beat")
    # a circuit's front is many nodes wide and always moving: in every live VT on the
    # lv-infarct phantom's 2 mm mesh some node activated within 0.14 ms of the end; waves
    # that were dying (the tissue only repolarising) had been silent for 53-161 ms
    moving_wave_cv_m_per_s: float = Field(
        0.05,
        gt=0,
        description="induced only if a wave still moves at the end: some node activated within "
        "one mean edge at this speed (2 mm: 40 ms) of the end, m/s",
    )
    keep_beats: int = Field(12, ge=4, le=64, description="activation times kept per node")
    capture_probe_mm: tuple[float, float] = Field(
        (2.0, 4.0), description="capture probe: nodes this far beyond the site's radius, mm"
    )
    capture_window_ms: float = Field(
        100.0, gt=0, description="a stimulus captured if the probe activates within this, ms"
    )
    capture_fraction: float = Field(
        0.25, gt=0, le=1, description="share of the probe's nodes that must activate"
    )
    check_interval_ms: float = Field(5.0, gt=0, description="capture / rest checks, ms")
    same_vt_exit_mm: float = Field(10.0, gt=0, description="same VT: exits this close, mm")
    same_vt_cycle_length: float = Field(
        0.1, gt=0, description="same VT: cycle lengths within this fraction"
    )
    same_vt_map_similarity: float = Field(
        0.8, gt=0, le=1, description="same VT: circular correlation of activation phase maps"
    )
    opening_loop_mm: tuple[float, float] = Field(
        (4.0, 8.0),
        description="atria: the loop round each opening (vein, valve) on which a driver's "
        "phase winding is measured, this far from it through the tissue, mm",
    )

    @model_validator(mode="after")
    def _distance_bands(self):
        for name in ("capture_probe_mm", "opening_loop_mm"):
            low, high = getattr(self, name)
            if not 0 <= low < high:
                raise ValueError(
                    f"{name} must be two distances 0 <= near < far, mm, got {low}, {high}"
                )
        return self

    @model_validator(mode="after")
    def _rearm_below_threshold(self):
        for prefix in ("", "atrial_"):
            threshold, rearm = (getattr(self, f"{prefix}{k}_mv") for k in ("threshold", "rearm"))
            if not rearm < threshold:
                raise ValueError(
                    f"{prefix}rearm_mv ({rearm} mV) must lie below {prefix}threshold_mv "
                    f"({threshold} mV): a node counts a new beat only after it repolarises"
                )
        return self

    def levels_mv(self, chamber: str) -> tuple[float, float]:
        """(activation threshold, rearm level) in mV for ``chamber`` (ventricle / atrium)."""
        if chamber == "atrium":
            return self.atrial_threshold_mv, self.atrial_rearm_mv
        return self.threshold_mv, self.rearm_mv


class BatchConfig(StrictModel):
    """How trials share the engine's batch dimension."""

    max_members: int | None = Field(
        None, ge=1, description="batch members at most (default: as many as memory allows)"
    )
    memory_gb: float | None = Field(
        None, gt=0, description="memory for the batch (default: half the free host/GPU memory)"
    )
    speculative_intervals: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="coupling intervals of one stage run side by side per site (auto: 1 on "
        "the CPU, 3 on a GPU)",
    )
    compact_fraction: Annotated[float, Field(gt=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description="rebuild the batch when this fraction of it has finished (auto: 0.01 on "
        "the CPU, i.e. at every finished trial; 0.5 on a GPU)",
    )

    def for_backend(self, backend: str) -> tuple[int, float]:
        """(speculative intervals, compact fraction) with ``auto`` resolved for ``backend``.

        On the CPU a batch member costs about 0.7 of a single run, so trials the protocol
        may not need (speculative intervals) and finished members kept in the batch are a
        net loss: the whole 17-site PES on the sample ran 1.35x faster than site by site
        with one interval and eager compaction, while 3 intervals were 0.86-1.0x
        (benchmarks/RESULTS.md). On a GPU they stay as they were (3 and 0.5) until measured
        on a device: a small mesh leaves the device idle at one member, and every rebuild of
        the batch costs device copies; on a mesh that fills the device a member is predicted
        to cost 0.75-0.8 of a run (issue 12), where speculation would lose there too.
        """
        gpu = backend == "cuda"
        width, fraction = self.speculative_intervals, self.compact_fraction
        if width == "auto":
            width = 3 if gpu else 1
        if fraction == "auto":
            fraction = 0.5 if gpu else 0.01
        return int(width), float(fraction)


class InductionConfig(StrictModel):
    """Arrhythmia induction: protocols, detection, batching (pipeline.induction)."""

    chamber: Literal["auto", "ventricle", "atrium"] = Field(
        "auto", description="auto: atrium when the mesh has LA-* sites, else ventricle"
    )
    sites: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        description="pacing sites by name (e.g. [AHA-3, AHA-9]); null: every site of the mesh. "
        "cardiotwin induce --sites overrides it",
    )
    stimulus: StimulusConfig = Field(default_factory=StimulusConfig)
    pes: PESConfig = Field(default_factory=PESConfig)
    rapid_pacing: RapidPacingConfig = Field(default_factory=RapidPacingConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)


# --- ablation section (ablation issue) -----------------------------------------------------


class AblationConfig(StrictModel):
    """Virtual ablation (pipeline.ablation): critical sites, lesion shape, budget, controls.

    Each round finds the critical site of every induced circuit (the smallest cut of the
    conducting tissue that the circuit must pass, joined to non-conducting anchors), places
    spherical ablation points along it, re-runs the whole induction protocol and repeats
    until non-inducible or the budget is spent (VAAT, Prakosa et al. 2018; OPTIMA, Boyle et
    al. 2019).
    """

    lesion_radius_mm: float = Field(
        4.0, ge=3.0, le=5.0, description="radius of one ablation point (clinical RF: 3-5 mm)"
    )
    max_rounds: int = Field(
        4,
        ge=0,
        le=50,
        description="ablate / re-induce rounds at most (0 is refused: nothing could be ablated)",
    )
    max_total_volume_ml: float = Field(
        20.0,
        ge=0,
        description="total lesion volume at most, ml (0 is refused: nothing could be ablated)",
    )
    border_zone_cost: float = Field(
        0.5,
        gt=0,
        le=1,
        description="cost of cutting border zone / fibrosis relative to healthy tissue of the "
        "same volume: below 1 the cut prefers the remodelled channel (the clinical target)",
    )
    anchors_per_line: Literal[1, 2] = Field(
        1,
        description="a lesion line must touch this many separate non-conducting anchors "
        "(scar, earlier lesions, openings such as the base, valves, veins); the minimum cut "
        "already joins scar to scar around an obstacle and a functional core to the nearest "
        "boundary (OPTIMA), so 1 only extends cuts that end on wall faces alone; 2 also "
        "extends a core's line on to a second anchor",
    )
    isthmus_lines: Literal["middle", "ends"] = Field(
        "ends",
        description="a protected isthmus is cut across where the wave is in mid-diastole and "
        "at both ends of the channel, as far along it as it stays closed by two walls (ends: "
        "the channel's entrance and exit, as in scar dechanneling), or only across its middle "
        "(middle: the least volume; on the sample patient it left the channel's far part "
        "open to a new circuit)",
    )
    strategy: Literal["targeted", "pvi", "pvi+targeted"] = Field(
        "targeted",
        description="targeted: lesions at each circuit's critical site; pvi: atrial pulmonary "
        "vein isolation only (one round, the baseline); pvi+targeted: PVI first, then targets",
    )
    pvi_distance_mm: float = Field(
        6.0, gt=0, le=30, description="PVI: ring lesions this far from each vein opening, mm"
    )
    random_controls: int = Field(
        0,
        ge=0,
        le=50,
        description="after the loop, re-induce this many copies of the input mesh, each with "
        "a line of the targeted lesions' total volume at a random border-zone location away "
        "from the targets, plus the PVI rings with pvi+targeted (shows that the target, not "
        "the volume, matters)",
    )
    seed: int = Field(0, ge=0, description="random-control draws (numpy SeedSequence)")


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
    tissue: TissueConfig = Field(default_factory=TissueConfig)
    induction: InductionConfig = Field(default_factory=InductionConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)


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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a configuration is YAML or JSON)") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # a syntax error of either format
        raise ConfigError(f"{path}: not valid YAML/JSON ({exc})") from exc
    return config_from_dict({} if data is None else data, source=str(path))


#: the sections a stage's command reads, for the stages that read fewer than all. The command
#: keeps only these (:func:`for_stage`: reading another section raises), its hashes cover only
#: these, and the workflow gives it a file of only these, so a change to another section (an
#: ablation setting) does not rerun it. The stages not named read every section.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "mesh": ("mesh", "anatomy"),
    "induce": ("simulation", "tissue", "induction"),
}


class StageSectionError(RuntimeError):
    """A stage read a configuration section it does not declare in :data:`STAGE_SECTIONS`: a
    defect in cardiotwin (its results could go stale in the workflow), not in the input."""


class WithheldSection:
    """Stands for a section a stage does not declare: any attribute read raises."""

    def __init__(self, section: str, stage: str):
        self._section, self._stage = section, stage

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise self.error(name)

    def error(self, name: str) -> StageSectionError:
        """The error of reading ``name`` of this section."""
        return StageSectionError(
            f"the {self._stage} stage read '{self._section}.{name}', but its configuration "
            f"holds only {', '.join(STAGE_SECTIONS[self._stage])}: add '{self._section}' to "
            f"STAGE_SECTIONS['{self._stage}'] in cardiotwin.pipeline.config"
        )

    def __repr__(self) -> str:
        return f"WithheldSection({self._section!r}, stage={self._stage!r})"


def for_stage(config: Config, stage: str) -> Config:
    """``config`` holding only the sections ``stage`` declares (:data:`STAGE_SECTIONS`); the
    others are :class:`WithheldSection`. Stages that declare none get ``config`` itself."""
    keep = STAGE_SECTIONS.get(stage)
    if keep is None:
        return config
    restricted = config.model_copy()
    for name in Config.model_fields:
        if name != "config_version" and name not in keep:
            # a frozen model: set the field's value past pydantic's assignment check
            object.__setattr__(restricted, name, WithheldSection(name, stage))
    return restricted


def config_data(config: Config, sections: tuple[str, ...] | None = None) -> dict:
    """The configuration as JSON data: ``config_version`` and every section it holds (not
    the withheld ones), or only ``sections`` (which must be held)."""
    data = {}
    for name in Config.model_fields:
        value = config.__dict__[name]
        wanted = sections is None or name == "config_version" or name in sections
        if not wanted or (isinstance(value, WithheldSection) and sections is None):
            continue
        if isinstance(value, WithheldSection):
            raise value.error("model_dump")
        data[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return data


def config_hash(
    config: Config, *, include_workflow: bool = False, sections: tuple[str, ...] | None = None
) -> str:
    """SHA-256 of the configuration's canonical JSON (defaults included): provenance.

    Without ``include_workflow`` the ``workflow`` section (cohort sheet, results folder:
    where files are, not what is computed) is left out, so one study run from two folders
    records the same hash. ``sections``: only these (and the format version), e.g.
    ``STAGE_SECTIONS["induce"]``, what an induction depends on. A configuration restricted by
    :func:`for_stage` hashes its own sections only."""
    import hashlib

    data = config_data(config, sections)
    if not include_workflow:
        data.pop("workflow", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
