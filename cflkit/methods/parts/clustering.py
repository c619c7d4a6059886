"""How the server clusters client representations: distances and clusterers.

Every clusterer takes a representation matrix ``X`` (one row per client) and returns
contiguous cluster ids ``0..K-1`` — every client in exactly one cluster. Density methods'
noise points (label -1) become singleton clusters: they fitted no group, and a client
must still get a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.aggregate import contiguous

METRICS = {
    "euclidean": "L2 distance",
    "cosine": "1 - cosine similarity (in [0, 2])",
    "principal_angle": "smallest principal angle between client subspaces, in degrees (PACFL)",
}

CLUSTERERS = {
    "kmeans": "k-means (k-means++ init, 10 restarts); needs K",
    "agglomerative": "hierarchical clustering with a linkage; K or a distance threshold",
    "spectral": "spectral clustering of an RBF affinity on the distances; needs K",
    "dbscan": "DBSCAN on the distances; eps = distance_threshold (0: median distance)",
    "hdbscan": "HDBSCAN on the distances (min_cluster_size); finds K itself",
    "gmm": "Gaussian mixture (diagonal covariances) on PCA-reduced rows; needs K",
    "affinity_propagation": "affinity propagation on negative squared distances; finds K itself",
    "bipartition": "Sattler's recursive bipartition: complete linkage on the distances (cosine in the "
                   "paper), split the widest cluster until K (or until no diameter exceeds the threshold)",
}
NEEDS_K = ("kmeans", "spectral", "gmm")


def pairwise_distances(X: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Symmetric (n, n) distance matrix with a zero diagonal."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "euclidean":
        sq = (X * X).sum(1)
        D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0))
    elif metric == "cosine":
        D = 1.0 - cosine_similarity(X)
    elif metric == "principal_angle":
        raise ValueError("metric 'principal_angle' needs client subspaces: use representation 'subspace'")
    else:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    D = np.clip((D + D.T) / 2, 0.0, None)
    np.fill_diagonal(D, 0.0)
    return D


def cosine_similarity(X: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of ``X`` (zero rows count as orthogonal)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(norms == 0, 1.0, norms)
    return np.clip(U @ U.T, -1.0, 1.0)


def cluster(X=None, clusterer: str = "kmeans", k: int = 0, threshold: float = 0.0, metric: str = "euclidean",
            linkage: str = "average", min_cluster_size: int = 2, seed: int = 0, distances=None) -> np.ndarray:
    """Cluster the rows of ``X`` (or a precomputed ``distances`` matrix) into contiguous ids."""
    if clusterer not in CLUSTERERS:
        raise ValueError(f"unknown clusterer {clusterer!r}; choose one of: {', '.join(CLUSTERERS)}")
    n = len(distances) if distances is not None else len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if clusterer in NEEDS_K and k < 1:
        raise ValueError(f"clusterer {clusterer!r} needs a number of clusters: set clusters=K")
    if k > n:
        raise ValueError(f"cannot make {k} clusters of {n} clients")
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    D = distances if distances is not None else None

    def dist():
        return D if D is not None else pairwise_distances(X, metric)

    if clusterer in ("hdbscan", "dbscan") and min_cluster_size > n:
        raise ValueError(f"min_cluster_size={min_cluster_size} exceeds the {n} clients; set min_cluster_size "
                         f"between 2 and {n}")
    if clusterer == "kmeans":
        from sklearn.cluster import KMeans

        Y = _rows_for(X, metric, D)
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Y)
    elif clusterer == "agglomerative":
        labels = _agglomerative(X, dist, k, threshold, metric, linkage)
    elif clusterer == "spectral":
        labels = _spectral(dist(), k, seed)
    elif clusterer == "dbscan":
        labels = _dbscan(dist(), threshold, min_cluster_size)
    elif clusterer == "hdbscan":
        from sklearn.cluster import HDBSCAN

        labels = HDBSCAN(min_cluster_size=max(2, min_cluster_size), metric="precomputed",
                         copy=True).fit_predict(dist())
    elif clusterer == "gmm":
        labels = _gmm(_rows_for(X, metric, D), k, seed)
    elif clusterer == "affinity_propagation":
        from sklearn.cluster import AffinityPropagation

        labels = AffinityPropagation(affinity="precomputed", random_state=seed, max_iter=1000).fit_predict(-dist() ** 2)
    else:
        labels = bipartition(dist(), k, threshold)
    return contiguous(_singletons_for_noise(np.asarray(labels)))


NO_STRUCTURE = 0.25  # mean silhouette at or below which a partition shows "no substantial structure"


@dataclass(frozen=True)
class Selection:
    """What :func:`select_clusters` chose: the labels, K, and the mean silhouette of each K tried."""

    labels: np.ndarray
    k: int
    silhouettes: dict  # K -> mean silhouette width (K = 2 .. max_k)

    @property
    def silhouette(self) -> float:
        """The chosen partition's mean silhouette (NaN for one cluster, which has none)."""
        return float(self.silhouettes.get(self.k, np.nan))


