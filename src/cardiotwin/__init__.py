"""cardiotwin: patient-specific cardiac electrophysiology digital twins.

The user's top-level folders are installed under this one import name:
``solvers/`` -> :mod:`cardiotwin.solvers`, ``meshing/`` -> :mod:`cardiotwin.meshing`,
``pipeline/`` -> :mod:`cardiotwin.pipeline`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cardiotwin")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
