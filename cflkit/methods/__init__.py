"""Federated methods. A new method is one file: a :class:`Method` subclass registered here."""
from __future__ import annotations

from .base import ClusteredFedAvg, Context, Method, RoundInfo, ServerState
from .baselines import Centralized, FedAvg, FedProx, Local, Oracle, RandomClusters

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    FedAvg, FedProx, Local, Oracle, RandomClusters, Centralized)}


def make_method(config) -> Method:
    """Instantiate the method named by ``config.method``."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[config.method](config)


__all__ = ["METHODS", "make_method", "Method", "ClusteredFedAvg", "Context", "RoundInfo", "ServerState"]
