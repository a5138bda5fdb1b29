"""Why atrial pre-pacing holds Na_i and K_i: the three Courtemanche parameter sets of the
default atrial tissue (published, AF, AF + fibrotic; pipeline/config.py) paced alone at
500 ms in blocks of 10 beats, with the slow concentrations free and held at their initial
values. Prints rest, peak and APD90 of each block's last beat, Na_i, and the largest
relative change of the other states over the block (pre-pacing stops below 1e-3).
About 1 minute to compile, then seconds.

    .venv/bin/python benchmarks/courtemanche_drift.py [--beats 300]
"""

import argparse

import numpy as np

from cardiotwin.pipeline.config import Config
from cardiotwin.solvers.cell import action_potential_metrics, pace_cell, stimulus_threshold
from cardiotwin.solvers.ionic import get_model

DT_MS = 0.05
BCL_MS = 500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", type=int, default=300)
    args = parser.parse_args()
    model = get_model("courtemanche")
    regions = Config().tissue.atrium.regions
    sets = {"published": {}, "AF": regions["healthy"].parameter_scale,
            "AF + fibrotic": regions["fibrosis"].parameter_scale}  # fmt: skip
    held = [model.state_index(name) for name in model.slow_states]
    others = np.setdiff1d(np.arange(model.n_states), held)
    for label, scale in sets.items():
        table = model.parameter_table()
        column = table.add(**scale)
        p = table.as_array()[:, column]
        y0 = model.initial_state(1)[:, 0]
        amplitude = 2.0 * stimulus_threshold(model, dt_ms=DT_MS, parameters=p, initial_state=y0)
        for hold in (False, True):
            print(f"== {label}, slow states {'held' if hold else 'free'}")
            y = y0.copy()
            for beats in range(10, args.beats + 1, 10):
                run = pace_cell(
                    model, beats=10, bcl_ms=BCL_MS, dt_ms=DT_MS, stim_amplitude=amplitude,
                    parameters=p, initial_state=y,
                )  # fmt: skip
                final = run.final_state
                if hold:
                    final[held] = y0[held]
                change = np.abs(final - y)[others] / (np.abs(y[others]) + 1e-6)
                y = final
                m = action_potential_metrics(run)
                if beats in (10, 50) or beats % 100 == 0 or beats == args.beats:
                    na_i = y[model.state_index("Na_i")]
                    print(
                        f"{beats:5d}  rest {m['v_rest_mv']:7.2f} mV  peak {m['v_peak_mv']:6.2f}"
                        f" mV  APD90 {m['apd90_ms']:6.1f} ms  Na_i {na_i:.3f} mM"
                        f"  largest change {change.max():.2g}"
                    )


if __name__ == "__main__":
    main()
