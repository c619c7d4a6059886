"""CORNFLQS with absent clients (client sampling, lost updates, late clients), driven round by
round with hand-made :class:`Participants`: who trains, what stays bit for bit, whose choice
is kept, what is sent — in each phase (cold start, CORN, loss-based, fixed)."""
import dataclasses

import numpy as np
import pytest

from cflkit import Config, run
from cflkit.core.experiment import build_context, federation_from, same_partition
from cflkit.core.participation import Participants, draw_participants, participation_rng
from cflkit.methods import make_method
from cflkit.methods.ifca import assign_by_loss, loss_matrix

SMALL = Config(method="cornflqs", dataset="digits", scenario="rotation", clients=12, groups=3, rounds=8,
               local_epochs=1)
K = 3  # clusters = groups


def setup(config=SMALL):
    fed = federation_from(config)
    ctx = build_context(config, fed)
    method = make_method(config)
    trained = []  # the clients each ctx.train call trained
    train = ctx.train

    def spy(start, clients=None, mu=0.0):
        trained.append(np.arange(fed.n_clients) if clients is None else np.asarray(clients))
        return train(start, clients=clients, mu=mu)

    ctx.train = spy
    return fed, ctx, method, method.init(ctx), trained


def step(method, ctx, state, r, sampled, returned):
    ctx.participants = Participants(np.asarray(sampled, dtype=np.int64), np.asarray(returned, dtype=np.int64))
    return method.round(state, ctx, r)


def same(a, b, j=None):
    """Whether two stacked models (or their model ``j``) are equal bit for bit."""
    return all(np.array_equal(x if j is None else x[j], y if j is None else y[j]) for x, y in zip(a, b))


def assert_bytes(ctx, info, sampled, returned, down_models):
    n = ctx.federation.n_clients
    out = np.setdiff1d(np.arange(n), sampled)
    assert (info.bytes_down[out] == 0).all() and (info.bytes_up[out] == 0).all()
    assert (info.bytes_down[sampled] == ctx.model_bytes(down_models)).all()
    assert (info.bytes_up[returned] == ctx.model_bytes(1)).all()
    assert (info.bytes_up[np.setdiff1d(sampled, returned)] == 0).all()  # a lost update sent nothing


def test_the_cold_start_averages_what_arrived_and_is_repeated_while_nothing_does():
    fed, ctx, method, s0, trained = setup()
    s1, info = step(method, ctx, s0, 1, [0, 1, 2, 3], [])  # every update lost
    assert s1.phase == "cold" and same(s1.candidates, s0.candidates)
    assert_bytes(ctx, info, [0, 1, 2, 3], [], 1)
    sampled, returned = [0, 2, 4, 6, 8, 10], [0, 4, 8]
    s2, info = step(method, ctx, s1, 2, sampled, returned)
    assert np.array_equal(trained[-1], sampled)  # only the sample trains
    assert s2.phase == "corn" and len(s2.candidates[0]) == K
    assert all(np.array_equal(w[j], w[0]) for w in s2.candidates for j in range(K))  # K copies of one model
    assert not same([w[:1] for w in s2.candidates], s0.candidates)
    assert (s2.choice == 0).all() and s2.chosen is None and s2.n_clusters == 1
    assert_bytes(ctx, info, sampled, returned, 1)


def test_a_corn_round_clusters_the_updates_that_arrived_and_only_they_choose():
    fed, ctx, method, state, trained = setup()
    state, _ = step(method, ctx, state, 1, np.arange(12), np.arange(12))
    sampled, returned = np.arange(10), np.arange(8)  # 8 and 9 lose their update, 10 and 11 are not sampled
    before = state
    state, info = step(method, ctx, state, 2, sampled, returned)
    assert np.array_equal(trained[-1], sampled)
    assert before.phase == "corn" and state.corn_rounds == 1 and "agreement" in info.diagnostics
    # the clients whose update arrived chose the lowest-loss of the new cluster models...
    assert np.array_equal(state.choice[returned], assign_by_loss(loss_matrix(ctx, state.candidates, returned)))
    assert np.array_equal(state.chosen, np.isin(np.arange(12), returned))
    # ...the others hold the placeholder choice until they choose at their first round
    assert (state.choice[8:] == 0).all()
    assert_bytes(ctx, info, sampled, returned, K)
    if state.phase == "corn":  # the clients that arrived did not all choose their server cluster
        assert info.diagnostics["agreement"] < 1
    else:
        assert info.diagnostics["agreement"] == 1 and state.agreed_at == 2


def test_a_corn_round_with_fewer_than_k_updates_is_fedavg_within_the_chosen_clusters():
    fed, ctx, method, state, _ = setup()
    state, _ = step(method, ctx, state, 1, np.arange(12), np.arange(12))
    state, _ = step(method, ctx, state, 2, np.arange(12), np.arange(12))  # the first clustering
    state = dataclasses.replace(state, phase="corn")  # one more CORN round, whatever happened
    returned = np.array([c for c in range(12) if state.choice[c] == state.choice[0]][:K - 1])
    before = state
    state, info = step(method, ctx, state, 3, np.arange(12), returned)
    assert state.corn_rounds == before.corn_rounds + 1 and "agreement" not in info.diagnostics
    assert np.array_equal(state.choice, before.choice)  # no choice step
    j = before.choice[0]
    assert not same(state.candidates, before.candidates, j)
    assert all(same(state.candidates, before.candidates, i) for i in range(K) if i != j)
    assert_bytes(ctx, info, np.arange(12), returned, 1)


