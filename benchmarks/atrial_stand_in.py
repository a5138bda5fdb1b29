"""APD90 and ERP of the atrial cells: Courtemanche (the default atrial tissue) against the
Mitchell-Schaeffer stand-in of the phantom must-shows (ATRIAL_STAND_IN in
phantom_must_shows/test_induction_phantoms.py), where the numbers it prints are quoted.

Single cells paced 20 beats at each cycle length (solvers.cell.pace_cell, twice the
threshold stimulus); APD90 of the last beat; ERP: the shortest S2 (5 ms steps) after the
20th S1 that gives an upstroke (a rise of more than 50 mV to above −10 mV within 30 ms).
Remodelling as pipeline/config.py: AF (I_Kur, I_to × 0.5, I_CaL × 0.3) and fibrotic on top
(I_CaL × 0.15 overall, I_Na × 0.6, I_K1 × 0.5). About 1.5 minutes on one core.

    .venv/bin/python benchmarks/atrial_stand_in.py
"""

import numpy as np

from cardiotwin.solvers.cell import pace_cell
from cardiotwin.solvers.ionic import get_model

AF = {"g_Kur_scale": 0.5, "g_to": 0.5, "g_CaL": 0.3}
CELLS = {
    "Courtemanche AF": ("courtemanche", AF),
    "Courtemanche AF+fibrotic": ("courtemanche", {**AF, "g_CaL": 0.15, "g_Na": 0.6, "g_K1": 0.5}),
    "MS healthy stand-in": ("mitchell-schaeffer", {"tau_close": 0.56, "tau_open": 0.4}),
    "MS fibrotic stand-in": (
        "mitchell-schaeffer",
        {"tau_close": 1.2, "tau_open": 0.7, "tau_in": 1.7},
    ),
    "MS published constants, tau_close x 0.64": ("mitchell-schaeffer", {"tau_close": 0.64}),
}
DT_MS = 0.02
CYCLE_LENGTHS_MS = (500.0, 300.0)


def _apd90(voltage: np.ndarray, time_ms: np.ndarray) -> float:
    peak = int(np.argmax(voltage))
    level = voltage.max() - 0.9 * (voltage.max() - voltage[0])
    below = np.flatnonzero(voltage[peak:] < level)
    return float(time_ms[peak + below[0]] - time_ms[0]) if below.size else float("nan")


def apd_and_erp(model_name: str, scale: dict, bcl_ms: float) -> tuple[float, float | None]:
    model = get_model(model_name)
    p = model.default_parameters().copy()
    for name, factor in scale.items():
        p[model.parameter_index(name)] *= factor
    train = pace_cell(model, beats=20, bcl_ms=bcl_ms, dt_ms=DT_MS, parameters=p)
    amplitude = train.stimulus_amplitude
    window = int(30.0 / DT_MS)
    for coupling in range(100, int(bcl_ms) + 1, 5):
        s1 = pace_cell(model, bcl_ms=coupling, dt_ms=DT_MS, parameters=p,
                       initial_state=train.final_state, stim_amplitude=amplitude)  # fmt: skip
        s2 = pace_cell(model, bcl_ms=100.0, dt_ms=DT_MS, parameters=p,
                       initial_state=s1.final_state, stim_amplitude=amplitude)  # fmt: skip
        v = s2.voltage_mv[:window]
        if v.max() - v[0] > 50.0 and v.max() > -10.0:
            return _apd90(train.voltage_mv, train.time_ms), float(coupling)
    return _apd90(train.voltage_mv, train.time_ms), None


def main() -> None:
    print(f"{'cell':44s}" + "".join(f"  APD90/ERP at {c:g} ms" for c in CYCLE_LENGTHS_MS))
    for label, (model_name, scale) in CELLS.items():
        cells = []
        for bcl in CYCLE_LENGTHS_MS:
            apd, erp = apd_and_erp(model_name, scale, bcl)
            cells.append(f"{apd:8.0f} / {'-' if erp is None else f'{erp:.0f}':>4s}     ")
        print(f"{label:44s}" + "".join(f"  {c}" for c in cells))


if __name__ == "__main__":
    main()
