"""Trackers: small objects the stepper calls while it runs (activation times, APD, NaN guard,
progress, checkpoints, voltage samples), in the manner of py-pde's trackers.

Protocol (duck-typed; subclass :class:`Tracker`):

- ``start(sim)``: allocate buffers on the stepper's backend (``sim.ops``), once per run;
- ``update(sim)``: after every step, device work only (only if ``updates_every_step``);
- ``handle(sim)``: every ``interval_ms`` of simulated time (and at the end of a run); may do
  host work and raise :class:`~cardiotwin.solvers.stepping.StopSimulation` to end the run;
- ``finish(sim)``: when the run ends, however it ends;
- ``state_dict()`` / ``load_state_dict(d)``: host arrays for checkpoints.

``sim`` is the :class:`~cardiotwin.solvers.stepping.SplitStepper`; per-node results are
(N, B) arrays over its tissue nodes (``problem.mesh_field`` maps them to mesh nodes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cardiotwin.solvers.backends import node_rules
from cardiotwin.solvers.stepping import StopSimulation


class SimulationDiverged(RuntimeError):
    """The membrane potential became NaN/inf or left the plausible range."""

    def __init__(self, message: str, *, t_ms, node, member, point_mm, value_mv):
        super().__init__(message)
        self.t_ms, self.node, self.member = t_ms, node, member
        self.point_mm, self.value_mv = point_mm, value_mv


def continues_on(tracker, sim) -> bool:
    """Whether ``tracker`` (at ``start``) goes on recording a further run of the stepper it
    last ran on; otherwise it starts afresh and remembers ``sim``. A tracker of the same
    shape handed to another stepper (another problem or trial) kept the first run's record."""
    import weakref

    last = getattr(tracker, "_stepper", None)
    if last is not None and last() is sim:
        return True
    tracker._stepper = weakref.ref(sim)
    return False


class Tracker:
    """Base class: does nothing; see the module docstring for the protocol."""

    interval_ms: float | None = None
    updates_every_step: bool = False

    def start(self, sim) -> None:
        pass

    def update(self, sim) -> None:
        pass

    def handle(self, sim) -> None:
        pass

    def finish(self, sim) -> None:
        pass

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, data) -> None:
        pass


def _restore(ops, buffer, value) -> None:
    ops.copy(ops.asarray(np.asarray(value, dtype=buffer.dtype)), buffer)


class ActivationTracker(Tracker):
    """Activation times: upward crossings of ``threshold_mv`` (default 0 mV), per node and
    batch member, linearly interpolated between the two steps around the crossing.

    Results (host copies, (N, B)): :attr:`first_ms` (NaN if never activated), :attr:`last_ms`,
    :attr:`count`. With ``stop_when_all_activated``, the run ends at the first check (every
    ``interval_ms``) at which every tissue node of every member has activated. Passed to
    several runs of the same stepper, it keeps recording across them.
    """

    updates_every_step = True

    def __init__(
        self,
        threshold_mv: float = 0.0,
        stop_when_all_activated: bool = False,
        interval_ms: float = 1.0,
    ) -> None:
        self.threshold_mv = float(threshold_mv)
        self.stop_when_all_activated = stop_when_all_activated
        self.interval_ms = interval_ms if stop_when_all_activated else None
        self._shape = None
        self._ops = None

    def start(self, sim) -> None:
        # a tracker passed to successive runs of one stepper keeps its record; on another
        # stepper (another problem, another trial) it starts afresh
        ops = sim.ops
        self._v_prev = ops.asarray(ops.to_host(sim.voltage).reshape(-1))
        if continues_on(self, sim):
            return
        n = sim.n_nodes * sim.batch_size
        self._shape = (sim.n_nodes, sim.batch_size)
        self._ops = ops
        self._first = ops.asarray(np.full(n, np.nan))
        self._last = ops.asarray(np.full(n, np.nan))
        self._count = ops.zeros(n, dtype=np.int32)

    def update(self, sim) -> None:
        self._ops.activation_update(
            self._v_prev, sim.voltage, sim.t_ms - sim.dt_ms, sim.dt_ms, self.threshold_mv,
            self._first, self._last, self._count,
        )  # fmt: skip

    def fused_rule(self, sim):
        """``(rule, arguments)`` of :meth:`update` as a per-node rule of
        :mod:`~cardiotwin.solvers.backends.node_rules`: a backend that fuses trackers runs
        it inside the next step's cell kernel instead of launching it (see
        ``SplitStepper.run``)."""
        v, t_prev, dt = sim.voltage.reshape(-1), float(sim.t_ms - sim.dt_ms), float(sim.dt_ms)
        args = (self._v_prev, v, t_prev, dt, self.threshold_mv, self._first, self._last,
                self._count)  # fmt: skip
        return node_rules.activation_at, args

    def handle(self, sim) -> None:
        if self.stop_when_all_activated and self._ops.count_nan(self._first) == 0:
            raise StopSimulation(f"all nodes activated (by t = {sim.t_ms:.4g} ms)")

    @property
    def first_ms(self) -> np.ndarray:
        """(N, B) first activation time, ms (NaN: never)."""
        return self._ops.to_host(self._first).reshape(self._shape)

    @property
    def last_ms(self) -> np.ndarray:
        """(N, B) latest activation time, ms (NaN: never)."""
        return self._ops.to_host(self._last).reshape(self._shape)

    @property
    def count(self) -> np.ndarray:
        """(N, B) number of activations."""
        return self._ops.to_host(self._count).reshape(self._shape)

    def state_dict(self):
        ops = self._ops
        return {
            "v_prev": ops.to_host(self._v_prev),
            "first_ms": ops.to_host(self._first),
            "last_ms": ops.to_host(self._last),
            "count": ops.to_host(self._count),
        }

    def load_state_dict(self, data) -> None:
        buffers = {"v_prev": self._v_prev, "first_ms": self._first, "last_ms": self._last,
                   "count": self._count}  # fmt: skip
        for name, buffer in buffers.items():
            _restore(self._ops, buffer, data[name])


