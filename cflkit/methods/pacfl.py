"""PACFL: one-shot clustering of the clients' data subspaces by principal angles, before training.

Vahidian, Morafah, Wang, Kungurtsev, Chen, Shah & Lin, "Efficient Distribution Similarity
Identification in Clustered Federated Learning via Principal Angles Between Client Data
Subspaces", AAAI 2023 (arXiv 2209.10526). Each client sends the top ``p`` left singular
vectors of its data matrix (features × samples; :func:`data_subspace`); the server
measures the smallest principal angle between every pair of subspaces
(:func:`principal_angle_distances`) and clusters the clients hierarchically once, before
round 1; FedAvg then runs within each cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clustered import Clustered, ClusteredParams


def data_subspace(x: np.ndarray, p: int) -> np.ndarray:
    """PACFL (Vahidian et al. 2023): orthonormal basis of the top-``p`` left singular
    vectors of the client's data matrix (features × samples)."""
    D = x.reshape(len(x), -1).astype(np.float64).T
    U, _, _ = np.linalg.svd(D, full_matrices=False)
    p = min(p, U.shape[1])
    return U[:, :p]


def principal_angle_distances(bases: list) -> np.ndarray:
    """PACFL's proximity: the smallest principal angle (degrees) between client subspaces.

    ``bases[i]`` is an orthonormal (features, p) basis; the cosines of the principal angles
    between two subspaces are the singular values of ``U_i^T U_j`` (Björck & Golub 1973).
    """
    n = len(bases)
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            s = np.linalg.svd(bases[i].T @ bases[j], compute_uv=False)
            D[i, j] = D[j, i] = np.degrees(np.arccos(np.clip(s.max(), -1.0, 1.0)))
    return D


class PACFL(Clustered):
    """PACFL (Vahidian et al., AAAI 2023, arXiv 2209.10526): one shot, before training.
    Each client sends the top ``subspace_dim`` (p = 3) left singular vectors of its data
    matrix; the server measures the smallest principal angle between every pair of
    subspaces and clusters them hierarchically (average linkage, as in the paper's code)
    — by ``distance_threshold`` in degrees, or into ``clusters``."""

    name = "pacfl"
    summary = "PACFL: one-shot clustering of client data subspaces by principal angles (Vahidian et al. 2023)"
    tuning = {"subspace_dim": (3, 2, 5), "min_silhouette": (0.25, 0.15)}

    @dataclass(frozen=True)
    class Params(ClusteredParams):
        representation: str = "subspace"
        trigger: str = "init"
        metric: str = "principal_angle"
        distance_threshold: float | None = None  # cut of the tree in degrees (none: cut into K clusters)
