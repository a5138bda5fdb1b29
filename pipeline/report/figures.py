"""Report pictures drawn with matplotlib: the AHA 17-segment bullseye of inducibility.

The bullseye follows the AHA standard layout (Cerqueira et al. 2002, Circulation 105:539):
seen from the apex, anterior at the top and the septum on the left; basal segments 1-6 on
the outer ring, mid 7-12, apical 13-16, the apex (17) in the centre. Basal and mid segments
are 60° wide starting with the anterior one at 60-120°, counter-clockwise (1 anterior,
2 anteroseptal, 3 inferoseptal, 4 inferior, 5 inferolateral, 6 anterolateral); the apical
ring has four 90° segments (13 anterior at 45-135°, 14 septal, 15 inferior, 16 lateral).
"""

from __future__ import annotations

import io
import math

#: colour and legend text of each site outcome
OUTCOMES = {
    "induced": ("#c62828", "re-entry induced"),
    "not induced": ("#43a047", "not inducible"),
    "no capture": ("#fb8c00", "site did not capture"),
    "not tested": ("#bdbdbd", "not tested"),
}


def segment_wedge(segment: int) -> tuple[float, float, float, float]:
    """(inner radius, outer radius, start angle °, end angle °) of an AHA segment."""
    if not 1 <= segment <= 17:
        raise ValueError(f"AHA segments are 1..17, got {segment}")
    if segment == 17:
        return 0.0, 1.0, 0.0, 360.0
    if segment <= 12:
        ring, index, width = (3.0, 4.0) if segment <= 6 else (2.0, 3.0), (segment - 1) % 6, 60.0
        start = 60.0 + index * width
    else:
        ring, index, width = (1.0, 2.0), segment - 13, 90.0
        start = 45.0 + index * width
    return ring[0], ring[1], start, start + width


def bullseye_png(outcome_by_segment: dict[int, str], title: str = "") -> bytes:
    """PNG of the bullseye, each segment coloured by its outcome (see :data:`OUTCOMES`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Wedge

    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=120)
    for segment in range(1, 18):
        outcome = outcome_by_segment.get(segment, "not tested")
        if outcome not in OUTCOMES:
            raise ValueError(f"segment {segment}: unknown outcome {outcome!r}")
        inner, outer, start, end = segment_wedge(segment)
        wedge = Wedge((0, 0), outer, start, end, width=outer - inner)
        wedge.set(facecolor=OUTCOMES[outcome][0], edgecolor="white", linewidth=1.5)
        ax.add_patch(wedge)
        if segment == 17:
            x, y = 0.0, 0.0
        else:
            angle = math.radians((start + end) / 2)
            radius = (inner + outer) / 2
            x, y = radius * math.cos(angle), radius * math.sin(angle)
        ax.text(x, y, str(segment), ha="center", va="center", fontsize=9, color="white",
                fontweight="bold")  # fmt: skip
    ax.text(0, 4.25, "anterior", ha="center", fontsize=8)
    ax.text(-4.3, 0, "septum", ha="right", va="center", fontsize=8)
    ax.text(4.3, 0, "lateral", ha="left", va="center", fontsize=8)
    ax.text(0, -4.4, "inferior", ha="center", va="top", fontsize=8)
    used = sorted({outcome_by_segment.get(s, "not tested") for s in range(1, 18)},
                  key=list(OUTCOMES).index)  # fmt: skip
    handles = [Patch(color=OUTCOMES[o][0], label=OUTCOMES[o][1]) for o in used]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2,
              fontsize=7, frameon=False)  # fmt: skip
    ax.set_xlim(-5.2, 5.2)
    ax.set_ylim(-4.9, 4.7)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