def select_clusters(X=None, clusterer: str = "kmeans", max_k: int = 10, metric: str = "euclidean",
                    linkage: str = "average", seed: int = 0, distances=None,
                    no_structure: float = NO_STRUCTURE) -> Selection:
    """K unknown: cluster the rows into K = 2 .. ``max_k`` clusters (at most n - 1) with
    ``clusterer`` and keep the K of the largest mean silhouette width, measured on the same
    distances the clusterer uses (Rousseeuw, J. Comput. Appl. Math. 1987); one cluster if no
    K exceeds ``no_structure`` (0.25: "no substantial structure", Kaufman & Rousseeuw,
    *Finding Groups in Data*, 1990). It sees only the representations, never a ground truth;
    ties go to the smaller K."""
    from sklearn.metrics import silhouette_score

    D = distances if distances is not None else pairwise_distances(X, metric)
    n = len(D)
    scores = {}
    best = Selection(np.zeros(n, dtype=np.int64), 1, scores)
    for k in range(2, min(max_k, n - 1) + 1):
        labels = cluster(X, clusterer, k=k, metric=metric, linkage=linkage, seed=seed, distances=distances)
        if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= n:
            continue
        scores[k] = float(silhouette_score(D, labels, metric="precomputed"))
        if scores[k] > max(no_structure, scores.get(best.k, -np.inf)):
            best = Selection(labels, int(labels.max()) + 1, scores)
    return best


def _spectral(D, k, seed):
    """Spectral clustering on the Gaussian affinity exp(-(d / median d)^2) of the distances."""
    from sklearn.cluster import SpectralClustering

    sigma = np.median(D[np.triu_indices(len(D), 1)]) or 1.0
    affinity = np.exp(-(D / sigma) ** 2)
    return SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                              assign_labels="cluster_qr").fit_predict(affinity)


def _dbscan(D, threshold, min_cluster_size):
    """DBSCAN on the distances; ``eps`` is ``threshold`` or, when 0, the median distance."""
    from sklearn.cluster import DBSCAN

    eps = threshold or float(np.median(D[np.triu_indices(len(D), 1)]))
    eps = max(eps, 1e-12)  # coinciding clients: a zero median would be refused
    return DBSCAN(eps=eps, min_samples=min_cluster_size, metric="precomputed").fit_predict(D)


def _gmm(Y, k, seed):
    """A diagonal Gaussian mixture on the rows' first (at most 10) principal components."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    Y = PCA(n_components=min(len(Y) - 1, Y.shape[1], 10), random_state=seed).fit_transform(Y)
    return GaussianMixture(n_components=k, covariance_type="diag", n_init=5, random_state=seed,
                           reg_covar=1e-4).fit_predict(Y)


def _rows_for(X, metric, D):
    """Rows for vector-space clusterers: unit-normalised under the cosine metric."""
    if X is None:
        raise ValueError("this clusterer needs representation vectors, not only distances; "
                         "choose agglomerative, spectral, dbscan, hdbscan, affinity_propagation or bipartition")
    X = np.asarray(X, dtype=np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms == 0, 1.0, norms)
    return X


def _agglomerative(X, dist, k, threshold, metric, linkage):
    from sklearn.cluster import AgglomerativeClustering

    if linkage == "ward":
        if metric != "euclidean" or X is None:
            raise ValueError("linkage 'ward' needs euclidean vectors; use complete, average or single linkage")
        model = AgglomerativeClustering(n_clusters=None if threshold else k, distance_threshold=threshold or None,
                                        linkage="ward")
        return model.fit_predict(np.asarray(X, dtype=np.float64))
    if linkage not in ("complete", "average", "single"):
        raise ValueError(f"unknown linkage {linkage!r}; choose one of: ward, complete, average, single")
    if not threshold and k < 1:
        raise ValueError("agglomerative clustering needs clusters=K or a distance_threshold")
    model = AgglomerativeClustering(n_clusters=None if threshold else k, distance_threshold=threshold or None,
                                    metric="precomputed", linkage=linkage)
    return model.fit_predict(dist())


def bipartition(D: np.ndarray, k: int = 0, threshold: float = 0.0) -> np.ndarray:
    """Recursive bipartition (Sattler et al. 2021): split the widest cluster in two by
    complete linkage until there are ``k`` clusters, or — without ``k`` — until no
    cluster's diameter (largest pairwise distance) exceeds ``threshold``."""
    if not k and not threshold:
        raise ValueError("clusterer 'bipartition' needs clusters=K or a distance_threshold")
    n = len(D)
    labels = np.zeros(n, dtype=np.int64)
    while True:
        diam = [(D[np.ix_(labels == c, labels == c)].max(), c) for c in np.unique(labels) if (labels == c).sum() > 1]
        if not diam or (k and labels.max() + 1 >= k) or (not k and max(diam)[0] <= threshold):
            return labels
        _, widest = max(diam)
        members = np.flatnonzero(labels == widest)
        halves = split_in_two(D[np.ix_(members, members)])
        labels[members[halves == 1]] = labels.max() + 1


