"""FLUX (Fenoglio et al., NeurIPS 2025): descriptors, the automatic eps, the warm-up trigger,
and the paper's known answers on planted digits federations: the groups are recovered without
K, the clustering does not read the ground truth, and unseen clients join their group's
cluster from an unlabeled descriptor."""
import dataclasses

import numpy as np
import pytest

from cflkit import Config, federation_from, run
from cflkit.methods import METHODS
from cflkit.methods.flux import (
    FLUX,
    BlockScaler,
    cluster_descriptors,
    descriptor,
    knee_index,
    nearest_centroid,
    random_projection,
    warmup_over,
)

# 2 clients per group of ~170 training rows each: per-class statistics over ~17 rows
PLANTED = Config(method="flux", dataset="digits", clients=8, groups=4, rounds=6)


# -- the pure parts ------------------------------------------------------------------------
def test_flux_is_registered_with_the_paper_defaults():
    assert METHODS["flux"] is FLUX
    p = Config(method="flux").params
    assert (p.warmup_rounds, p.accuracy_threshold, p.max_warmup_fraction) == (3, 0.06, 0.8)
    assert (p.descriptor_dim, p.eps_scaling, p.min_samples) == ("classes", 1.0, 2)
    assert FLUX.handles_absent(p) and FLUX.aggregates and FLUX.newcomer
    with pytest.raises(ValueError, match="'descriptor_dim' must be an integer >= 1 or 'classes', got 'labels'"):
        Config(method="flux", descriptor_dim="labels")
    with pytest.raises(ValueError, match="'eps_scaling' must be > 0"):
        Config(method="flux", eps_scaling=0)


def test_the_descriptor_is_marginal_then_per_class_statistics():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(30, 6)), np.repeat([0, 1, 2], 10)
    y[-9:] = 1  # class 2 keeps a single row: its statistics are the placeholder -1
    P = random_projection(6, 3, seed=0)
    np.testing.assert_allclose(P.T @ P, np.eye(3), atol=1e-12)
    d = descriptor(z, y, P, n_classes=3)
    assert d.shape == (2 * 3 + 2 * 3 * 3,)
    zp = z @ P
    np.testing.assert_allclose(d[:3], zp.mean(0))
    np.testing.assert_allclose(d[3:6], zp.std(0))
    np.testing.assert_allclose(d[6:9], zp[y == 0].mean(0))  # class means, then class stds
    np.testing.assert_allclose(d[15:18], zp[y == 0].std(0))
    assert (d[12:15] == -1).all() and (d[21:24] == -1).all()
    np.testing.assert_allclose(descriptor(z, None, P, 3), d[:6])  # unlabeled: the marginal part only


