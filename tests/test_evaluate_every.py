"""``evaluate_every``: the clients' test metrics every k rounds and at the last; training,
clusters and the summary are those of a run evaluated every round."""
import numpy as np
import pytest

from cflkit import Config
from cflkit.core import experiment


@pytest.mark.parametrize("method", ["fedavg", "ifca"])
def test_evaluating_less_often_changes_nothing_but_the_unmeasured_rounds(method):
    config = Config(method=method, clients=8, groups=2, rounds=5, seed=3)
    every = experiment.run(config)
    sparse = experiment.run(config.replace(evaluate_every=2))
    h1, h2 = every.history, sparse.history
    measured = sorted(h2.loc[h2["accuracy"].notna(), "round"].unique())
    assert measured == [0, 2, 4, 5], "every 2nd round, round 0 and the last"
    assert h2.loc[~h2["round"].isin(measured), ["accuracy", "loss"]].isna().all().all()
    same = h1["round"].isin(measured)
    np.testing.assert_array_equal(h1.loc[same, "accuracy"], h2.loc[same, "accuracy"])
    np.testing.assert_array_equal(h1["cluster"], h2["cluster"])
    for key in ("accuracy_mean", "loss_mean", "ari", "n_clusters", "stable_round", "bytes_total"):
        assert every.summary[key] == sparse.summary[key], key


def test_evaluate_every_must_be_at_least_one():
    with pytest.raises(ValueError, match="evaluate_every must be >= 1, got 0"):
        Config(evaluate_every=0)
