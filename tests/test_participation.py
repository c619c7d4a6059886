"""Client sampling and dropouts: who trains, what arrives, what it costs, what stays put."""
import numpy as np
import pytest

from cflkit import Config, run
from cflkit.core.experiment import build_context, federation_from
from cflkit.core.participation import Participants, draw_participants, participation_rng, sample_size
from cflkit.methods import make_method

SMALL = Config(dataset="digits", scenario="rotation", clients=12, groups=3, rounds=3, local_epochs=1)


def test_a_sample_is_a_sorted_subset_of_the_counted_size_and_the_same_for_the_same_seed():
    a = draw_participants(40, 0.25, 0.0, participation_rng(3))
    b = draw_participants(40, 0.25, 0.0, participation_rng(3))
    c = draw_participants(40, 0.25, 0.0, participation_rng(4))
    assert len(a.sampled) == 10 and np.array_equal(a.sampled, np.unique(a.sampled))
    assert a.sampled.min() >= 0 and a.sampled.max() < 40
    assert np.array_equal(a.sampled, a.returned)  # no dropout: every update arrives
    assert np.array_equal(a.sampled, b.sampled) and not np.array_equal(a.sampled, c.sampled)
    assert sample_size(10, 0.01) == 1 and sample_size(10, 0.01, min_participants=4) == 4


def test_everybody_takes_part_without_a_draw():
    rng = participation_rng(0)
    state = rng.bit_generator.state
    p = draw_participants(7, 1.0, 0.0, rng)
    assert np.array_equal(p.sampled, np.arange(7)) and np.array_equal(p.returned, np.arange(7))
    assert rng.bit_generator.state == state


def test_each_client_is_sampled_uniformly_and_updates_are_lost_at_the_dropout_rate():
    rng = participation_rng(1)
    draws = [draw_participants(20, 0.5, 0.3, rng) for _ in range(2000)]
    sampled = np.zeros(20)
    for d in draws:
        sampled[d.sampled] += 1
        assert set(d.returned) <= set(d.sampled)
    assert np.allclose(sampled / len(draws), 0.5, atol=0.05)  # every client about half the rounds
    lost = 1 - sum(len(d.returned) for d in draws) / sum(len(d.sampled) for d in draws)
    assert abs(lost - 0.3) < 0.01  # 20000 Bernoulli(0.3) draws: std 0.0032


def test_fedavg_trains_the_sample_and_counts_only_what_was_sent():
    result = run(SMALL.replace(method="fedavg", participation=0.5, dropout=0.25, rounds=6))
    h = result.history
    rounds = h[h["round"] > 0]
    assert (rounds.groupby("round")["participated"].sum() == 6).all()  # p x clients = 0.5 x 12
    assert (rounds["returned"] <= rounds["participated"]).all()
    assert rounds["returned"].sum() < rounds["participated"].sum()  # some updates were lost
    absent = rounds[rounds["participated"] == 0]
    assert (absent[["bytes_up", "bytes_down"]] == 0).all().all()
    lost = rounds[(rounds["participated"] == 1) & (rounds["returned"] == 0)]
    assert (lost["bytes_up"] == 0).all() and (lost["bytes_down"] > 0).all()  # it got the model, sent nothing
    sent = rounds[rounds["returned"] == 1]
    assert sent["bytes_up"].nunique() == 1 and sent["bytes_up"].iloc[0] > 0
    assert h["accuracy"].notna().all()  # every client is evaluated every round, participant or not
    again = run(SMALL.replace(method="fedavg", participation=0.5, dropout=0.25, rounds=6))
    cols = ["participated", "returned", "loss", "cluster"]
    assert h[cols].equals(again.history[cols])  # same seed, same sample, same numbers


def _one_round(config, participants):
    fed = federation_from(config)
    method = make_method(config)
    ctx = build_context(config, fed)
    state = method.init(ctx)
    ctx.participants = participants
    after, info = method.round(state, ctx, 1)
    return ctx, state, after, info


def test_a_cluster_that_got_no_update_keeps_its_model_bit_for_bit():
    config = SMALL.replace(method="oracle")
    fed = federation_from(config)
    silent = 2  # no update of group 2 arrives: its clients are sampled but all drop out
    sampled = np.arange(fed.n_clients)
    returned = sampled[fed.groups != silent]
    _, before, after, info = _one_round(config, Participants(sampled, returned))
    for w0, w1 in zip(before.models, after.models):
        assert np.array_equal(w0[silent], w1[silent])
        assert all(not np.array_equal(w0[k], w1[k]) for k in range(3) if k != silent)
    assert (info.bytes_up[fed.groups == silent] == 0).all() and (info.bytes_down > 0).all()


