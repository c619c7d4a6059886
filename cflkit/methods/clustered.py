"""Server-side clustered FL as three parts that combine: representation × clusterer × trigger.

Every round the clients train from their cluster's model; when the trigger fires
(:mod:`cflkit.methods.parts.triggers`), the server computes a representation of every
client (:mod:`cflkit.methods.parts.representations`), clusters it
(:mod:`cflkit.methods.parts.clustering`) and from then on averages within the new clusters.
The named methods below (and PACFL, OCFL, FedGroup in their own files) are presets of the
three parts: their ``Params`` set their papers' parts as defaults, and any part can be
overridden (``--set representation=update --set clusterer=hdbscan``).

Absent clients (client sampling, lost updates, late clients): only the sampled clients
train, and each cluster's model is the mean of the updates that arrived (a cluster that got
none keeps its model). The clustering step sees the representations the server has: those
of the clients whose update arrived that round (trigger ``init``: every client there at the
start), and the whole federation's probe rows for representation ``outputs``.

- One-shot triggers (``init``, ``once``, ``temperature``): the clustering step clusters
  those clients (``once``: at the first round after the warm-up where at least two, and at
  least K for a clusterer that needs K, updates arrived; ``temperature``: at the first
  round whose temperature, computed on the updates that arrived, exceeds the last one
  computed) and keeps their representations and the model they started from. A client
  that was absent then is *pending*: it holds the largest cluster's model until it first
  takes part; then it trains once from the kept start model, its representation is
  computed as the others' were, and it joins the cluster of the least mean distance to the
  kept ones (its update of that round is not averaged: it did not start from its cluster's
  model).
- Trigger ``every`` (k-means on weights): the first clustering is the one-shot step above
  (a client absent then is pending and joins by the kept representations at its first
  round); in every later round the clients whose update arrived are re-clustered among
  themselves, their clusters matched to the ids they had
  (:func:`~cflkit.methods.parts.clustering.match_labels`), and an absent client keeps its
  last cluster. A round with too few updates for the clusterer averages within the current
  clusters; a cluster left without any client is dropped.

A newcomer (a client held out of training, ``holdout_clients``) is represented as the clients
were, from the mean of the final cluster models, and joins the cluster of the least mean
distance to its members (:meth:`Clustered.assign_newcomers`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..core.aggregate import cluster_average, contiguous, update_clusters, weighted_average
from ..core.trainer import take
from .base import ClusteredFedAvg, Context, Method, ServerState, same_value_cluster
from .params import AUTO, GROUPS, Params, at_least, cluster_count, one_of, silhouette_bar
from .parts.clustering import (
    CLUSTERERS,
    METRICS,
    NEEDS_K,
    align,
    cluster,
    match_labels,
    pairwise_distances,
    select_clusters,
)
from .parts.representations import NEEDS_TRAINING, REPRESENTATIONS, probe_rows, represent
from .parts.triggers import TRIGGERS, fires

LINKAGES = ("ward", "complete", "average", "single")
NEWCOMER_RULE = ("its {representation}{start}, then the cluster of the least mean {metric} distance to its "
                 "members")


def newcomer_rule(params) -> str:
    """The newcomer rule of a preset, in its own parts (``cflkit list METHOD`` prints it)."""
    rep = params.representation
    start = (" (one local training from the mean of the final cluster models)" if rep in NEEDS_TRAINING
             else " (at the mean of the final cluster models)" if rep == "gradient" else " (from its own data)")
    return NEWCOMER_RULE.format(representation=f"'{params.representation}' representation", start=start,
                                metric=params.metric.replace("_", "-"))


def newcomer_representations(name: str, state: ServerState, ctx: Context, members, newcomers, params=None):
    """Representation ``name`` of the members and then of the newcomers, computed alike:
    every one of them starts from the size-weighted mean of the final cluster models (the
    common model a server-side method compares updates from) and, where the representation
    needs it, trains once from it. Returns the :class:`Representation` and the start."""
    everyone = np.concatenate([np.asarray(members), np.asarray(newcomers)]).astype(np.int64)
    view = dataclasses.replace(ctx, federation=ctx.federation.subset(everyone), participants=None)
    weights = np.bincount(state.assignment, weights=ctx.federation.sizes[members], minlength=state.n_clusters)
    start = [np.repeat(w, len(everyone), axis=0) for w in weighted_average(state.models, weights)]
    trained = view.train(start) if name in NEEDS_TRAINING else None
    return represent(name, view, start, trained, params), start


def nearest_cluster(distances, assignment, n_clusters: int) -> np.ndarray:
    """For each row of ``distances`` (newcomers x members), the cluster whose members are
    the least distant on average (average linkage to each cluster; ties: the lowest id).

    >>> nearest_cluster([[0.1, 0.2, 0.9], [0.8, 0.9, 0.3]], [0, 0, 1], 2).tolist()
    [0, 1]
    """
    D, assignment = np.asarray(distances, dtype=np.float64), np.asarray(assignment)
    mean = np.full((len(D), n_clusters), np.inf)
    for k in range(n_clusters):
        if (assignment == k).any():
            mean[:, k] = D[:, assignment == k].mean(axis=1)
    return mean.argmin(axis=1).astype(np.int64)


ABSENT_RULES = {
    "init": ("the clients there at the start are clustered; a late client joins, at its first round, the cluster "
             "nearest to the kept representations"),
    "once": ("the clients whose update arrived at the clustering round are clustered; a client absent then joins, "
             "at its first round, the cluster nearest to the kept representations"),
    "temperature": ("the temperature of the updates that arrived decides; those clients are clustered, a client "
                    "absent then joins, at its first round, the cluster nearest to the kept representations"),
    "every": ("each round the clients whose update arrived are re-clustered and keep their cluster ids where the "
              "clusters match; an absent client keeps its last cluster, one absent at the first clustering joins "
              "the cluster nearest to its kept representations at its first round"),
}


@dataclass(frozen=True)
class ClusteredParams(Params):
    """The parts and their settings; a preset's ``Params`` change the defaults."""

    representation: str = "update"  # what the server compares (`cflkit list`: representations)
    clusterer: str = "agglomerative"  # how the clients are clustered (`cflkit list`: clusterers)
    trigger: str = "once"  # when: init, once, every, temperature
    metric: str = "cosine"  # distance between representations: euclidean, cosine, principal_angle
    linkage: str = "average"  # agglomerative linkage: ward, complete, average, single
    warmup_rounds: int = 0  # FedAvg rounds before the clustering round
    clusters: int | str = GROUPS  # K where the clusterer needs one: an integer, 'groups' (the planted groups) or 'auto'
    max_clusters: int = 10  # clusters=auto: the largest K tried (the silhouette picks K = 1 .. this)
    min_silhouette: float = 0.25  # clusters=auto: one cluster unless some K's mean silhouette exceeds this
    distance_threshold: float | None = None  # agglomerative / DBSCAN / bipartition cut (none: cut into K clusters)
    min_cluster_size: int = 2  # HDBSCAN / DBSCAN: the smallest cluster
    subspace_dim: int = 3  # representation 'subspace': p, singular vectors per client (PACFL)
    probe_size: int = 100  # representation 'outputs': samples in the shared probe set

    def check(self):
        for name, options in (("representation", REPRESENTATIONS), ("clusterer", CLUSTERERS),
                              ("trigger", TRIGGERS), ("metric", METRICS), ("linkage", LINKAGES)):
            one_of(self, name, options)
        cluster_count(self, auto=True)
        silhouette_bar(self)
        for name, low in (("max_clusters", 2), ("warmup_rounds", 0), ("distance_threshold", 0.0),
                          ("min_cluster_size", 1), ("subspace_dim", 1), ("probe_size", 1)):
            at_least(self, name, low)

    def check_together(self):
        if self.trigger == "init" and self.representation in NEEDS_TRAINING:
            raise ValueError(f"representation {self.representation!r} needs local training first: use trigger "
                             f"'once' or 'every', or a representation available before training "
                             f"(gradient, subspace, descriptors)")
        if self.metric == "principal_angle" and self.representation != "subspace":
            raise ValueError(f"metric 'principal_angle' needs representation 'subspace', not {self.representation!r}")
        if self.metric == "principal_angle" and self.clusterer in ("kmeans", "gmm"):
            raise ValueError(f"clusterer {self.clusterer!r} needs representation vectors, not only distances; "
                             f"choose agglomerative, spectral, dbscan, hdbscan, affinity_propagation or bipartition")
        if self.clusterer == "agglomerative" and self.linkage == "ward" and self.metric != "euclidean":
            raise ValueError(f"linkage 'ward' needs euclidean vectors, not metric {self.metric!r}; "
                             f"use complete, average or single linkage")


