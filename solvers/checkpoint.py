"""Checkpoints (files) and snapshots (memory): save a run, resume it, branch new runs from it.

Two ways to keep the state of a :class:`~cardiotwin.solvers.stepping.SplitStepper`:

- **Checkpoints** (:func:`save_checkpoint`, :func:`load_checkpoint`): a ``.npz`` file of the
  whole run (state, time, solver and tracker state) that *resumes the same run* — the same
  problem, stimuli included, and the same numerics (checked by the stepper's fingerprint).
  Written atomically; a truncated or corrupt file, or trackers given in another order than
  the ones that wrote it, is a :class:`CheckpointError` naming the file.
- **Snapshots** (:func:`take_snapshot`, :func:`branch`): the state of some batch members at
  one time, in memory (or saved with :meth:`Snapshot.save`), from which *new problems* start:
  the same mesh, tissue, model, parameter sets and numerics, but other stimuli and another
  batch. A programmed-stimulation protocol runs its S1 train once, snapshots it, and starts
  every extrastimulus trial from the snapshot. A branched run is bit-identical to an unbroken
  run of the new problem, provided the new problem's stimuli agree with the old one's before
  the snapshot time (only the future may differ; tested in ``tests/solvers/test_checkpoint.py``).

Members: a snapshot keeps M members; a branch names, for each of its B members, the snapshot
member it starts from (``members=[0, 0, 0, 1, 1]`` starts three trials from member 0 and two
from member 1). State arrays of a snapshot are (n_states, N, M): node-major like the stepper's
flat (n_states, N·B) layout, but with members on their own axis so they can be picked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cardiotwin.files import write_atomic

log = logging.getLogger(__name__)

#: version of the checkpoint file layout (2: stateful trackers are keyed in order, by type)
CHECKPOINT_FORMAT = 2
SNAPSHOT_FORMAT = 1

#: the numerics a branch inherits from its snapshot (SplitStepper keyword arguments)
NUMERICS = (
    "mass", "diffusion", "theta", "splitting", "substeps", "cg_rtol", "cell_tables", "precision",
)  # fmt: skip

#: cached discretisation of a MonodomainProblem that depends only on mesh and tissue
_DISCRETISATION = (
    "conducting_elements", "tissue_nodes", "_node_map", "points_mm", "tets",
    "diffusivities_mm2_per_ms", "fibres", "stiffness", "lumped_mass", "consistent_mass",
    "_stability_limits",
)  # fmt: skip


class CheckpointError(ValueError):
    """A checkpoint or snapshot that cannot be used; the message names the file and the fix."""


# --- fingerprints ----------------------------------------------------------------------------


def _hash(*items) -> str:
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, np.ndarray):
            h.update(str((item.dtype.str, item.shape)).encode())
            h.update(np.ascontiguousarray(item).tobytes())
        else:
            h.update(repr(item).encode())
    return h.hexdigest()


def tissue_fingerprint(problem) -> str:
    """SHA-256 of what a branch must share with its snapshot: mesh, tissue, model and
    parameter table (not the stimuli, the batch size or which set each member's nodes use)."""
    mesh = problem.mesh
    scale = problem.conductivity_scale
    return _hash(
        mesh.points_mm, mesh.tets, mesh.region,
        mesh.fibres if mesh.fibres is not None else "no fibres",
        problem.model.name, problem.model.module, problem.parameters.as_array(),
        sorted((int(k), tuple(map(float, v))) for k, v in problem.conductivities_s_per_m.items()),
        sorted(int(t) for t in problem.nonconducting_regions),
        problem.chi_per_cm, problem.cm_uf_per_cm2,
        "no scale" if scale is None else np.asarray(scale, dtype=np.float64),
    )  # fmt: skip


def member_parameter_fingerprints(problem) -> tuple[str, ...]:
    """Per batch member, a hash of the parameter set of each of its nodes."""
    sets = problem.parameter_sets().reshape(problem.n_nodes, problem.batch_size)
    return tuple(_hash(np.ascontiguousarray(sets[:, b])) for b in range(problem.batch_size))


def numerics_of(stepper) -> dict:
    """The stepper's numerics that a snapshot's branches must share (plus ``dt_ms``)."""
    values = {name: getattr(stepper, name) for name in NUMERICS}
    values["dt_ms"] = stepper.dt_ms
    return values


def reuse_discretisation(problem, source) -> bool:
    """Give ``problem`` the assembled matrices of ``source`` when both have the same mesh and
    tissue (saves assembly and the stability bound when a protocol builds one problem per
    batch of trials). Returns whether it did."""
    if problem is source or problem.mesh is not source.mesh:
        return False
    if tissue_fingerprint(problem) != tissue_fingerprint(source):
        return False
    for name in _DISCRETISATION:
        if name in source.__dict__ and name not in problem.__dict__:
            problem.__dict__[name] = source.__dict__[name]
    return True


# --- checkpoint files ------------------------------------------------------------------------


def _stateful(trackers) -> list:
    """The trackers that keep state: those whose class has its own ``state_dict`` (asked
    before they start, when their buffers do not exist yet)."""
    from cardiotwin.solvers.trackers import Tracker

    return [t for t in trackers if type(t).state_dict is not Tracker.state_dict]


def _tracker_keys(trackers) -> list[str]:
    return [f"{i}.{type(t).__name__}" for i, t in enumerate(trackers)]


def save_checkpoint(stepper, path: str | os.PathLike, trackers=()) -> Path:
    """Write state, time, solver and tracker states and the set-up hash to ``path``
    (``.npz``), atomically (temporary file + rename)."""
    path = Path(path)
    stateful = _stateful(trackers)
    arrays = {
        "format": np.array(CHECKPOINT_FORMAT),
        "fingerprint": np.array(stepper.fingerprint()),
        "step_index": np.array(stepper.step_index, dtype=np.int64),
        "dt_ms": np.array(stepper.dt_ms),
        "t_ms": np.array(stepper.t_ms),
        "state": stepper.state,
        "trackers": np.array(_tracker_keys(stateful) or [""]),
    }
    for name, value in stepper.diffusion_operator.state_dict().items():
        arrays[f"diffusion/{name}"] = value
    for key, tracker in zip(_tracker_keys(stateful), stateful, strict=True):
        for name, value in tracker.state_dict().items():
            arrays[f"tracker/{key}/{name}"] = np.asarray(value)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    write_atomic(path, write)
    return path


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}): the file is "
        "truncated or corrupt. Delete it and start the run again, or resume from an older copy"
    )


