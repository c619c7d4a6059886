"""When a server-side clustered method clusters its clients: the trigger part.

- ``init`` — once, before training (representations that need no training: gradient at
  the initial model, data subspace, descriptors);
- ``once`` — once, after local training in round ``warmup_rounds + 1`` (FedAvg before);
- ``every`` — after local training in every round from ``warmup_rounds + 1`` on;
- ``temperature`` — once, at the first round after ``warmup_rounds`` whose clustering
  temperature exceeds the previous round's: the federated model starts to converge
  (OCFL, :mod:`cflkit.methods.ocfl`).
"""
from __future__ import annotations

import math

TRIGGERS = {
    "init": "once, before training",
    "once": "once, after local training in round warmup_rounds + 1",
    "every": "after local training in every round from warmup_rounds + 1 on",
    "temperature": "once, at the first round whose clustering temperature T exceeds the last (OCFL)",
}


def fires(trigger: str, r: int, warmup: int, clustered_at: int | None = None,
          previous_temperature: float = math.inf, temperature: float | None = None) -> bool:
    """Whether to (re-)cluster after local training in round ``r``; a pure function of the
    round, the trigger's settings and what the server observed (nothing is written).

    >>> fires("once", 4, warmup=3), fires("once", 5, warmup=3), fires("every", 5, warmup=3)
    (True, False, True)
    >>> fires("temperature", 2, warmup=0, previous_temperature=0.3, temperature=0.4)
    True
    """
    if trigger == "temperature":
        from ..ocfl import temperature_rises

        return clustered_at is None and r > warmup and temperature_rises(previous_temperature, temperature)
    if trigger == "once":
        return r == warmup + 1
    if trigger == "every":
        return r >= warmup + 1
    return False
