"""CORNFLQS: server-side clustering of weights and client-side loss-based assignment,
alternated until they agree (Ben Ali, Megdiche, Peninou & Teste, CIKM 2025,
arXiv 2510.03380)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core.aggregate import cluster_average, update_clusters, weighted_average
from ..core.trainer import take
from .base import Context, Method, lowest_loss
from .ifca import IFCAState, assign_by_loss, expose, loss_matrix
from .params import AUTO, GROUPS, Params, at_least, cluster_count, one_of, silhouette_bar
from .parts.clustering import CLUSTERERS, NEEDS_K, cluster, match_labels
from .parts.representations import flatten

PHASES = {
    "cold": "round 1: FedAvg of all clients from one model",
    "corn": "server clusters the trained weights, then every client picks the lowest-loss cluster model",
    "loss": "clients pick the lowest-loss cluster model (IFCA) until their choice repeats",
    "fixed": "FedAvg within the clusters the clients last chose",
}


@dataclass
class CornflqsState(IFCAState):
    """IFCA's state (chosen models, candidates, choice) plus the schedule's phase and counts."""

    phase: Literal["cold", "corn", "loss", "fixed"] = "cold"  # the phase of the next round
    corn_rounds: int = 0  # CORN rounds so far
    agreed_at: int | None = None  # the round where server and clients agreed (None: they did not, or not yet)
    fixed_at: int | None = None  # the round from which the clusters are fixed
    chosen: np.ndarray | None = None  # absent clients: whose lowest-loss choice reached the server (None: none yet)


class CORNFLQS(Method):
    """CORNFLQS (Ben Ali, Megdiche, Peninou & Teste, "A Robust Clustered Federated Learning
    Approach for Non-IID Data with Quantity Skew", CIKM 2025, arXiv 2510.03380; reference
    code leahcimali/CFL-Evaluation-of-labels-and-quantity-skew, ``run_cfl_cornflqs``).

    It coordinates the two strategies of CFL — the server clustering the clients' models
    and the clients choosing the model of lowest loss — and keeps the partition on which
    both agree. The schedule implemented, with R = ``rounds`` and K = ``clusters``
    ('groups': as many as the planted groups):

    1. **cold start** (round 1): one FedAvg round from the initial model; the K cluster
       models start as copies of the resulting global model.
    2. **CORN rounds** (at most R // 2 of them, rounds 2, 3, …): clients train from their
       cluster model; the server clusters the trained weights into K clusters
       (``clusterer``, default k-means on the flattened weights, as the task description
       and Ben Ali et al. 2024 use; the reference code's default is agglomerative with Ward
       linkage: ``--set clusterer=agglomerative --set linkage=ward``) and averages each
       cluster (size-weighted); then every client evaluates the K cluster models on its
       training data and picks the lowest-loss one. If every client picks the model of the
       cluster the server put it in (identical ids — the reference's 100 % match; this
       implies the same partition), the two sides **agree** and the CORN phase ends; it also
       ends after R // 2 rounds without agreement.
    3. **loss-based rounds**: IFCA rounds (train from the chosen model, average per
       cluster, pick the lowest-loss model again) until a client-side assignment equals
       the previous one;
    4. **fixed**: FedAvg within those clusters for the remaining rounds.

    The clients' choice of the round is the run's assignment (:class:`CornflqsState`):
    ``models`` holds only the chosen (non-empty) cluster models, ``candidates`` all K (as in
    :class:`~cflkit.methods.ifca.IFCAState`); ``phase`` is the phase of the next round and
    ``agreed_at`` / ``fixed_at`` the rounds where the phases ended.

    Differences from the reference code: its cold start averages without size weights
    and its first CORN round continues from each client's own cold-start model (here:
    size-weighted, and from the global model); its local optimiser is Adam, here the run's
    SGD. Communication: one model each way, except in CORN and loss-based rounds where
    every client downloads the K cluster models to evaluate them.

    Absent clients (client sampling, lost updates, late clients): the reference code has no
    rule (``run_cfl_cornflqs``, in every version of the repository, trains every client in
    every round; its only client sampling is FedGroup's cold start), and we found none in the
    paper. The rule here is built from CORNFLQS's two halves, the server side as in the
    one-shot server-side methods and the client side as IFCA's partial participation (Ghosh
    et al. 2020, Algorithm 1's sample M_t):

    - only the sampled clients train, each from its last choice; a cluster model that got
      no arrived update keeps its weights bit for bit;
    - cold start: the FedAvg of the updates that arrived (repeated while none arrives);
    - CORN round: the server clusters the trained weights that arrived (it needs at least
      K of them, and ``min_cluster_size`` for (H)DBSCAN; a round with fewer is a FedAvg
      within the clusters those clients chose), renames its clusters to the candidate ids
      those clients had (Hungarian matching of the overlap, so that the ids an absent client
      holds keep their meaning) and averages each; then each client whose update arrived
      picks the lowest-loss candidate, and agreement is judged on those clients alone;
    - loss-based round: IFCA's round on what arrived; the phase ends when the choices that
      arrived repeat: every client whose update arrived picks again the candidate it trained
      from, and at least one of them had made that choice in an earlier round (a first choice,
      made at the start of the round, is no evidence of a repeat on its own);
    - a choice reaches the server with the client's update, so a client that was not
      sampled, or whose update was lost, keeps its last choice (IFCA's rule); a client that
      has no choice yet (a late one, ``arrival_round``, or one not sampled since the first
      choice step) makes it at its first participation, before training, from the candidates
      the others last chose from; until then it holds candidate 0 (after the first
      clustering: the cluster of most of the clients clustered then).

    Communication with absent clients: each sampled client downloads K models in a CORN or
    loss-based round that has its choice step (one otherwise), and K more when it makes its
    first choice; each whose update arrives uploads one.

    A newcomer (a client held out of training) makes the clients' choice once with the final
    cluster models: the one of lowest loss on its training data.

    K unknown (``clusters=auto``; the paper gives K): at the end of the cold round the server
    picks K by the silhouette of its own clustering of the weights the clients sent (K = 1 ..
    ``max_clusters``; one cluster unless a K's mean silhouette exceeds ``min_silhouette``,
    :func:`~cflkit.methods.parts.clustering.select_clusters`) and keeps that K; the round's
    diagnostics get ``k_selected`` and ``silhouette``.

    Diagnostics per round: ``phase`` (0 cold, 1 CORN, 2 loss-based, 3 fixed),
    ``n_clusters``, and in CORN rounds ``agreement`` (share of clients whose choice equals
    the server's cluster).

    >>> from cflkit import Config, run
    >>> result = run(Config(method="cornflqs", scenario="label_swap", rounds=20))  # doctest: +SKIP
    """

    name = "cornflqs"
    summary = "CORNFLQS: alternate k-means on weights and loss-based choice until they agree (Ben Ali et al. 2025)"
    tuning = {"min_silhouette": (0.25, 0.15, 0.35)}
    newcomer = "the cluster model of lowest loss on its training data (its client-side rule)"
    partial_participation = True
    absent_rule = ("the server clusters the updates that arrived (at least K), the clients whose update arrived "
                   "choose by lowest loss; an absent client keeps its last choice, a new one chooses at its first "
                   "round")

    @dataclass(frozen=True)
    class Params(Params):
        clusters: int | str = GROUPS  # K cluster models: an integer, 'groups' (the planted groups) or 'auto'
        max_clusters: int = 10  # clusters=auto: the largest K the silhouette of the cold round's weights may pick
        min_silhouette: float = 0.25  # clusters=auto: one cluster unless some K's mean silhouette exceeds this
        clusterer: str = "kmeans"  # the server's clustering of the trained weights (reference code: agglomerative)
        metric: str = "euclidean"  # distance between the clients' weights
        linkage: str = "ward"  # agglomerative linkage (the reference code's Ward)
        min_cluster_size: int = 2  # HDBSCAN / DBSCAN: the smallest cluster

        def check(self):
            cluster_count(self, auto=True)
            at_least(self, "max_clusters", 2)
            silhouette_bar(self)
            one_of(self, "clusterer", CLUSTERERS)
            one_of(self, "metric", ("euclidean", "cosine"))
            one_of(self, "linkage", ("ward", "complete", "average", "single"))
            at_least(self, "min_cluster_size", 1)

    def assign_newcomers(self, state, ctx, members, newcomers):
        return lowest_loss(state, ctx, newcomers)

    def init(self, ctx: Context) -> CornflqsState:
        n = ctx.federation.n_clients
        candidates = [w[None].copy() for w in ctx.initial_weights]
        choice = np.zeros(n, dtype=np.int64)
        return CornflqsState(candidates, choice.copy(), candidates=candidates, choice=choice, phase="cold")

    def server_clusters(self, ctx: Context, trained: list, k: int) -> np.ndarray:
        """The server's clustering of the clients' trained weights into ``k`` clusters."""
        p = self.params
        return cluster(flatten(trained), p.clusterer, k=k, metric=p.metric, linkage=p.linkage,
                       min_cluster_size=p.min_cluster_size, seed=self.config.seed)

    def cold_k(self, ctx: Context, trained: list) -> tuple[int, dict]:
        """K for the cold round's end: ``clusters``, or with ``clusters=auto`` the silhouette's
        choice on the weights the clients sent (the server's own representation; see
        :func:`~cflkit.methods.parts.clustering.select_clusters`), with its diagnostics."""
        p = self.params
        if p.clusters != AUTO:
            return self.n_clusters(ctx), {}
        from .parts.clustering import select_clusters

        chosen = select_clusters(flatten(trained), p.clusterer if p.clusterer in NEEDS_K + ("agglomerative",)
                                 else "kmeans", max_k=p.max_clusters, metric=p.metric, linkage=p.linkage,
                                 seed=self.config.seed, no_structure=p.min_silhouette)
        return chosen.k, {"k_selected": chosen.k, "silhouette": chosen.silhouette}

    def k(self, ctx: Context, candidates) -> int:
        """K of the corn phase: ``clusters``, or (auto) the number of models the cold round made."""
        return len(candidates[0]) if self.params.clusters == AUTO else self.n_clusters(ctx)

    def round(self, state: CornflqsState, ctx: Context, r: int):
        if ctx.participants is not None:
            return self._absent_round(state, ctx, r)
        fed = ctx.federation
        phase, candidates, choice = state.phase, state.candidates, state.choice
        corn_rounds, agreed_at, fixed_at, next_phase = state.corn_rounds, state.agreed_at, state.fixed_at, phase
        trained = ctx.train(take(candidates, choice))
        diagnostics = {"phase": list(PHASES).index(phase)}
        down = 1
        if phase == "cold":  # one FedAvg round; the K cluster models start as its global model
            k, selected = self.cold_k(ctx, trained)
            diagnostics.update(selected)
            candidates = [np.repeat(w, k, axis=0) for w in weighted_average(trained, fed.sizes)]
            next_phase = "corn"
        elif phase == "corn":  # the server clusters, then every client picks the lowest-loss model
            server = self.server_clusters(ctx, trained, self.k(ctx, candidates))
            candidates = cluster_average(trained, fed.sizes, server, int(server.max()) + 1)
            choice = assign_by_loss(loss_matrix(ctx, candidates))
            down = len(candidates[0])
            corn_rounds += 1
            diagnostics["agreement"] = float(np.mean(choice == server))
            agree = np.array_equal(choice, server)
            if agree or corn_rounds >= max(1, int(self.config.rounds) // 2):
                next_phase, agreed_at = "loss", (r if agree else None)
        else:  # loss-based (IFCA) rounds until the choice repeats, then fixed clusters
            candidates = update_clusters(candidates, trained, fed.sizes, choice)
            if phase == "loss":
                new = assign_by_loss(loss_matrix(ctx, candidates))
                down = len(candidates[0])
                if np.array_equal(new, choice):
                    next_phase, fixed_at = "fixed", r
                choice = new
        models, assignment = expose(candidates, choice)
        diagnostics["n_clusters"] = len(models[0])
        new_state = CornflqsState(models, assignment, candidates=candidates, choice=choice, phase=next_phase,
                                  corn_rounds=corn_rounds, agreed_at=agreed_at, fixed_at=fixed_at)
        return new_state, ctx.traffic(up_models=1, down_models=down, **diagnostics)

    # -- absent clients ---------------------------------------------------------------------
    def _needed(self, ctx: Context, candidates) -> int:
        """Arrived updates the server's clustering needs: K, and ``min_cluster_size`` for (H)DBSCAN."""
        k, p = self.k(ctx, candidates), self.params
        return max(k, p.min_cluster_size) if p.clusterer in ("hdbscan", "dbscan") else k

    def _absent_round(self, state: CornflqsState, ctx: Context, r: int):
        """A round with client sampling, lost updates or late clients (see the class docstring)."""
        fed = ctx.federation
        sampled, returned = ctx.sampled, ctx.returned
        phase, candidates, choice, chosen = state.phase, state.candidates, state.choice.copy(), state.chosen
        corn_rounds, agreed_at, fixed_at, next_phase = state.corn_rounds, state.agreed_at, state.fixed_at, phase
        start = choice[sampled]  # each sampled client starts from its last choice...
        first = np.zeros(len(sampled), bool) if chosen is None else ~chosen[sampled]
        if first.any():  # ...or, if it has none yet, makes it now (IFCA's estimation step)
            start[first] = assign_by_loss(loss_matrix(ctx, candidates, sampled[first]))
        trained = ctx.arrived(ctx.train(take(candidates, start), clients=sampled))
        start, sizes = ctx.arrived(start), fed.sizes[returned]
        diagnostics = {"phase": list(PHASES).index(phase)}
        k = k0 = len(candidates[0])
        picks = None  # the lowest-loss choices of the clients whose update arrived, made after averaging
        if phase == "cold":  # FedAvg of what arrived; the K cluster models start as its global model
            if len(returned):
                glob = update_clusters(candidates, trained, sizes, np.zeros(len(returned), dtype=np.int64))
                k, selected = self.cold_k(ctx, trained)  # (auto: on the weights that arrived)
                diagnostics.update(selected)
                candidates = [np.repeat(w, k, axis=0) for w in glob]
                next_phase = "corn"
        elif phase == "corn":
            corn_rounds += 1
            if len(returned) >= self._needed(ctx, candidates):  # the server clusters the weights that arrived
                server = match_labels(self.server_clusters(ctx, trained, self.k(ctx, candidates)), start, k)
                grow = int(server.max()) + 1 - k  # (H)DBSCAN may find more clusters than K
                if grow > 0:
                    candidates = [np.concatenate([w, np.repeat(w[:1], grow, axis=0)]) for w in candidates]
                candidates = update_clusters(candidates, trained, sizes, server)
                picks = assign_by_loss(loss_matrix(ctx, candidates, returned))
                diagnostics["agreement"] = float(np.mean(picks == server))
                agree = np.array_equal(picks, server)
            else:  # too few for the clustering: FedAvg within the clusters the clients chose
                candidates, agree = update_clusters(candidates, trained, sizes, start), False
            if agree or corn_rounds >= max(1, int(self.config.rounds) // 2):
                next_phase, agreed_at = "loss", (r if agree else None)
        else:  # loss-based rounds until the choices that arrived repeat, then fixed clusters
            candidates = update_clusters(candidates, trained, sizes, start)
            if phase == "loss" and len(returned):
                picks = assign_by_loss(loss_matrix(ctx, candidates, returned))
                again = ~ctx.arrived(first)  # a choice made at the start of this round is not repeated yet
                if again.any() and np.array_equal(picks, start):
                    next_phase, fixed_at = "fixed", r
        choice[returned] = start if picks is None else picks
        if chosen is not None or picks is not None:  # from the first choice step on, who has chosen
            chosen = np.zeros(fed.n_clients, bool) if chosen is None else chosen.copy()
            chosen[returned] = True
        models, assignment = expose(candidates, choice)
        diagnostics["n_clusters"] = len(models[0])
        k = len(candidates[0])
        down = k if picks is not None else 1  # the K models to choose from after averaging, else the start model
        info = ctx.traffic(up_models=1, down_models=down, **diagnostics)
        if first.any():  # a first choice: the K models to make it (the start model among them), then the choice's K
            info.bytes_down[sampled[first]] = ctx.model_bytes(k0 + (k if picks is not None else 0))
        new_state = CornflqsState(models, assignment, candidates=candidates, choice=choice, phase=next_phase,
                                  corn_rounds=corn_rounds, agreed_at=agreed_at, fixed_at=fixed_at, chosen=chosen)
        return new_state, info