@dataclass
class ClusteredState(ServerState):
    """Models and assignment, plus when the clients were clustered and the last temperature."""

    clustered_at: int | None = None  # the round of the (first) clustering; 0 = before training
    temperature: float = math.inf  # the last round's clustering temperature (trigger 'temperature')
    pending: np.ndarray | None = None  # absent clients: True while a client has no cluster yet
    reference: dict | None = None  # absent clients: the clustered representations and their start model


class Clustered(Method):
    """Cluster clients by ``representation`` with ``clusterer`` when ``trigger`` fires,
    then FedAvg within each cluster."""

    name = "clustered"
    summary = "generic: representation x clusterer x trigger, then FedAvg per cluster"
    Params = ClusteredParams
    newcomer = newcomer_rule(ClusteredParams())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if next(c for c in cls.__mro__ if "newcomer" in c.__dict__) is Clustered:  # a preset's rule, in its parts
            cls.newcomer = newcomer_rule(cls.Params())
        if next(c for c in cls.__mro__ if "absent_rule" in c.__dict__) is Clustered:
            cls.absent_rule = ABSENT_RULES[cls.Params().trigger]
    newcomer_uploads = 1

    def __init__(self, config):
        super().__init__(config)
        p = self.params
        self.representation, self.clusterer, self.trigger = p.representation, p.clusterer, p.trigger
        self.metric, self.linkage, self.warmup = p.metric, p.linkage, p.warmup_rounds
        self.threshold = p.distance_threshold or 0.0
        self.selected = None  # the last K selection (clusters=auto), until its round's diagnostics take it

    absent_rule = ABSENT_RULES["once"]

    @classmethod
    def handles_absent(cls, params) -> bool:
        return True

    # -- the parts ------------------------------------------------------------------------
    def assign(self, ctx: Context, start, trained) -> np.ndarray:
        """The clustering step: cluster every client from its representation."""
        return self.cluster_representation(ctx, represent(self.representation, ctx, start, trained, self.params))

    def cluster_representation(self, ctx: Context, rep) -> np.ndarray:
        """Cluster the clients of ``rep`` (one row per client of ``ctx.federation``); with
        ``clusters=auto`` and a clusterer that takes K, K is chosen by the silhouette
        (:func:`~cflkit.methods.parts.clustering.select_clusters`) and kept in ``selected``."""
        D = rep.distance_matrix(self.metric) if self.metric == "principal_angle" else None
        if self.chooses_k:
            self.selected = select_clusters(rep.X, self.clusterer, max_k=self.params.max_clusters, metric=self.metric,
                                            linkage=self.linkage, seed=self.config.seed, distances=D,
                                            no_structure=self.params.min_silhouette)
            return self.selected.labels
        finds_k = self.params.clusters == AUTO or (self.threshold and self.clusterer not in NEEDS_K)
        k = 0 if finds_k else self.n_clusters(ctx)
        return cluster(rep.X, self.clusterer, k=k, threshold=self.threshold, metric=self.metric,
                       linkage=self.linkage, min_cluster_size=self.params.min_cluster_size,
                       seed=self.config.seed, distances=D)

    @property
    def chooses_k(self) -> bool:
        """``clusters=auto`` where K matters: a clusterer that takes K and no distance threshold."""
        takes_k = self.clusterer in NEEDS_K or (self.clusterer in ("agglomerative", "bipartition")
                                                and not self.threshold)
        return self.params.clusters == AUTO and takes_k

    def selection_diagnostics(self) -> dict:
        """The last K selection (``clusters=auto``): K and its mean silhouette, once, for the round's row."""
        chosen, self.selected = self.selected, None
        return {} if chosen is None else {"k_selected": chosen.k, "silhouette": chosen.silhouette}

    def temperature(self, ctx: Context, start, trained) -> float:
        """OCFL's clustering temperature of this round: cosine distances between the
        clients' representations (:func:`cflkit.methods.ocfl.clustering_temperature`)."""
        from .ocfl import TEMPERATURE_P, clustering_temperature

        rep = represent(self.representation, ctx, start, trained, self.params)
        return clustering_temperature(pairwise_distances(rep.X, "cosine"), TEMPERATURE_P)

    def assign_newcomers(self, state, ctx, members, newcomers):
        """A newcomer is represented as the clients were (the method's representation, from
        the final models' mean) and joins the cluster of the least mean distance to its
        members in the method's metric: the server's own view of clients, applied to one it
        never saw."""
        rep, _ = newcomer_representations(self.representation, state, ctx, members, newcomers, self.params)
        D = rep.distance_matrix(self.metric)[len(members):, :len(members)]
        return nearest_cluster(D, state.assignment, state.n_clusters)

    # -- the round ------------------------------------------------------------------------
    def init(self, ctx: Context) -> ClusteredState:
        n = ctx.federation.n_clients
        assignment = np.zeros(n, dtype=np.int64)
        if self.trigger == "init" and ctx.joined_ids is not None:  # late clients: cluster those there
            there = ctx.joined
            start = [np.repeat(w[None], len(there), axis=0) for w in ctx.initial_weights]
            return self._cluster_some(ctx, there, start, None, 0)
        if self.trigger == "init":
            start = [np.repeat(w[None], n, axis=0) for w in ctx.initial_weights]
            assignment = self.assign(ctx, start, None)
        k = int(assignment.max()) + 1
        return ClusteredState([np.repeat(w[None], k, axis=0) for w in ctx.initial_weights], assignment,
                              clustered_at=0 if self.trigger == "init" else None)

    def round(self, state: ClusteredState, ctx: Context, r: int):
        if ctx.participants is not None:
            return self._absent_round(state, ctx, r)
        start = state.client_models()
        trained = ctx.train(start)  # the local update step, from each client's cluster model
        temperature = self.temperature(ctx, start, trained) if self.trigger == "temperature" else None
        assignment, clustered_at = state.assignment, state.clustered_at
        if fires(self.trigger, r, self.warmup, clustered_at, state.temperature, temperature):
            assignment = align(self.assign(ctx, start, trained), assignment)  # the clustering step
            clustered_at = r if clustered_at is None else clustered_at
        k = int(assignment.max()) + 1
        models = cluster_average(trained, ctx.federation.sizes, assignment, k)  # FedAvg within each cluster
        diagnostics = {"clustered": int(clustered_at == r), **self.selection_diagnostics()}
        if temperature is not None:
            diagnostics["temperature"] = float(temperature)
        new = ClusteredState(models, assignment, clustered_at=clustered_at,
                             temperature=state.temperature if temperature is None else temperature)
        return new, ctx.traffic(**diagnostics)

    # -- absent clients ---------------------------------------------------------------------
    def _absent_round(self, state: ClusteredState, ctx: Context, r: int):
        """A round with client sampling, lost updates or late clients (see the module)."""
        fed = ctx.federation
        pending = np.zeros(fed.n_clients, bool) if state.pending is None else state.pending
        sampled, returned = ctx.sampled, ctx.returned
        regular, first = sampled[~pending[sampled]], sampled[pending[sampled]]
        start = take(state.models, state.assignment[regular])
        trained = ctx.train(start, clients=regular)
        keep = np.isin(regular, returned)
        arrived, starts, updates = regular[keep], [w[keep] for w in start], [w[keep] for w in trained]
        diagnostics = {}
        temperature = None
        if self.trigger == "temperature" and len(arrived) >= 2:  # of the updates that arrived
            view = self._view(ctx, arrived)
            rep = represent(self.representation, view, starts, updates, self.params, probe=self._probe(ctx))
            from .ocfl import TEMPERATURE_P, clustering_temperature

            temperature = clustering_temperature(pairwise_distances(rep.X, "cosine"), TEMPERATURE_P)
            diagnostics["temperature"] = float(temperature)
        enough = len(arrived) >= self._needed(ctx)
        if self.trigger == "every" and state.clustered_at is not None and enough:
            state = self._recluster(ctx, state, arrived, starts, updates, r)
        elif (self.trigger != "init" and state.clustered_at is None and r > self.warmup and enough
              and (self.trigger != "temperature" or (temperature is not None and temperature > state.temperature))):
            state = self._cluster_some(ctx, arrived, starts, updates, r)
        else:
            models = update_clusters(state.models, updates, fed.sizes[arrived], state.assignment[arrived])
            state = dataclasses.replace(state, models=models)
        if temperature is not None:
            state = dataclasses.replace(state, temperature=temperature)
        if state.reference is not None and len(first):
            state = self._join(state, ctx, first[np.isin(first, returned)])
        return state, ctx.traffic(clustered=int(state.clustered_at == r), **diagnostics,
                                  **self.selection_diagnostics())

    def _needed(self, ctx) -> int:
        """Updates the clustering step needs: two, K for a clusterer that needs K, three to choose K."""
        if self.params.clusters == AUTO:
            return 3 if self.chooses_k else 2
        return 2 if (self.threshold and self.clusterer not in NEEDS_K) else max(2, self.n_clusters(ctx))

    def _view(self, ctx, clients) -> Context:
        """``ctx`` restricted to ``clients`` (renumbered), everybody in it taking part."""
        return dataclasses.replace(ctx, federation=ctx.federation.subset(clients), participants=None,
                                   joined_ids=None)

    def _probe(self, ctx):
        """Representation 'outputs': the whole federation's probe rows (None otherwise)."""
        if self.representation != "outputs":
            return None
        return probe_rows(ctx.federation, self.params.probe_size, self.config.seed)

    def _cluster_some(self, ctx, clients, start, trained, r: int) -> ClusteredState:
        """The clustering step on ``clients`` only (their start models and updates stacked);
        every other client is pending. Keeps their representations and the start model."""
        fed = ctx.federation
        view = self._view(ctx, clients)
        probe = self._probe(ctx)
        rep = represent(self.representation, view, start, trained, self.params, probe=probe)
        sub = self.cluster_representation(view, rep)
        k = int(sub.max()) + 1
        models = (cluster_average(trained, fed.sizes[clients], sub, k) if trained is not None
                  else [np.repeat(w[:1], k, axis=0) for w in start])
        assignment = np.full(fed.n_clients, np.bincount(sub, weights=fed.sizes[clients]).argmax(), dtype=np.int64)
        assignment[clients] = sub
        pending = np.ones(fed.n_clients, bool)
        pending[clients] = False
        reference = {"rep": rep, "assignment": sub, "start": [w[0] for w in start], "probe": probe}
        return ClusteredState(models, assignment, clustered_at=r, pending=pending, reference=reference)

    def _join(self, state, ctx, clients) -> ClusteredState:
        """Pending ``clients`` whose update arrived: trained once from the kept start model,
        represented as the clustered clients were, each joins the nearest cluster."""
        if not len(clients):
            return state
        ref = state.reference
        view = self._view(ctx, clients)
        start = [np.repeat(w[None], len(clients), axis=0) for w in ref["start"]]
        trained = view.train(start) if self.representation in NEEDS_TRAINING else None
        new = represent(self.representation, view, start, trained, self.params, probe=ref.get("probe"))
        D = representation_distances(ref["rep"], new, self.metric, int(np.prod(ctx.federation.input_shape)))
        assignment, pending = state.assignment.copy(), state.pending.copy()
        assignment[clients] = nearest_cluster(D, ref["assignment"], state.n_clusters)
        pending[clients] = False
        return dataclasses.replace(state, assignment=assignment, pending=pending)

    def _recluster(self, ctx, state, clients, start, trained, r: int) -> ClusteredState:
        """Trigger 'every': cluster the clients whose update arrived among themselves, keep
        the ids they had where the clusters match, average each cluster's arrivals; a
        cluster that got none keeps its model, one left without clients is dropped."""
        fed = ctx.federation
        view = self._view(ctx, clients)
        rep = represent(self.representation, view, start, trained, self.params, probe=self._probe(ctx))
        labels = match_labels(self.cluster_representation(view, rep), state.assignment[clients], state.n_clusters)
        k = max(state.n_clusters, int(labels.max()) + 1)
        models = [np.concatenate([m, np.repeat(m[:1], k - len(m), axis=0)]) for m in state.models]
        models = update_clusters(models, trained, fed.sizes[clients], labels)  # every new id got arrivals
        assignment = state.assignment.copy()
        assignment[clients] = labels
        used = np.unique(assignment)
        return dataclasses.replace(state, models=[m[used] for m in models],
                                   assignment=np.searchsorted(used, assignment).astype(np.int64),
                                   clustered_at=r if state.clustered_at is None else state.clustered_at)




