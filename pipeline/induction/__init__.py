"""Arrhythmia induction on a patient's mesh: pacing protocols, batched trials, re-entry
detection (DESIGN §7).

- :mod:`.sites`: pacing sites from the mesh's node sets (``AHA-1``..``AHA-17``, ``RV-1``,
  ``RV-2``, ``LA-01``..) and the capture probe around each;
- :mod:`.protocols`: ventricular programmed stimulation (Arevalo 2016 / Prakosa 2018) and
  atrial rapid pacing (Boyle 2019), as declared in the configuration;
- :mod:`.runner`: trials as members of the engine's batch, branched from snapshots, the
  batch refilled and compacted as trials finish;
- :mod:`.detection`: sustained re-entry, cycle length, exit site, slow conduction, phase
  singularities and unique-VT clustering from per-beat activation times;
- :mod:`.study`: the whole study of one mesh (``cardiotwin induce``).
"""

from cardiotwin.pipeline.induction.study import InductionError, run_induction

__all__ = ["InductionError", "run_induction"]