def test_ifca_moves_only_the_clients_whose_estimate_arrived():
    config = SMALL.replace(method="ifca")
    fed = federation_from(config)
    sampled, returned = np.arange(0, fed.n_clients, 2), np.arange(0, fed.n_clients, 4)
    ctx, before, after, info = _one_round(config, Participants(sampled, returned))
    unseen = np.setdiff1d(np.arange(fed.n_clients), returned)
    assert np.array_equal(after.choice[unseen], before.choice[unseen])
    k = len(before.candidates[0])
    chosen_by_arrivals = set(after.choice[returned].tolist())
    for j in range(k):  # a candidate no arrived update chose keeps its weights
        same = all(np.array_equal(a[j], b[j]) for a, b in zip(before.candidates, after.candidates))
        assert same == (j not in chosen_by_arrivals)
    assert (info.bytes_down[sampled] == ctx.model_bytes(k)).all() and (info.bytes_down[1::2] == 0).all()
    assert (info.bytes_up[returned] == ctx.model_bytes(1)).all() and info.bytes_up.sum() == len(returned) * \
        ctx.model_bytes(1)


@pytest.mark.parametrize("method, settings", [("centralized", {})])
def test_a_method_that_does_not_handle_absent_clients_refuses_them(method, settings):
    with pytest.raises(ValueError, match=f"method '{method}' does not handle absent clients yet"):
        run(SMALL.replace(method=method, participation=0.5, **settings))


def test_a_one_shot_server_side_method_clusters_the_clients_whose_update_arrived():
    """FL+HC (warm-up 1) with half of the clients sampled: the clustering round clusters the
    updates that arrived; every other client is pending, holds the largest cluster's model,
    and joins a cluster at its first round, by distance to the kept representations."""
    config = SMALL.replace(method="flhc", warmup_rounds=1, rounds=4, participation=0.5)
    fed = federation_from(config)
    ctx = build_context(config, fed)
    method = make_method(config)
    stream = participation_rng(config.seed)
    state = method.init(ctx)
    seen = set()
    for r in range(1, config.rounds + 1):
        ctx.participants = draw_participants(fed.n_clients, 0.5, 0.0, stream)
        before = state
        state, info = method.round(state, ctx, r)
        if r == 1:  # the warm-up: FedAvg of what arrived, nobody pending
            assert state.pending is None and state.n_clusters == 1
        if r == 2:  # the clustering round: the sampled clients are clustered, the others pending
            assert info.diagnostics["clustered"] == 1 and state.clustered_at == 2
            assert np.array_equal(~state.pending, np.isin(np.arange(12), ctx.returned))
            largest = np.bincount(state.assignment[ctx.returned],
                                  weights=fed.sizes[ctx.returned]).argmax()
            assert (state.assignment[state.pending] == largest).all()
            seen = set(ctx.returned.tolist())
        if r > 2:  # a pending client that took part joined; the clustered keep their clusters
            joined = [c for c in ctx.returned if before.pending[c]]
            assert not state.pending[joined].any()
            kept = sorted(seen)
            assert np.array_equal(state.assignment[kept], before.assignment[kept])
            untouched = [k for k in range(before.n_clusters)
                         if k not in set(before.assignment[[c for c in ctx.returned if not before.pending[c]]])]
            for k in untouched:  # a cluster that got no update keeps its model bit for bit
                assert all(np.array_equal(a[k], b[k]) for a, b in zip(state.models, before.models))
    assert state.pending.sum() < 12 - len(seen)  # some pending clients joined


@pytest.mark.slow
@pytest.mark.parametrize("method, settings", [("pacfl", {}), ("flhc", {}), ("pacfl", dict(arrival_round=5)),
                                              ("flhc", dict(arrival_round=5)), ("kmeans", dict(seed=1))])
def test_one_shot_methods_recover_rotated_digits_with_half_the_clients_per_round(method, settings):
    """Rotated digits, 40 clients, 4 groups, participation 0.5 and dropout 0.1: PACFL (one
    shot at the start) and FL+HC (after its warm-up) recover the groups; every client that
    was absent at the clustering joins its group's cluster at its first round. k-means on
    weights (re-clustering every round) recovers them on seed 1, as its full run does."""
    s = run(Config(method=method, clients=40, groups=4, rounds=20, participation=0.5, dropout=0.1,
                   **settings)).summary
    assert s["ari"] >= 0.9


def _drive(config, rounds, participation=0.5):
    """Rounds of ``config``'s method with the run's own draws of participants: (ctx, states, infos)."""
    fed = federation_from(config)
    ctx = build_context(config, fed)
    method = make_method(config)
    stream = participation_rng(config.seed)
    states, infos, drawn = [method.init(ctx)], [], []
    for r in range(1, rounds + 1):
        ctx.participants = draw_participants(fed.n_clients, participation, 0.2, stream)
        drawn.append(ctx.participants)
        state, info = method.round(states[-1], ctx, r)
        states.append(state)
        infos.append(info)
    return fed, states, infos, drawn


