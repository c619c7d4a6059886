"""K unknown (``clusters=auto``): the silhouette rule of the server-side methods and IFCA's
K_max candidates with pruning. Both recover K on well-separated planted groups and read
only what the server has: a shuffled (or collapsed) ground truth changes no selection."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

import cflkit
from cflkit import Config
from cflkit.methods.parts.clustering import NO_STRUCTURE, select_clusters

SMALL = dict(dataset="digits", clients=16, groups=4, rounds=4, local_epochs=2)


def blobs(centres, per=5, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, spread, (per, len(c))) for c in centres])


@pytest.mark.parametrize("clusterer", ["kmeans", "agglomerative", "spectral", "gmm", "bipartition"])
def test_the_silhouette_recovers_k_of_separated_blobs(clusterer):
    X = blobs([[0, 0, 0], [3, 0, 0], [0, 3, 0]])
    metric = "cosine" if clusterer == "bipartition" else "euclidean"
    X = X + [5, 5, 5] if metric == "cosine" else X
    chosen = select_clusters(X, clusterer, metric=metric)
    if clusterer == "bipartition":  # cosine of shifted blobs: only check that it is a real choice
        assert chosen.k >= 2 and chosen.silhouette > NO_STRUCTURE
        return
    assert chosen.k == 3 and chosen.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert chosen.silhouette == max(chosen.silhouettes.values()) > 0.9
    assert set(chosen.silhouettes) == set(range(2, 11)), "K = 2 .. max_k (10), at most n - 1 = 14"


def test_no_structure_gives_one_cluster_and_the_bounds_hold():
    rng = np.random.default_rng(1)
    for dim in (50, 500):  # one Gaussian cloud in many dimensions: every silhouette is near 0
        chosen = select_clusters(rng.normal(size=(16, dim)), "kmeans")
        assert chosen.k == 1 and (chosen.labels == 0).all() and np.isnan(chosen.silhouette)
        assert max(chosen.silhouettes.values()) < NO_STRUCTURE
    X = blobs([[0, 0], [4, 0]], per=2)  # four clients: K = 2 .. 3 at most (n - 1)
    chosen = select_clusters(X, "agglomerative", max_k=10)
    assert set(chosen.silhouettes) == {2, 3} and chosen.k == 2
    assert select_clusters(X[:2], "kmeans").k == 1, "two clients: no K > 1 can be judged"
    # the bar is a parameter: with a bar above every silhouette, one cluster
    assert select_clusters(blobs([[0, 0], [4, 0]]), "kmeans", no_structure=0.999).k == 1


def test_shuffling_the_rows_permutes_the_labels_only():
    X = blobs([[0, 0], [3, 0], [0, 3], [3, 3]], per=4, spread=0.2)
    order = np.random.default_rng(0).permutation(len(X))
    a, b = select_clusters(X, "agglomerative"), select_clusters(X[order], "agglomerative")
    assert a.k == b.k == 4
    assert pd.crosstab(a.labels[order], b.labels).gt(0).sum(axis=1).eq(1).all(), "the same partition"


def permuted_groups(config, seed=0):
    """The config's federation with its ground truth shuffled (and one with a single group)."""
    fed = cflkit.federation_from(config)
    shuffled = dataclasses.replace(fed, groups=np.random.default_rng(seed).permutation(fed.groups))
    collapsed = dataclasses.replace(fed, groups=np.zeros(fed.n_clients, dtype=np.int64))
    return fed, shuffled, collapsed


@pytest.mark.parametrize("method, scenario", [("flhc", "label_swap"), ("kmeans", "rotation"), ("fedclust", "shards"),
                                              ("ifca", "label_swap"), ("cornflqs", "rotation")])
def test_the_selection_never_reads_the_ground_truth(method, scenario):
    config = Config(**SMALL, scenario=scenario, method=method, params={"clusters": "auto"})
    runs = [cflkit.run(config, federation=fed) for fed in permuted_groups(config)]
    first = runs[0].history[["round", "client", "cluster"]]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(other.history[["round", "client", "cluster"]], first)
        assert other.diagnostics == runs[0].diagnostics


def test_cornflqs_picks_k_at_the_end_of_its_cold_round():
    result = cflkit.run(Config(**SMALL, scenario="label_swap", method="cornflqs", params={"clusters": "auto"}))
    d = pd.DataFrame(result.diagnostics)
    assert d.loc[d["round"] == 1, "k_selected"].tolist() == [4] and d["k_selected"].notna().sum() == 1
    assert result.summary["n_clusters"] == 4 and result.summary["ari"] == 1.0


@pytest.mark.parametrize("method", ["flhc", "kmeans"])
def test_server_side_methods_recover_four_planted_groups_without_k(method):
    result = cflkit.run(Config(**SMALL, scenario="label_swap", method=method, params={"clusters": "auto"}))
    assert result.summary["ari"] == 1.0 and result.summary["n_clusters"] == 4
    selected = pd.DataFrame(result.diagnostics).dropna(subset=["k_selected"])
    assert (selected["k_selected"] == 4).all() and (selected["silhouette"] > NO_STRUCTURE).all()
    first = 1 + Config(method=method).params.warmup_rounds  # the clustering round of the one-shot step
    assert selected["round"].iloc[0] == first


def test_server_side_auto_finds_one_cluster_on_iid_clients():
    result = cflkit.run(Config(**SMALL, scenario="iid", method="flhc", params={"clusters": "auto"}))
    assert result.summary["n_clusters"] == 1
    d = pd.DataFrame(result.diagnostics).dropna(subset=["k_selected"])
    assert d["k_selected"].tolist() == [1] and d["silhouette"].isna().all()


def test_ifca_prunes_candidates_no_client_chose():
    config = Config(**SMALL, scenario="label_swap", method="ifca", params={"clusters": "auto", "max_clusters": 8})
    result = cflkit.run(config)
    d = pd.DataFrame(result.diagnostics).set_index("round")
    chosen = result.history[result.history["round"] >= 1].groupby("round")["cluster"].nunique()
    assert (chosen == d["n_clusters"]).all() and result.summary["n_clusters"] == chosen.iloc[-1]
    assert chosen.is_monotonic_decreasing, "a pruned candidate is never offered again"
    # each client downloads the candidates left: K_max = 8 minus those no client chose at the start,
    # then exactly the previous round's chosen ones (every client takes part here)
    fixed = cflkit.run(config.replace(params={"clusters": 8}))
    per_model = fixed.history.groupby("round")["bytes_down"].sum().loc[1:] / 8
    assert per_model.nunique() == 1, "without pruning every round sends all K"
    offered = result.history.groupby("round")["bytes_down"].sum().loc[1:] / per_model.iloc[0]
    assert offered.iloc[0] <= 8 and offered.iloc[0] >= chosen.iloc[0]
    assert np.allclose(offered.iloc[1:].values, chosen.iloc[:-1].values)


@pytest.mark.parametrize("method", ["random", "fedgroup"])
def test_methods_that_cannot_choose_k_refuse_auto(method):
    with pytest.raises(ValueError, match="this method cannot choose K itself"):
        Config(method=method, params={"clusters": "auto"})


def test_auto_parameters_are_checked():
    with pytest.raises(ValueError, match="min_silhouette"):
        Config(method="flhc", params={"clusters": "auto", "min_silhouette": 2})
    with pytest.raises(ValueError, match="max_clusters"):
        Config(method="ifca", params={"clusters": "auto", "max_clusters": 1})
    with pytest.raises(ValueError, match="'auto'"):
        Config(method="kmeans", params={"clusters": "many"})
