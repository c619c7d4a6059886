"""Clusterers, distances and representations on inputs with known answers."""
import numpy as np
import pytest

from cflkit.core.aggregate import contiguous
from cflkit.core.metrics import clustering_scores
from cflkit.methods.pacfl import data_subspace, principal_angle_distances
from cflkit.methods.parts.clustering import (
    CLUSTERERS,
    align,
    bipartition,
    cluster,
    cosine_similarity,
    pairwise_distances,
)


def blobs(seed=0, per=5, dims=20):
    """Three well-separated directions: planted clusters under euclidean and cosine metrics."""
    rng = np.random.default_rng(seed)
    centers = np.eye(dims)[:3] * 10
    X = np.concatenate([c + rng.normal(0, 0.3, (per, dims)) for c in centers])
    return X, np.repeat(np.arange(3), per)


@pytest.mark.parametrize("name", sorted(CLUSTERERS))
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_every_clusterer_recovers_planted_blobs(name, metric):
    X, truth = blobs()
    kwargs = dict(k=3, metric=metric, linkage="average", min_cluster_size=2, seed=0)
    if name == "dbscan":
        kwargs["threshold"] = 0.5 * np.median(pairwise_distances(X, metric))
    labels = cluster(X, name, **kwargs)
    assert labels.shape == (15,)
    assert sorted(set(labels.tolist())) == list(range(labels.max() + 1)), "contiguous ids"
    assert clustering_scores(truth, labels)["ari"] == 1.0


def test_same_seed_same_clusters():
    X, _ = blobs(1)
    for name in ("kmeans", "spectral", "gmm", "affinity_propagation"):
        np.testing.assert_array_equal(cluster(X, name, k=3, seed=4), cluster(X, name, k=3, seed=4))


def test_density_noise_becomes_singleton_clusters():
    X, _ = blobs(2)
    X = np.vstack([X, np.full((1, X.shape[1]), 100.0)])  # an outlier far from everything
    labels = cluster(X, "hdbscan", metric="euclidean", min_cluster_size=3)
    assert (labels == labels[-1]).sum() == 1
    assert labels.max() + 1 == 4


def test_threshold_agglomerative_finds_k_itself():
    X, truth = blobs(3)
    labels = cluster(X, "agglomerative", threshold=5.0, metric="euclidean", linkage="complete")
    assert clustering_scores(truth, labels)["ari"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(clusterer="kmean"), "unknown clusterer 'kmean'; choose one of: kmeans, agglomerative"),
    (dict(clusterer="kmeans", k=0), "needs a number of clusters: set clusters=K"),
    (dict(clusterer="agglomerative", k=3, linkage="ward", metric="cosine"), "linkage 'ward' needs euclidean"),
    (dict(clusterer="agglomerative", k=3, linkage="median"), "unknown linkage 'median'"),
    (dict(clusterer="agglomerative", k=0), "needs clusters=K or a distance_threshold"),
    (dict(clusterer="kmeans", k=99), "cannot make 99 clusters of 15 clients"),
    (dict(clusterer="kmeans", k=3, metric="manhattan"), None),
])
def test_bad_clusterer_settings_fail_clearly(kwargs, message):
    X, _ = blobs()
    if message is None:  # an unknown metric is caught where distances are computed
        with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
            cluster(X, "agglomerative", k=3, metric="manhattan")
        return
    with pytest.raises(ValueError, match=message):
        cluster(X, **kwargs)


def test_bipartition_splits_the_widest_cluster_until_k():
    X, truth = blobs(4)
    D = pairwise_distances(X, "cosine")
    labels = bipartition(D, k=3)
    assert clustering_scores(truth, labels)["ari"] == 1.0
    assert bipartition(D, k=1).tolist() == [0] * 15
    assert bipartition(D, threshold=0.5).max() == 2


def test_cosine_similarity_and_distances_are_symmetric_with_known_values():
    X = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    S = cosine_similarity(X)
    np.testing.assert_allclose(S, [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-12)
    D = pairwise_distances(X, "cosine")
    np.testing.assert_allclose(D, 1 - S, atol=1e-12)
    E = pairwise_distances(X, "euclidean")
    np.testing.assert_allclose(E[0, 2], 4.0)
    assert np.all(np.diag(E) == 0) and np.allclose(E, E.T)


def test_principal_angles_known_answers():
    e = np.eye(4)
    same, other, tilted = e[:, :2], e[:, 2:], np.stack([(e[0] + e[2]) / np.sqrt(2), e[3]], axis=1)
    D = principal_angle_distances([same, other, tilted, same])
    assert D[0, 3] == pytest.approx(0.0, abs=1e-6)
    assert D[0, 1] == pytest.approx(90.0)
    assert D[0, 2] == pytest.approx(45.0)


def test_data_subspace_is_orthonormal_and_spans_the_data():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0]
    x = (rng.normal(size=(50, 2)) @ basis.T)
    U = data_subspace(x, 3)
    assert U.shape == (10, 3)
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-10)
    D = principal_angle_distances([U[:, :2], basis])
    assert D[0, 1] == pytest.approx(0.0, abs=1e-4)


def test_align_keeps_ids_stable_across_rounds():
    old = np.array([0, 0, 1, 1, 2, 2])
    new = np.array([2, 2, 0, 0, 1, 1])  # same partition, renamed
    np.testing.assert_array_equal(align(new, old), old)
    split = np.array([1, 1, 0, 0, 2, 3])  # cluster 2 split in two
    out = align(split, old)
    assert out[:4].tolist() == [0, 0, 1, 1] and len(set(out.tolist())) == 4
    assert contiguous(out).max() == 3
