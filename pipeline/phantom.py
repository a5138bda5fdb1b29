"""Synthetic patients: moved to the package :mod:`cardiotwin.pipeline.phantoms`.

This module keeps the old import path working with the same public names; the command is
:mod:`cardiotwin.pipeline.commands.phantom`.
"""

from cardiotwin.pipeline.phantoms import (
    ATRIUM_SPACING_MM,
    BLOOD,
    KINDS,
    PHANTOM_FILES,
    VARIANTS,
    Acquisition,
    DrawnMaskModel,
    Phantom,
    PhantomError,
    make_atrium,
    make_phantom,
    make_ventricle,
    write_phantom,
)

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
