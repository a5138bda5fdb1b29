"""Can the default AF-remodelled atrial tissue hold a rotor, and on how large a domain?

A square sheet (side ``--side`` mm, one element thick, spacing ``--dx`` mm), fibres along x,
the default config's AF-remodelled Courtemanche cell pre-paced at 500 ms (Na_i, K_i held).
Healthy σ is calibrated, as ``cardiotwin induce`` does, to the config's CV (0.71 / 0.37 m/s)
on a strip of the sheet's spacing (cached under ``--cache``), or given with ``--sigma L T``
(S/m; DESIGN §4's 0.409 / 0.082 give only 0.55 / 0.11 m/s at 1 mm and 0.75 / 0.23 at
0.5 mm: the transverse upstroke is not resolved). Lumped mass, explicit diffusion, dt 0.05 ms.

Fibrosis (the default config's fibrosis region: its cell, pre-paced the same way, and its σ
scaling), either
- ``--patch MM``: a central square patch of that side, or
- ``--field PERCENT``: the ``la-fibrosis`` phantom's texture, the top PERCENT % of a smooth
  random field (Gaussian σ ``--grain``, default 5 mm as the phantom's), seed ``--seed``.

Induction, either
- ``--s2 MS`` (default 240): cross-field S1-S2, S1 on the edge x ≤ 1 mm at 0 ms, S2 on the
  half y ≤ side/2 at that time, while the S1 wave's refractory tail crosses it; or
- ``--burst X Y``: the default config's rapid pacing (Boyle 2019: 12 stimuli, 300 -> 200 ms)
  from a 2 × 2 mm square at (X, Y) mm, as ``cardiotwin induce`` paces an atrial site.

Prints the fraction of the sheet above −40 mV every 100 ms until the sheet is at rest
after the last stimulus or ``--after`` ms (default 3000) have passed since it.

    .venv/bin/python benchmarks/atrial_sheet_rotor.py --side 80 --s2 260 --patch 30 --dx 1
    .venv/bin/python benchmarks/atrial_sheet_rotor.py --side 80 --burst 40 40 --field 35
"""

import argparse
import time
from pathlib import Path

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.pipeline.config import Config, PrepacingConfig, SimulationConfig
from cardiotwin.pipeline.induction.protocols import rapid_pacing_onsets
from cardiotwin.pipeline.phantoms.acquisition import RandomField
from cardiotwin.pipeline.phantoms.atrium import FIBROSIS_PATCH_SIGMA_MM
from cardiotwin.pipeline.tissue import prepaced_states
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

DT_MS = 0.05


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=float, default=80.0, help="sheet side, mm")
    p.add_argument("--dx", type=float, default=0.5, help="mesh spacing, mm")
    fib = p.add_mutually_exclusive_group()
    fib.add_argument("--patch", type=float, default=0.0, help="central fibrotic square, mm")
    fib.add_argument("--field", type=float, default=0.0, help="patchy fibrosis, %% of sheet")
    p.add_argument("--seed", type=int, default=1, help="seed of the --field texture")
    p.add_argument("--grain", type=float, default=FIBROSIS_PATCH_SIGMA_MM,
                   help="Gaussian σ of the --field texture, mm")  # fmt: skip
    ind = p.add_mutually_exclusive_group()
    ind.add_argument("--s2", type=float, default=240.0, help="cross-field S2 time, ms")
    ind.add_argument("--burst", type=float, nargs=2, metavar=("X", "Y"), help="pace here, mm")
    p.add_argument(
        "--sigma",
        type=float,
        nargs=2,
        metavar=("L", "T"),
        help="healthy σ along / across the fibres, S/m (default: calibrated)",
    )
    p.add_argument("--cache", type=Path, default=Path("sheet-cache"),
                   help="folder of the CV calibration cache")  # fmt: skip
    p.add_argument("--after", type=float, default=3000.0, help="ms after the last stimulus")
    return p.parse_args()


def fibrotic_elements_and_nodes(args, mesh) -> tuple[np.ndarray, np.ndarray]:
    centroids = mesh.points_mm[mesh.tets].mean(axis=1)
    if args.field > 0:
        rng = np.random.default_rng(args.seed)
        low, high = np.zeros(3), np.full(3, args.side)
        field = RandomField(rng, low - 10, high + 10, min(1.0, args.dx), args.grain)
        at_nodes = field.at(mesh.points_mm)
        limit = float(np.quantile(at_nodes, 1 - args.field / 100.0))
        return field.at(centroids) > limit, at_nodes > limit
    lo, hi = (args.side - args.patch) / 2, (args.side + args.patch) / 2

    def inside(xyz):
        return (xyz[:, 0] > lo) & (xyz[:, 0] < hi) & (xyz[:, 1] > lo) & (xyz[:, 1] < hi)

    return inside(centroids), inside(mesh.points_mm)


