"""OCFL: one-shot clustering when the clustering temperature says training starts to converge.

Zuziak, Pellungrini & Rinzivillo, "One-Shot Clustering for Federated Learning", IEEE BigData
2024 (arXiv 2503.04231; extended: arXiv 2509.01587). Reference code: MKZuziak/FedCL
(``aggregators/temperature.py``, ``Simulation.energy_oneshot``) and
MKZuziak/OCFL_IEEE_BigData2024 (the paper's run scripts).

Every round all clients train from the global model and send their update (the paper's
client "gradients": trained minus received weights). The server forms the cosine-distance
matrix Γ of the updates and its *clustering temperature*

    T(Γ) = ‖Γ‖_p / λ,   λ = (n (n − 1) 2^p)^(1/p),

the entry-wise p-norm of Γ divided by its largest possible value (every off-diagonal
distance 2), so that T ∈ [0, 1]: 0 when all updates point the same way, 1 when they are
pairwise opposite. The paper (and its code) take p = 2, the Frobenius norm. In the first
rounds the updates of all clients share the direction of the common loss decrease and T
falls; once the federated model starts to converge the clients' own objectives pull apart
and T rises. At the first round whose temperature exceeds the previous round's,
``T_t > T_{t-1}`` (with ``T_0 = ∞``, as in the reference code), the server clusters that
round's Γ once, with a density clusterer that needs no K (HDBSCAN by default), and FedAvg
continues independently within each cluster. The temperature of all clients' updates is
reported every round as the diagnostic ``temperature`` (``Result.diagnostics``,
``diagnostics.csv``) so notebooks can plot it.

Defaults from the paper: cosine distance of updates; p = 2; HDBSCAN on the precomputed
distances with ``min_cluster_size`` (the paper's scripts use 3 for 15 clients and 6 for
30; here the config's ``min_cluster_size``); local SGD, 3 local epochs, lr 0.01 and 50
rounds in the paper (here the config's training settings). Differences: HDBSCAN noise
clients become singleton clusters (cflkit's rule) where the reference code pools all noise
clients into one cluster; temperatures are computed after clustering only for the
diagnostic (the reference stops computing them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .clustered import Clustered, ClusteredParams

TEMPERATURE_P = 2.0  # order of the entry-wise norm in T(Γ) (the paper's p = 2: Frobenius)


def clustering_temperature(distances, p: float = 2.0) -> float:
    """OCFL's clustering temperature ``T(Γ) = ‖Γ‖_p / (n (n − 1) 2^p)^(1/p)``.

    ``distances`` is the (n, n) cosine-distance matrix Γ of the clients' updates (values in
    [0, 2], zero diagonal); ``‖Γ‖_p`` is its entry-wise p-norm. The result lies in [0, 1]:
    0 when every update points the same way, 1 when every pair is opposite (distance 2).

    >>> g = np.array([[1.0, 0.0], [-1.0, 0.0]])          # two opposite updates
    >>> from cflkit.methods.parts.clustering import pairwise_distances
    >>> clustering_temperature(pairwise_distances(g, "cosine"))
    1.0
    >>> clustering_temperature(np.zeros((4, 4)))          # identical directions
    0.0
    """
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"the clustering temperature needs a square distance matrix, got shape {D.shape}")
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"the temperature's norm order p must be a finite number > 0, got {p}")
    if not np.all(np.isfinite(D)) or np.any(D < 0):
        raise ValueError("the clustering temperature needs finite, non-negative distances")
    n = len(D)
    if n < 2:
        return 0.0
    norm = float((D ** p).sum() ** (1.0 / p))
    return norm / (n * (n - 1) * 2.0 ** p) ** (1.0 / p)


def temperature_rises(previous: float, current: float) -> bool:
    """OCFL's rule for when to cluster: the temperature went up since the last round."""
    return current > previous


class OCFL(Clustered):
    """One-Shot Clustered FL (Zuziak, Pellungrini & Rinzivillo, IEEE BigData 2024,
    arXiv 2503.04231): FedAvg until the clustering temperature of the clients' updates
    rises for the first time, then one HDBSCAN clustering of their cosine distances and
    FedAvg within each cluster. No K: the density clusterer finds the number of clusters.

    The representation and clusterer can be swapped (``--set clusterer=kmeans`` gives the
    paper's OCFL-KMeans, with K = ``clusters``); the temperature is always computed on
    cosine distances between the representations.

    >>> from cflkit import Config, run
    >>> result = run(Config(method="ocfl", scenario="label_swap", rounds=10))  # doctest: +SKIP
    >>> [d["temperature"] for d in result.diagnostics]                          # doctest: +SKIP
    """

    name = "ocfl"
    summary = "OCFL: one HDBSCAN clustering of update cosine distances when the temperature rises (Zuziak et al. 2024)"
    tuning = {"min_cluster_size": (2, 3)}
    @dataclass(frozen=True)
    class Params(ClusteredParams):
        clusterer: str = "hdbscan"  # the paper's density clusterer: no K
        trigger: str = "temperature"  # cluster once, when the clustering temperature first rises
