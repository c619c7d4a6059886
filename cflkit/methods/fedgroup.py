"""FedGroup: groups formed once by the decomposed cosine similarity of client updates.

Duan, Liu, Ji, Liu, Liang, Chen & Tan, "FedGroup: Efficient Clustered Federated Learning via
Decomposed Data-Driven Measure", ISPA 2021 (arXiv 2010.06870). Reference code:
morningD/GrouProx (``flearn/trainers/grouprox.py``) and its TF2 rewrite morningD/FlexCFL
(``flearn/trainer/fedgroup.py``).

Group cold start. The server picks ``alpha * K`` clients at random (all of them when there
are fewer; the paper's pre-train scaler alpha = 20), they train from the global model and
send their updates ``Δw_i``. Rather than comparing every pair of updates in parameter space
(d is large, the clients are few: high dimension, low sample size), the server decomposes
the update matrix ``ΔW`` (clients × d) by a truncated SVD into its top-K right singular
directions ``v_1..v_K`` and describes each client by the cosines between its update and
those directions; the *EDC* (Euclidean distance of decomposed cosine similarity) between
two clients is the Euclidean distance between these K-vectors. k-means (K = ``clusters``)
on them forms the groups. A group's model is the mean of its clustering clients' trained
models and its reference update the mean of their updates.

Newcomers. Every other client (a *newcomer*) trains once from the same model and joins the
group whose reference update is closest in cosine dissimilarity to its own update.

Then FedAvg runs within each group, which keeps its clients (the paper's static groups).
A client held out of training (``holdout_clients``) is a newcomer of the same rule after the
last round: its update from the mean of the final group models against each group's mean
update from that model.

Defaults from the paper and its code: alpha = 20; EDC with K singular directions; k-means;
groups' cold-start models and updates averaged with equal weights, as in the code. MADC
(the full cosine-similarity matrix turned into a mean-absolute-difference distance, then
complete-linkage agglomerative clustering) is the paper's alternative measure: method
``fedgroup_madc``. Differences: the cold start is round ``warmup_rounds + 1`` of the run
(its local training is the pre-training, and it is counted as a round), where the paper
pre-trains before round 1 for 50 local iterations (here one round of ``local_epochs``:
about 45 steps on 8x8 digits with 16 clients); the newcomers are all the remaining clients,
assigned in that same round; the inter-group aggregation with rate η (FedGrouProx's
``agg_lr``, 0 in the reference defaults) is omitted; the paper's dynamic strategies
(re-clustering, client migration) are not implemented.

Absent clients (client sampling, lost updates, late clients; the paper samples clients per
round, and its newcomer cold start is how its code brings in a client it has not seen): only
the sampled clients train. Before the group cold start the global model is the FedAvg of the
updates that arrived. The cold start, at round ``warmup_rounds + 1``, uses the clients whose
update arrived that round (``alpha * K`` of them at random, all when fewer; the others are
newcomers of that round, as above); it needs at least K updates (and 3 for MADC), and a round
with fewer postpones it to the next round (FedAvg of what arrived). The server keeps the
cold start's model and the groups' reference updates (the mean update of each group's
clustering clients). A client absent then (or a late client, ``arrival_round``) is *pending*:
it holds the largest group's model (the most training data among the grouped clients) until
its first participation; there it is a newcomer of the paper's rule, as in the reference code
(FlexCFL ``client_cold_start``): it pre-trains once from the kept cold-start model and joins
the group whose reference update is the closest in cosine dissimilarity to its update, then
trains from its group's model in that same round like the group's other clients (two models
down and two up; a newcomer whose update is lost stays pending). Afterwards each group's
model is the FedAvg of the updates that arrived from its clients; a group that got none keeps
its model bit for bit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..core.aggregate import cluster_average, update_clusters
from ..core.trainer import take
from .base import Context
from .clustered import Clustered, ClusteredParams, ClusteredState
from .params import cluster_count
from .parts.clustering import NEEDS_K, align, cluster, cosine_similarity
from .parts.representations import NEEDS_TRAINING, represent


def decomposed_cosine_similarity(updates, k: int) -> np.ndarray:
    """FedGroup's decomposed cosine similarity: row ``i`` holds the cosines between update
    ``i`` and the top-``k`` right singular vectors of the update matrix (clients × d).

    The Euclidean distance between two rows is the EDC of the two clients. The rows are
    unchanged, up to the sign of whole columns (which leaves distances unchanged), by any
    rescaling of the singular directions.

    >>> X = np.array([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.1, 2.0], [0.0, -0.1, 2.0]])
    >>> np.round(np.abs(decomposed_cosine_similarity(X, 2)), 1)
    array([[0., 1.],
           [0., 1.],
           [1., 0.],
           [1., 0.]])
    """
    X = np.asarray(updates, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"updates must be a (clients, parameters) matrix, got shape {X.shape}")
    if not 1 <= k <= min(X.shape):
        raise ValueError(f"EDC needs 1 <= K <= min(clients, parameters) = {min(X.shape)} singular directions, "
                         f"got K={k}")
    U, S, _ = np.linalg.svd(X, full_matrices=False)
    projections = U[:, :k] * S[:k]  # Δw_i · v_j
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return projections / np.where(norms == 0, 1.0, norms)


def madc(updates) -> np.ndarray:
    """FedGroup's MADC: for clients ``i, j`` the mean over the other clients ``z`` of
    ``|cos(Δw_i, Δw_z) − cos(Δw_j, Δw_z)|`` — a distance that compares how two clients
    relate to everyone else (data-driven), not their two updates alone."""
    S = cosine_similarity(updates)
    n = len(S)
    if n < 3:
        raise ValueError(f"MADC compares two clients through the others: it needs at least 3 clients, got {n}")
    diff = np.abs(S[:, None, :] - S[None, :, :])  # (i, j, z)
    idx = np.arange(n)
    diff[idx, :, idx] = 0.0  # z = i
    diff[:, idx, idx] = 0.0  # z = j
    D = diff.sum(axis=2) / (n - 2)
    np.fill_diagonal(D, 0.0)
    return D


def nearest_group(updates, group_updates) -> np.ndarray:
    """Newcomer cold start: the group whose reference update has the smallest cosine
    dissimilarity ``(1 − cos) / 2`` to each client's update (ties: the lowest id)."""
    U = np.asarray(updates, dtype=np.float64)
    G = np.asarray(group_updates, dtype=np.float64)
    if U.ndim != 2 or G.ndim != 2 or U.shape[1] != G.shape[1]:
        raise ValueError(f"updates {U.shape} and group updates {G.shape} must be matrices with equal widths")
    similarity = cosine_similarity(np.vstack([U, G]))[:len(U), len(U):]
    return np.argmin((1.0 - similarity) / 2.0, axis=1).astype(np.int64)


