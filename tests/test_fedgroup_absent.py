"""FedGroup with absent clients: the cold start groups the updates that arrived, a client
absent then is a newcomer of the paper's rule at its first participation, groups that got no
update keep their models, and the bytes count what each client really sent."""
import dataclasses

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cflkit import Config, run
from cflkit.core.experiment import build_context, federation_from
from cflkit.core.participation import Participants
from cflkit.methods import make_method

SMALL = Config(dataset="digits", scenario="rotation", clients=12, groups=3, rounds=3, local_epochs=1)


def _setup(**settings):
    config = SMALL.replace(method="fedgroup", participation=0.5, **settings)
    fed = federation_from(config)
    ctx = build_context(config, fed)
    method = make_method(config)
    return fed, ctx, method, method.init(ctx)


def _round(method, state, ctx, r, sampled, returned):
    ctx.participants = Participants(np.asarray(sampled), np.asarray(returned))
    return method.round(state, ctx, r)


def _same_models(a, b, k):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a.models, b.models))


def test_the_cold_start_groups_only_the_clients_whose_update_arrived():
    """Round 1 (no warm-up): 8 sampled, 2 updates lost; the 6 that arrived are grouped (all
    of them cluster: alpha * K > 6), every other client is pending and holds the largest group."""
    fed, ctx, method, state = _setup()
    sampled, returned = np.arange(8), np.array([0, 1, 3, 4, 6, 7])
    state, info = _round(method, state, ctx, 1, sampled, returned)
    d = info.diagnostics
    assert d["clustered"] == 1 and state.clustered_at == 1
    assert d["clustering_clients"] == 6 and d["newcomers"] == 0 and d["pending"] == 6
    assert np.array_equal(~state.pending, np.isin(np.arange(12), returned))  # the lost 2 and 5 are pending
    assert sorted(set(state.assignment[returned].tolist())) == list(range(state.n_clusters)) and state.n_clusters == 3
    largest = np.bincount(state.assignment[returned], weights=fed.sizes[returned]).argmax()
    assert (state.assignment[state.pending] == largest).all()
    assert state.reference["updates"].shape[0] == 3  # one reference update per group
    assert (info.bytes_up[returned] == ctx.model_bytes()).all() and (info.bytes_up[[2, 5]] == 0).all()
    assert (info.bytes_down[sampled] == ctx.model_bytes()).all() and (info.bytes_down[8:] == 0).all()


def test_the_cold_start_waits_for_k_updates_and_for_the_warm_up():
    """Two updates (< K = 3) cannot form 3 groups: the round is FedAvg of what arrived and the
    cold start moves to the next round; with warmup_rounds=1 round 1 is FedAvg even with
    every update there."""
    fed, ctx, method, state = _setup()
    before = state
    state, info = _round(method, state, ctx, 1, [0, 4, 8], [0, 8])
    assert info.diagnostics["clustered"] == 0 and state.clustered_at is None and state.n_clusters == 1
    assert not _same_models(state, before, 0)  # the global model moved (FedAvg of the two)
    state, info = _round(method, state, ctx, 2, [1, 2, 5, 9], [1, 2, 5, 9])
    assert info.diagnostics["clustered"] == 1 and state.clustered_at == 2 and state.n_clusters == 3

    fed, ctx, method, state = _setup(warmup_rounds=1)
    state, info = _round(method, state, ctx, 1, np.arange(12), np.arange(12))
    assert state.clustered_at is None and state.n_clusters == 1
    state, info = _round(method, state, ctx, 2, np.arange(6), np.arange(6))
    assert state.clustered_at == 2 and (state.pending == (np.arange(12) >= 6)).all()


def test_a_pending_client_joins_at_its_first_participation_from_the_cold_start_model():
    """A client absent at the cold start pre-trains from the kept cold-start model: its group
    does not depend on the group models it finds (here scrambled), only on its update and
    the groups' reference updates; a newcomer whose update is lost stays pending."""
    fed, ctx, method, state = _setup()
    state, _ = _round(method, state, ctx, 1, np.arange(6), np.arange(6))
    seed_state = ctx.rng.bit_generator.state
    sampled, returned = np.array([1, 6, 7, 8]), np.array([1, 6, 8])  # 6, 7, 8 pending; 7's update is lost
    after, _ = _round(method, state, ctx, 2, sampled, returned)
    scrambled = dataclasses.replace(state, models=[np.flip(m, axis=0) * 3.0 for m in state.models])
    ctx.rng.bit_generator.state = seed_state
    again, _ = _round(method, scrambled, ctx, 2, sampled, returned)
    assert not after.pending[[6, 8]].any() and after.pending[7] and after.pending[9:].all()
    assert np.array_equal(after.assignment, again.assignment)
    assert after.reference is state.reference  # the cold start's start model and reference updates are kept
    assert np.array_equal(after.assignment[:6], state.assignment[:6])  # the grouped clients keep their groups