def calibrated(config, model, dx_mm: float, cache: Path) -> tuple[float, float]:
    """Healthy σ (S/m) for the config's CVs on a strip of ``dx_mm``, as the pipeline does."""
    from cardiotwin.pipeline.tissue import _cell_model, calibrated_sigma

    region = config.tissue.atrium.regions["healthy"]
    cell = _cell_model(model, region.parameter_scale)
    simulation = SimulationConfig(dt_ms=DT_MS, backend="cpu")
    cache.mkdir(parents=True, exist_ok=True)
    return tuple(
        calibrated_sigma(cell, cv, dx_mm, simulation, cache=cache)["sigma_s_per_m"]
        for cv in region.cv_m_per_s
    )


def main() -> None:
    args = parse()
    config = Config()
    regions = config.tissue.atrium.regions
    model = get_model("courtemanche")
    table = model.parameter_table()
    healthy = table.add(**regions["healthy"].parameter_scale)
    fibrotic = table.add(**regions["fibrosis"].parameter_scale)
    states, beats = prepaced_states(
        model, table.as_array()[:, [healthy, fibrotic]], 500.0, DT_MS, PrepacingConfig()
    )
    print(f"pre-paced {beats} beats, rest {states[0]} mV (healthy, fibrotic)", flush=True)
    side, dx = args.side, args.dx
    mesh = box_mesh((side, side, dx), dx)
    fibrotic_elements, fibrotic_nodes = fibrotic_elements_and_nodes(args, mesh)
    mesh.region[fibrotic_elements] = 2
    print(f"{mesh.points_mm.shape[0]} nodes, fibrotic {fibrotic_nodes.mean() * 100:.1f} % of "
          f"nodes", flush=True)  # fmt: skip
    scale_l, scale_t = regions["fibrosis"].sigma_scale
    sigma_l, sigma_t = args.sigma or calibrated(config, model, dx, args.cache)
    print(f"healthy σ {sigma_l:.4g} / {sigma_t:.4g} S/m", flush=True)
    sigma = {1: (sigma_l, sigma_t), 2: (sigma_l * scale_l, sigma_t * scale_t)}
    if args.burst:
        x, y = args.burst
        box = ((x - 1.0, y - 1.0, 0.0), (x + 1.0, y + 1.0, dx))
        onsets_ms = [s * DT_MS for s in rapid_pacing_onsets(config.induction, DT_MS)]
        stimuli = [Stimulus(t, 2.0, 60.0, box_mm=box) for t in onsets_ms]
        print(f"burst at ({x}, {y}) mm: {onsets_ms} ms", flush=True)
    else:
        stimuli = [
            Stimulus(0.0, 2.0, 60.0, box_mm=((0, 0, 0), (1.0, side, dx))),
            Stimulus(args.s2, 2.0, 60.0, box_mm=((0, 0, 0), (side, side / 2, dx))),
        ]
    last_ms = max(s.start_ms for s in stimuli)
    problem = MonodomainProblem(
        mesh, model, sigma, stimuli=stimuli, parameters=table,
        parameter_set=np.where(fibrotic_nodes, fibrotic, healthy).astype(np.int32),
    )  # fmt: skip
    stepper = SplitStepper(problem, DT_MS, mass="lumped", diffusion="explicit")
    stepper.set_state(np.where(fibrotic_nodes[None, :], states[:, 1:2], states[:, 0:1]))
    start = time.time()
    for t_ms in range(100, int(last_ms + args.after) + 1, 100):
        stepper.run(float(t_ms))
        v = np.asarray(stepper.voltage_mv).reshape(-1)
        print(f"t {t_ms:5d} ms  above -40 mV {np.mean(v > -40) * 100:5.1f} %  max V "
              f"{v.max():6.1f} mV  wall {time.time() - start:5.0f} s", flush=True)  # fmt: skip
        if t_ms > last_ms + 300 and v.max() < -60:
            print(f"at rest {t_ms - last_ms:.0f} ms after the last stimulus")
            break
    else:
        print(f"active {args.after:.0f} ms after the last stimulus")


if __name__ == "__main__":
    main()