def _read_npz(path: Path, kind: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, or a :class:`CheckpointError` naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise _unreadable(path, exc) from None


def load_checkpoint(stepper, path: str | os.PathLike, trackers=()) -> None:
    """Restore a checkpoint of this same set-up (state, time, solver and tracker state).

    The trackers that keep state (activation times, APD, ...) must be the ones that wrote
    the checkpoint, in the same order, and started on ``stepper``; trackers without state
    (NaN guard, progress, checkpoints) may be added or left out.
    """
    data = restore_stepper(stepper, path, trackers)
    restore_trackers(data, path, trackers)


def restore_stepper(stepper, path: str | os.PathLike, trackers=()) -> dict:
    """The stepper's part of :func:`load_checkpoint` (state, time, solver), after checking
    the whole file, the trackers' keys included; returns the file's arrays for
    :func:`restore_trackers`. A run that resumes starts its trackers in between, so they
    start from the resumed time and state."""
    path = Path(path)
    data = _read_npz(path, "checkpoint")
    if "fingerprint" not in data or "format" not in data:
        raise CheckpointError(f"{path} is not a cardiotwin checkpoint")
    if int(data["format"]) != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {int(data['format'])}; this cardiotwin reads "
            f"format {CHECKPOINT_FORMAT}. Start the run again"
        )
    if str(data["fingerprint"]) != stepper.fingerprint():
        raise CheckpointError(
            f"checkpoint {path} was written for a different problem or numerics "
            "(mesh, tissue, model, stimuli, dt, mass, diffusion scheme); resume it with "
            "the set-up that wrote it"
        )
    saved_keys = [k for k in data["trackers"].tolist() if k]
    stateful = _stateful(trackers)
    given_keys = _tracker_keys(stateful)
    if saved_keys != given_keys:
        raise CheckpointError(
            f"checkpoint {path} holds the state of trackers {saved_keys or 'none'}, but the "
            f"run was given {given_keys or 'none'} (stateful trackers, in order). Pass the "
            "same trackers in the same order as the run that wrote it; otherwise their "
            "records (e.g. activation times) would be wrong"
        )
    state = data["state"]
    try:
        stepper._check_state(state)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    stepper.set_state(state)
    stepper.step_index = int(data["step_index"])
    stepper.diffusion_operator.load_state_dict(
        {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("diffusion/")}
    )
    stepper._stimulus_key = None
    return data


