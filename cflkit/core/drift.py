"""Drift: from one round on, some clients hold another group's data.

Real federations change under the model: a hospital changes its scanner, a station its
surroundings (FLUX, NeurIPS 2025, and ANDA study such temporal drift in clustered FL). With
``drift_round`` = d > 0, a seeded share ``drift_fraction`` of the clients switches at
round d to another planted group, drawn uniformly among the others: its train and test
rows are redrawn as that group's (its class proportions, its transforms), with the
client's own sizes. The ground truth changes mid-run: the history's ``group`` is per
round, so ARI per round is against that round's truth, and ``summary.json`` adds
``ari_before_drift``, ``ari_after_drift`` and ``rounds_to_recover`` (:func:`drift_summary`).

Round d already trains on the new data. A method that re-estimates every client's cluster
every round (IFCA) can follow; one that clusters once (PACFL, FL+HC, the server-side
presets) or fixes its clusters once they are stable (CORNFLQS) keeps them: the known
behaviour, not a bug. The oracle follows the new truth.

The redrawn rows come from the whole dataset with reuse (as ``samples_per_client``
draws): they may repeat rows of other clients, never within one client unless the
dataset runs short. The draws come from a stream of their own (:data:`DRIFT_STREAM`), so
a run without drift is unchanged.
"""
from __future__ import annotations

import dataclasses

import numpy as np

DRIFT_STREAM = 4  # apart from the federation's (the seed), the method's 1, participation's 2, holdout's 3
RECOVERY_TOLERANCE = 0.05  # ARI within this of its value before the drift counts as recovered


def drifted_clients(n_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The clients that drift: ``max(1, round(fraction * n))`` of them, a seeded uniform draw (ids, increasing).

    >>> drifted_clients(40, 0.25, 0).size, drifted_clients(3, 0.01, 0).size
    (10, 1)
    """
    from .participation import seeded_clients

    return seeded_clients(n_clients, min(n_clients, max(1, int(round(fraction * n_clients)))), seed, DRIFT_STREAM)


def check_drift_scenario(config, parts) -> None:
    """Refuse a drift the scenario cannot have, from its name alone (before any data is loaded)."""
    if "natural" in parts:
        raise ValueError("drift needs a planted scenario (the clients switch to another planted group); "
                         "scenario 'natural' keeps each site's own rows: set drift_round=0 or use a planted scenario")
    if all(p in ("iid", "quantity_skew") for p in parts) or config.groups < 2:
        raise ValueError(f"drift switches clients to another group, but scenario {config.scenario!r} with groups="
                         f"{config.groups} plants one group; set drift_round=0 or use a scenario with groups "
                         f"(e.g. rotation)")


def check_drift(config, fed) -> None:
    """Refuse a drift the federation cannot have: one with sites (nothing planted to switch
    to) or a single group."""
    if not config.drift_round:
        return
    if getattr(fed, "recipe", None) is None:
        raise ValueError(f"drift needs a planted scenario (the clients switch to another planted group); "
                         f"scenario {fed.scenario!r} has none: set drift_round=0 or use a planted scenario")
    if fed.n_groups < 2:
        raise ValueError(f"drift switches clients to another group, but scenario {fed.scenario!r} plants one "
                         f"group; set drift_round=0 or use a scenario with groups (e.g. rotation)")


def drift(fed, fraction: float, seed: int):
    """``(before, after, clients)``: the federation before and after the drift and the ids of
    the clients that switched. Both share one pooled array (the original rows, then the
    redrawn ones), so one trainer serves the whole run."""
    from .scenarios import _draw, apply_transforms

    recipe = fed.recipe
    dataset, transforms = recipe["dataset"], recipe["transforms"]
    clients = drifted_clients(fed.n_clients, fraction, seed)
    rng = np.random.default_rng([int(seed), DRIFT_STREAM, 1])
    n_groups = transforms["n_groups"]
    groups = fed.groups.copy()
    xs, ys, train_index, test_index = [fed.x], [fed.y], list(fed.train_index), list(fed.test_index)
    offset = len(fed.y)
    for c in clients:
        g = int((fed.groups[c] + rng.integers(1, n_groups)) % n_groups)
        n_test = len(fed.test_index[c])
        size = np.array([len(fed.train_index[c]) + n_test])
        p = None if recipe["proportions"] is None else recipe["proportions"][g][None]
        rows = _draw(dataset.y, dataset.n_classes, size, p, reuse=True, rng=rng)[0]
        x, y = apply_transforms(dataset.x[rows].copy(), dataset.y[rows].copy(), g, transforms, rng)
        order = rng.permutation(len(rows))
        test_index[c] = offset + np.sort(order[:n_test])
        train_index[c] = offset + np.sort(order[n_test:])
        xs.append(x.astype(np.float32))
        ys.append(y)
        groups[c] = g
        offset += len(rows)
    meta = dict(fed.client_meta)
    if "planted" in meta:
        meta["planted"] = [fed.group_names[g] for g in groups]
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    before = dataclasses.replace(fed, x=x, y=y)
    after = dataclasses.replace(fed, x=x, y=y, train_index=train_index, test_index=test_index, groups=groups,
                                client_meta=meta)
    return before, after, clients


def drift_summary(history, drift_round: int) -> dict:
    """ARI of the training clients just before the drift (round d - 1) and just after it
    (round d), and ``rounds_to_recover``: the rounds after d until ARI is back within
    :data:`RECOVERY_TOLERANCE` of its value before (0: it never fell that far; null: not
    by the end of the run)."""
    from .metrics import ari_by_round

    ari = ari_by_round(history)
    before = ari[drift_round - 1]
    after = {r: a for r, a in ari.items() if r >= drift_round}
    back = next((r for r, a in after.items() if a >= before - RECOVERY_TOLERANCE), None)
    return {"drift_round": int(drift_round), "ari_before_drift": before, "ari_after_drift": after[drift_round],
            "rounds_to_recover": None if back is None else back - drift_round}
