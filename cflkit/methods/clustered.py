"""Server-side clustered FL as three parts that combine: representation × clusterer × trigger.

Every round the clients train from their cluster's model; when the trigger fires, the
server computes a representation of every client (:mod:`cflkit.methods.parts.representations`),
clusters it (:mod:`cflkit.methods.parts.clustering`) and from then on averages within the new clusters.
The named methods below are presets of the three parts; any part can be overridden from
the config (``--set representation=update --set clusterer=hdbscan``).

Triggers:

- ``init`` — once, before training (representations that need no training: gradient at
  the initial model, data subspace, descriptors);
- ``once`` — once, after local training in round ``warmup_rounds + 1`` (FedAvg before);
- ``every`` — after local training in every round from ``warmup_rounds + 1`` on;
- ``temperature`` — once, at the first round after ``warmup_rounds`` whose clustering
  temperature exceeds the previous round's: the federated model starts to converge
  (OCFL; see :mod:`cflkit.methods.ocfl`). T is reported every round as a diagnostic.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.aggregate import cluster_average, contiguous
from .parts.clustering import (CLUSTERERS, METRICS, NEEDS_K, align, cluster, clustering_temperature, pairwise_distances,
                          temperature_rises)
from .parts.representations import REPRESENTATIONS, represent
from .base import ClusteredFedAvg, Context, Method, ServerState

TEMPERATURE_P = 2.0  # order of the entry-wise norm in OCFL's T(Γ) (the paper's p = 2: Frobenius)

TRIGGERS = {
    "init": "once, before training",
    "once": "once, after local training in round warmup_rounds + 1",
    "every": "after local training in every round from warmup_rounds + 1 on",
    "temperature": "once, at the first round whose clustering temperature T exceeds the last (OCFL)",
}


class Clustered(Method):
    """Cluster clients by ``representation`` with ``clusterer`` when ``trigger`` fires,
    then FedAvg within each cluster. Subclasses set ``defaults`` (their paper's)."""

    name = "clustered"
    summary = "generic: representation x clusterer x trigger, then FedAvg per cluster"
    defaults = dict(representation="update", clusterer="agglomerative", trigger="once", metric="cosine",
                    linkage="average", warmup_rounds=0)

    def __init__(self, config):
        super().__init__(config)
        part = lambda key: getattr(config, key) or self.defaults.get(key, "")  # noqa: E731
        self.representation = part("representation")
        self.clusterer = part("clusterer")
        self.trigger = part("trigger")
        self.metric = part("metric")
        self.linkage = part("linkage") or "average"
        self.warmup = config.warmup_rounds if config.warmup_rounds >= 0 else self.defaults.get("warmup_rounds", 0)
        self.threshold = config.distance_threshold or self.defaults.get("distance_threshold", 0.0)
        for value, options, what in ((self.representation, REPRESENTATIONS, "representation"),
                                     (self.clusterer, CLUSTERERS, "clusterer"), (self.trigger, TRIGGERS, "trigger"),
                                     (self.metric, METRICS, "metric")):
            if value not in options:
                raise ValueError(f"unknown {what} {value!r} for method {self.name!r}; choose one of: {', '.join(options)}")
        self._check_parts()

    def _check_parts(self):
        """Refuse combinations that cannot work, before any training."""
        from .parts.representations import NEEDS_TRAINING

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
        if self.clusterer == "agglomerative" and self.linkage not in ("ward", "complete", "average", "single"):
            raise ValueError(f"unknown linkage {self.linkage!r}; choose one of: ward, complete, average, single")

    # -- the parts ------------------------------------------------------------------------
    def assign(self, ctx: Context, start, trained) -> np.ndarray:
        """Cluster every client from its representation."""
        rep = represent(self.representation, ctx, start, trained)
        k = 0 if (self.threshold and self.clusterer not in NEEDS_K) else self.n_clusters(ctx)
        D = rep.distance_matrix(self.metric) if self.metric == "principal_angle" else None
        return cluster(rep.X, self.clusterer, k=k, threshold=self.threshold, metric=self.metric,
                       linkage=self.linkage, min_cluster_size=self.config.min_cluster_size,
                       seed=self.config.seed, distances=D)

    def temperature(self, ctx: Context, start, trained) -> float:
        """OCFL's clustering temperature of this round: cosine distances between the
        clients' representations (see :func:`cflkit.methods.parts.clustering.clustering_temperature`)."""
        rep = represent(self.representation, ctx, start, trained)
        return clustering_temperature(pairwise_distances(rep.X, "cosine"), TEMPERATURE_P)

    def fires(self, state: ServerState, ctx: Context, start, trained) -> bool:
        """Whether to (re-)cluster after local training in this round."""
        r = state.extra.get("round", 0)
        if self.trigger == "temperature":
            extra = state.extra
            t = self.temperature(ctx, start, trained)
            previous = extra.get("temperature", math.inf)
            extra["previous_temperature"], extra["temperature"] = previous, t
            if extra.get("clustered_at") is not None:
                return False  # one shot
            return r > self.warmup and temperature_rises(previous, t)
        if self.trigger == "once":
            return r == self.warmup + 1
        if self.trigger == "every":
            return r >= self.warmup + 1
        return False

    # -- the round ------------------------------------------------------------------------
    def init(self, ctx: Context) -> ServerState:
        n = ctx.federation.n_clients
        assignment = np.zeros(n, dtype=np.int64)
        if self.trigger == "init":
            start = [np.repeat(w[None], n, axis=0) for w in ctx.initial_weights]
            assignment = self.assign(ctx, start, None)
        k = int(assignment.max()) + 1
        return ServerState([np.repeat(w[None], k, axis=0) for w in ctx.initial_weights], assignment,
                           {"round": 0, "clustered_at": 0 if self.trigger == "init" else None})

    def round(self, state: ServerState, ctx: Context):
        extra = dict(state.extra, round=state.extra.get("round", 0) + 1)
        state = ServerState(state.models, state.assignment, extra)
        start = state.client_models()
        trained = ctx.train(start)
        assignment = state.assignment
        if self.fires(state, ctx, start, trained):
            assignment = align(self.assign(ctx, start, trained), assignment)
            if extra.get("clustered_at") is None:
                extra["clustered_at"] = extra["round"]
        k = int(assignment.max()) + 1
        models = cluster_average(trained, ctx.federation.sizes, assignment, k)
        diagnostics = {"clustered": int(extra.get("clustered_at") == extra["round"])}
        if "temperature" in extra:
            diagnostics["temperature"] = float(extra["temperature"])
        return ServerState(models, assignment, extra), ctx.traffic(**diagnostics)


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
    defaults = dict(representation="update", clusterer="agglomerative", trigger="once", metric="euclidean",
                    linkage="ward", warmup_rounds=3)


class KMeansWeights(Clustered):
    """k-means on client model weights (the server-side method compared by Ben Ali et al.,
    FLTA 2024, arXiv 2410.14212): after each round's local training the server runs
    k-means (K = ``clusters``) on the flattened weights and averages within clusters."""

    name = "kmeans"
    summary = "k-means on client weights every round (Ben Ali et al. 2024)"
    defaults = dict(representation="weights", clusterer="kmeans", trigger="every", metric="euclidean",
                    warmup_rounds=0)


class FedClust(Clustered):
    """FedClust (Islam et al. 2024, arXiv 2407.07124): one shot. Clients train locally from
    the same initial model and send their output-layer weights; the server builds a
    Euclidean proximity matrix and clusters it hierarchically (by ``distance_threshold``,
    or into ``clusters``); FedAvg then runs within each cluster."""

    name = "fedclust"
    summary = "FedClust: one-shot hierarchical clustering of last-layer weights (Islam et al. 2024)"
    defaults = dict(representation="last_layer", clusterer="agglomerative", trigger="once", metric="euclidean",
                    linkage="average", warmup_rounds=0)


class PACFL(Clustered):
    """PACFL (Vahidian et al., AAAI 2023, arXiv 2209.10526): one shot, before training.
    Each client sends the top ``subspace_dim`` (p = 3) left singular vectors of its data
    matrix; the server measures the smallest principal angle between every pair of
    subspaces and clusters them hierarchically (average linkage, as in the paper's code)
    — by ``distance_threshold`` in degrees, or into ``clusters``."""

    name = "pacfl"
    summary = "PACFL: one-shot clustering of client data subspaces by principal angles (Vahidian et al. 2023)"
    defaults = dict(representation="subspace", clusterer="agglomerative", trigger="init", metric="principal_angle",
                    linkage="average", warmup_rounds=0)


class Metadata(ClusteredFedAvg):
    """Group clients by a known attribute (hospital type, station area): FedAvg within
    each value of ``metadata_key`` (default: the federation's first attribute)."""

    name = "metadata"
    summary = "FedAvg within groups of a known client attribute (metadata_key)"

    def assignment(self, ctx):
        meta = ctx.federation.client_meta
        if not meta:
            raise ValueError("method 'metadata' needs a federation with client metadata; this one has none")
        key = self.config.metadata_key or next(iter(meta))
        if key not in meta:
            raise ValueError(f"unknown metadata_key {key!r}; choose one of: {', '.join(meta)}")
        return contiguous(np.asarray(meta[key]).astype(str))
