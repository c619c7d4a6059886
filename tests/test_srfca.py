"""SR-FCA (Vardhan, Ghosh & Mazumdar, TMLR 2024): its pure parts, and the paper's claims on
planted federations of digits — the groups are recovered without K, MERGE joins what
ONE_SHOT split, the trimmed mean ignores an outlier, unseen clients join their group.

Measured (digits, MLP 64-64, defaults, seed 0): 16 clients in 4 groups, 6 rounds (ONE_SHOT
after 2, REFINE steps end at 4 and 6): ARI 1.0 with 4 clusters for label_swap (accuracy
0.91) and rotation (0.91); at 15 rounds ARI 1.0, accuracy 0.93; rotation with participation 0.5,
15 rounds: ONE_SHOT at round 8 (every local model collected), ARI 1.0, 4 clusters.
"""
import dataclasses

import numpy as np
import pytest

from cflkit import Config, federation_from, run
from cflkit.core.experiment import build_context
from cflkit.core.participation import Participants
from cflkit.methods import make_method
from cflkit.methods.srfca import (
    cross_loss_distances,
    merge_groups,
    pivot_clusters,
    threshold_clusters,
    threshold_from,
    trimmed_mean,
)

FAST = Config(dataset="digits", scenario="label_swap", clients=16, groups=4, rounds=6, method="srfca")


@pytest.fixture(scope="module")
def fed():
    return federation_from(FAST)


def ari(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b)


# -- the pure parts ----------------------------------------------------------------------------
def test_trimmed_mean_ignores_an_outlier_that_the_mean_follows():
    rng = np.random.default_rng(0)
    honest = rng.normal(1.0, 0.01, size=(9, 3, 2))
    stacked = np.concatenate([honest, np.full((1, 3, 2), 1e6)])
    trimmed = trimmed_mean(stacked, 0.15)  # floor(0.15 * 10) = 1 dropped at each end
    assert np.allclose(trimmed, 1.0, atol=0.02)
    assert (stacked.mean(axis=0) > 1e5).all()
    # nothing to trim (beta 0, or too few clients): the size-weighted mean, as FedAvg
    sizes = np.arange(1, 11)
    assert np.allclose(trimmed_mean(stacked, 0.0, sizes), np.tensordot(sizes / sizes.sum(), stacked, axes=1))
    assert np.allclose(trimmed_mean(stacked[:3], 0.15), stacked[:3].mean(axis=0))
    with pytest.raises(ValueError, match="beta must be in"):
        trimmed_mean(stacked, 0.5)


def test_pivot_clusters_of_two_cliques_and_a_loner_for_every_seed():
    A = np.zeros((5, 5), bool)
    A[np.ix_([0, 1, 2], [0, 1, 2])] = True
    A[np.ix_([3, 4], [3, 4])] = True
    for seed in range(5):
        assert pivot_clusters(A, np.random.default_rng(seed)).tolist() == [0, 0, 0, 1, 1]
    # a path a-b-c: a pivot at b takes both ends, a pivot at an end leaves the other alone
    path = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], bool)
    seen = {tuple(pivot_clusters(path, np.random.default_rng(s)).tolist()) for s in range(20)}
    assert seen <= {(0, 0, 0), (0, 0, 1), (0, 1, 1)} and len(seen) > 1


def test_one_shot_keeps_clusters_of_at_least_t_clients_and_never_none():
    D = np.array([[0, 1, 9, 9, 9], [1, 0, 9, 9, 9], [9, 9, 0, 1, 9], [9, 9, 1, 0, 9], [9, 9, 9, 9, 0.0]])
    rng = np.random.default_rng(0)
    assert threshold_clusters(D, 2.0, 2, rng).tolist() == [0, 0, 1, 1, -1]
    assert threshold_clusters(D, 2.0, 3, rng).tolist().count(-1) == 3  # none of 3: the largest (2) is kept
    assert threshold_clusters(D, 0.5, 1, rng).tolist() == [0, 1, 2, 3, 4]


def test_cross_loss_distance_and_merge_of_close_models():
    # models 0 and 1 fit clients 0-1 and 2-3 alike; model 2 fits client 4 only
    L = np.array([[0.1, 0.2, 5.0], [0.2, 0.1, 5.0], [0.1, 0.2, 6.0], [0.2, 0.1, 6.0], [7.0, 7.0, 0.1]])
    D = cross_loss_distances(L, [0, 0, 1, 1, 2], 3)
    assert np.isclose(D[0, 1], 0.15) and np.isclose(D[0, 2], (7.0 + 5.0) / 2) and np.allclose(D, D.T)
    assert np.isnan(cross_loss_distances(L, [0, 0, 0, 0, 2], 3)[1, 2])  # model 1 owns no client
    assert merge_groups(D, 1.0, np.random.default_rng(0)).tolist() == [0, 0, 1]
    assert threshold_from(D, 0.0) == pytest.approx(np.nanmin(D[~np.eye(3, dtype=bool)]))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="parameter 'beta' must be in"):
        Config(method="srfca", beta=0.5)
    with pytest.raises(ValueError, match="unknown distance 'cosine'"):
        Config(method="srfca", distance="cosine")


