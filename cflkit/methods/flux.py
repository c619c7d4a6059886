"""FLUX: one-shot clustering of client *descriptors* (latent statistics per label) by DBSCAN
whose eps is found from the data, then FedAvg per cluster; unseen clients join the nearest
cluster centroid from their unlabeled descriptor.

Fenoglio, Li, Barbiero, Lane, Langheinrich & Gjoreski, "FLUX: Efficient Descriptor-Driven
Clustered Federated Learning under Arbitrary Distribution Shifts", NeurIPS 2025 (arXiv
2511.22305). Reference code read: dariofenoglio98/FLUX at commit 43aadbeb8d65 (1 Oct 2025):
``flux/server.py`` (trigger, scaling, ``CLIENT_CLUSTER_METHOD = 4`` "DBSCAN_no_outliers",
test-time assignment), ``flux/client.py``, ``public/models.py``
(``ModelEvaluator.extract_descriptors`` / ``extract_descriptors_inference``) and
``public/config.py`` (the defaults). What follows is our own code after that reading.

The method, round by round:

1. **Warm-up** (FedAvg). After every round the server records the accuracy of the new
   global model, as the clients report it. From round ``warmup_rounds`` (3) on, once *any*
   round-on-round gain of that accuracy so far is below ``accuracy_threshold`` (0.06) — the
   model has become a useful feature extractor — or ``max_warmup_fraction`` (0.8) of the
   rounds are done, the next round is the clustering round (:func:`warmup_over`).
2. **Descriptors** (client side, clustering round, before local training). Each client
   passes its training rows through the global model it received and keeps the *latent*
   features (the input of the output layer). They are projected onto ``descriptor_dim``
   fixed random orthonormal directions shared by everybody (the paper's size: as many as
   classes) and summarised as: mean and standard deviation over all rows (the marginal
   part, P(X)) and, for every class, mean and standard deviation over the rows of that class
   (the class-conditional part; -1 where the client has fewer than two rows of the class)
   (:func:`descriptor`). The rows themselves never leave the client.
3. **Clustering** (server). Every block of ``descriptor_dim`` values is min-max scaled over
   the clients (:class:`BlockScaler`); eps is the knee of the sorted distances of each
   client to its nearest other client (Kneedle, :func:`knee_index`) times ``eps_scaling``;
   DBSCAN with ``min_samples`` (2) on the Euclidean distances; a noise client becomes a
   cluster of its own (:func:`cluster_descriptors`). K is not given: it is what DBSCAN
   finds. The round's updates, all trained from the global model, are averaged per
   cluster, and FedAvg continues within each cluster to the end.
4. **Test time**. An unseen client computes only the marginal part of its descriptor (it
   needs no labels) with the kept global model, scaled as at the clustering, and joins the
   cluster whose centroid (mean scaled descriptor of the members) is nearest in those
   coordinates (:meth:`FLUX.assign_newcomers`).

Defaults (``public/config.py`` and ``flux/server.py`` of the reference):
``selected_descriptors = "Px_label_long"`` with ``extended_descriptors = True`` (means and
standard deviations, marginal and per label); ``len_latent_space_descriptor = n_classes``
(``descriptor_dim='classes'``); ``CLIENT_SCALING_METHOD = 1`` (min-max per block);
``CLIENT_CLUSTER_METHOD = 4``: ``NearestNeighbors(n_neighbors=2)`` distances, sorted,
``KneeLocator(curve='convex', direction='increasing')``, ``eps = distance at the elbow *
eps_scaling`` with ``eps_scaling = 1.0``, ``DBSCAN(min_samples=2)``, each noise point its own
cluster; the trigger ``th_round = 0.06`` checked from round 3 on, with the fallback at 80 %
of ``n_rounds``. The reference's training settings (SGD lr 0.005, momentum 0.9, 2 local
epochs, 10 rounds on MNIST) are the config's here.

Deviations from the reference, and why:

- *Latent layer*: the reference's LeNet-5 latent is the flattened convolutional output (the
  input of the first dense layer); our models differ, so the latent is the input of the
  output layer (the penultimate activations; the flattened input for ``logreg``) — the one
  choice every model of cflkit has.
- *Projection*: the reference fits a PCA on 200 uniform random points in ``[0, max
  latent]^d`` (seed 1), i.e. a data-independent random projection; we draw a seeded random
  orthonormal one directly (same role, no latent maximum to exchange, no centring offset).
- *Knee*: the reference calls the ``kneed`` package, which returns none on a curve without
  a knee and then fails; :func:`knee_index` follows the Kneedle rule kneed applies (the
  first local maximum of the difference curve, from the large end, after which the curve
  drops by more than the sensitivity) and, with no knee, takes the largest nearest-neighbour
  distance (no client is noise).
- *Trigger accuracy*: the reference's clients report accuracy on a 20 % validation split
  of their data; here every client keeps all its training rows (as in every other method)
  and reports the global model's accuracy on them.
- *Absent clients* (the reference always trains every client): the clustering round
  clusters the clients whose update arrived (it waits while fewer than two or
  ``min_samples`` arrive). A client absent then holds the largest cluster's model; at its
  first round whose update arrives it computes its full descriptor with the kept global
  model and joins the nearest centroid before training (its update is averaged into that
  cluster). A newcomer (``holdout_clients``) uses the unlabeled rule of step 4, on its
  training rows' features.
- In simulation the server computes the descriptors from the pooled rows (as the
  ``descriptors`` representation does); on a real federation this is a client-side step.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..core.aggregate import cluster_average, update_clusters
from ..core.trainer import take
from .base import Context, Method, ServerState
from .params import Params, at_least
from .parts.clustering import cluster, pairwise_distances

CLASSES = "classes"  # descriptor_dim='classes': as many projected dimensions as classes (the paper's)
MISSING = -1.0  # a class a client holds fewer than two rows of (the reference's placeholder)
KNEE_SENSITIVITY = 1.0  # Kneedle's S (kneed's default, which the reference uses)
DESCRIPTOR_BYTES = 4  # float32 per descriptor value on the wire


# -- descriptors --------------------------------------------------------------------------
def random_projection(n_features: int, n_components: int, seed: int) -> np.ndarray:
    """A (n_features, m) matrix of orthonormal columns, the same for every client of a run
    (m = ``n_components``, at most ``n_features``)."""
    m = min(int(n_components), int(n_features))
    rng = np.random.default_rng([int(seed), 0xF1])
    q, _ = np.linalg.qr(rng.normal(size=(int(n_features), m)))
    return q


def descriptor(latent, labels, projection, n_classes: int) -> np.ndarray:
    """A client's FLUX descriptor from its latent features ``latent`` (rows x d).

    Projected onto ``projection`` (d x m): the mean and standard deviation over all rows
    (2m values, the marginal part); then, unless ``labels`` is None, the means of the rows of
    each class and their standard deviations (2 m ``n_classes`` values; ``MISSING`` for a
    class with fewer than two rows).

    >>> P = np.eye(2)
    >>> descriptor([[0.0, 1.0], [2.0, 1.0]], None, P, 2).tolist()
    [1.0, 1.0, 1.0, 0.0]
    >>> descriptor([[0.0, 1.0], [2.0, 1.0], [5.0, 5.0]], [0, 0, 1], P, 2)[4:].tolist()
    [1.0, 1.0, -1.0, -1.0, 1.0, 0.0, -1.0, -1.0]
    """
    z = np.asarray(latent, dtype=np.float64) @ projection
    parts = [z.mean(0), z.std(0)]
    if labels is not None:
        labels = np.asarray(labels)
        m = projection.shape[1]
        means, stds = [], []
        for c in range(int(n_classes)):
            rows = z[labels == c]
            means.append(rows.mean(0) if len(rows) > 1 else np.full(m, MISSING))
            stds.append(rows.std(0) if len(rows) > 1 else np.full(m, MISSING))
        parts += means + stds
    return np.concatenate(parts)


@dataclass(frozen=True)
class BlockScaler:
    """Min-max scaling per block of ``width`` columns: one minimum and range per block, over
    all clients and columns of the block (the reference's one ``MinMaxScaler`` per
    descriptor group); a block of equal values has range 1 (scikit-learn's rule)."""

    low: np.ndarray  # (n_blocks,)
    span: np.ndarray  # (n_blocks,)
    width: int

    @classmethod
    def fit(cls, X, width: int) -> "BlockScaler":
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] % width:
            raise ValueError(f"descriptors of {X.shape[1]} values are not blocks of {width}")
        blocks = X.reshape(len(X), -1, width)
        low, high = blocks.min(axis=(0, 2)), blocks.max(axis=(0, 2))
        span = high - low
        return cls(low, np.where(span > 0, span, 1.0), int(width))

    def transform(self, X, n_blocks: int | None = None) -> np.ndarray:
        """Scale ``X``, whose columns are the first ``n_blocks`` blocks (default: all)."""
        X = np.asarray(X, dtype=np.float64)
        k = len(self.low) if n_blocks is None else int(n_blocks)
        blocks = X.reshape(len(X), k, self.width)
        return ((blocks - self.low[None, :k, None]) / self.span[None, :k, None]).reshape(len(X), -1)


