"""Late clients: who joins late, that they are absent (never sampled, trained or evaluated)
before their round, that they take part from it on, and what each method does with them."""
import numpy as np
import pytest

from cflkit import Config, run
from cflkit.core.participation import draw_participants, late_clients

SMALL = Config(dataset="digits", scenario="rotation", clients=12, groups=3, rounds=4, local_epochs=1,
               arrival_round=3, arrival_fraction=0.25)


def test_the_late_clients_are_a_seeded_share_and_someone_is_there_from_the_start():
    a = late_clients(40, 0.25, seed=1)
    assert len(a) == 10 and np.all(np.diff(a) > 0) and a.max() < 40
    assert np.array_equal(a, late_clients(40, 0.25, seed=1)) and not np.array_equal(a, late_clients(40, 0.25, 2))
    assert len(late_clients(5, 1.0, 0)) == 4 and len(late_clients(5, 0.01, 0)) == 1
    with pytest.raises(ValueError, match="at least 2 clients"):
        late_clients(1, 0.5, 0)


def test_a_sample_is_drawn_from_the_pool_only():
    rng = np.random.default_rng(0)
    pool = np.array([1, 4, 5, 8, 9])
    for _ in range(20):
        p = draw_participants(10, 0.6, 0.0, rng, pool=pool)
        assert len(p.sampled) == 3 and set(p.sampled) <= set(pool.tolist())
    everyone = draw_participants(10, 1.0, 0.0, rng, pool=pool)
    assert np.array_equal(everyone.sampled, pool) and np.array_equal(everyone.returned, pool)


@pytest.mark.parametrize("method", ["fedavg", "ifca", "local"])
def test_late_clients_are_absent_before_their_round_and_take_part_from_it_on(method):
    result = run(SMALL.replace(method=method))
    h = result.history
    late = late_clients(12, 0.25, SMALL.seed)
    assert len(late) == 3 and result.summary["late_clients"] == 3 and result.summary["arrival_round"] == 3
    before = h[h["round"] < SMALL.arrival_round]
    after = h[h["round"] >= SMALL.arrival_round]
    is_late = before["client"].isin(late)
    assert (before.loc[is_late, "joined"] == 0).all() and (before.loc[~is_late, "joined"] == 1).all()
    assert before.loc[is_late, ["loss", "accuracy"]].isna().all().all()  # not evaluated
    assert (before.loc[is_late, ["participated", "returned", "bytes_up", "bytes_down"]] == 0).all().all()
    assert before.loc[~is_late & (before["round"] > 0), "participated"].eq(1).all()
    assert (after["joined"] == 1).all() and after[["loss", "accuracy"]].notna().all().all()
    assert (after.loc[after["round"] > 0, "participated"] == 1).all()  # participation 1: everybody from then on


def test_before_they_join_the_late_clients_change_nothing():
    """FedAvg's rounds before the arrival are those of a federation without the late clients,
    bit for bit (same model draws, same minibatch order): their data is not used."""
    import pandas as pd

    from cflkit.core.experiment import federation_from

    config = SMALL.replace(method="fedavg")
    fed = federation_from(config)
    present = np.setdiff1d(np.arange(12), late_clients(12, 0.25, SMALL.seed))
    late = run(config, federation=fed).history
    alone = run(config.replace(arrival_round=0, rounds=SMALL.arrival_round - 1), federation=fed.subset(present)).history
    alone["client"] = present[alone["client"]]
    mine = late[(late["round"] < SMALL.arrival_round) & (late["joined"] == 1)].reset_index(drop=True)
    cols = ["round", "client", "cluster", "loss", "accuracy", "bytes_up", "bytes_down"]
    pd.testing.assert_frame_equal(mine[cols], alone[cols], check_exact=True)


@pytest.mark.parametrize("method", ["centralized"])
def test_a_method_that_does_not_handle_absent_clients_refuses_late_ones(method):
    with pytest.raises(ValueError, match=rf"method '{method}' does not handle absent clients yet "
                                         r"\(participation=1, dropout=0, arrival_round=3\)"):
        run(SMALL.replace(method=method))


def test_the_oracle_puts_late_clients_in_their_groups_cluster_and_fedavg_in_the_global_one():
    oracle = run(SMALL.replace(method="oracle")).summary
    assert oracle["late_matched"] == 1.0 and oracle["ari"] == 1.0 and "accuracy_late_mean" in oracle
    fedavg = run(SMALL.replace(method="fedavg"))
    assert (fedavg.history["cluster"] == 0).all() and fedavg.summary["late_matched"] == 1.0


# -- known answers (slow) ------------------------------------------------------------------
@pytest.mark.slow
def test_ifca_assigns_late_clients_of_rotated_digits_to_their_groups_cluster():
    """A quarter of 40 clients of rotated digits (4 groups) join at round 10 of 20: at their
    first participation IFCA's estimation step puts each in its group's cluster."""
    s = run(Config(method="ifca", restarts=5, clients=40, groups=4, rounds=20, arrival_round=10)).summary
    assert s["late_clients"] == 10 and s["late_matched"] == 1.0 and s["ari"] >= 0.9
