"""Federated methods. A new method is one file in this package: a :class:`Method`
subclass with a ``name``; it is found and registered automatically."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

from .base import ClusteredFedAvg, Context, Method, RoundInfo, ServerState

# Listing order of `cflkit list`: baselines first, then the clustered methods by module name.
_FIRST = ("baselines", "clustered")


def _discover() -> dict[str, type[Method]]:
    found: dict[str, type[Method]] = {}
    modules = sorted((m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "params", "parts")),
                     key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n))
    for module_name in modules:
        module = importlib.import_module(f"{__name__}.{module_name}")
        for cls in list(vars(module).values()):  # definition order
            if inspect.isclass(cls) and issubclass(cls, Method) and cls.__module__ == module.__name__ and cls.name:
                if cls.name in found and found[cls.name] is not cls:
                    raise RuntimeError(f"two methods are named {cls.name!r}: {found[cls.name]} and {cls}")
                found[cls.name] = cls
    return found


METHODS: dict[str, type[Method]] = _discover()


def make_method(config) -> Method:
    """Instantiate the method named by ``config.method``."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[config.method](config)


__all__ = ["METHODS", "make_method", "Method", "ClusteredFedAvg", "Context", "RoundInfo", "ServerState"]
