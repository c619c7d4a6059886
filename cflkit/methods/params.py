"""A method's own parameters: one frozen dataclass per method, fields named as in its paper,
defaults taken from it, and a one-line comment after each field that ``cflkit list METHOD``
shows as its help.

Values are converted (the CLI gives strings) and checked when the dataclass is made, so a
bad value fails before any work, naming the parameter and its valid range.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, fields
from functools import lru_cache

GROUPS = "groups"  # clusters="groups": as many clusters as the federation's planted groups (K given)
AUTO = "auto"  # clusters="auto": the method chooses K from what the server has (K unknown)
NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class Params:
    """The base of every method's parameters (a method without any uses it as it is)."""

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, convert(type(self), f.name, getattr(self, f.name)))
        self.check()
        self.check_together()

    def check(self):
        """Each field's own range or choices (a subclass raises ``ValueError`` naming the field)."""

    def check_together(self):
        """Fields that cannot work together (a subclass raises ``ValueError`` saying why)."""

    @classmethod
    def check_value(cls, name: str, value) -> None:
        """``ValueError`` if ``value`` is not valid for field ``name`` on its own (whatever the
        other fields): its type, range or choices."""
        probe = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(probe, f.name, f.default)
        object.__setattr__(probe, name, convert(cls, name, value))
        probe.check()

    @classmethod
    def names(cls) -> tuple:
        return tuple(f.name for f in fields(cls))

    def replace(self, **changes) -> "Params":
        """A copy with ``changes`` (values may be CLI strings); ``KeyError`` names an unknown one."""
        for key in changes:
            if key not in self.names():
                raise KeyError(key)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(name, default as typed on the command line, help)`` of every field."""
        defaults = cls()
        return [(f.name, show(getattr(defaults, f.name)), field_help(cls, f.name)) for f in fields(cls)]


def show(value) -> str:
    """A value as one types it: ``none`` for None, ``true``/``false`` for booleans."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@lru_cache(maxsize=None)
def _types(cls) -> dict:
    return typing.get_type_hints(cls)


def _options(kind) -> tuple:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def convert(cls, name: str, value):
    """``value`` (possibly a CLI string) as field ``name`` of ``cls`` declares it
    (``int``, ``float``, ``str``, ``bool``, a union of them, ``None`` for an optional one);
    ``ValueError`` naming the field and what it expects."""
    options = _options(_types(cls)[name])
    if type(None) in options and (value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)):
        return None
    for kind in (k for k in (bool, int, float, str) if k in options):  # the strictest first
        try:
            return _as(kind, value)
        except (TypeError, ValueError, OverflowError):
            continue
    words = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
             type(None): "none"}
    expected = " or ".join(words[k] for k in options if k in words)
    raise ValueError(f"parameter {name!r} expects {expected}, got {value!r}")


def _as(kind, value):
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        if value in (True, False) and not isinstance(value, float):
            return bool(value)
        raise ValueError
    if kind is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if isinstance(value, bool):
        raise TypeError  # booleans are not numbers
    if isinstance(value, str):
        value = kind(value.strip())
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        if not isinstance(value, (int, float)):
            raise TypeError
        return int(value)
    if not isinstance(value, (int, float)):
        raise TypeError
    value = float(value)
    if not math.isfinite(value):
        raise ValueError
    return value


def field_help(cls, name: str) -> str:
    """The comment after field ``name`` where a class of ``cls``'s hierarchy declares it."""
    for klass in cls.__mro__:
        if name not in getattr(klass, "__annotations__", {}):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith(f"{name}:") and "#" in stripped:
                return stripped.split("#", 1)[1].strip()
    return ""


# -- checks a subclass's check() uses ---------------------------------------------------------
def at_least(params, name: str, low, meaning: str = ""):
    value = getattr(params, name)
    if value is not None and value < low:
        raise ValueError(f"parameter {name!r} must be >= {low}{meaning}, got {value}")


def one_of(params, name: str, options):
    value = getattr(params, name)
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(map(str, options))}")


def cluster_count(params, name: str = "clusters", auto: bool = False):
    """A number of clusters: an integer >= 1, 'groups' (as many as the planted groups), or,
    where the method can choose K itself (``auto``), 'auto'."""
    value = getattr(params, name)
    words = f"{GROUPS!r} (as many as the planted groups)" + (f" or {AUTO!r} (the method chooses)" if auto else "")
    if isinstance(value, str):
        if value != GROUPS and not (auto and value == AUTO):
            hint = " (this method cannot choose K itself)" if value == AUTO else ""
            raise ValueError(f"parameter {name!r} must be an integer >= 1 or {words}, got {value!r}{hint}")
    elif value < 1:
        raise ValueError(f"parameter {name!r} must be an integer >= 1 or {words}, got {value}")


def silhouette_bar(params, name: str = "min_silhouette"):
    """A mean silhouette width: a number in [-1, 1] (``clusters=auto``'s bar for K > 1)."""
    value = getattr(params, name)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"parameter {name!r} must be in [-1, 1] (a mean silhouette width), got {value}")
