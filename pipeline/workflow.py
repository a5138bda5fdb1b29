"""What the Snakefile needs, in Python: the validated configuration and the cohort sheet.

The Snakefile stays a table of contents (one rule per stage, each calling the ``cardiotwin``
command); everything that decides something lives here and is tested:

- :func:`setup` validates the Snakemake ``config`` dictionary against the one configuration
  model (:mod:`cardiotwin.pipeline.config`), writes the resolved configuration (defaults
  filled in) to ``<results>/config/<hash>.json`` for the rules' ``--config``, and reads the
  cohort sheet.
- :func:`read_cohort` reads ``configs/cohort.tsv``: one row per case, tab-separated, columns
  ``case_id``, ``kind`` (ventricle | atrium), ``lge`` (NIfTI file or DICOM folder), ``wall``
  (mask, NIfTI), optional ``blood`` (blood-pool mask; ``-`` or empty for none) and optional
  ``series`` (the SeriesInstanceUID to read from a DICOM folder of several). Paths are
  relative to the working directory (the repository root when run from the README).
  Everything is checked before any job runs: a missing file, a duplicate or unusable case id,
  an unknown kind or column is refused naming the row and the fix.

Case ids name output folders: use pseudonymous ids (never a patient name, ID or date).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cardiotwin.files import write_json_atomic
from cardiotwin.pipeline.config import (
    STAGE_SECTIONS,
    Config,
    ConfigError,
    config_data,
    config_from_dict,
    config_hash,
)

CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: the pseudonymous case ids ``cardiotwin import`` gives (their hex may hold digit runs)
PSEUDONYM = re.compile(r"^case-[0-9a-f]{10}$")
#: what a medical record number or a date looks like inside a case id: six digits in a row
#: (an MRN, or YYYYMMDD), or a date with separators (1965-04-12, 12_04_1965)
IDENTIFIER_LIKE = re.compile(r"\d{6,}|\d{4}[-_]\d{1,2}[-_]\d{1,2}|\d{1,2}[-_]\d{1,2}[-_]\d{4}")
KINDS = ("ventricle", "atrium")
COLUMNS = ("case_id", "kind", "lge", "wall", "blood", "series")
#: a DICOM unique identifier (PS3.5 §9.1): digits and dots, at most 64 characters
DICOM_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
REQUIRED_COLUMNS = ("case_id", "kind", "lge", "wall")


def case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot name a case's folders and reports, or None. The text never
    repeats an id that looks like a record number or a date."""
    if not CASE_ID_PATTERN.match(case_id):
        return (
            "case ids are 1-64 letters, digits, '_' or '-' (they name folders; use a "
            "pseudonymous id, never a patient name or ID)"
        )
    if IDENTIFIER_LIKE.search(case_id) and not PSEUDONYM.match(case_id):
        return (
            "the case id looks like a record number or a date (six digits in a row, or a "
            "date); case ids name folders and reports, so use a pseudonymous id such as P001"
        )
    return None


class CohortError(ValueError):
    """A cohort sheet that cannot be run; the message names the row and the fix."""


@dataclass(frozen=True)
class Case:
    """One patient of the cohort: its id, kind and input paths."""

    case_id: str
    kind: str
    lge: str
    wall: str
    blood: str | None
    #: the SeriesInstanceUID to read when ``lge`` is a DICOM folder holding several series
    series: str | None = None

    def inputs(self) -> dict[str, str]:
        """Role -> path of every input of this case."""
        found = {"lge": self.lge, "wall": self.wall}
        if self.blood:
            found["blood"] = self.blood
        return found


