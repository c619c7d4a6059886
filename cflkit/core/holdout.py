"""Clients never seen in training: held out from every round, assigned at the end.

A federation keeps meeting clients that did not train: a hospital that joins after the
model was built, a station installed later (FedGroup, Duan et al. 2021, and FLUX, NeurIPS
2025, assign such newcomers; PACFL, Vahidian et al. 2023, and IFCA, Ghosh et al. 2020,
describe how theirs would join). ``holdout_clients`` clients, drawn from a stream of
their own, never train or send anything; the method runs on the others
(:meth:`~cflkit.core.federation.Federation.subset`). After the last round each newcomer
receives the cluster models and is assigned by the method's own newcomer rule
(:meth:`~cflkit.methods.base.Method.assign_newcomers`), then evaluated with its cluster's
model. Their rows are in the last round of the history (``holdout`` = 1) and
``summary.json`` reports them apart (:func:`unseen_summary`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

HOLDOUT_STREAM = 3  # apart from the federation's (the seed), the method's [seed, 1], participation's [seed, 2]


def split_holdout(n_clients: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training clients and the held-out ones (ids, increasing), a seeded uniform draw.

    >>> train, new = split_holdout(10, 3, 0)
    >>> len(train), len(new), sorted(set(train) | set(new)) == list(range(10))
    (7, 3, True)
    """
    if not 0 <= holdout < n_clients:
        raise ValueError(f"holdout_clients must be in 0..{n_clients - 1} (at least one client trains), got {holdout}")
    from .participation import seeded_clients

    new = seeded_clients(n_clients, holdout, seed, HOLDOUT_STREAM)
    return np.setdiff1d(np.arange(n_clients), new), new


def check_holdout(config, fed) -> None:
    """Refuse a holdout the federation cannot serve (before any training; whether the method
    has a newcomer rule is checked with the names, :func:`cflkit.core.experiment.validate`)."""
    h = config.holdout_clients
    if h and h >= fed.n_clients:
        raise ValueError(f"holdout_clients={h} leaves no training client: this federation has {fed.n_clients} "
                         f"clients; choose 0..{fed.n_clients - 1}")


def add_newcomers(method, done, ctx, fed, train_ids, new_ids):
    """After the last round: assign the held-out clients, evaluate them, and return the
    history rows renumbered to the federation's client ids (the newcomers' rows added to
    the last round) and the final state with an assignment of every client."""
    from ..methods import Context

    state, rows = done.state, done.rows
    for row in rows:
        row["client"] = int(train_ids[row["client"]])
    full = Context(fed, ctx.trainer, ctx.config, np.random.default_rng([int(ctx.config.seed), HOLDOUT_STREAM, 1]),
                   ctx.initial_weights)
    clusters = np.asarray(method.assign_newcomers(state, full, train_ids, new_ids), dtype=np.int64)
    if clusters.shape != new_ids.shape or clusters.min() < 0 or clusters.max() >= state.n_clusters:
        raise RuntimeError(f"{method.name}: newcomer assignment {clusters.tolist()} is not one of its "
                           f"{state.n_clusters} clusters per newcomer")
    assignment = np.empty(fed.n_clients, dtype=np.int64)
    assignment[train_ids], assignment[new_ids] = state.assignment, clusters
    from .trainer import take

    m = ctx.trainer.metrics(take(state.models, clusters), [fed.test_index[c] for c in new_ids])
    last = rows[-1]["round"]
    down = full.model_bytes(state.n_clusters)
    up = full.model_bytes(method.newcomer_uploads)
    template = rows[-1]
    for i, c in enumerate(new_ids):
        rows.append({**template, "client": int(c), "group": int(fed.groups[c]), "cluster": int(clusters[i]),
                     **{k: float(v[i]) for k, v in m.items()}, "train_size": int(len(fed.train_index[c])),
                     "test_size": int(len(fed.test_index[c])), "bytes_up": int(up), "bytes_down": int(down),
                     "participated": 0, "returned": 0, "holdout": 1, "round": last})
    return rows, dataclasses.replace(state, assignment=assignment)


def unseen_summary(last) -> dict:
    """The held-out clients' numbers from the last round's rows: accuracy mean and worst
    10 % (classification), loss and RMSE means, ARI of their assignment against their
    groups, and ``unseen_matched``: the share assigned to the cluster that holds most of
    the training clients of their group. Empty when nobody was held out."""
    from .metrics import accuracy_summary, clustering_scores

    new, seen = last[last["holdout"] == 1], last[last["holdout"] == 0]
    if new.empty:
        return {}
    acc = accuracy_summary(new["accuracy"].to_numpy(), new["test_size"].to_numpy())
    out = {"holdout_clients": int(len(new)), "accuracy_unseen_mean": acc["accuracy_mean"],
           "accuracy_unseen_worst10": acc["accuracy_worst10"], "loss_unseen_mean": float(new["loss"].mean()),
           "ari_unseen": clustering_scores(new["group"].to_numpy(), new["cluster"].to_numpy())["ari"]}
    if "rmse" in new:
        out["rmse_unseen_mean"] = float(new["rmse"].mean())
    out["unseen_matched"] = matched_share(new, seen)
    return out


def matched_share(new, seen) -> float:
    """The share of the clients of rows ``new`` in the cluster that holds most of the clients
    of ``seen`` of their group (ARI alone cannot see a newcomer put in another group's
    cluster consistently)."""
    majority = seen.groupby("group")["cluster"].agg(lambda s: s.value_counts().index[0])
    return float(np.mean([g in majority.index and majority[g] == k for g, k in zip(new["group"], new["cluster"])]))