def representation_distances(reference, new, metric: str, n_features: int) -> np.ndarray:
    """Distances (new clients x reference clients) between two representations of the same
    kind, in ``metric`` (principal angles: from the subspace bases, ``n_features`` rows each)."""
    X = np.vstack([reference.X, new.X])
    if metric == "principal_angle":
        from .pacfl import principal_angle_distances

        D = principal_angle_distances([x.reshape(n_features, -1) for x in X])
    else:
        D = pairwise_distances(X, metric)
    return D[len(reference.X):, :len(reference.X)]


class FLHC(Clustered):
    """FL+HC (Briggs, Fan & Andras, IJCNN 2020, arXiv 2004.11791).

    FedAvg for ``warmup_rounds`` rounds (default 3); then every client trains once from
    the global model and sends its update; the server clusters the updates by
    agglomerative clustering (Euclidean distance, Ward linkage, as in the paper) — into
    ``clusters`` clusters, or by ``distance_threshold`` as in the paper — and FedAvg
    continues independently within each cluster.
    """

    name = "flhc"
    summary = "FL+HC: FedAvg warm-up, then agglomerative clustering of updates (Briggs et al. 2020)"
    tuning = {"warmup_rounds": (3, 1, 5), "min_silhouette": (0.25, 0.15)}

    @dataclass(frozen=True)
    class Params(ClusteredParams):
        metric: str = "euclidean"  # the paper's Euclidean distance of updates
        linkage: str = "ward"  # the paper's Ward linkage
        warmup_rounds: int = 3  # FedAvg rounds before the clustering round (the paper's n = 3)


