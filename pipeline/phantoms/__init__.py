"""Synthetic patients with ground truth: an LGE image, the masks and the designed labels.

Three kinds (``cardiotwin phantom KIND --out DIR --seed N``):

- ``lv-infarct``: a left ventricle beside an RV in a chest (short-axis stack), with a large
  infarct whose two dense lobes are separated by a border-zone isthmus designed so that
  re-entry is possible at published conduction velocities (:mod:`.ventricle`,
  :mod:`.infarct`);
- ``lv-healthy``: the same ventricle (same seed) without scar, the negative control;
- ``la-fibrosis``: a left atrium with veins, mitral opening and patchy fibrosis on a 3-D
  LGE grid (:mod:`.atrium`).

:mod:`.acquisition` images an anatomy (partial volume, blur, bias, Rician noise) and takes the
truth on the same grid; :mod:`.contrast` draws the tissue signals per seed from published
ranges; :mod:`.masks` draws wall masks with a reader's contour errors. Every random draw comes
from its own stream of ``numpy.random.SeedSequence(seed)`` (anatomy, contrast, texture,
noise, infarct patches, mask errors), so the anatomy of a seed does not change with the SNR,
the spacing or the fine grid, and ``lv-healthy`` shares everything but the scar with
``lv-infarct``. Everything drawn is recorded in ``truth.json``.
"""

from __future__ import annotations

from cardiotwin.pipeline.phantoms.acquisition import Acquisition, Fine, PhantomError
from cardiotwin.pipeline.phantoms.atrium import ATRIUM_SPACING_MM, make_atrium
from cardiotwin.pipeline.phantoms.infarct import VARIANTS
from cardiotwin.pipeline.phantoms.masks import DrawnMaskModel
from cardiotwin.pipeline.phantoms.output import PHANTOM_FILES, Phantom, write_phantom
from cardiotwin.pipeline.phantoms.ventricle import make_ventricle

KINDS = ("lv-infarct", "lv-healthy", "la-fibrosis")

#: Fine-grid class of the chamber's blood pool (never a label-map value: there 4 is a lesion)
BLOOD = int(Fine.BLOOD)

__all__ = [
    "ATRIUM_SPACING_MM",
    "BLOOD",
    "KINDS",
    "PHANTOM_FILES",
    "VARIANTS",
    "Acquisition",
    "DrawnMaskModel",
    "Phantom",
    "PhantomError",
    "make_atrium",
    "make_phantom",
    "make_ventricle",
    "write_phantom",
]


def make_phantom(
    kind: str,
    seed: int,
    *,
    acquisition: Acquisition | None = None,
    fibrosis_percent: float = 20.0,
    variant: str | None = None,
    wall_mask: str | None = None,
    min_loop_ms: float | None = None,
) -> Phantom:
    """Dispatch on ``kind`` (one of :data:`KINDS`).

    ``variant`` (ventricles): scar variant, default by seed. ``wall_mask``: ``"drawn"`` or
    ``"true"``; default drawn for ventricles, true for the atrium. ``min_loop_ms``
    (``lv-infarct``): the circuit's shortest loop in the fast scenario (ms; see
    :func:`~cardiotwin.pipeline.phantoms.ventricle.design_infarct_map`).
    """
    if min_loop_ms is not None and kind != "lv-infarct":
        raise PhantomError("a circuit's loop time applies to lv-infarct only")
    if kind in ("lv-infarct", "lv-healthy"):
        return make_ventricle(
            seed,
            infarct=kind == "lv-infarct",
            acquisition=acquisition,
            variant=variant,
            wall_mask=wall_mask or "drawn",
            min_loop_ms=min_loop_ms,
        )
    if kind == "la-fibrosis":
        return make_atrium(
            seed,
            fibrosis_percent=fibrosis_percent,
            acquisition=acquisition,
            wall_mask=wall_mask or "true",
        )
    raise PhantomError(f"unknown phantom kind {kind!r}; choose one of {', '.join(KINDS)}")
