"""The engine: ionic models, the monodomain stepper and its CPU and CUDA backends."""

from __future__ import annotations

import numpy as np


def restore_numpy_aliases() -> None:
    """Put back ``numpy.row_stack`` where NumPy no longer has it (NumPy >= 2.5).

    numba-cuda up to at least 0.30.4 registers an overload for ``np.row_stack`` when it
    compiles its first kernel; with NumPy 2.5 (the alias of ``np.vstack`` was removed) that
    registration raises ``AttributeError`` and no CUDA kernel can be compiled at all. Seen on
    the first real GPU run (H200 image: numpy 2.5.2, numba-cuda 0.30.4). The alias is the
    function it always was, so restoring it changes nothing else.
    """
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack  # noqa: NPY201


restore_numpy_aliases()