class KMeansWeights(Clustered):
    """k-means on client model weights (the server-side method compared by Ben Ali et al.,
    FLTA 2024, arXiv 2410.14212): after each round's local training the server runs
    k-means (K = ``clusters``) on the flattened weights and averages within clusters."""

    name = "kmeans"
    summary = "k-means on client weights every round (Ben Ali et al. 2024)"
    tuning = {"min_silhouette": (0.25, 0.15, 0.35)}

    @dataclass(frozen=True)
    class Params(ClusteredParams):
        representation: str = "weights"
        clusterer: str = "kmeans"
        trigger: str = "every"
        metric: str = "euclidean"


class FedClust(Clustered):
    """FedClust (Islam et al. 2024, arXiv 2407.07124): one shot. Clients train locally from
    the same initial model and send their output-layer weights; the server builds a
    Euclidean proximity matrix and clusters it hierarchically (by ``distance_threshold``,
    or into ``clusters``); FedAvg then runs within each cluster."""

    name = "fedclust"
    summary = "FedClust: one-shot hierarchical clustering of last-layer weights (Islam et al. 2024)"
    tuning = {"min_silhouette": (0.25, 0.15, 0.35)}

    @dataclass(frozen=True)
    class Params(ClusteredParams):
        representation: str = "last_layer"
        metric: str = "euclidean"


class Metadata(ClusteredFedAvg):
    """Group clients by a known attribute (hospital type, station area): FedAvg within
    each value of ``metadata_key`` (default: the federation's first attribute)."""

    name = "metadata"
    summary = "FedAvg within groups of a known client attribute (metadata_key)"
    newcomer = "the cluster of its attribute's value (lowest loss if no client with that value trained)"

    @dataclass(frozen=True)
    class Params(Params):
        metadata_key: str | None = None  # the client attribute to group by (none: the federation's first)

    def assignment(self, ctx):
        meta = ctx.federation.client_meta
        if not meta:
            raise ValueError("method 'metadata' needs a federation with client metadata; this one has none")
        return contiguous(np.asarray(meta[self.key(meta)]).astype(str))

    def key(self, meta) -> str:
        key = self.params.metadata_key or next(iter(meta))
        if key not in meta:
            raise ValueError(f"unknown metadata_key {key!r}; choose one of: {', '.join(meta)}")
        return key

    def assign_newcomers(self, state, ctx, members, newcomers):
        values = np.asarray(ctx.federation.client_meta[self.key(ctx.federation.client_meta)])
        return same_value_cluster(state, ctx, values[members], values[newcomers], newcomers)
