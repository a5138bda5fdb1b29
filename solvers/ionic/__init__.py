"""Ionic models, one file each, and the registry of the names users give them.

>>> from cardiotwin.solvers.ionic import get_model
>>> get_model("mitchell-schaeffer").parameter_names[:2]
('tau_in', 'tau_out')
"""

from __future__ import annotations

from functools import cache

from cardiotwin.solvers.ionic.base import (
    IonicModel,
    Parameter,
    ParameterTable,
    State,
    UnknownNameError,
    load,
    model_from_module,
)

# user-facing name -> (model file, parameter overrides that make the variant)
_REGISTRY: dict[str, tuple[str, dict[str, float]]] = {
    "aliev-panfilov": ("aliev_panfilov", {}),
    "courtemanche": ("courtemanche_1998", {}),
    "mitchell-schaeffer": ("mitchell_schaeffer", {}),
    "tp06-endo": ("tentusscher_panfilov_2006", {"celltype": 0.0, "g_to": 0.073}),
    "tp06-epi": ("tentusscher_panfilov_2006", {"celltype": 1.0}),
    "tp06-m": ("tentusscher_panfilov_2006", {"celltype": 2.0, "g_Ks": 0.098}),
}
_BUILT_IN = frozenset(_REGISTRY)


def register(name: str, module_name: str, overrides: dict[str, float] | None = None) -> None:
    """Make ``name`` resolve to model file ``module_name`` with parameter ``overrides``."""
    _REGISTRY[name] = (module_name, dict(overrides or {}))


def model_names() -> tuple[str, ...]:
    """The models users can name (variants made at run time by :func:`register` excluded)."""
    return tuple(sorted(_BUILT_IN))


@cache
def get_model(name: str) -> IonicModel:
    """The model registered as ``name`` (e.g. ``tp06-epi``, ``courtemanche``)."""
    try:
        module_name, overrides = _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown ionic model {name!r}; choose one of: {', '.join(model_names())}"
        ) from None
    return model_from_module(load(module_name), name, defaults_override=overrides)


__all__ = [
    "IonicModel",
    "Parameter",
    "ParameterTable",
    "State",
    "UnknownNameError",
    "get_model",
    "model_names",
    "register",
]