def split_in_two(D: np.ndarray, linkage: str = "complete") -> np.ndarray:
    """Two clusters by agglomerative clustering of the distances: labels 0/1, label 0 the
    half holding the first client."""
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=2, metric="precomputed", linkage=linkage).fit_predict(D)
    return (labels != labels[0]).astype(np.int64)


def _singletons_for_noise(labels: np.ndarray) -> np.ndarray:
    labels = labels.astype(np.int64).copy()
    noise = np.flatnonzero(labels < 0)
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(len(noise))
    return labels


def align(new, old) -> np.ndarray:
    """Rename the clusters of ``new`` to overlap ``old`` most (Hungarian matching), so ids
    stay stable across rounds; unmatched clusters get fresh ids after the matched ones."""
    from scipy.optimize import linear_sum_assignment

    new, old = np.asarray(new, dtype=np.int64), np.asarray(old, dtype=np.int64)
    kn, ko = new.max() + 1, old.max() + 1
    overlap = np.zeros((kn, ko))
    np.add.at(overlap, (new, old), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = -np.ones(kn, dtype=np.int64)
    mapping[rows] = cols
    free = iter(sorted(set(range(max(kn, ko))) - set(cols.tolist())))
    for c in range(kn):
        if mapping[c] < 0:
            mapping[c] = next(free)
    out = mapping[new]
    return contiguous_keep_order(out)


def match_labels(new, old, n_old: int) -> np.ndarray:
    """Rename the clusters of ``new`` (labels of some clients) to the ids ``old`` those same
    clients had, by Hungarian matching of the overlap over all ``n_old`` ids (so there are at
    most max(new, old) clusters); a cluster left unmatched (more new clusters than old ids)
    gets a fresh id from ``n_old`` on. Unlike :func:`align`, ids are not renumbered: the
    clients not in ``new`` (absent ones) keep theirs, so ids must keep their meaning.

    >>> match_labels([0, 0, 1, 2], [3, 3, 0, 0], n_old=4).tolist()  # cluster 2 takes a free id
    [3, 3, 0, 1]
    >>> match_labels([0, 1, 2], [0, 0, 0], n_old=1).tolist()
    [0, 1, 2]
    """
    from scipy.optimize import linear_sum_assignment

    new, old = np.asarray(new, dtype=np.int64), np.asarray(old, dtype=np.int64)
    kn = int(new.max()) + 1
    overlap = np.zeros((kn, max(int(n_old), int(old.max()) + 1)))
    np.add.at(overlap, (new, old), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.full(kn, -1, dtype=np.int64)
    mapping[rows] = cols
    fresh = iter(range(int(n_old), int(n_old) + kn))
    for c in range(kn):
        if mapping[c] < 0:
            mapping[c] = next(fresh)
    return mapping[new]


def contiguous_keep_order(labels) -> np.ndarray:
    """Map ids to 0..K-1 keeping their numeric order (matched ids keep their place)."""
    uniq = np.unique(labels)
    return np.searchsorted(uniq, labels).astype(np.int64)
