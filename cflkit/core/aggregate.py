"""Server-side maths as pure numpy functions on stacked weights (leading client axis)."""
from __future__ import annotations

import numpy as np


def weighted_average(weights: list, sizes) -> list:
    """FedAvg aggregation (McMahan et al. 2017): the size-weighted mean of client models.

    ``weights`` is a list of arrays stacked along a leading client axis; returns the same
    list with that axis reduced to length 1.
    """
    return cluster_average(weights, sizes, np.zeros(len(np.asarray(sizes)), dtype=np.int64), 1)


def cluster_average(weights: list, sizes, assignment, n_clusters: int) -> list:
    """Size-weighted mean of the client models of each cluster: arrays of shape (K, ...).

    Cluster ``k``'s model is ``sum_i n_i w_i / sum_i n_i`` over its clients ``i``. Every
    cluster must have at least one client and a positive total size.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    assignment = np.asarray(assignment, dtype=np.int64)
    n = len(sizes)
    if assignment.shape != (n,):
        raise ValueError(f"assignment has shape {assignment.shape}, expected ({n},) — one cluster per client")
    if np.any(sizes < 0) or not np.all(np.isfinite(sizes)):
        raise ValueError(f"client sizes must be finite and >= 0, got {sizes.tolist()}")
    if n and (assignment.min() < 0 or assignment.max() >= n_clusters):
        raise ValueError(f"assignment holds cluster ids outside 0..{n_clusters - 1}: "
                         f"{sorted(set(assignment.tolist()))}")
    for w in weights:
        if w.shape[0] != n:
            raise ValueError(f"weights are stacked for {w.shape[0]} clients, sizes for {n}")
    mix = np.zeros((n_clusters, n))
    mix[assignment, np.arange(n)] = sizes
    totals = mix.sum(axis=1, keepdims=True)
    if np.any(totals == 0):
        empty = np.flatnonzero(totals[:, 0] == 0).tolist()
        raise ValueError(f"clusters {empty} have no clients (or only clients of size 0): nothing to average")
    mix /= totals
    return [np.tensordot(mix, w.astype(np.float64), axes=(1, 0)).astype(w.dtype) for w in weights]


def update_clusters(models: list, trained: list, sizes, assignment) -> list:
    """Each cluster that got updates becomes their size-weighted mean; a cluster that got
    none keeps its model bit for bit (absent clients, lost updates).

    ``models``: the K cluster models (K, ...); ``trained``, ``sizes``, ``assignment``: the
    updates that arrived, stacked, with their clients' sizes and clusters.
    """
    out = [m.copy() for m in models]
    assignment = np.asarray(assignment, dtype=np.int64)
    if len(assignment) == 0:
        return out
    used = np.unique(assignment)
    averaged = cluster_average(trained, sizes, np.searchsorted(used, assignment), len(used))
    for o, a in zip(out, averaged):
        o[used] = a
    return out


def contiguous(assignment) -> np.ndarray:
    """Relabel cluster ids to 0..K-1 in order of first appearance."""
    assignment = np.asarray(assignment)
    _, first, inverse = np.unique(assignment, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def balanced_random_assignment(n_clients: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """A random assignment with every cluster non-empty and sizes differing by at most one."""
    if not 1 <= n_clusters <= n_clients:
        raise ValueError(f"cannot split {n_clients} clients into {n_clusters} non-empty clusters")
    return rng.permutation(np.arange(n_clients) % n_clusters).astype(np.int64)
