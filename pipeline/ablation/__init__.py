"""Virtual ablation (DESIGN §7; VAAT, Prakosa et al. 2018; OPTIMA, Boyle et al. 2019).

- :mod:`.graph`: the conducting tissue as a node graph; anchors (scar, lesions, openings);
- :mod:`.critical`: each circuit's critical site, the minimum cut of the tissue it must pass,
  joined to anchors;
- :mod:`.lesions`: clinical lesion lines (3–5 mm ablation points), random controls, PVI;
- :mod:`.loop`: ablate, re-induce from every site, repeat until non-inducible or the budget;
- :mod:`.inputs`: induction studies from ``induction.json`` or in memory;
- :mod:`.report`: ``ablation.json`` (``cardiotwin ablate``).
"""

from cardiotwin.pipeline.ablation.critical import Circuit, CriticalSite, find_critical_site
from cardiotwin.pipeline.ablation.graph import TissueGraph, anchors
from cardiotwin.pipeline.ablation.lesions import LesionPoint, LesionSet, apply_lesions, plan_lesion
from cardiotwin.pipeline.ablation.loop import (
    AblationError,
    AblationResult,
    InductionRound,
    run_ablation,
    run_controls,
)

__all__ = [
    "AblationError",
    "AblationResult",
    "Circuit",
    "CriticalSite",
    "InductionRound",
    "LesionPoint",
    "LesionSet",
    "TissueGraph",
    "anchors",
    "apply_lesions",
    "find_critical_site",
    "plan_lesion",
    "run_ablation",
    "run_controls",
]
