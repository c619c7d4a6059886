"""What the server compares: one representation of every client.

A representation is computed from what a client sends after (or before) local training:
``start`` are the stacked models the clients started the round from, ``trained`` the
stacked models after local training (``None`` before any training). Each function
returns a :class:`Representation`: one row per client and, where a metric needs more
than rows (principal angles), the distance matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clustering import pairwise_distances

REPRESENTATIONS = {
    "weights": "all model weights after local training",
    "update": "weights after local training minus weights before (the update)",
    "last_layer": "weights and bias of the output layer after local training (FedClust)",
    "gradient": "full-batch gradient of the client's loss at the model it starts from",
    "subspace": "top subspace_dim left singular vectors of the client's data matrix (PACFL)",
    "outputs": "softmax outputs of the trained model on a shared probe set of probe_size samples",
    "descriptors": "label histogram and per-feature mean / std of the client's data (privacy tier T1)",
}
NEEDS_TRAINING = ("weights", "update", "last_layer", "outputs")


@dataclass
class Representation:
    X: np.ndarray  # (clients, d)
    name: str
    distances: np.ndarray | None = None  # precomputed (clients, clients), when the metric needs it

    def distance_matrix(self, metric: str) -> np.ndarray:
        if metric == "principal_angle":
            if self.distances is None:
                raise ValueError("metric 'principal_angle' needs representation 'subspace'")
            return self.distances
        return pairwise_distances(self.X, metric)


def flatten(weights: list) -> np.ndarray:
    """Stacked weights (list of (C, ...) arrays) as one (C, n_params) matrix."""
    return np.concatenate([w.reshape(w.shape[0], -1) for w in weights], axis=1)


def represent(name: str, ctx, start: list, trained: list | None, params=None, probe=None) -> Representation:
    """Compute representation ``name`` of every client (``params``: the method's, for
    ``subspace_dim`` and ``probe_size``; ``probe``: the rows of representation 'outputs',
    default :func:`probe_rows` of ``ctx.federation`` — pass the whole federation's when
    representing a subset of its clients, so that all are compared on the same rows)."""
    if name not in REPRESENTATIONS:
        raise ValueError(f"unknown representation {name!r}; choose one of: {', '.join(REPRESENTATIONS)}")
    if name in NEEDS_TRAINING and trained is None:
        raise ValueError(f"representation {name!r} needs local training first: use trigger 'once' or 'every', "
                         f"or a representation available before training (gradient, subspace, descriptors)")
    fed = ctx.federation
    if name == "outputs" and fed.task == "survival":
        raise ValueError("representation 'outputs' does not support task 'survival' (the softmax of one Cox "
                         "risk score is constant); use weights, update, last_layer, gradient or descriptors")
    params = ctx.config.params if params is None else params
    if name == "weights":
        return Representation(flatten(trained), name)
    if name == "update":
        return Representation(flatten(trained) - flatten(start), name)
    if name == "last_layer":
        return Representation(flatten(trained[-2:]), name)
    if name == "gradient":
        return Representation(flatten(ctx.trainer.gradients(start, fed.train_index)), name)
    if name == "outputs":
        probe = probe_rows(fed, params.probe_size, ctx.config.seed) if probe is None else probe
        out = ctx.trainer.predict(trained, [probe] * fed.n_clients)
        return Representation(np.stack([_softmax(o).ravel() for o in out]), name)
    if name == "subspace":
        from ..pacfl import data_subspace, principal_angle_distances

        bases = [data_subspace(fed.x[rows], params.subspace_dim) for rows in fed.train_index]
        return Representation(np.stack([b.ravel() for b in bases]), name, principal_angle_distances(bases))
    return Representation(descriptors(fed), name)


def descriptors(fed) -> np.ndarray:
    """T1 summaries: normalised label histogram, per-feature mean and std."""
    rows = []
    for c in range(fed.n_clients):
        x = fed.x[fed.train_index[c]].reshape(len(fed.train_index[c]), -1)
        parts = [x.mean(0), x.std(0)]
        if fed.task == "classification":
            h = fed.label_histogram(c).astype(float)
            parts.insert(0, h / h.sum())
        rows.append(np.concatenate(parts))
    return np.stack(rows)


def probe_rows(fed, size: int, seed: int) -> np.ndarray:
    """A fixed probe set shared by all clients: a seeded sample of the pooled test rows
    (stands in for a public dataset the server holds)."""
    pool = np.concatenate(fed.test_index)
    rng = np.random.default_rng([int(seed), 2])
    return np.sort(rng.choice(pool, size=min(size, len(pool)), replace=False))


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