def knee_index(values, sensitivity: float = KNEE_SENSITIVITY) -> int | None:
    """Kneedle (Satopää et al. 2011) on ``values`` sorted increasingly, as a convex
    increasing curve: the index (into the sorted values) where it bends up, or None when it
    has no knee. As kneed does for such a curve: normalise both axes to [0, 1], take the
    difference curve ``x - y``, walk it from the large end and return the first local
    maximum after which it falls below that maximum minus ``sensitivity`` times the mean
    x step.

    >>> knee_index([0.1, 0.1, 0.12, 0.11, 0.13, 0.12, 2.0, 2.2])
    5
    >>> knee_index([1.0, 2.0, 3.0]) is None  # a straight line has no knee
    True
    """
    from scipy.signal import argrelextrema

    y = np.sort(np.asarray(values, dtype=np.float64))
    n = len(y)
    if n < 3 or y[-1] <= y[0]:
        return None
    x = np.linspace(0.0, 1.0, n)
    diff = (x - (y - y[0]) / (y[-1] - y[0]))[::-1]  # walked from the largest value down
    maxima = argrelextrema(diff, np.greater_equal)[0]
    minima = set(argrelextrema(diff, np.less_equal)[0].tolist())
    if not maxima.size:
        return None
    drop = sensitivity / (n - 1)
    threshold, at, is_max = None, None, set(maxima.tolist())
    for i in range(int(maxima[0]), n - 1):
        if i in is_max:
            threshold, at = diff[i] - drop, i
        if i in minima:
            threshold = 0.0
        if threshold is not None and diff[i + 1] < threshold:
            return n - 1 - at
    return None