def read_cohort(path: str | os.PathLike, base: str | os.PathLike = ".") -> dict[str, Case]:
    """Read and check the cohort sheet; returns case id -> :class:`Case` in sheet order."""
    path = Path(path)
    base = Path(base)
    if not path.is_file():
        raise CohortError(f"cohort sheet {path} does not exist; set workflow.cohort")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t") if r and not r[0].startswith("#")]
    if not rows:
        raise CohortError(f"{path}: empty; give a header line and one row per case")
    header = [h.strip() for h in rows[0]]
    unknown = sorted(set(header) - set(COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if unknown or missing:
        raise CohortError(
            f"{path}: header {header}: "
            + (f"unknown columns {unknown}; " if unknown else "")
            + (f"missing columns {missing}; " if missing else "")
            + f"the columns are {', '.join(COLUMNS)} (tab-separated; blood and series "
            "optional)"
        )
    cases: dict[str, Case] = {}
    problems = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            problems.append(f"line {line_number}: {len(row)} fields, the header has {len(header)}")
            continue
        record = {h: v.strip() for h, v in zip(header, row, strict=True)}
        case_id = record["case_id"]
        where = f"line {line_number} (case {case_id!r})"
        problem = case_id_problem(case_id)
        if problem is not None:
            # an id that looks like an identifier is not repeated in the message
            shown = where if CASE_ID_PATTERN.match(case_id) is None else f"line {line_number}"
            problems.append(f"{shown}: {problem}")
            continue
        if case_id.lower() in {c.lower() for c in cases}:
            problems.append(
                f"{where}: duplicate case id (letter case aside: their folders collide on "
                "macOS and Windows); give every case its own id"
            )
            continue
        if record["kind"] not in KINDS:
            problems.append(f"{where}: kind {record['kind']!r} is not one of {', '.join(KINDS)}")
        blood = record.get("blood") or None
        if blood == "-":
            blood = None
        for role, value in (("lge", record["lge"]), ("wall", record["wall"]), ("blood", blood)):
            if value is None:
                continue
            if not (base / value).exists():
                problems.append(f"{where}: {role} file {value} does not exist")
        series = record.get("series") or None
        if series == "-":
            series = None
        if series is not None and not (len(series) <= 64 and DICOM_UID.match(series)):
            problems.append(
                f"{where}: series {series!r} is not a DICOM SeriesInstanceUID (digits and "
                "dots, at most 64 characters; cardiotwin import --dicom FOLDER lists them)"
            )
        elif series is not None and not (base / record["lge"]).is_dir():
            problems.append(
                f"{where}: a series is given but lge is not a DICOM folder; leave series "
                "empty (-) for a NIfTI image"
            )
        cases[case_id] = Case(case_id, record["kind"], record["lge"], record["wall"], blood, series)
    if problems:
        raise CohortError(f"{path}: " + "; ".join(problems))
    if not cases:
        raise CohortError(f"{path}: no cases; add one row per case under the header")
    return cases


@dataclass(frozen=True)
class Setup:
    """The validated configuration, the file the rules pass as ``--config``, and the cases."""

    config: Config
    config_file: str
    config_sha256: str
    cases: dict[str, Case]
    results: str
    stage_config_files: dict[str, str] = field(default_factory=dict)

    def config_for(self, stage: str) -> str:
        """The configuration file of one stage's rule: only the sections it reads
        (:data:`~cardiotwin.pipeline.config.STAGE_SECTIONS`), else the whole file."""
        return self.stage_config_files.get(stage, self.config_file)

    def path(self, relative: str) -> str:
        """An output path under the results folder (keeps Snakemake wildcards intact)."""
        return f"{self.results}/{relative}"

    def case_dir(self, case_id: str) -> str:
        return f"{self.results}/{case_id}"

    def segmentation_method(self, case_id: str) -> str:
        """The configured intensity method for this case's kind of chamber."""
        section = self.config.segmentation
        kind = self.cases[case_id].kind
        return section.ventricle_method if kind == "ventricle" else section.atrium_method

    def simulation_threads(self, cores: int | None) -> int:
        """Threads of one simulation job: ``workflow.simulation_threads``, else every core the
        run was given (``cores``: Snakemake's ``--cores``; it caps any request to that); on a
        cluster (no ``--cores``) :data:`CLUSTER_THREADS` (the SLURM profile's cpus_per_task)."""
        wanted = self.config.workflow.simulation_threads
        if wanted is not None:
            return int(wanted)
        return int(cores) if cores else CLUSTER_THREADS

    @property
    def simulation_gpus(self) -> int:
        """GPUs one simulation job holds (``resources: gpu``): 1 when ``simulation.backend``
        may use one (``cuda``; ``auto``, which takes a GPU where the job finds one, so on a
        cluster it must ask for one), 0 for ``cpu`` and ``reference``, whose jobs are then not
        serialised by the profile's ``gpu`` limit."""
        return 1 if self.config.simulation.backend in ("cuda", "auto") else 0


#: threads of a simulation job on a cluster when the configuration names none
CLUSTER_THREADS = 2


def check_execution(setup: Setup, executor: str, gpu_usable=None) -> None:
    """Refuse, before any job runs, a run that asks for the GPU on a machine without one.

    With a cluster executor (``slurm``) the jobs run elsewhere, so only a local run is checked.
    ``gpu_usable`` (for tests) replaces the CUDA probe.
    """
    if setup.config.simulation.backend != "cuda" or executor not in ("local", "dryrun", "touch"):
        return
    if gpu_usable is None:
        from cardiotwin.solvers.stepping import cuda_usable

        gpu_usable = cuda_usable()
    if not gpu_usable:
        raise ConfigError(
            "simulation.backend is 'cuda' but this machine has no usable CUDA GPU, and the "
            "workflow runs locally: set simulation.backend to 'auto' (CPU fallback, recorded "
            "in provenance) or run on a GPU node (--profile configs/profiles/slurm)"
        )


def summary_message(setup: Setup) -> str:
    """What the user reads when the workflow ends: where each report is."""
    lines = ["cardiotwin: reports written:"]
    for case_id in setup.cases:
        lines.append(f"  {case_id}: {setup.case_dir(case_id)}/report/report.html (and .pdf)")
    lines.append(f"  cohort summary: {setup.results}/cohort/summary.html")
    return "\n".join(lines)


def atrial_mesh_options(case: Case, inputs) -> str:
    """The atrial mesher's extra inputs (LGE for the fibrosis, blood pool, wall mask)."""
    if case.kind != "atrium":
        return ""
    parts = [f"--lge {inputs['lge']}", f"--wall {inputs['wall']}",
             option("--blood", inputs.get("blood")), option("--series", case.series)]  # fmt: skip
    return " ".join(part for part in parts if part)


def option(flag: str, value: str | None) -> str:
    """``"FLAG VALUE"`` for a command line, or ``""`` when there is no value."""
    return "" if value is None else f"{flag} {value}"


def parent(path: str) -> str:
    """The folder of an output path (for commands that take a folder)."""
    return str(Path(path).parent)


def setup(snakemake_config: dict, base: str | os.PathLike = ".") -> Setup:
    """Validate the Snakemake config dict and the cohort; write the resolved configuration.

    Raises :class:`~cardiotwin.pipeline.config.ConfigError` or :class:`CohortError` before
    any job runs.
    """
    config = config_from_dict(dict(snakemake_config), source="workflow configuration")
    # named by what is computed, not where files are or how many threads compute it: a new
    # thread count or cohort sheet path keeps the file, so no stage reruns for it (the
    # stages never read the workflow section; it is left out of the file)
    digest = config_hash(config)
    results = config.workflow.results
    config_file = _write_config(config, f"{results}/config/{digest[:16]}.json", base)
    # a stage that reads fewer sections (mesh, induce) gets a file of only those, named by
    # them: an ablation setting changed reruns ablate and report, not the induction
    stage_files = {}
    for stage, sections in STAGE_SECTIONS.items():
        name = f"{results}/config/{stage}-{config_hash(config, sections=sections)[:16]}.json"
        stage_files[stage] = _write_config(config, name, base, sections)
    cases = read_cohort(Path(base) / config.workflow.cohort, base)
    return Setup(config, config_file, digest, cases, results, stage_files)


def _write_config(config: Config, name: str, base, sections=None) -> str:
    """Write the resolved configuration (``sections`` only, when given) unless ``name``
    exists already: its name is its content's hash, and an unchanged mtime is what keeps
    Snakemake from rerunning the stages that read it."""
    target = Path(base) / name
    if not target.exists():
        resolved = config_data(config, sections)
        resolved.pop("workflow", None)
        write_json_atomic(resolved, target)
    return name


__all__ = [
    "Case",
    "CohortError",
    "ConfigError",
    "Setup",
    "option",
    "parent",
    "read_cohort",
    "setup",
]
