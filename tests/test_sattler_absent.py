"""Sattler et al.'s CFL with absent clients and its parameter tree: a cluster splits among
the clients of the round, a member absent at a split descends the tree at its next
participation, a newcomer descends it from the root; and what each costs."""
import numpy as np
import pytest

from cflkit import Config, run
from cflkit.core.experiment import build_context, federation_from
from cflkit.core.participation import Participants, late_clients
from cflkit.methods import make_method
from cflkit.methods.sattler import Split, branch, next_node

# eps1 = 10, eps2 = 0.01: every cluster of more than two clients with an update splits
SPLIT = Config(dataset="digits", scenario="rotation", clients=12, groups=3, rounds=3, local_epochs=1,
               method="sattler", eps1=10.0, eps2=0.01, warmup_rounds=1)
EVERYONE, FIRST, REST = np.arange(12), np.arange(8), np.arange(8, 12)


def stepper(config):
    fed = federation_from(config)
    method, ctx = make_method(config), build_context(config, fed)
    state = method.init(ctx)

    def step(r, sampled, returned=None):
        nonlocal state
        before = state
        ctx.participants = Participants(np.asarray(sampled), np.asarray(sampled if returned is None else returned))
        state, info = method.round(state, ctx, r)
        return before, state, info

    return fed, ctx, step


@pytest.fixture(scope="module")
def tree_run():
    """Round 1: everybody (no split: warm-up); round 2: clients 0-7 only, their cluster
    splits; round 3: only the four absent ones, 8-11, who descend the tree."""
    fed, ctx, step = stepper(SPLIT)
    return fed, ctx, [step(1, EVERYONE), step(2, FIRST), step(3, REST)]


def test_a_cluster_splits_among_the_clients_of_the_round(tree_run):
    _, _, rounds = tree_run
    _, state, info = rounds[1]
    assert info.diagnostics["splits"] == 1 and state.n_clusters == 2
    assert info.diagnostics["similarity"].shape == (8, 8)  # the updates that arrived
    node = state.tree[0]
    assert (node.round, node.cluster, node.children) == (2, 0, (0, 1)) and state.splits == ((2, 0),)
    assert sorted(np.concatenate(node.members).tolist()) == FIRST.tolist()  # cached: the round's clients only
    assert [len(u) for u in node.updates] == [len(m) for m in node.members]
    second = node.members[1]
    assert (state.assignment[second] == 1).all() and (np.delete(state.assignment, second) == 0).all()
    # the absent members hold the first half's id, unresolved at the split they missed
    assert (state.assignment[REST] == 0).all() and (state.unresolved[REST] == 0).all()
    assert (state.unresolved[FIRST] == -1).all()
    for w, start in zip(rounds[0][1].models, node.start):  # the model the split's members started from
        assert np.array_equal(w[0], start)


def test_an_absent_member_descends_to_its_groups_half_at_its_next_participation(tree_run):
    fed, _, rounds = tree_run
    before, state, info = rounds[2]
    assert info.diagnostics["descended"] == 4 and info.diagnostics["unresolved"] == 0
    assert (state.unresolved == -1).all()
    node = before.tree[0]
    for c in REST:  # each joins the half holding the clients of its group
        halves = [set(fed.groups[m].tolist()) for m in node.members]
        assert fed.groups[c] in halves[state.assignment[c]] and fed.groups[c] not in halves[1 - state.assignment[c]]
    # two clients or fewer per cluster arrived: the criteria see only them, so nothing splits
    assert info.diagnostics["splits"] == 0 and state.n_clusters == 2
    assert np.array_equal(state.assignment[FIRST], before.assignment[FIRST])


def test_each_descent_step_costs_one_model_down_and_one_update_up(tree_run):
    _, ctx, rounds = tree_run
    one = ctx.model_bytes(1)
    info = rounds[2][2]
    assert (info.bytes_up[REST] == 2 * one).all() and (info.bytes_down[REST] == 2 * one).all()  # descent + round
    assert (info.bytes_up[FIRST] == 0).all() and (info.bytes_down[FIRST] == 0).all()
    info = rounds[1][2]
    assert (info.bytes_up[FIRST] == one).all() and (info.bytes_up[REST] == 0).all()


def test_a_cluster_without_an_update_keeps_its_model_and_a_lost_update_stays_unresolved():
    _, ctx, step = stepper(SPLIT)
    step(1, EVERYONE)
    _, state, _ = step(2, FIRST)
    half = state.tree[0].members[1]
    lost = REST[:2]
    sampled = np.concatenate([np.setdiff1d(FIRST, half), lost])
    before, after, info = step(3, sampled, returned=np.setdiff1d(FIRST, half))  # nothing of cluster 1 arrives
    for w0, w1 in zip(before.models, after.models):
        assert np.array_equal(w0[1], w1[1])
    assert (after.unresolved[lost] == 0).all() and (after.assignment[lost] == 0).all()
    one = ctx.model_bytes(1)
    assert (info.bytes_down[lost] == one).all() and (info.bytes_up[lost] == 0).all()  # no descent: nothing arrived