def nearest_neighbour_distances(D) -> np.ndarray:
    """Each client's distance to its nearest other client (``D``: pairwise distances)."""
    D = np.array(D, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    return D.min(axis=1)


def automatic_eps(D, eps_scaling: float = 1.0) -> float:
    """FLUX's eps: the nearest-neighbour distance at the knee of their sorted curve, times
    ``eps_scaling`` (without a knee: the largest, so that no client is noise)."""
    d1 = np.sort(nearest_neighbour_distances(D))
    k = knee_index(d1)
    eps = (d1[k] if k is not None else d1[-1]) * float(eps_scaling)
    return max(float(eps), 1e-12)  # coinciding descriptors: DBSCAN refuses eps = 0


def cluster_descriptors(X, eps_scaling: float = 1.0, min_samples: int = 2) -> tuple[np.ndarray, float]:
    """Contiguous cluster ids of the scaled descriptors ``X`` (one row per client) by DBSCAN
    with the automatic eps, and that eps; a noise client is a cluster of its own."""
    X = np.asarray(X, dtype=np.float64)
    if len(X) < 2:
        return np.zeros(len(X), dtype=np.int64), 0.0
    D = pairwise_distances(X, "euclidean")
    eps = automatic_eps(D, eps_scaling)
    labels = cluster(None, "dbscan", threshold=eps, min_cluster_size=min(int(min_samples), len(X)), distances=D)
    return labels, eps


def centroids(X, labels, n_clusters: int) -> np.ndarray:
    """The mean row of each cluster: (n_clusters, width)."""
    X, labels = np.asarray(X, dtype=np.float64), np.asarray(labels)
    return np.stack([X[labels == k].mean(axis=0) for k in range(n_clusters)])


def nearest_centroid(X, C) -> np.ndarray:
    """Index of the Euclidean-nearest row of ``C`` for each row of ``X`` (ties: lowest)."""
    X, C = np.atleast_2d(np.asarray(X, dtype=np.float64)), np.asarray(C, dtype=np.float64)
    d = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    return d.argmin(axis=1).astype(np.int64)


def warmup_over(accuracies, r: int, rounds: int, warmup: int, threshold: float, max_fraction: float) -> bool:
    """FLUX's trigger after round ``r``: from round ``warmup`` on, once any round-on-round
    gain of the global accuracy so far is below ``threshold``, or ``max_fraction`` of the
    ``rounds`` are done; then the next round clusters.

    >>> warmup_over([0.3, 0.6, 0.9], 3, 10, 3, 0.06, 0.8), warmup_over([0.3, 0.6, 0.62], 3, 10, 3, 0.06, 0.8)
    (False, True)
    >>> warmup_over([0.3, 0.6], 2, 10, 3, 0.06, 0.8), warmup_over([0.1, 0.2, 0.3, 0.4], 4, 5, 3, 0.06, 0.8)
    (False, True)
    """
    if r < warmup:
        return False
    gains = np.diff(np.asarray(accuracies, dtype=np.float64))
    return bool((gains < threshold).any()) or r >= max_fraction * rounds


# -- the method ----------------------------------------------------------------------------
@dataclass
class FLUXState(ServerState):
    """Models and assignment, plus the warm-up record and what the clustering kept."""

    accuracy: tuple = ()  # the global model's accuracy after each warm-up round
    cluster_next: bool = False  # the warm-up is over: the next round clusters
    clustered_at: int | None = None  # the clustering round
    pending: np.ndarray | None = None  # True while a client (absent at the clustering) has no cluster
    reference: dict | None = None  # the global model, projection, scaler and centroids of the clustering


class FLUX(Method):
    """FLUX (Fenoglio et al., NeurIPS 2025, arXiv 2511.22305): FedAvg until the global
    accuracy levels off, then one clustering of the clients' latent descriptors by DBSCAN
    with an automatic eps (no K), FedAvg per cluster; unseen clients join the nearest
    centroid of their unlabeled descriptor. See the module docstring."""

    name = "flux"
    summary = "FLUX: one-shot DBSCAN (automatic eps) of latent descriptors per label, no K (Fenoglio et al. 2025)"
    newcomer = ("its unlabeled descriptor (latent mean and std under the global model of the clustering), then "
                "the cluster of the nearest centroid")
    newcomer_uploads = 0  # a descriptor, not a model
    tuning = {"eps_scaling": (1.0, 1.5)}
    partial_participation = True
    absent_rule = ("the clients whose update arrived at the clustering round are clustered; a client absent then "
                   "holds the largest cluster's model and joins, at its first round, the cluster of the nearest "
                   "centroid of its descriptor under the kept global model")

    @dataclass(frozen=True)
    class Params(Params):
        warmup_rounds: int = 3  # FedAvg rounds at least before the accuracy test may end the warm-up (the paper's 3)
        accuracy_threshold: float = 0.06  # the warm-up ends once a round's accuracy gain is below this (th_round)
        max_warmup_fraction: float = 0.8  # ... or at the latest after this fraction of the rounds (the paper's 80 %)
        descriptor_dim: int | str = CLASSES  # latent directions per statistic: an integer, or 'classes' (paper)
        eps_scaling: float = 1.0  # DBSCAN eps = knee of the nearest-neighbour distances times this (paper: 1)
        min_samples: int = 2  # DBSCAN min_samples (the paper's 2; a noise client is its own cluster)

        def check(self):
            for name, low in (("warmup_rounds", 1), ("accuracy_threshold", 0.0), ("max_warmup_fraction", 0.0),
                              ("eps_scaling", 0.0), ("min_samples", 1)):
                at_least(self, name, low)
            if self.max_warmup_fraction > 1:
                raise ValueError(f"parameter 'max_warmup_fraction' must be in [0, 1], got {self.max_warmup_fraction}")
            if self.eps_scaling == 0:
                raise ValueError("parameter 'eps_scaling' must be > 0, got 0.0")
            d = self.descriptor_dim
            if isinstance(d, str) and d != CLASSES:
                raise ValueError(f"parameter 'descriptor_dim' must be an integer >= 1 or {CLASSES!r}, got {d!r}")
            if not isinstance(d, str) and d < 1:
                raise ValueError(f"parameter 'descriptor_dim' must be an integer >= 1 or {CLASSES!r}, got {d}")

    @classmethod
    def handles_absent(cls, params) -> bool:
        return True

    def __init__(self, config):
        super().__init__(config)
        self._latent = None  # (sub-model, indices of its weights among the model's), built once

    # -- descriptors ------------------------------------------------------------------------
    def latent_features(self, ctx: Context, weights: list, clients) -> list:
        """Each of ``clients``' training rows through the model ``weights`` (one model,
        unstacked) up to the input of its output layer: one (rows, d) array per client."""
        fed = ctx.federation
        rows = [np.asarray(fed.train_index[c]) for c in clients]
        x = fed.x[np.concatenate(rows)] if rows else fed.x[:0]
        sub, index = self._latent_model(ctx.trainer.model)
        z = sub.stateless_call([weights[i] for i in index], [], x, training=False)
        z = np.asarray(z[0] if isinstance(z, (list, tuple)) else z, dtype=np.float64).reshape(len(x), -1)
        return np.split(z, np.cumsum([len(r) for r in rows])[:-1])

    def _latent_model(self, model):
        if self._latent is None:
            from ..core._tf import keras

            try:
                sub = keras().Model(model.input, model.layers[-1].input)
            except (AttributeError, ValueError, TypeError):  # a model without one output layer: its outputs
                sub = model
            ids = {id(v): i for i, v in enumerate(model.trainable_variables)}
            self._latent = (sub, [ids[id(v)] for v in sub.trainable_variables])
        return self._latent

    def descriptors(self, ctx: Context, weights: list, clients, labelled: bool = True, projection=None):
        """The FLUX descriptors of ``clients`` under one model ``weights`` (rows), and the
        projection used (drawn for the latent width unless given)."""
        fed = ctx.federation
        latents = self.latent_features(ctx, weights, clients)
        if projection is None:
            m = fed.n_classes if self.params.descriptor_dim == CLASSES else int(self.params.descriptor_dim)
            projection = random_projection(latents[0].shape[1], m, self.config.seed)
        X = np.stack([descriptor(z, fed.y[fed.train_index[c]] if labelled else None, projection, fed.n_classes)
                      for z, c in zip(latents, clients)])
        return X, projection

    # -- the round ----------------------------------------------------------------------------
    def init(self, ctx: Context) -> FLUXState:
        if ctx.federation.task != "classification":
            raise ValueError(f"method 'flux' needs a classification task (its descriptors are latent statistics "
                             f"per class), got task {ctx.federation.task!r}")
        return FLUXState([np.repeat(w[None], 1, axis=0) for w in ctx.initial_weights],
                         np.zeros(ctx.federation.n_clients, dtype=np.int64))

    def round(self, state: FLUXState, ctx: Context, r: int):
        fed, p = ctx.federation, self.params
        sampled, returned = ctx.sampled, ctx.returned
        state, joined = self._join(state, ctx, np.intersect1d(sampled, returned))
        clustering = (state.clustered_at is None and state.cluster_next
                      and len(returned) >= max(2, min(p.min_samples, fed.n_clients)))
        if clustering:  # descriptors before local training, with the global model received
            global_model = [w[0] for w in state.models]
            X, projection = self.descriptors(ctx, global_model, returned)
        trained = ctx.arrived(ctx.train(take(state.models, state.assignment[sampled]), clients=sampled))
        sizes = fed.sizes[returned]
        diagnostics = {"clustered": int(clustering), "joined": len(joined)}
        if clustering:
            state, eps = self._cluster(state, ctx, returned, trained, X, projection, global_model, r)
            diagnostics.update(eps=eps, descriptor_size=int(X.shape[1]))
        else:
            models = update_clusters(state.models, trained, sizes, state.assignment[returned])
            state = dataclasses.replace(state, models=models)
            if state.clustered_at is None and len(returned):
                state = self._after_warmup_round(state, ctx, returned, r)
                diagnostics["global_accuracy"] = state.accuracy[-1]
        info = ctx.traffic(**diagnostics)
        width = int(X.shape[1]) if clustering else (state.reference["width"] if state.reference else 0)
        if clustering:
            info.bytes_up[returned] += DESCRIPTOR_BYTES * width
        if len(joined):  # the kept global model down, the descriptor up
            info.bytes_down[joined] += ctx.model_bytes(1)
            info.bytes_up[joined] += DESCRIPTOR_BYTES * width
        return state, info

    def _after_warmup_round(self, state: FLUXState, ctx: Context, clients, r: int) -> FLUXState:
        """Record the new global model's accuracy (the clients' report, size-weighted) and
        decide whether the warm-up is over."""
        fed, p = ctx.federation, self.params
        _, score = ctx.trainer.evaluate(take(state.models, np.zeros(len(clients), dtype=np.int64)),
                                        [fed.train_index[c] for c in clients])
        ok = np.isfinite(score)
        acc = float(np.average(score[ok], weights=fed.sizes[clients][ok])) if ok.any() else math.nan
        accuracy = state.accuracy + (acc,)
        done = warmup_over(accuracy, r, self.config.rounds, p.warmup_rounds, p.accuracy_threshold,
                           p.max_warmup_fraction)
        return dataclasses.replace(state, accuracy=accuracy, cluster_next=state.cluster_next or done)

    def _cluster(self, state, ctx, clients, trained, X, projection, global_model, r):
        """The clustering step on the descriptors ``X`` of ``clients`` (whose updates,
        trained from the global model, are ``trained``); every other client is pending."""
        fed, p = ctx.federation, self.params
        width = projection.shape[1]
        scaler = BlockScaler.fit(X, width)
        Xs = scaler.transform(X)
        labels, eps = cluster_descriptors(Xs, p.eps_scaling, p.min_samples)
        k = int(labels.max()) + 1
        models = cluster_average(trained, fed.sizes[clients], labels, k)
        largest = np.bincount(labels, weights=fed.sizes[clients], minlength=k).argmax()
        assignment = np.full(fed.n_clients, largest, dtype=np.int64)
        assignment[clients] = labels
        pending = np.ones(fed.n_clients, bool)
        pending[clients] = False
        reference = {"model": global_model, "projection": projection, "scaler": scaler,
                     "centroids": centroids(Xs, labels, k), "eps": eps, "width": int(X.shape[1])}
        return FLUXState(models, assignment, accuracy=state.accuracy, cluster_next=True, clustered_at=r,
                         pending=pending, reference=reference), eps

    def _join(self, state: FLUXState, ctx: Context, clients) -> tuple[FLUXState, np.ndarray]:
        """Pending ``clients`` taking part: their full descriptor under the kept global
        model, then the cluster of the nearest centroid."""
        if state.pending is None:
            return state, np.zeros(0, dtype=np.int64)
        clients = np.asarray(clients, dtype=np.int64)
        joined = clients[state.pending[clients]]
        if not len(joined):
            return state, joined
        ref = state.reference
        X, _ = self.descriptors(ctx, ref["model"], joined, projection=ref["projection"])
        assignment, pending = state.assignment.copy(), state.pending.copy()
        assignment[joined] = nearest_centroid(ref["scaler"].transform(X), ref["centroids"])
        pending[joined] = False
        return dataclasses.replace(state, assignment=assignment, pending=pending), joined

    def assign_newcomers(self, state, ctx, members, newcomers):
        """The paper's test-time rule: the newcomer's marginal descriptor (latent mean and
        std of its rows under the kept global model; no labels), scaled as at the clustering,
        joins the cluster of the nearest centroid in those coordinates. Before any
        clustering there is one model: cluster 0."""
        ref = getattr(state, "reference", None)
        if ref is None:
            return np.zeros(len(newcomers), dtype=np.int64)
        X, _ = self.descriptors(ctx, ref["model"], np.asarray(newcomers), labelled=False,
                                projection=ref["projection"])
        marginal = X.shape[1]  # the first blocks: mean and std over all rows
        return nearest_centroid(ref["scaler"].transform(X, 2), ref["centroids"][:, :marginal])