# -- known answers on digits ------------------------------------------------------------------------
@pytest.mark.parametrize("scenario, groups", [("label_swap", 4), ("rotation", 4), ("label_swap", 2)])
def test_recovers_the_planted_groups_without_being_given_k(scenario, groups):
    config = FAST.replace(scenario=scenario, groups=groups)
    result = run(config)
    assert result.summary["ari"] == 1.0, result.summary
    assert result.summary["n_clusters"] == groups
    one_shot = next(d for d in result.diagnostics if "lam" in d)
    assert one_shot["round"] == 2 and one_shot["one_shot_clusters"] == groups


def test_merge_joins_two_clusters_of_one_group_that_one_shot_split(fed):
    """Over-split after ONE_SHOT (group 0's cluster cut in two halves, each half trained on
    its own for a REFINE step): MERGE, within λ, joins the halves back; nothing is dropped."""
    config = FAST.replace(rounds=6)
    method, ctx = make_method(config), build_context(config, fed)
    state = method.init(ctx)
    for r in (1, 2):
        state, _ = method.round(state, ctx, r)
    assert ari(state.assignment, fed.groups) == 1.0
    group0 = np.flatnonzero(state.assignment == state.assignment[0])
    k = state.n_clusters
    models = [np.concatenate([w, w[state.assignment[0]][None]]) for w in state.models]
    assignment = state.assignment.copy()
    assignment[group0[len(group0) // 2:]] = k  # the second half: a cluster of its own
    state = dataclasses.replace(state, models=models, assignment=assignment)
    state, info = method.round(state, ctx, 3)
    assert state.n_clusters == k + 1  # still split while REFINE trains
    state, info = method.round(state, ctx, 4)  # end of the REFINE step: RECLUSTER, then MERGE
    assert info.diagnostics["merged"] >= 1 and info.diagnostics["dropped"] == 0
    assert state.n_clusters == k and ari(state.assignment, fed.groups) == 1.0


def test_a_shuffled_ground_truth_does_not_change_the_assignment(fed):
    shuffled = dataclasses.replace(fed, groups=np.random.default_rng(1).permutation(fed.groups))
    a = run(FAST, federation=fed)
    b = run(FAST, federation=shuffled)
    assert np.array_equal(a.state.assignment, b.state.assignment)
    assert a.summary["ari"] == 1.0 and b.summary["ari"] < 0.5


def test_unseen_clients_join_their_groups_cluster():
    config = Config(dataset="digits", scenario="rotation", clients=20, groups=4, rounds=6, method="srfca",
                    holdout_clients=4)
    s = run(config).summary
    assert s["ari"] == 1.0 and s["unseen_matched"] == 1.0 and s["ari_unseen"] == 1.0


# -- absent clients and traffic -----------------------------------------------------------------
def test_one_shot_traffic_counts_the_models_each_client_evaluates(fed):
    config = FAST.replace(rounds=3)  # ONE_SHOT at round 1
    method, ctx = make_method(config), build_context(config, fed)
    state, info = method.round(method.init(ctx), ctx, 1)
    one = ctx.model_bytes(1)
    assert (info.bytes_up == one).all()  # its local model
    # the initial model, then every local model to evaluate (cross-loss), outside ones the cluster models
    expected = (1 + fed.n_clients + np.where(state.outside, state.n_clusters, 0)) * one
    assert np.array_equal(info.bytes_down, expected)
    state, info = method.round(state, ctx, 2)
    trains = ~state.outside
    assert np.array_equal(info.bytes_up, np.where(trains, one, 0))


def test_an_absent_client_keeps_its_cluster_and_a_cluster_without_updates_its_model(fed):
    config = FAST.replace(rounds=6)
    method, ctx = make_method(config), build_context(config, fed)
    state = method.init(ctx)
    for r in (1, 2, 3):
        state, _ = method.round(state, ctx, r)
    silent = state.assignment == state.assignment[0]  # no update of this cluster arrives
    sampled = np.arange(fed.n_clients)
    returned = np.flatnonzero(~silent & (np.arange(fed.n_clients) % 2 == 0))
    ctx.participants = Participants(sampled, returned)
    before = state
    after, info = method.round(state, ctx, 4)  # REFINE step end: only the returned ones recluster
    absent = np.setdiff1d(sampled, returned)
    assert ari(after.assignment[absent], before.assignment[absent]) == 1.0  # same clusters, maybe renumbered
    c_before, c_after = before.assignment[0], after.assignment[0]
    assert all(np.array_equal(b[c_before], a[c_after]) for b, a in zip(before.models, after.models))
    assert (info.bytes_up[absent] == 0).all()


@pytest.mark.slow
def test_half_the_clients_per_round_still_recover_the_groups():
    s = run(FAST.replace(scenario="rotation", rounds=15, participation=0.5)).summary
    assert s["ari"] >= 0.9, s
