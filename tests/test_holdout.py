"""Clients never seen in training: who is held out, that they change nothing of the training,
how each method assigns them at the end, and what the summary reports about them."""
import numpy as np
import pandas as pd
import pytest

from cflkit import Config, run
from cflkit.core.experiment import federation_from
from cflkit.core.holdout import check_holdout, split_holdout, unseen_summary
from cflkit.methods import METHODS
from cflkit.methods.base import BYTES_PER_PARAM
from cflkit.methods.clustered import nearest_cluster

SMALL = Config(dataset="digits", scenario="rotation", clients=12, groups=3, rounds=2, local_epochs=1,
               holdout_clients=3)


def test_the_held_out_clients_are_a_seeded_draw_apart_from_the_others():
    train, new = split_holdout(20, 5, seed=1)
    assert len(new) == 5 and len(train) == 15
    assert not set(train) & set(new) and sorted(set(train) | set(new)) == list(range(20))
    assert np.array_equal(new, split_holdout(20, 5, seed=1)[1])
    assert not np.array_equal(new, split_holdout(20, 5, seed=2)[1])
    assert len(split_holdout(20, 0, seed=1)[1]) == 0


def test_held_out_clients_change_nothing_of_the_training():
    fed = federation_from(SMALL)
    train, new = split_holdout(fed.n_clients, SMALL.holdout_clients, SMALL.seed)
    held = run(SMALL.replace(method="fedavg"), federation=fed).history
    alone = run(SMALL.replace(method="fedavg", holdout_clients=0), federation=fed.subset(train)).history
    seen = held[held["holdout"] == 0].reset_index(drop=True)
    alone["client"] = train[alone["client"]]  # the subset's clients in the federation's ids
    cols = [c for c in alone.columns if c != "seconds"]
    pd.testing.assert_frame_equal(seen[cols], alone[cols], check_exact=True)


def test_newcomers_appear_once_at_the_end_and_receive_the_cluster_models():
    result = run(SMALL.replace(method="ifca"))
    h = result.history
    new = h[h["holdout"] == 1]
    _, ids = split_holdout(12, 3, SMALL.seed)
    assert sorted(new["client"]) == ids.tolist() and (new["round"] == SMALL.rounds).all()
    assert not (h.loc[h["holdout"] == 0, "client"].isin(ids)).any()  # they never trained or were measured before
    assert (new[["participated", "returned", "bytes_up"]] == 0).all().all()  # a loss-based rule sends nothing
    one_model = BYTES_PER_PARAM * sum(w.size for w in result.state.models) // result.state.n_clusters
    assert (new["bytes_down"] == result.state.n_clusters * one_model).all()
    assert len(result.state.assignment) == 12
    assert np.array_equal(result.state.assignment[ids], new.sort_values("client")["cluster"].to_numpy())
    assert result.summary["holdout_clients"] == 3 and result.summary["clients"] == 12
    assert np.isclose(result.summary["accuracy_unseen_mean"], new["accuracy"].mean())
    seen_last = h[(h["round"] == SMALL.rounds) & (h["holdout"] == 0)]
    assert np.isclose(result.summary["accuracy_mean"], seen_last["accuracy"].mean())  # the trained clients only


def test_a_server_side_newcomer_sends_its_update():
    result = run(SMALL.replace(method="pacfl", rounds=1))
    new = result.history[result.history["holdout"] == 1]
    one_model = BYTES_PER_PARAM * sum(w.size for w in result.state.models) // result.state.n_clusters
    assert (new["bytes_up"] == one_model).all()


def test_fedavg_newcomers_take_the_global_model_and_the_oracle_its_group():
    fedavg = run(SMALL.replace(method="fedavg")).history
    assert (fedavg.loc[fedavg["holdout"] == 1, "cluster"] == 0).all()
    oracle = run(SMALL.replace(method="oracle"))
    last = oracle.history[oracle.history["round"] == SMALL.rounds]
    assert (last["cluster"] == last["group"]).all()  # the oracle's clusters are the groups, newcomers included
    assert oracle.summary["unseen_matched"] == 1.0 and oracle.summary["ari_unseen"] == 1.0


def test_metadata_newcomers_join_the_cluster_of_their_value():
    result = run(SMALL.replace(method="metadata"))
    last = result.history[result.history["round"] == SMALL.rounds]
    for _, rows in last.groupby("group"):  # 'planted' is the group's name: one cluster per group
        assert rows["cluster"].nunique() == 1
    assert result.summary["unseen_matched"] == 1.0


def test_the_nearest_cluster_is_the_least_distant_on_average_and_skips_empty_clusters():
    D = np.array([[0.0, 0.9, 0.5, 0.5], [0.6, 0.6, 0.1, 0.9]])
    # cluster 0 = members 0, 1 (mean 0.45 / 0.6); cluster 1 = members 2, 3 (0.5 / 0.5); cluster 2 is empty
    assert nearest_cluster(D, [0, 0, 1, 1], 3).tolist() == [0, 1]


def test_the_unseen_summary_of_known_rows():
    last = pd.DataFrame({"group": [0, 0, 1, 1, 0, 1, 1], "cluster": [2, 2, 5, 5, 2, 2, 5],
                         "holdout": [0, 0, 0, 0, 1, 1, 1], "accuracy": [1, 1, 1, 1, 0.5, 0.2, 0.8],
                         "loss": [0, 0, 0, 0, 1.0, 2.0, 3.0], "test_size": [1] * 7})
    s = unseen_summary(last)
    assert s["holdout_clients"] == 3
    assert np.isclose(s["unseen_matched"], 2 / 3)  # the second newcomer (group 1) joined group 0's cluster
    assert np.isclose(s["accuracy_unseen_mean"], 0.5) and np.isclose(s["accuracy_unseen_worst10"], 0.2)
    assert np.isclose(s["loss_unseen_mean"], 2.0) and s["ari_unseen"] < 1
    assert unseen_summary(last[last["holdout"] == 0]) == {}


def test_a_holdout_the_federation_cannot_serve_is_refused():
    fed = federation_from(Config(clients=12, groups=3)).subset(range(4))  # e.g. a real federation of 4 sites
    with pytest.raises(ValueError, match=r"holdout_clients=4 leaves no training client: this federation has 4 "
                                         r"clients; choose 0\.\.3"):
        check_holdout(Config(clients=12, groups=3, holdout_clients=4), fed)


def test_every_method_has_a_newcomer_rule_but_local():
    assert [name for name, m in METHODS.items() if not m.newcomer] == ["local"]
    with pytest.raises(ValueError, match="method 'local' has no rule for a client that never trained"):
        run(SMALL.replace(method="local"))


def test_flower_refuses_held_out_clients_before_touching_the_grid():
    from cflkit.flower.server import run_on_grid

    with pytest.raises(ValueError, match="on Flower every connected node trains: holdout_clients must be 0"):
        run_on_grid(None, SMALL)


# -- known answers (slow) ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method, settings", [("ifca", dict(restarts=5)), ("oracle", {}), ("pacfl", {})])
def test_rotated_digits_newcomers_join_their_groups_cluster(method, settings):
    """The issue's known answer: IFCA (restarts 5) and the oracle assign held-out clients of
    rotated digits (40 clients, 4 groups) to the right cluster; PACFL's principal angles too."""
    config = Config(method=method, scenario="rotation", clients=40, groups=4, rounds=20, holdout_clients=8,
                    **settings)
    s = run(config).summary
    assert s["ari"] >= 0.9  # the trained clients' clusters are the groups ...
    assert s["ari_unseen"] >= 0.9 and s["unseen_matched"] >= 0.9  # ... and each newcomer joins its group's
