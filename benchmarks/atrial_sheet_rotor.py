"""Can the default AF-remodelled atrial tissue hold a rotor, and on how large a domain?

A cross-field S1-S2 on a square sheet (side ``L`` mm, one element thick, 0.5 mm), fibres
along x, σ 0.409 / 0.082 S/m (DESIGN §4; CV 0.75 / 0.23 m/s at 0.5 mm on a strip), the
default config's AF-remodelled Courtemanche cell pre-paced at 500 ms (Na_i, K_i held).
S1: the edge x ≤ 1 mm at 0 ms; S2: the half y ≤ L/2 at ``T_S2`` ms, while the S1 wave's
refractory tail crosses it. Optionally a central square patch of side ``PATCH`` mm of the
default config's fibrosis region (its cell, pre-paced the same way, and its σ scaling), and
another spacing ``DX`` mm (σ as given, not recalibrated). Prints the fraction of the sheet
above −40 mV every 100 ms until the sheet is at rest or 3 s. Lumped mass, explicit
diffusion, dt 0.05 ms.

    .venv/bin/python benchmarks/atrial_sheet_rotor.py L T_S2 [PATCH [DX]]  # e.g. 80 260 30
"""

import sys
import time

import numpy as np

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.pipeline.config import Config, PrepacingConfig
from cardiotwin.pipeline.tissue import prepaced_states
from cardiotwin.solvers.ionic import get_model
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper

SIGMA_S_PER_M = (0.409, 0.082)


def main() -> None:
    side_mm = float(sys.argv[1]) if len(sys.argv) > 1 else 80.0
    t_s2_ms = float(sys.argv[2]) if len(sys.argv) > 2 else 240.0
    patch_mm = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    dx_mm = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    regions = Config().tissue.atrium.regions
    model = get_model("courtemanche")
    table = model.parameter_table()
    healthy = table.add(**regions["healthy"].parameter_scale)
    fibrotic = table.add(**regions["fibrosis"].parameter_scale)
    states, beats = prepaced_states(
        model, table.as_array()[:, [healthy, fibrotic]], 500.0, 0.05, PrepacingConfig()
    )
    print(f"pre-paced {beats} beats, rest {states[0]} mV (healthy, fibrotic)", flush=True)
    mesh = box_mesh((side_mm, side_mm, dx_mm), dx_mm)
    lo, hi = (side_mm - patch_mm) / 2, (side_mm + patch_mm) / 2

    def in_patch(xyz):
        return (xyz[:, 0] > lo) & (xyz[:, 0] < hi) & (xyz[:, 1] > lo) & (xyz[:, 1] < hi)

    mesh.region[in_patch(mesh.points_mm[mesh.tets].mean(axis=1))] = 2
    patch_nodes = in_patch(mesh.points_mm)
    scale_l, scale_t = regions["fibrosis"].sigma_scale
    sigma = {1: SIGMA_S_PER_M, 2: (SIGMA_S_PER_M[0] * scale_l, SIGMA_S_PER_M[1] * scale_t)}
    stimuli = [
        Stimulus(0.0, 2.0, 60.0, box_mm=((0, 0, 0), (1.0, side_mm, dx_mm))),
        Stimulus(t_s2_ms, 2.0, 60.0, box_mm=((0, 0, 0), (side_mm, side_mm / 2, dx_mm))),
    ]
    problem = MonodomainProblem(
        mesh, model, sigma, stimuli=stimuli, parameters=table,
        parameter_set=np.where(patch_nodes, fibrotic, healthy).astype(np.int32),
    )  # fmt: skip
    stepper = SplitStepper(problem, 0.05, mass="lumped", diffusion="explicit")
    stepper.set_state(np.where(patch_nodes[None, :], states[:, 1:2], states[:, 0:1]))
    start = time.time()
    for t_ms in range(100, 3001, 100):
        stepper.run(float(t_ms))
        v = np.asarray(stepper.voltage_mv).reshape(-1)
        print(f"t {t_ms:5d} ms  above -40 mV {np.mean(v > -40) * 100:5.1f} %  max V "
              f"{v.max():6.1f} mV  wall {time.time() - start:5.0f} s", flush=True)  # fmt: skip
        if t_ms > t_s2_ms + 300 and v.max() < -60:
            print("at rest")
            break


if __name__ == "__main__":
    main()