def test_newcomers_recover_their_planted_group():
    """Known answer on rotated digits (12 clients, 3 rotations, 2 local epochs): with half of
    the clients at the cold start, each client that joins later lands in the group of the
    grouped clients of its own rotation."""
    fed, ctx, method, state = _setup(local_epochs=2)
    first = np.arange(8)  # all three rotations among them
    state, _ = _round(method, state, ctx, 1, first, first)
    of_group = {g: np.bincount(state.assignment[first][fed.groups[first] == g]).argmax()
                for g in np.unique(fed.groups[first])}
    assert len(set(of_group.values())) == 3  # the cold start told the three rotations apart
    state, _ = _round(method, state, ctx, 2, np.arange(8, 12), np.arange(8, 12))
    assert not state.pending.any()
    for c in range(8, 12):
        assert state.assignment[c] == of_group[fed.groups[c]]


def test_a_group_without_updates_keeps_its_model_and_the_bytes_count_what_was_sent():
    fed, ctx, method, state = _setup()
    state, _ = _round(method, state, ctx, 1, np.arange(6), np.arange(6))
    idle = int(state.assignment[0])
    busy = np.array([c for c in range(6) if state.assignment[c] != idle])
    sampled = np.sort(np.concatenate([busy, [0, 9, 10]]))  # 0's update is lost; 9, 10 pending, 10 lost
    returned = np.setdiff1d(sampled, [0, 10])
    after, info = _round(method, state, ctx, 2, sampled, returned)
    got = set(after.assignment[returned].tolist())  # the groups of the updates that arrived (9's after it joined)
    assert idle not in got
    for k in range(state.n_clusters):  # a group that got no update keeps its model bit for bit, the others move
        assert _same_models(after, state, k) == (k not in got)
    one = ctx.model_bytes()
    assert info.diagnostics["newcomers"] == 1
    assert info.bytes_up[9] == 2 * one and info.bytes_down[9] == 2 * one  # cold-start model + group model
    assert info.bytes_up[10] == 0 and info.bytes_down[10] == one  # its pre-training update was lost
    assert info.bytes_up[0] == 0 and info.bytes_down[0] == one
    assert (info.bytes_up[busy] == one).all() and (info.bytes_down[busy] == one).all()
    absent = np.setdiff1d(np.arange(12), sampled)
    assert (info.bytes_up[absent] == 0).all() and (info.bytes_down[absent] == 0).all()


def test_late_clients_are_newcomers_at_their_first_round():
    """arrival_round=3: the late clients miss the cold start of round 1 and are pending until
    they first take part; the run never evaluates them before."""
    config = SMALL.replace(method="fedgroup", rounds=5, participation=0.5, arrival_round=3, arrival_fraction=0.25)
    result = run(config)
    h = result.history
    late = h[(h["round"] == 1) & (h["joined"] == 0)]["client"].to_numpy()
    assert len(late) == 3
    took_part = h[(h["returned"] == 1) & h["client"].isin(late)]
    assert (took_part["round"] >= 3).all()
    pending = result.state.pending
    assert pending[late].sum() == len(late) - took_part["client"].nunique()  # those that took part joined
    assert not pending[took_part["client"].unique()].any()


def test_fedgroup_takes_absent_clients_with_madc_too():
    config = SMALL.replace(method="fedgroup_madc", participation=0.5, dropout=0.1)
    result = run(config)
    assert result.state.clustered_at is not None and result.summary["n_clusters"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("settings", [{}, dict(arrival_round=5)])
def test_a_right_cold_start_on_half_the_clients_gives_every_newcomer_its_group(settings):
    """Rotated digits, 40 clients, 4 groups, participation 0.5, dropout 0.1, seeds 0-2: the
    newcomer rule is exact where the cold start is. Wherever the clients grouped at the cold
    start are grouped by their rotation, every client absent then (or late) joins its
    rotation's group at its first round: the run's ARI is 1. (The cold start on 12 to 18
    updates does not always tell the four rotations apart: ARI below 0.9 on some seeds.)"""
    exact = 0
    for seed in (0, 1, 2):
        config = Config(method="fedgroup", clients=40, groups=4, rounds=20, participation=0.5, dropout=0.1,
                        seed=seed, **settings)
        result, groups = run(config), federation_from(config).groups
        h = result.history
        cold = h[(h["round"] == 1) & (h["returned"] == 1)]["client"].to_numpy()
        assert len(cold) >= 4 and not result.state.pending.any()  # every client took part in 20 rounds
        if adjusted_rand_score(groups[cold], result.state.assignment[cold]) == 1.0:
            exact += 1
            assert result.summary["ari"] == 1.0
    assert exact >= 1
