"""Baselines every CFL comparison needs: FedAvg, FedProx, local, oracle, random, centralized."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core.aggregate import balanced_random_assignment
from .base import ClusteredFedAvg, Method, RoundInfo, ServerState, same_value_cluster
from .params import GROUPS, Params, at_least, cluster_count


class FedAvg(ClusteredFedAvg):
    """Federated Averaging (McMahan et al., AISTATS 2017, arXiv 1602.05629).

    One global model; every round each client runs ``local_epochs`` of SGD from it and the
    server replaces it with the mean of the client models weighted by client size.
    The paper's client fraction C is ``participation`` (default 1: every client, every
    round); with C < 1 or dropouts the model is the mean of the updates that arrived, and a
    round in which none arrived keeps it (:class:`~cflkit.methods.base.ClusteredFedAvg`).

    >>> from cflkit import Config, run
    >>> result = run(Config(method="fedavg", scenario="iid", rounds=2, clients=4))  # doctest: +SKIP
    """

    name = "fedavg"
    summary = "one global model, size-weighted average of client models (McMahan et al. 2017)"

    def assignment(self, ctx):
        return np.zeros(ctx.federation.n_clients)


class FedProx(FedAvg):
    """FedProx (Li et al., MLSys 2020, arXiv 1812.06127): FedAvg whose local objective
    adds ``mu/2 ||w - w_global||^2``, limiting client drift under heterogeneity.
    ``mu`` (default 0.01) is one of the values the paper tunes over {0.001, 0.01, 0.1, 1}.
    """

    name = "fedprox"
    summary = "FedAvg with a proximal term mu/2 ||w - w_global||^2 (Li et al. 2020)"

    @dataclass(frozen=True)
    class Params(Params):
        mu: float = 0.01  # weight of the proximal term mu/2 ||w - w_global||^2 (one of the paper's values)

        def check(self):
            at_least(self, "mu", 0.0)

    def __init__(self, config):
        super().__init__(config)
        self.mu = self.params.mu


class Oracle(ClusteredFedAvg):
    """FedAvg within each ground-truth group: the upper bound a clustering can reach.

    It knows the truth of every round: after a drift (``drift_round``) a client that switched
    group trains in its new group's cluster from that round on."""

    name = "oracle"
    summary = "FedAvg within each ground-truth group (upper bound for clustering)"
    newcomer = "the cluster of its ground-truth group (lowest loss if no client of its group trained)"

    def assignment(self, ctx):
        return ctx.federation.groups

    def assign_newcomers(self, state, ctx, members, newcomers):
        groups = ctx.federation.groups
        return same_value_cluster(state, ctx, groups[members], groups[newcomers], newcomers)

    def round(self, state, ctx, r):
        return super().round(dataclasses.replace(state, assignment=self.assignment(ctx)), ctx, r)


class RandomClusters(ClusteredFedAvg):
    """FedAvg within K random, fixed, balanced clusters: the floor a CFL method must beat.
    K is ``clusters`` (default: the number of planted groups)."""

    name = "random"
    summary = "FedAvg within K random fixed clusters (sanity floor)"

    @dataclass(frozen=True)
    class Params(Params):
        clusters: int | str = GROUPS  # K random clusters: an integer, or 'groups' (as many as the planted groups)

        def check(self):
            cluster_count(self)

    newcomer = "a random cluster (seeded)"

    def assignment(self, ctx):
        return balanced_random_assignment(ctx.federation.n_clients, self.n_clusters(ctx), ctx.rng)

    def assign_newcomers(self, state, ctx, members, newcomers):
        return ctx.rng.integers(state.n_clusters, size=len(newcomers)).astype(np.int64)


class Local(Method):
    """Each client trains its own model on its own data; nothing is communicated.

    With client sampling and dropouts, a client trains in the rounds it is sampled and
    completes (its update "returns"); otherwise its model stays as it was. A client that
    never trained has no model: ``holdout_clients`` is refused."""

    name = "local"
    summary = "each client alone, no communication (lower bound on collaboration)"
    partial_participation = True
    aggregates = False

    def init(self, ctx):
        n = ctx.federation.n_clients
        return ServerState([np.repeat(w[None], n, axis=0) for w in ctx.initial_weights], np.arange(n))

    def round(self, state, ctx, r):
        n = ctx.federation.n_clients
        done = ctx.returned
        trained = ctx.train([w[done] for w in state.models], clients=done)
        models = [w.copy() for w in state.models]
        for m, w in zip(models, trained):
            m[done] = w
        return ServerState(models, state.assignment), RoundInfo(np.zeros(n, np.int64), np.zeros(n, np.int64))


class Centralized(Method):
    """One model trained on the pooled training data of all clients (no federation).

    A round is ``local_epochs`` epochs over the pooled data; nothing is counted as
    communicated. The reference a federated method would reach without heterogeneity costs.
    """

    name = "centralized"
    summary = "one model on the pooled data of all clients (upper reference, not federated)"
    newcomer = "the pooled model"
    aggregates = False

    def assign_newcomers(self, state, ctx, members, newcomers):
        return np.zeros(len(newcomers), dtype=np.int64)

    def init(self, ctx):
        n = ctx.federation.n_clients
        return ServerState([w[None].copy() for w in ctx.initial_weights], np.zeros(n, dtype=np.int64))

    def round(self, state, ctx, r):
        fed = ctx.federation
        pooled = np.concatenate(fed.train_index)
        models = ctx.trainer.train(state.models, [pooled], ctx.rng)
        n = fed.n_clients
        return ServerState(models, state.assignment), RoundInfo(np.zeros(n, np.int64), np.zeros(n, np.int64))
