"""The monodomain problem: a mesh, an ionic model, tissue conductivities and stimuli.

χ (C_m ∂V/∂t + I_ion(V, s)) = ∇·(σ ∇V) + I_stim,  ds/dt = f(V, s)
(e.g. Niederer et al. 2011, Phil Trans R Soc A 369:4331, eq. 2.1), with no-flux boundaries.
Dividing by χ C_m: ∂V/∂t = ∇·(D ∇V) − I_ion/C_m + i_stim with D = σ/(χ C_m) (see
:mod:`cardiotwin.solvers.fem` for the unit conversion) and i_stim in µA/µF.

Units: mesh in mm, σ in S/m (monodomain values, i.e. the harmonic means σ_i σ_e/(σ_i + σ_e)
of the bidomain ones), χ in cm⁻¹, C_m in µF/cm², stimuli in µA/µF, times in ms.

Tissue and nodes. Elements whose region tag is listed in ``nonconducting_regions`` (dense
scar) are dropped: their faces become no-flux boundaries. Nodes that no remaining element
touches carry no tissue and are *excluded from the system*: the problem numbers the
remaining ("tissue") nodes 0..N−1 (``tissue_nodes`` maps them to mesh nodes) and every field
of a simulation is over those N nodes; :meth:`MonodomainProblem.mesh_field` puts results back
on all mesh nodes with NaN where there is no tissue.

Batch. One problem carries ``batch_size`` = B independent simulations on the same mesh (pacing
sites, parameter sets); per-node fields are (N, B) and the state array is
``(n_states, N·B)`` with node n of member b at column ``n·B + b``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from cardiotwin.meshing.mesh import Mesh, check_mesh
from cardiotwin.solvers import fem
from cardiotwin.solvers.ionic import IonicModel, ParameterTable, get_model

#: surface-to-volume ratio, cm⁻¹ (DESIGN §3; Niederer et al. 2011)
CHI_PER_CM = 1400.0
#: membrane capacitance, µF/cm² (DESIGN §3; Niederer et al. 2011)
CM_UF_PER_CM2 = 1.0


@dataclass(frozen=True, eq=False)
class Stimulus:
    """A square stimulus current (µA/µF) on a set of nodes, once or as a train.

    Where: ``nodes`` (mesh node indices or a boolean mask over mesh nodes) or ``box_mm``
    ((x0, y0, z0), (x1, y1, z1)), all nodes inside inclusive. When: from ``start_ms`` for
    ``duration_ms``, repeated ``count`` times every ``period_ms``. Who: ``members``, the
    batch members it applies to (``None``: all). A step starting at time t is stimulated when
    start + j·period ≤ t < start + j·period + duration for some j < count.
    Overlapping stimuli do not add: on a node several stimuli cover at once, the one listed
    last sets the current.
    """

    start_ms: float
    duration_ms: float
    strength_ua_per_uf: float
    nodes: np.ndarray | None = None
    box_mm: tuple | None = None
    period_ms: float | None = None
    count: int = 1
    members: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.nodes is None) == (self.box_mm is None):
            raise ValueError("a Stimulus needs exactly one of nodes= or box_mm=")
        for name in ("start_ms", "duration_ms", "strength_ua_per_uf"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"stimulus {name} must be finite, got {getattr(self, name)}")
        if self.duration_ms <= 0:
            raise ValueError(f"stimulus duration must be positive, got {self.duration_ms} ms")
        if int(self.count) != self.count or self.count < 1:
            raise ValueError(f"stimulus count must be a positive integer, got {self.count}")
        if self.count > 1:
            if self.period_ms is None or not self.period_ms >= self.duration_ms:
                raise ValueError(
                    f"a train of {self.count} stimuli needs period_ms ≥ duration "
                    f"({self.duration_ms} ms), got {self.period_ms}"
                )
        if self.box_mm is not None:
            box = np.asarray(self.box_mm, dtype=np.float64)
            if box.shape != (2, 3) or not np.all(box[0] <= box[1]):
                raise ValueError(
                    f"box_mm must be ((x0, y0, z0), (x1, y1, z1)) with x0 ≤ x1 etc., got "
                    f"{self.box_mm}"
                )
        if self.members is not None:
            object.__setattr__(self, "members", tuple(int(m) for m in self.members))

    def is_on(self, t_ms: float, tol_ms: float = 1e-9) -> bool:
        """Whether a step starting at ``t_ms`` is stimulated."""
        since = t_ms - self.start_ms + tol_ms
        if since < 0:
            return False
        pulse = 0 if self.count == 1 else min(int(since // self.period_ms), self.count - 1)
        return since - pulse * (self.period_ms or 0.0) < self.duration_ms

    def mesh_nodes(self, points_mm: np.ndarray) -> np.ndarray:
        """Indices of the mesh nodes this stimulus covers."""
        if self.box_mm is not None:
            lo, hi = np.asarray(self.box_mm, dtype=np.float64)
            tol = 1e-9 * max(1.0, float(np.abs(points_mm).max(initial=0.0)))
            inside = np.all((points_mm >= lo - tol) & (points_mm <= hi + tol), axis=1)
            return np.nonzero(inside)[0]
        nodes = np.asarray(self.nodes)
        if nodes.dtype == bool:
            if nodes.shape != (points_mm.shape[0],):
                raise ValueError(
                    f"a stimulus node mask needs one entry per mesh node ({points_mm.shape[0]}),"
                    f" got {nodes.shape}"
                )
            return np.nonzero(nodes)[0]
        if nodes.size and not np.issubdtype(nodes.dtype, np.integer):
            raise ValueError(
                f"stimulus nodes must be integer indices or a boolean mask, got {nodes.dtype}"
            )
        nodes = nodes.astype(np.int64).reshape(-1)
        if nodes.size and (nodes.min() < 0 or nodes.max() >= points_mm.shape[0]):
            raise ValueError(
                f"stimulus node indices must lie in 0..{points_mm.shape[0] - 1}, got "
                f"{nodes.min()}..{nodes.max()}"
            )
        return nodes

    def describe(self) -> str:
        where = f"box {self.box_mm} mm" if self.box_mm is not None else "given nodes"
        return f"stimulus at {where}, {self.strength_ua_per_uf} µA/µF from {self.start_ms} ms"


@dataclass(eq=False)
class MonodomainProblem:
    """Everything a monodomain simulation needs except the numerics (see ``stepping``).

    - ``mesh``: the tetrahedral mesh (mm), checked with :func:`~cardiotwin.meshing.mesh.
      check_mesh`;
    - ``model``: an :class:`IonicModel` or its registered name (e.g. ``"tp06-epi"``);
    - ``conductivities_s_per_m``: region tag → (σ_l, σ_t) monodomain conductivities along /
      across the fibre, S/m; every conducting tag of the mesh needs an entry;
    - ``nonconducting_regions``: tags whose elements are dropped (no-flux scar);
    - ``stimuli``: :class:`Stimulus` list;
    - ``parameters``: :class:`ParameterTable` of the model (default: only the default set);
    - ``parameter_set``: which set each mesh node uses, (n_mesh_nodes,) or
      (n_mesh_nodes, batch_size) int (default: set 0 everywhere);
    - ``batch_size``: number of independent simulations run together;
    - ``state_overrides``: initial values by state name replacing the model's;
    - ``chi_per_cm``, ``cm_uf_per_cm2``: surface-to-volume ratio and membrane capacitance;
    - ``conductivity_scale``: optional per-element factor, (m,) for both directions or (m, 2)
      for (σ_l, σ_t) separately (e.g. border zone transverse reduction).
    """

    mesh: Mesh
    model: IonicModel | str
    conductivities_s_per_m: Mapping[int, tuple[float, float]]
    stimuli: Sequence[Stimulus] = ()
    parameters: ParameterTable | None = None
    parameter_set: np.ndarray | None = None
    batch_size: int = 1
    nonconducting_regions: Sequence[int] = ()
    state_overrides: Mapping[str, float] = field(default_factory=dict)
    chi_per_cm: float = CHI_PER_CM
    cm_uf_per_cm2: float = CM_UF_PER_CM2
    conductivity_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = get_model(self.model)
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        self.batch_size = int(self.batch_size)
        for name in ("chi_per_cm", "cm_uf_per_cm2"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        check_mesh(self.mesh)
        self._check_conductivities()
        if self.parameters is None:
            self.parameters = self.model.parameter_table()
        if self.parameters.model is not self.model:
            raise ValueError(
                f"the parameter table is for model {self.parameters.model.name!r}, "
                f"the problem uses {self.model.name!r}"
            )
        self._check_parameters()
        for name in self.state_overrides:
            self.model.state_index(name)  # raises UnknownNameError listing the states
        bad = {k: v for k, v in self.state_overrides.items() if not np.isfinite(v)}
        if bad:
            raise ValueError(f"initial state overrides must be finite numbers, got {bad}")
        self.stimuli = tuple(self.stimuli)
        for stimulus in self.stimuli:
            if stimulus.members is not None and any(
                not 0 <= m < self.batch_size for m in stimulus.members
            ):
                raise ValueError(
                    f"{stimulus.describe()} names batch members {stimulus.members}; "
                    f"members are 0..{self.batch_size - 1}"
                )
            if self._tissue_indices(stimulus.mesh_nodes(self.mesh.points_mm)).size == 0:
                raise ValueError(
                    f"{stimulus.describe()} covers no tissue node; move it onto conducting tissue"
                )

    # --- validation ---------------------------------------------------------------------

    def _check_conductivities(self) -> None:
        tags = set(np.unique(self.mesh.region).tolist())
        dropped = {int(t) for t in self.nonconducting_regions}
        missing = sorted(tags - dropped - {int(t) for t in self.conductivities_s_per_m})
        if missing:
            raise ValueError(
                f"mesh region tags {missing} have no conductivity; give "
                "conductivities_s_per_m={tag: (sigma_l, sigma_t)} for them or list them in "
                "nonconducting_regions"
            )
        for tag, pair in self.conductivities_s_per_m.items():
            values = np.asarray(pair, dtype=np.float64)
            if values.shape != (2,) or not np.all(np.isfinite(values) & (values > 0)):
                raise ValueError(
                    f"conductivity of region {tag} must be (sigma_l, sigma_t) > 0 in S/m, "
                    f"got {pair}; drop non-conducting tissue with nonconducting_regions"
                )
        if not np.any(self.conducting_elements):
            raise ValueError("no conducting elements: every region tag is in nonconducting_regions")
        if self.conductivity_scale is not None:
            scale = np.asarray(self.conductivity_scale, dtype=np.float64)
            if scale.shape not in ((self.mesh.n_elements,), (self.mesh.n_elements, 2)):
                raise ValueError(
                    f"conductivity_scale must have shape (m,) or (m, 2) with m = "
                    f"{self.mesh.n_elements} elements, got {scale.shape}"
                )
            if not np.all(np.isfinite(scale) & (scale > 0)):
                raise ValueError("conductivity_scale must be finite and positive")

    def _check_parameters(self) -> None:
        table = self.parameters.as_array()
        bad = np.argwhere(~np.isfinite(table))
        if bad.size:
            i, s = bad[0]
            raise ValueError(
                f"parameter {self.model.parameter_names[i]!r} of set {s} is "
                f"{table[i, s]}; give finite values (ParameterTable.add scales the defaults)"
            )
        n_sets = table.shape[1]
        pset = self.parameter_set
        if pset is None:
            return
        pset = np.asarray(pset)
        if pset.size and not np.issubdtype(pset.dtype, np.integer):
            # a float 1.7 was truncated to set 1 without a word
            raise ValueError(f"parameter_set must hold integer set indices, got {pset.dtype}")
        n = self.mesh.n_points
        if pset.shape not in ((n,), (n, self.batch_size)):
            raise ValueError(
                f"parameter_set must have shape ({n},) or ({n}, {self.batch_size}) "
                f"(mesh nodes × batch members), got {pset.shape}"
            )
        if pset.size and (pset.min() < 0 or pset.max() >= n_sets):
            raise ValueError(
                f"parameter_set refers to sets {pset.min()}..{pset.max()}, but the table has "
                f"{n_sets} (0..{n_sets - 1}); add the sets with ParameterTable.add"
            )

    # --- tissue and numbering -----------------------------------------------------------

    @cached_property
    def conducting_elements(self) -> np.ndarray:
        """(m,) bool: elements that stay in the system."""
        dropped = np.asarray(sorted(int(t) for t in self.nonconducting_regions), dtype=np.int32)
        return ~np.isin(self.mesh.region, dropped)

    @cached_property
    def tissue_nodes(self) -> np.ndarray:
        """(N,) mesh indices of the nodes with tissue, ascending (the system's numbering)."""
        return np.unique(self.mesh.tets[self.conducting_elements])

    @cached_property
    def _node_map(self) -> np.ndarray:
        mapping = np.full(self.mesh.n_points, -1, dtype=np.int64)
        mapping[self.tissue_nodes] = np.arange(self.tissue_nodes.size)
        return mapping

    def _tissue_indices(self, mesh_nodes: np.ndarray) -> np.ndarray:
        local = self._node_map[mesh_nodes]
        return local[local >= 0]

    @property
    def n_nodes(self) -> int:
        """N, the number of tissue nodes (the system size per batch member)."""
        return int(self.tissue_nodes.size)

    @cached_property
    def points_mm(self) -> np.ndarray:
        """(N, 3) coordinates of the tissue nodes, mm."""
        return self.mesh.points_mm[self.tissue_nodes]

    @cached_property
    def tets(self) -> np.ndarray:
        """(m', 4) conducting elements in tissue-node numbering."""
        return self._node_map[self.mesh.tets[self.conducting_elements]]

    def mesh_field(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Put a tissue-node field (N, …) back on all mesh nodes (n_mesh, …), ``fill`` elsewhere."""
        values = np.asarray(values)
        out = np.full((self.mesh.n_points, *values.shape[1:]), fill, dtype=np.result_type(values))
        out[self.tissue_nodes] = values
        return out

    # --- discretisation -----------------------------------------------------------------

    @cached_property
    def diffusivities_mm2_per_ms(self) -> tuple[np.ndarray, np.ndarray]:
        """Per conducting element (D_l, D_t) in mm²/ms, from σ/(χ C_m)."""
        region = self.mesh.region[self.conducting_elements]
        sigma = np.empty((region.size, 2))
        for tag, pair in self.conductivities_s_per_m.items():
            sigma[region == int(tag)] = pair
        if self.conductivity_scale is not None:
            scale = np.asarray(self.conductivity_scale, dtype=np.float64)[self.conducting_elements]
            sigma *= scale if scale.ndim == 2 else scale[:, None]
        d = fem.diffusivity_mm2_per_ms(sigma, self.chi_per_cm, self.cm_uf_per_cm2)
        return np.ascontiguousarray(d[:, 0]), np.ascontiguousarray(d[:, 1])

    @cached_property
    def fibres(self) -> np.ndarray | None:
        return None if self.mesh.fibres is None else self.mesh.fibres[self.conducting_elements]

    @cached_property
    def stiffness(self) -> sp.csr_matrix:
        """P1 stiffness (N, N) of ∇·(D∇V), mm³/ms."""
        d_l, d_t = self.diffusivities_mm2_per_ms
        return fem.stiffness_matrix(self.points_mm, self.tets, d_l, d_t, self.fibres)

    @cached_property
    def lumped_mass(self) -> np.ndarray:
        """(N,) lumped mass, mm³."""
        return fem.lumped_mass_vector(self.points_mm, self.tets)

    @cached_property
    def consistent_mass(self) -> sp.csr_matrix:
        """(N, N) consistent mass, mm³."""
        return fem.consistent_mass_matrix(self.points_mm, self.tets)

    # --- batch fields -------------------------------------------------------------------

    def parameter_sets(self) -> np.ndarray:
        """(N·B,) int32 parameter-set index of every (node, member), node-major."""
        n, b = self.n_nodes, self.batch_size
        if self.parameter_set is None:
            return np.zeros(n * b, dtype=np.int32)
        pset = np.asarray(self.parameter_set, dtype=np.int32)
        if pset.ndim == 1:
            pset = pset[:, None]
        pset = np.broadcast_to(pset[self.tissue_nodes], (n, b))
        return np.ascontiguousarray(pset.reshape(-1))

    def stimulus_indices(self, stimulus: Stimulus) -> np.ndarray:
        """Flat (node·B + member) indices of the state columns ``stimulus`` drives."""
        nodes = self._tissue_indices(stimulus.mesh_nodes(self.mesh.points_mm))
        members = (
            np.arange(self.batch_size) if stimulus.members is None else np.array(stimulus.members)
        )
        return (nodes[:, None] * self.batch_size + members[None, :]).reshape(-1)

    def initial_state(self) -> np.ndarray:
        """(n_states, N·B) float64 initial state (model defaults with ``state_overrides``)."""
        return self.model.initial_state(self.n_nodes * self.batch_size, self.state_overrides)

    def fingerprint(self) -> str:
        """SHA-256 of everything that determines the solution (mesh, tissue, model, stimuli)."""
        h = hashlib.sha256()

        def add(*items) -> None:
            for item in items:
                if isinstance(item, np.ndarray):
                    h.update(str((item.dtype, item.shape)).encode())
                    h.update(np.ascontiguousarray(item).tobytes())
                else:
                    h.update(repr(item).encode())

        mesh = self.mesh
        add(mesh.points_mm, mesh.tets, mesh.region)
        add(mesh.fibres if mesh.fibres is not None else "no fibres")
        add(self.model.name, self.model.module, self.parameters.as_array(), self.parameter_sets())
        add(sorted((int(k), tuple(map(float, v))) for k, v in self.conductivities_s_per_m.items()))
        add(sorted(int(t) for t in self.nonconducting_regions), self.batch_size)
        add(sorted(self.state_overrides.items()), self.chi_per_cm, self.cm_uf_per_cm2)
        if self.conductivity_scale is not None:
            add(np.asarray(self.conductivity_scale, dtype=np.float64))
        for s in self.stimuli:
            add(s.start_ms, s.duration_ms, s.strength_ua_per_uf, s.period_ms, s.count, s.members)
            add(self.stimulus_indices(s))
        return h.hexdigest()