def restore_trackers(data: dict, path: str | os.PathLike, trackers=()) -> None:
    """The trackers' part of :func:`load_checkpoint` (each started on the stepper)."""
    stateful = _stateful(trackers)
    given_keys = _tracker_keys(stateful)
    for key, tracker in zip(given_keys, stateful, strict=True):
        prefix = f"tracker/{key}/"
        saved = {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}
        try:
            tracker.load_state_dict(saved)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path}: the state of tracker {key} does not fit it ({exc}); "
                "resume with the trackers (and settings) that wrote it"
            ) from None


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The state of M batch members of a run at one time (host memory).

    ``state`` (n_states, N, M) float64; ``diffusion``: the diffusion scheme's state (e.g. the
    CG extrapolation increment), name → (N, M); ``step_index`` and ``dt_ms`` give the time;
    ``tissue`` (:func:`tissue_fingerprint`), ``member_parameters``
    (:func:`member_parameter_fingerprints`) and ``numerics`` (:func:`numerics_of`) say what a
    branch must share with the run that took it.
    """

    state: np.ndarray
    diffusion: dict[str, np.ndarray]
    step_index: int
    dt_ms: float
    tissue: str
    member_parameters: tuple[str, ...]
    numerics: dict = field(default_factory=dict)

    @property
    def t_ms(self) -> float:
        return self.step_index * self.dt_ms

    @property
    def n_members(self) -> int:
        return int(self.state.shape[2])

    @property
    def n_nodes(self) -> int:
        return int(self.state.shape[1])

    def select(self, members: Sequence[int]) -> Snapshot:
        """A snapshot of the given members (repeats allowed), in that order."""
        members = self._check_members(members)
        return replace(
            self,
            state=np.ascontiguousarray(self.state[:, :, members]),
            diffusion={k: np.ascontiguousarray(v[:, members]) for k, v in self.diffusion.items()},
            member_parameters=tuple(self.member_parameters[m] for m in members),
        )

    def _check_members(self, members) -> np.ndarray:
        members = np.asarray(list(members), dtype=np.int64).reshape(-1)
        if members.size == 0:
            raise ValueError("a branch needs at least one member")
        if members.min() < 0 or members.max() >= self.n_members:
            raise ValueError(
                f"snapshot members must lie in 0..{self.n_members - 1}, got {members.tolist()}"
            )
        return members

    def flat_state(self, members: Sequence[int]) -> np.ndarray:
        """(n_states, N·B) state of the given members in the stepper's node-major layout."""
        members = self._check_members(members)
        picked = self.state[:, :, members]
        return np.ascontiguousarray(picked.reshape(picked.shape[0], -1))

    @classmethod
    def stack(cls, snapshots: Sequence[Snapshot], step_index: int | None = None) -> Snapshot:
        """One snapshot of all members of ``snapshots`` (same mesh, tissue and numerics), at
        ``step_index`` (default: the first's). Members may come from different times: a
        protocol refills a batch with fresh trials beside ones that are running on, each
        member keeping its own time offset."""
        first = snapshots[0]
        for other in snapshots[1:]:
            if other.tissue != first.tissue or other.numerics != first.numerics:
                raise ValueError("snapshots of different tissues or numerics cannot be stacked")
        return cls(
            state=np.concatenate([s.state for s in snapshots], axis=2),
            diffusion={
                k: np.concatenate([s.diffusion[k] for s in snapshots], axis=1)
                for k in first.diffusion
            },
            step_index=first.step_index if step_index is None else int(step_index),
            dt_ms=first.dt_ms,
            tissue=first.tissue,
            member_parameters=sum((s.member_parameters for s in snapshots), ()),
            numerics=dict(first.numerics),
        )

    @property
    def nbytes(self) -> int:
        return int(self.state.nbytes + sum(v.nbytes for v in self.diffusion.values()))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the snapshot to ``path`` (``.npz``) atomically."""
        arrays = {
            "format": np.array(SNAPSHOT_FORMAT),
            "kind": np.array("cardiotwin snapshot"),
            "state": self.state,
            "step_index": np.array(self.step_index, dtype=np.int64),
            "dt_ms": np.array(self.dt_ms),
            "tissue": np.array(self.tissue),
            "member_parameters": np.array(self.member_parameters),
            "numerics_names": np.array(sorted(self.numerics)),
            "numerics_values": np.array([repr(self.numerics[k]) for k in sorted(self.numerics)]),
        }
        for name, value in self.diffusion.items():
            arrays[f"diffusion/{name}"] = value

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        return write_atomic(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Snapshot:
        """Read a snapshot written by :meth:`save`; a damaged file is a :class:`CheckpointError`."""
        import ast

        path = Path(path)
        data = _read_npz(path, "snapshot")
        if str(data.get("kind", "")) != "cardiotwin snapshot":
            raise CheckpointError(f"{path} is not a cardiotwin snapshot")
        if int(data["format"]) != SNAPSHOT_FORMAT:
            raise CheckpointError(
                f"snapshot {path} has format {int(data['format'])}; this cardiotwin reads "
                f"format {SNAPSHOT_FORMAT}. Take the snapshot again"
            )
        numerics = {
            str(k): ast.literal_eval(str(v))
            for k, v in zip(data["numerics_names"], data["numerics_values"], strict=True)
        }
        diffusion = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("diffusion/")}
        return cls(
            state=data["state"],
            diffusion=diffusion,
            step_index=int(data["step_index"]),
            dt_ms=float(data["dt_ms"]),
            tissue=str(data["tissue"]),
            member_parameters=tuple(str(s) for s in data["member_parameters"]),
            numerics=numerics,
        )


def snapshot_identity(stepper) -> tuple[str, tuple[str, ...]]:
    """What :func:`take_snapshot` records of the stepper's problem (its tissue fingerprint
    and each member's parameter fingerprint): hashing the mesh and the per-node sets takes
    seconds on a clinical mesh, so a caller taking several snapshots of one run passes it."""
    return tissue_fingerprint(stepper.problem), member_parameter_fingerprints(stepper.problem)


def take_snapshot(
    stepper,
    members: Sequence[int] | None = None,
    identity: tuple[str, tuple[str, ...]] | None = None,
) -> Snapshot:
    """Snapshot of the stepper's current state (all members, or those listed: then only
    their state crosses to the host). ``identity``: :func:`snapshot_identity` of this
    stepper, when the caller has it."""
    n, b = stepper.n_nodes, stepper.batch_size
    tissue, member_parameters = snapshot_identity(stepper) if identity is None else identity
    if members is not None:
        members = list(members)
    diffusion = {
        name: np.asarray(value).reshape(n, b)
        for name, value in stepper.diffusion_operator.state_dict().items()
    }
    if members is not None and hasattr(stepper, "member_state"):
        state = stepper.member_state(members)
        return Snapshot(
            state=state,
            diffusion={k: np.ascontiguousarray(v[:, members]) for k, v in diffusion.items()},
            step_index=int(stepper.step_index),
            dt_ms=float(stepper.dt_ms),
            tissue=tissue,
            member_parameters=tuple(member_parameters[m] for m in members),
            numerics=numerics_of(stepper),
        )
    state = stepper.state.reshape(-1, n, b)
    snapshot = Snapshot(
        state=state,
        diffusion=diffusion,
        step_index=int(stepper.step_index),
        dt_ms=float(stepper.dt_ms),
        tissue=tissue,
        member_parameters=tuple(member_parameters),
        numerics=numerics_of(stepper),
    )
    return snapshot if members is None else snapshot.select(members)


def restore_snapshot(stepper, snapshot: Snapshot, members: Sequence[int] | None = None) -> None:
    """Put ``snapshot`` (its ``members``, one per batch member of ``stepper``) into ``stepper``:
    state, time and diffusion state. The problem must share mesh, tissue and parameter sets
    with the snapshot's run, and the stepper its numerics; stimuli may differ."""
    b = stepper.batch_size
    if members is None:
        members = range(snapshot.n_members) if snapshot.n_members == b else [0] * b
    members = snapshot._check_members(members)
    if members.size != b:
        raise ValueError(
            f"the branch has {b} batch members but {members.size} snapshot members were named"
        )
    problem = stepper.problem
    if snapshot.n_nodes != stepper.n_nodes or snapshot.tissue != tissue_fingerprint(problem):
        raise ValueError(
            "the snapshot was taken on another mesh, tissue, model or parameter table; a branch "
            "may change only the stimuli and the batch"
        )
    wanted = member_parameter_fingerprints(problem)
    for new, old in enumerate(members):
        if wanted[new] != snapshot.member_parameters[old]:
            raise ValueError(
                f"batch member {new} uses other parameter sets per node than snapshot member "
                f"{old} it starts from; give it the same parameter_set column"
            )
    here = numerics_of(stepper)
    differ = {k: (snapshot.numerics.get(k), v) for k, v in here.items()
              if snapshot.numerics and snapshot.numerics.get(k) != v}  # fmt: skip
    if differ:
        detail = ", ".join(f"{k} {a!r} (snapshot) vs {b_!r}" for k, (a, b_) in differ.items())
        raise ValueError(f"the branch's numerics differ from the snapshot's: {detail}")
    stepper.set_state(snapshot.flat_state(members))
    stepper.step_index = snapshot.step_index
    stepper.diffusion_operator.load_state_dict(
        {k: np.ascontiguousarray(v[:, members]) for k, v in snapshot.diffusion.items()}
    )
    stepper._stimulus_key = None


def branch(
    problem,
    snapshot: Snapshot,
    members: Sequence[int] | None = None,
    *,
    backend: str = "cpu",
    source_problem=None,
):
    """A new :class:`~cardiotwin.solvers.stepping.SplitStepper` for ``problem`` that starts
    from ``snapshot`` at its time, with the snapshot's numerics.

    ``members``: for each of the problem's batch members, the snapshot member it starts from
    (default: member b from member b when the sizes agree, else all from member 0).
    ``source_problem``: the problem the snapshot was taken on, to reuse its assembled
    matrices (optional).
    """
    from cardiotwin.solvers.stepping import SplitStepper

    if source_problem is not None:
        reuse_discretisation(problem, source_problem)
    numerics = {k: v for k, v in snapshot.numerics.items() if k in NUMERICS}
    if numerics.get("diffusion") != "explicit":
        numerics.pop("substeps", None)
    if members is None:
        n = problem.batch_size
        members = range(snapshot.n_members) if snapshot.n_members == n else [0] * n
    stepper = SplitStepper(
        problem,
        snapshot.dt_ms,
        backend=backend,
        state=snapshot.flat_state(members),
        **numerics,
    )
    restore_snapshot(stepper, snapshot, members)
    return stepper