class APDTracker(Tracker):
    """Action potential duration per node and member at ``fraction`` repolarisation
    (default 0.9: APD90), of the latest completed action potential.

    Measured from the upward ``threshold_mv`` crossing to the downward crossing of
    V_rest + (1 − fraction)(V_peak − V_rest), both interpolated linearly in time; V_rest is
    the lowest V since the previous action potential ended. Starting at the 0 mV crossing
    rather than at the maximal upstroke velocity (as ``solvers.cell`` does) shortens APD by
    the time between the two: well under 1 ms for TP06, ~2 ms for Mitchell–Schaeffer, whose
    action potential peaks at only 20 mV. Passed to several runs of the same stepper, it
    keeps recording across them.
    """

    updates_every_step = True

    def __init__(self, fraction: float = 0.9, threshold_mv: float = 0.0) -> None:
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must lie in (0, 1) (0.9 for APD90), got {fraction}")
        self.fraction = float(fraction)
        self.threshold_mv = float(threshold_mv)

    _NAMES = ("v_prev", "phase", "t_up", "v_min", "v_peak", "apd_ms", "count")

    _ops = None
    _shape = None

    def start(self, sim) -> None:
        ops = sim.ops
        v0 = ops.to_host(sim.voltage).reshape(-1)
        if continues_on(self, sim):
            _restore(ops, self._buffers["v_prev"], v0)  # continue recording
            return
        n = sim.n_nodes * sim.batch_size
        self._ops, self._shape = ops, (sim.n_nodes, sim.batch_size)
        self._buffers = {
            "v_prev": ops.asarray(v0),
            "phase": ops.zeros(n, dtype=np.int8),
            "t_up": ops.asarray(np.full(n, np.nan)),
            "v_min": ops.asarray(v0),
            "v_peak": ops.asarray(v0),
            "apd_ms": ops.asarray(np.full(n, np.nan)),
            "count": ops.zeros(n, dtype=np.int32),
        }

    def update(self, sim) -> None:
        b = self._buffers
        self._ops.apd_update(
            b["v_prev"], sim.voltage, sim.t_ms - sim.dt_ms, sim.dt_ms, self.threshold_mv,
            self.fraction, b["phase"], b["t_up"], b["v_min"], b["v_peak"], b["apd_ms"],
            b["count"],
        )  # fmt: skip

    def fused_rule(self, sim):
        """``(rule, arguments)`` of :meth:`update` (see :meth:`ActivationTracker.fused_rule`)."""
        b = self._buffers
        args = (b["v_prev"], sim.voltage.reshape(-1), float(sim.t_ms - sim.dt_ms),
                float(sim.dt_ms), self.threshold_mv, self.fraction, b["phase"], b["t_up"],
                b["v_min"], b["v_peak"], b["apd_ms"], b["count"])  # fmt: skip
        return node_rules.apd_at, args

    @property
    def apd_ms(self) -> np.ndarray:
        """(N, B) duration of the latest completed action potential, ms (NaN: none)."""
        return self._ops.to_host(self._buffers["apd_ms"]).reshape(self._shape)

    @property
    def count(self) -> np.ndarray:
        """(N, B) number of completed action potentials."""
        return self._ops.to_host(self._buffers["count"]).reshape(self._shape)

    def state_dict(self):
        return {name: self._ops.to_host(buf) for name, buf in self._buffers.items()}

    def load_state_dict(self, data) -> None:
        for name, buffer in self._buffers.items():
            _restore(self._ops, buffer, data[name])