def test_the_phases_keep_absent_choices_and_unupdated_models_bit_for_bit():
    """Half of the clients sampled, a quarter of their updates lost, over every phase."""
    config = SMALL.replace(rounds=10)
    fed, ctx, method, state, trained = setup(config)
    stream = participation_rng(7)
    seen = set()
    for r in range(1, config.rounds + 1):
        p = draw_participants(12, 0.5, 0.25, stream, min_participants=K)
        before = state
        state, info = step(method, ctx, state, r, p.sampled, p.returned)
        seen.add(before.phase)
        assert np.array_equal(trained[-1], p.sampled)
        absent = np.setdiff1d(np.arange(12), p.returned)
        assert np.array_equal(state.choice[absent], before.choice[absent])  # an absent client keeps its choice
        assert state.models[0].shape[0] == state.n_clusters == len(np.unique(state.assignment))
        assert state.assignment.min() == 0 and state.assignment.max() == state.n_clusters - 1
        if before.phase in ("loss", "fixed"):
            # the clients trained from their choice (a first one made before training); a cluster
            # model no arrived update started from keeps its weights bit for bit
            first = np.zeros(len(p.returned), bool) if before.chosen is None else ~before.chosen[p.returned]
            start = before.choice[p.returned].copy()
            if first.any():
                start[first] = assign_by_loss(loss_matrix(ctx, before.candidates, p.returned[first]))
            for j in range(len(before.candidates[0])):
                assert same(state.candidates, before.candidates, j) == (j not in set(start.tolist()))
            if before.phase == "fixed":
                assert np.array_equal(state.choice[p.returned], start) and state.phase == "fixed"
            else:  # loss-based: it ends when the choices that arrived repeat, one at least not a first one
                repeat = (~first).any() and np.array_equal(state.choice[p.returned], start)
                assert (state.phase == "fixed") == repeat
        if before.phase in ("corn", "loss") and state.chosen is not None and len(p.returned) >= K:
            down = np.full(len(p.sampled), K)
            if before.chosen is not None:
                down[~before.chosen[p.sampled]] = 2 * K  # a first choice: K models more
            assert (info.bytes_down[p.sampled] == [ctx.model_bytes(d) for d in down]).all()
    assert seen == {"cold", "corn", "loss", "fixed"}, seen


def test_a_client_without_a_choice_makes_it_by_lowest_loss_before_it_first_trains():
    fed, ctx, method, state, trained = setup()
    state, _ = step(method, ctx, state, 1, np.arange(12), np.arange(12))
    late = np.array([3, 7])
    there = np.setdiff1d(np.arange(12), late)
    state, _ = step(method, ctx, state, 2, there, there)  # the first clustering, without 3 and 7
    assert not state.chosen[late].any()
    state = dataclasses.replace(state, phase="fixed")
    before = state
    state, info = step(method, ctx, state, 3, late, late)
    expected = assign_by_loss(loss_matrix(ctx, before.candidates, late))
    assert np.array_equal(state.choice[late], expected) and state.chosen.all()
    assert np.array_equal(state.choice[there], before.choice[there])
    assert (info.bytes_down[late] == ctx.model_bytes(K)).all()  # fixed phase: the K models to choose from


def test_everybody_sampled_gives_the_partitions_of_full_participation():
    """Participants(all, all) runs the absent-client rule with nobody absent: the same
    partitions, phases and agreement as the full-participation path (cluster ids may differ)."""
    _, ctx_a, method_a, a, _ = setup()
    _, ctx_b, method_b, b, _ = setup()
    everybody = np.arange(12)
    for r in range(1, 6):
        a, info_a = method_a.round(a, ctx_a, r)
        b, info_b = step(method_b, ctx_b, b, r, everybody, everybody)
        assert same_partition(a.assignment, b.assignment) and a.phase == b.phase
        assert info_a.diagnostics == info_b.diagnostics
        assert np.array_equal(info_a.bytes_down, info_b.bytes_down) and np.array_equal(info_a.bytes_up,
                                                                                       info_b.bytes_up)
        for i in range(a.n_clusters):  # the same clients hold the same model
            j = b.assignment[np.flatnonzero(a.assignment == i)[0]]
            assert all(np.array_equal(x[i], y[j]) for x, y in zip(a.models, b.models))


def test_late_clients_are_not_trained_before_they_join_and_then_choose():
    result = run(SMALL.replace(arrival_round=4, participation=0.5))
    h = result.history
    late = h[(h["round"] > 0) & (h["joined"] == 0)]
    assert len(late) and (late["participated"] == 0).all() and late["accuracy"].isna().all()
    assert result.summary["late_clients"] == 3


@pytest.mark.slow
def test_cornflqs_recovers_rotated_digits_with_half_the_clients_per_round():
    """Rotated digits, 40 clients, 4 groups, participation 0.5 and dropout 0.1 (seeds 0-2)."""
    for seed in (0, 1, 2):
        s = run(Config(method="cornflqs", clients=40, groups=4, rounds=20, participation=0.5, dropout=0.1,
                       seed=seed)).summary
        assert s["ari"] >= 0.9, (seed, s["ari"])