def test_late_clients_descend_from_the_root_at_their_first_participation():
    config = SPLIT.replace(rounds=3, arrival_round=3, arrival_fraction=0.25)
    result = run(config)
    late = late_clients(12, 0.25, config.seed)
    d = result.diagnostics
    assert d[1]["splits"] >= 1 and d[2]["descended"] == len(late)  # the root split at round 2, without them
    h = result.history[result.history["round"] == 3]
    first, there = h[h["client"].isin(late)], h[~h["client"].isin(late)]
    one = there["bytes_up"].iloc[0]
    assert one > 0 and (there["bytes_up"] == one).all()  # the others only train
    assert (first["bytes_up"] >= 2 * one).all() and (first["bytes_up"] == first["bytes_down"]).all()  # descent + round
    assert first["accuracy"].notna().all()


def test_full_participation_keeps_the_tree_without_unresolved_clients():
    result = run(SPLIT.replace(participation=1.0, rounds=3))
    state = result.state
    assert state.unresolved is None and len(state.tree) >= 1
    assert all(isinstance(node, Split) for node in state.tree)
    for node in state.tree:  # every client that trained in a split round is cached in one half
        assert node.children[0] == node.cluster and len(np.concatenate(node.members)) > 2


def test_newcomers_descend_the_tree_and_join_cluster_0_before_any_split():
    held = SPLIT.replace(holdout_clients=3, rounds=3)
    result = run(held)
    new = result.history[result.history["holdout"] == 1]
    assert len(result.state.splits) >= 1 and new["cluster"].between(0, result.state.n_clusters - 1).all()
    one = new["bytes_down"].iloc[0] // result.state.n_clusters
    assert (new["bytes_up"] >= one).all()  # at least one descent step (an update per node)
    before = run(held.replace(warmup_rounds=5)).history  # no split in 3 rounds
    assert (before.loc[before["holdout"] == 1, "cluster"] == 0).all()
    assert (before.loc[before["holdout"] == 1, "bytes_up"] == 0).all()


# -- the tree's pure steps -------------------------------------------------------------------
def test_branch_follows_the_most_similar_cached_update():
    first = np.array([[1.0, 0.0], [0.0, -1.0]])
    second = np.array([[0.0, 1.0]])
    updates = np.array([[0.9, 0.2], [0.1, 1.0], [0.1, -1.0], [0.0, 0.0]])
    assert branch(updates, first, second).tolist() == [0, 1, 0, 0]  # the last: no similarity either way, tie


def test_the_next_node_is_the_later_split_of_the_same_cluster():
    nodes = [Split(r, c, (c, k), [], (), ()) for r, c, k in [(2, 0, 1), (3, 1, 2), (3, 0, 3), (5, 0, 4)]]
    assert next_node(nodes, 0, 0) == 2 and next_node(nodes, 0, 1) == 1 and next_node(nodes, 1, 2) == -1
    assert next_node(nodes, 2, 0) == 3 and next_node(nodes, 2, 3) == -1


# -- known answers (slow) ------------------------------------------------------------------
@pytest.mark.slow
def test_newcomers_of_rotated_digits_descend_to_their_groups_cluster():
    """Rotated digits, 4 groups, 16 training clients: CFL with eps2 = 0.8 after 10 warm-up
    rounds finds the groups (docs/methods.md); the 8 clients held out of training, sorted
    down the tree of its splits, join their group's cluster."""
    s = run(Config(method="sattler", clients=24, groups=4, rounds=30, eps2=0.8, warmup_rounds=10,
                   holdout_clients=8)).summary
    assert s["ari"] >= 0.9 and s["ari_unseen"] >= 0.9 and s["unseen_matched"] == 1.0


@pytest.mark.slow
def test_half_the_clients_per_round_split_rotated_digits_into_pure_clusters():
    """Rotated digits, 16 clients in 4 groups, 8 sampled per round: the splits among the
    round's clients separate the groups, every client absent at a split descends the tree
    to a cluster of its own group, and none is left unresolved at the end."""
    result = run(Config(method="sattler", clients=16, groups=4, rounds=30, eps2=0.7, warmup_rounds=10,
                        participation=0.5))
    last = result.history[result.history["round"] == 30]
    assert result.summary["ari"] >= 0.9
    assert (last.groupby("cluster")["group"].nunique() == 1).all()  # no cluster mixes two groups
    assert sum(d.get("descended", 0) for d in result.diagnostics) > 0 and result.diagnostics[-1]["unresolved"] == 0