class NanGuard(Tracker):
    """Stop with :class:`SimulationDiverged` when V is NaN/inf or |V| > ``limit_mv``.

    Checked every ``interval_ms`` (one reduction on the device, one integer to the host);
    the error names the time, the node, its coordinates (mm), the batch member and the value.
    """

    #: handled before the other trackers due at the same step (stepping.SplitStepper.run)
    handle_first = True

    def __init__(self, interval_ms: float = 1.0, limit_mv: float = 1000.0) -> None:
        self.interval_ms = float(interval_ms)
        self.limit_mv = float(limit_mv)
        self._last_good_ms = 0.0

    def start(self, sim) -> None:
        self._last_good_ms = sim.t_ms

    def handle(self, sim) -> None:
        ops = sim.ops
        bad = ops.first_bad_index(sim.voltage, self.limit_mv)
        if bad < 0:
            self._last_good_ms = sim.t_ms
            return
        node, member = divmod(bad, sim.batch_size)
        value = float(ops.to_host(sim.voltage)[node, member])
        point = sim.problem.points_mm[node]
        mesh_node = int(sim.problem.tissue_nodes[node])
        raise SimulationDiverged(
            f"simulation diverged at t = {sim.t_ms:.4g} ms (last check passed at "
            f"{self._last_good_ms:.4g} ms): V = {value:.6g} mV at mesh node {mesh_node} "
            f"(x, y, z = {point[0]:.4g}, {point[1]:.4g}, {point[2]:.4g} mm), batch member "
            f"{member}. Lower dt, use diffusion='implicit', or check the stimulus strength, "
            "conductivities and parameters",
            t_ms=sim.t_ms,
            node=mesh_node,
            member=member,
            point_mm=point.copy(),
            value_mv=value,
        )

    def bad_members(self, sim) -> np.ndarray:
        """(B,) True for each member whose V is now NaN/inf or |V| > ``limit_mv`` anywhere.

        One host copy of V: for deciding, after :class:`SimulationDiverged`, which members
        are affected, not for every check."""
        v = sim.ops.to_host(sim.voltage)
        return ~np.all(np.abs(v) <= self.limit_mv, axis=0)


class ProgressTracker(Tracker):
    """A tqdm progress bar in simulated ms (updated every ``interval_ms``)."""

    def __init__(self, interval_ms: float = 1.0, enabled: bool = True, **tqdm_options) -> None:
        self.interval_ms = float(interval_ms)
        self.enabled = enabled
        self.tqdm_options = tqdm_options
        self._bar = None

    def start(self, sim) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        total = max(0.0, (sim.t_end_ms or 0.0) - sim.t_ms)
        options = {"unit": "ms", "desc": "simulating", "dynamic_ncols": True, **self.tqdm_options}
        self._bar = tqdm(total=round(total, 6), **options)
        self._shown = sim.t_ms

    def handle(self, sim) -> None:
        if self._bar is not None:
            self._bar.update(round(sim.t_ms - self._shown, 6))
            self._shown = sim.t_ms

    def finish(self, sim) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class CheckpointTracker(Tracker):
    """Write a checkpoint (``.npz``: state, time, tracker states, set-up hash) to ``path``
    every ``interval_ms`` and at the end of the run, atomically (temporary name + rename).
    Resume with ``stepper.run(t_end, trackers, resume_from=path)``."""

    handle_last = True  # after the other trackers of the same step

    def __init__(self, path: str | os.PathLike, interval_ms: float) -> None:
        if not interval_ms > 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval_ms} ms")
        self.path = Path(path)
        self.interval_ms = float(interval_ms)
        self.written = 0

    def handle(self, sim) -> None:
        sim.save_checkpoint(self.path, sim.trackers)
        self.written += 1


class VoltageRecorder(Tracker):
    """Host copies of V (mV) at ``nodes`` (tissue-node indices; default all) every
    ``interval_ms``: :attr:`times_ms` (k,) and :attr:`voltages_mv` (k, n_nodes, B)."""

    def __init__(self, interval_ms: float, nodes: np.ndarray | None = None) -> None:
        self.interval_ms = float(interval_ms)
        self.nodes = None if nodes is None else np.asarray(nodes, dtype=np.int64)
        self.times_ms: list[float] = []
        self._frames: list[np.ndarray] = []

    def start(self, sim) -> None:
        if not self.times_ms:
            self.handle(sim)

    def handle(self, sim) -> None:
        v = sim.voltage_mv
        self.times_ms.append(sim.t_ms)
        self._frames.append(v if self.nodes is None else v[self.nodes])

    @property
    def voltages_mv(self) -> np.ndarray:
        return np.stack(self._frames)