def group_means(X, assignment, members, n_groups: int) -> np.ndarray:
    """Each group's reference update: the mean of its clustering clients' rows of ``X``
    (``members`` marks them), as the cold start computes it.

    >>> group_means(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [9.0, 9.0]]), [0, 0, 1, 1],
    ...             [True, True, True, False], 2).tolist()
    [[2.0, 0.0], [0.0, 2.0]]
    """
    X, assignment, members = np.asarray(X, dtype=np.float64), np.asarray(assignment), np.asarray(members, bool)
    return np.stack([X[members & (assignment == g)].mean(axis=0) for g in range(n_groups)])


class FedGroup(Clustered):
    """FedGroup (Duan et al., ISPA 2021, arXiv 2010.06870): a cold start that clusters
    ``alpha * K`` pre-trained clients by k-means on their decomposed cosine similarities
    (EDC) and assigns every other client to the group with the closest mean update; then
    FedAvg within each fixed group. K = ``clusters`` (0: the planted groups).

    >>> from cflkit import Config, run
    >>> run(Config(method="fedgroup", scenario="rotation", rounds=10)).summary["ari"]  # doctest: +SKIP
    """

    name = "fedgroup"
    summary = "FedGroup: cold-start k-means on decomposed cosine similarities (EDC) of updates (Duan et al. 2021)"
    measure = "edc"  # edc or madc
    newcomer = ("its update (from the mean of the final group models) joins the group whose mean update is the "
                "closest in cosine dissimilarity (the paper's newcomer rule)")
    alpha = 20  # pre-train scaler: alpha * K clients form the groups, the others are newcomers

    absent_rule = ("the cold start groups the clients whose update arrived (at least K, else it waits a round); "
                   "a client absent then joins, at its first round, the group whose cold-start update is the "
                   "closest to its update from the cold-start model")

    @classmethod
    def handles_absent(cls, params) -> bool:
        return True

    @dataclass(frozen=True)
    class Params(ClusteredParams):
        clusterer: str = "kmeans"  # the paper's k-means on the decomposed cosine similarities
        metric: str = "euclidean"  # EDC: the Euclidean distance of decomposed cosine similarities

        def check(self):
            super().check()
            cluster_count(self)  # no clusters=auto: EDC projects on K singular directions, so K comes first

    def __init__(self, config):
        super().__init__(config)
        if self.trigger != "once":
            raise ValueError(f"method {self.name!r} forms its groups once (cold start); trigger {self.trigger!r} "
                             f"is not supported; choose one of: once")
        if self.measure not in ("edc", "madc"):
            raise ValueError(f"unknown FedGroup measure {self.measure!r}; choose one of: edc, madc")
        if self.metric not in ("euclidean", "cosine"):
            raise ValueError(f"method {self.name!r} compares decomposed cosine similarities; metric {self.metric!r} "
                             f"does not apply to them; choose one of: euclidean (EDC, the paper's), cosine")

    def cold_start(self, ctx: Context, start, trained):
        """Group the clients; returns (assignment, mask of the clustering clients)."""
        X = represent(self.representation, ctx, start, trained, self.params).X
        return self.group(X, self.n_clusters(ctx), ctx.rng)

    def group(self, X, k: int, rng):
        """The group cold start on the representations ``X`` (one row per client) into K = ``k``
        groups: ``alpha * k`` clients drawn with ``rng`` are clustered, every other one joins the
        group of the closest mean update. Returns (assignment, mask of the clustering clients)."""
        n = len(X)
        m = min(self.alpha * k, n)
        chosen = np.arange(n) if m == n else np.sort(rng.choice(n, size=m, replace=False))
        k_arg = 0 if (self.threshold and self.clusterer not in NEEDS_K) else k
        common = dict(threshold=self.threshold, linkage=self.linkage, min_cluster_size=self.params.min_cluster_size,
                      seed=self.config.seed)
        if self.measure == "edc":
            labels = cluster(decomposed_cosine_similarity(X[chosen], k), self.clusterer, k=k_arg,
                             metric=self.metric, **common)
        else:
            labels = cluster(None, self.clusterer, k=k_arg, metric="euclidean", distances=madc(X[chosen]), **common)
        n_groups = int(labels.max()) + 1
        group_updates = np.stack([X[chosen][labels == g].mean(axis=0) for g in range(n_groups)])
        assignment = np.empty(n, dtype=np.int64)
        assignment[chosen] = labels
        newcomers = np.setdiff1d(np.arange(n), chosen)
        if len(newcomers):
            assignment[newcomers] = nearest_group(X[newcomers], group_updates)
        members = np.zeros(n, dtype=bool)
        members[chosen] = True
        return assignment, members

    def assign_newcomers(self, state, ctx, members, newcomers):
        from .clustered import newcomer_representations

        X = newcomer_representations("update", state, ctx, members, newcomers)[0].X
        m = len(members)
        groups = np.stack([X[:m][state.assignment == g].mean(axis=0) if (state.assignment == g).any()
                           else np.full(X.shape[1], np.nan) for g in range(state.n_clusters)])
        return nearest_group(X[m:], np.nan_to_num(groups, nan=0.0))

    def round(self, state: ClusteredState, ctx: Context, r: int):
        if ctx.participants is not None:  # client sampling, lost updates or late clients
            return self._absent_round(state, ctx, r)
        if r != self.warmup + 1:  # FedAvg (before) or FedAvg within the groups (after)
            return super().round(state, ctx, r)
        start = state.client_models()
        trained = ctx.train(start)
        assignment, members = self.cold_start(ctx, start, trained)
        assignment = align(assignment, state.assignment)  # relabel so ids stay stable
        k = int(assignment.max()) + 1
        models = cluster_average(trained, members.astype(np.float64), assignment, k)  # equal weights, as in the code
        info = ctx.traffic(clustering_clients=int(members.sum()), newcomers=int((~members).sum()))
        return ClusteredState(models, assignment, clustered_at=r), info

    # -- absent clients ---------------------------------------------------------------------
    def _absent_round(self, state: ClusteredState, ctx: Context, r: int):
        """A round with client sampling, lost updates or late clients (see the module)."""
        if state.clustered_at is None:
            return self._before_groups(state, ctx, r)
        return self._within_groups(state, ctx)

    def _cold_start_needs(self, ctx) -> int:
        """Updates the group cold start needs: K (the SVD's K directions, k-means' K groups),
        and 3 for MADC (it compares two clients through the others)."""
        return max(self.n_clusters(ctx), 3 if self.measure == "madc" else 2)

    def _before_groups(self, state: ClusteredState, ctx: Context, r: int):
        """FedAvg of the updates that arrived, or the group cold start on them."""
        fed, sampled, returned = ctx.federation, ctx.sampled, ctx.returned
        start = take(state.models, state.assignment[sampled])
        trained = ctx.train(start, clients=sampled)
        starts, updates = ctx.arrived(start), ctx.arrived(trained)
        if r <= self.warmup or len(returned) < self._cold_start_needs(ctx):  # warm-up, or the cold start waits
            models = update_clusters(state.models, updates, fed.sizes[returned], state.assignment[returned])
            return dataclasses.replace(state, models=models), ctx.traffic(clustered=0)
        probe = self._probe(ctx)
        X = represent(self.representation, self._view(ctx, returned), starts, updates, self.params, probe=probe).X
        sub, members = self.group(X, self.n_clusters(ctx), ctx.rng)
        sub = align(sub, state.assignment[returned])  # relabel so ids stay stable
        k = int(sub.max()) + 1
        models = cluster_average(updates, members.astype(np.float64), sub, k)  # equal weights, as in the code
        assignment = np.full(fed.n_clients, np.bincount(sub, weights=fed.sizes[returned]).argmax(), dtype=np.int64)
        assignment[returned] = sub
        pending = np.ones(fed.n_clients, bool)
        pending[returned] = False
        reference = {"start": [w[0] for w in starts], "updates": group_means(X, sub, members, k), "probe": probe}
        info = ctx.traffic(clustered=1, clustering_clients=int(members.sum()), newcomers=int((~members).sum()),
                           pending=int(pending.sum()))
        return ClusteredState(models, assignment, clustered_at=r, pending=pending,
                              reference=reference), info

    def _within_groups(self, state: ClusteredState, ctx: Context):
        """Newcomers among the sampled join their group; then FedAvg within each group of
        the updates that arrived (a group that got none keeps its model)."""
        fed, sampled, returned = ctx.federation, ctx.sampled, ctx.returned
        pending = np.zeros(fed.n_clients, bool) if state.pending is None else state.pending
        first = sampled[pending[sampled]]
        joined = first[np.isin(first, returned)]
        if len(first):
            state = self._join(state, ctx, first)
        regular = sampled[~state.pending[sampled]] if state.pending is not None else sampled
        trained = ctx.train(take(state.models, state.assignment[regular]), clients=regular)
        keep = np.isin(regular, returned)
        arrived = regular[keep]
        models = update_clusters(state.models, [w[keep] for w in trained], fed.sizes[arrived],
                                 state.assignment[arrived])
        info = ctx.traffic(clustered=0, newcomers=len(joined))
        info.bytes_down[joined] += ctx.model_bytes()  # the cold-start model, then the group's
        info.bytes_up[joined] += ctx.model_bytes()  # the pre-training update, then the trained model
        return dataclasses.replace(state, models=models), info

    def _join(self, state: ClusteredState, ctx: Context, clients) -> ClusteredState:
        """The paper's newcomer cold start for the pending ``clients`` sampled this round:
        each pre-trains once from the kept cold-start model; one whose update arrived joins
        the group whose reference update is the closest in cosine dissimilarity."""
        ref = state.reference
        view = self._view(ctx, clients)
        start = [np.repeat(w[None], len(clients), axis=0) for w in ref["start"]]
        trained = view.train(start) if self.representation in NEEDS_TRAINING else None
        X = represent(self.representation, view, start, trained, self.params, probe=ref["probe"]).X
        arrived = np.isin(clients, ctx.returned)
        assignment, pending = state.assignment.copy(), state.pending.copy()
        assignment[clients[arrived]] = nearest_group(X[arrived], ref["updates"])
        pending[clients[arrived]] = False
        return dataclasses.replace(state, assignment=assignment, pending=pending)


class FedGroupMADC(FedGroup):
    """FedGroup with MADC (Duan et al. 2021): the mean absolute difference of cosine
    similarities between client updates, clustered by complete-linkage agglomerative
    clustering into K groups, as in the paper's code."""

    name = "fedgroup_madc"
    summary = "FedGroup with the MADC measure and complete-linkage clustering (Duan et al. 2021)"
    measure = "madc"

    @dataclass(frozen=True)
    class Params(FedGroup.Params):
        clusterer: str = "agglomerative"  # the paper's code: complete-linkage agglomerative on MADC
        linkage: str = "complete"