def test_block_scaling_maps_each_block_to_the_unit_interval_over_all_clients():
    X = np.array([[0.0, 2.0, 10.0, 10.0], [1.0, 4.0, 10.0, 10.0]])
    s = BlockScaler.fit(X, width=2)
    np.testing.assert_allclose(s.transform(X), [[0.0, 0.5, 0.0, 0.0], [0.25, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(s.transform(X[:, :2], 1), [[0.0, 0.5], [0.25, 1.0]])  # the first block alone


def test_the_knee_separates_the_outliers_and_a_flat_curve_has_none():
    assert knee_index([0.1, 0.1, 0.12, 0.11, 0.13, 0.12, 2.0, 2.2]) == 5
    assert knee_index([1.0, 1.0, 1.0, 1.0]) is None and knee_index([1.0, 2.0]) is None


def test_dbscan_with_the_automatic_eps_finds_k_itself():
    """Four pairs of close clients (as in the planted runs below: two per group) and one far
    client: the knee puts eps at the pairs' distances, the far client is its own cluster."""
    rng = np.random.default_rng(1)
    centres = 10 * rng.normal(size=(5, 5))
    X = np.repeat(centres[:4], 2, axis=0)
    X[1::2, 0] += [0.10, 0.11, 0.12, 0.13]
    X = np.vstack([X, centres[4]])
    labels, eps = cluster_descriptors(X)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4] and 0.13 - 1e-9 <= eps < 1.0
    lattice = np.arange(6.0)[:, None] * np.ones((1, 2))  # equally spaced: no knee, no noise, one cluster
    assert cluster_descriptors(lattice)[0].tolist() == [0] * 6
    assert nearest_centroid([[0.1, 0.0], [4.9, 5.0]], [[0.0, 0.0], [5.0, 5.0]]).tolist() == [0, 1]


def test_the_warm_up_ends_at_the_first_small_gain_from_round_three_or_at_80_percent():
    assert not warmup_over([0.2, 0.5], 2, 10, 3, 0.06, 0.8)  # never before round 3
    assert not warmup_over([0.2, 0.5, 0.8], 3, 10, 3, 0.06, 0.8)
    assert warmup_over([0.2, 0.5, 0.8, 0.82], 4, 10, 3, 0.06, 0.8)
    assert warmup_over([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], 8, 10, 3, 0.06, 0.8)  # 80 % of 10 rounds


def test_the_run_clusters_once_the_round_after_the_warm_up_ends():
    result = run(PLANTED.replace(scenario="rotation"))
    d = result.diagnostics
    accuracy = [x["global_accuracy"] for x in d if "global_accuracy" in x]
    ended = next(r for r in range(3, len(accuracy) + 1)
                 if warmup_over(accuracy[:r], r, PLANTED.rounds, 3, 0.06, 0.8))
    assert [x["round"] for x in d if x["clustered"]] == [ended + 1] == [result.state.clustered_at]
    parts = result.history[result.history["round"] > ended].groupby("round")["cluster"].apply(tuple)
    assert len(set(parts)) == 1, "the partition of the clustering round is kept to the end"
    first = result.history[result.history["round"] == ended + 1]
    assert (first["bytes_up"] > result.history[result.history["round"] == 1]["bytes_up"].iloc[0]).all(), \
        "the clustering round also sends the descriptors"


# -- known answers -------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", ["rotation", "label_swap", "shards", "feature_skew"])
def test_flux_recovers_the_planted_groups_without_being_given_k(scenario):
    """Measured, seeds 0-2: ARI 1.00 and 4 clusters on each scenario (P(X|Y)-like rotation and
    feature skew, P(Y|X) label swap, P(Y) shards)."""
    s = run(PLANTED.replace(scenario=scenario)).summary
    assert s["ari"] == pytest.approx(1.0) and s["n_clusters"] == 4


def test_a_shuffled_ground_truth_does_not_change_the_assignment():
    config = PLANTED.replace(scenario="shards")
    fed = federation_from(config)
    shuffled = dataclasses.replace(fed, groups=np.random.default_rng(3).permutation(fed.groups))
    a, b = run(config, federation=fed), run(config, federation=shuffled)
    assert np.array_equal(a.state.assignment, b.state.assignment)
    assert a.summary["ari"] == pytest.approx(1.0) and b.summary["ari"] < 1.0


def test_iid_clients_form_one_cluster():
    """Measured, seeds 0-2: one cluster with eps_scaling 1.5. At the paper's 1.0 the knee rule
    makes the clients beyond the knee noise, each its own cluster (2-5 clusters measured)."""
    for seed in (0, 1):
        s = run(PLANTED.replace(scenario="iid", groups=1, eps_scaling=1.5, seed=seed)).summary
        assert s["n_clusters"] == 1


@pytest.mark.parametrize("scenario", ["rotation", "shards"])
def test_unseen_clients_join_their_groups_cluster_from_an_unlabeled_descriptor(scenario):
    """Measured (12 clients, 4 held out, seeds 0-1): every newcomer joins its group's cluster."""
    s = run(PLANTED.replace(scenario=scenario, clients=12, holdout_clients=4)).summary
    assert s["ari"] == pytest.approx(1.0)
    assert s["unseen_matched"] == 1.0 and s["ari_unseen"] == pytest.approx(1.0)


def test_absent_clients_join_the_nearest_centroid_at_their_first_round():
    config = PLANTED.replace(scenario="shards", clients=12, rounds=10, participation=0.5)
    result = run(config)
    state, h = result.state, result.history
    assert state.clustered_at is not None and not state.pending.any(), "every pending client joined"
    clustered = h[(h["round"] == state.clustered_at) & (h["returned"] == 1)]["client"].nunique()
    assert sum(d["joined"] for d in result.diagnostics) == 12 - clustered > 0
    last = h[h["round"] == config.rounds]
    assert sorted(last["cluster"].unique()) == list(range(state.n_clusters))


def test_flux_refuses_a_task_without_classes():
    with pytest.raises(ValueError, match="method 'flux' needs a classification task"):
        FLUX(PLANTED).init(type("Ctx", (), {"federation": type("F", (), {"task": "regression"})()})())