def test_kmeans_reclusters_the_arrived_clients_each_round_and_an_absent_one_keeps_its_cluster():
    """k-means on weights (trigger every) with half of the clients sampled, 20 % of updates lost:
    round 1 clusters what arrived (the others pending), later rounds re-cluster the arrived
    clients only; an absent client keeps its cluster id, a cluster that got no update keeps
    its model bit for bit, and there are never more than K clusters."""
    config = SMALL.replace(method="kmeans", rounds=5, participation=0.5, dropout=0.2)
    fed, states, infos, drawn = _drive(config, 5)
    first, kept = states[1], 0
    assert first.clustered_at == 1 and np.array_equal(~first.pending, np.isin(np.arange(12), drawn[0].returned))
    for r in range(2, 6):
        before, after, p = states[r - 1], states[r], drawn[r - 1]
        assert after.n_clusters <= 3 and sorted(set(after.assignment.tolist())) == list(range(after.n_clusters))
        absent = np.setdiff1d(np.arange(12), p.returned)
        if before.n_clusters == after.n_clusters:  # ids kept (none dropped): absent clients keep theirs
            kept += 1
            assert np.array_equal(after.assignment[absent], before.assignment[absent])
            got = set(after.assignment[p.returned].tolist())
            for k in set(range(after.n_clusters)) - got:
                assert all(np.array_equal(a[k], b[k]) for a, b in zip(after.models, before.models))
        joined = [c for c in p.returned if before.pending[c]]
        assert not after.pending[joined].any()
        assert (infos[r - 1].bytes_up[absent] == 0).all()
    assert kept >= 3


def test_ocfl_clusters_when_the_temperature_of_the_arrived_updates_rises():
    """OCFL with client sampling: every round's temperature is that of the updates that
    arrived; the clustering happens once, at the first round whose temperature exceeds the
    previous one, on the clients whose update arrived."""
    config = SMALL.replace(method="ocfl", rounds=8, participation=0.5, min_cluster_size=2)
    fed, states, infos, drawn = _drive(config, 8)
    temps = [i.diagnostics["temperature"] for i in infos]
    assert all(0.0 <= t <= 1.0 for t in temps)
    rises = [r for r in range(2, 9) if temps[r - 1] > temps[r - 2]]
    assert rises, "the temperature never rose in 8 rounds"
    at = rises[0]
    assert [i.diagnostics["clustered"] for i in infos] == [int(r == at) for r in range(1, 9)]
    assert states[at].clustered_at == at
    assert np.array_equal(~states[at].pending, np.isin(np.arange(12), drawn[at - 1].returned))
    assert all(s.pending is None for s in states[1:at])


def test_the_outputs_of_a_subset_of_clients_are_those_of_the_whole_federation():
    """Representation 'outputs' compares clients on the whole federation's probe rows, so the
    clients clustered in a round and those joining later are represented alike."""
    import dataclasses

    from cflkit.methods.parts.representations import probe_rows, represent

    config = SMALL.replace(method="clustered", representation="outputs")
    fed = federation_from(config)
    ctx = build_context(config, fed)
    start = [np.repeat(w[None], fed.n_clients, axis=0) for w in ctx.initial_weights]
    trained = ctx.train(start)
    everyone = represent("outputs", ctx, start, trained, config.params).X
    some = np.array([1, 4, 7])
    view = dataclasses.replace(ctx, federation=fed.subset(some))
    probe = probe_rows(fed, config.params.probe_size, config.seed)
    part = represent("outputs", view, [w[some] for w in start], [w[some] for w in trained], config.params,
                     probe=probe).X
    assert np.allclose(part, everyone[some])
    own = represent("outputs", view, [w[some] for w in start], [w[some] for w in trained], config.params).X
    assert not np.allclose(own, everyone[some])  # the subset's own probe rows would differ


def test_match_labels_keeps_the_ids_of_the_clients_it_does_not_see():
    from cflkit.methods.parts.clustering import match_labels

    old_all = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    seen = np.array([0, 2, 3, 4, 6])  # clients 1, 5, 7 are absent and keep 0, 2, 3
    new = np.array([1, 0, 0, 2, 3])  # the same partition of the seen clients as before, renamed
    labels = match_labels(new, old_all[seen], n_old=4)
    assert labels.tolist() == old_all[seen].tolist()
    more = match_labels(np.array([0, 1, 2, 3, 4]), old_all[seen], n_old=4)
    assert len(set(more.tolist())) == 5 and more.max() == 4  # one new cluster more than old ids: a fresh id
