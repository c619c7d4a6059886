"""Sattler's split criteria in their scale-free form (``thresholds=relative``): a split fires
when the cluster's mean update norm is below ``split_ratio`` times its largest client norm,
so rescaling every update (another learning rate, model or number of local steps) changes
nothing, where the paper's absolute eps1 / eps2 do change."""
import numpy as np
import pytest

from cflkit import Config, run
from cflkit.methods.sattler import split_clusters


def two_opposed_groups(scale=1.0, seed=0):
    """Six clients in one cluster: three push one way, three the other (+ a little noise)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=20)
    updates = np.concatenate([d + 0.05 * rng.normal(size=(3, 20)), -d + 0.05 * rng.normal(size=(3, 20))])
    return scale * updates


def agreeing(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return scale * (rng.normal(size=20) + 0.05 * rng.normal(size=(6, 20)))


SIZES, ZERO = np.ones(6), np.zeros(6, dtype=np.int64)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_the_relative_form_does_not_depend_on_the_scale_of_the_updates(scale):
    split, report = split_clusters(ZERO, two_opposed_groups(scale), SIZES, 0.4, 1.6, ratio=0.25)
    assert report[0]["split"] and sorted(np.bincount(split).tolist()) == [3, 3]
    assert split[:3].tolist() == [0, 0, 0] and split[3:].tolist() == [1, 1, 1], "the two opposed groups"
    kept, report = split_clusters(ZERO, agreeing(scale), SIZES, 0.4, 1.6, ratio=0.25)
    assert not report[0]["split"] and (kept == 0).all(), "updates that agree: FedAvg is not stationary"


def test_the_absolute_form_does_depend_on_it():
    fired = [split_clusters(ZERO, two_opposed_groups(scale), SIZES, 0.4, 1.6)[1][0]["split"]
             for scale in (1e-3, 1.0, 1e3)]
    assert fired == [False, True, False]  # too small for eps2; right; too large for eps1


def test_the_ratio_is_the_boundary():
    u = two_opposed_groups()
    _, report = split_clusters(ZERO, u, SIZES, 0.4, 1.6, ratio=0.25)
    r = report[0]["mean_norm"] / report[0]["max_norm"]
    assert split_clusters(ZERO, u, SIZES, 0.4, 1.6, ratio=r * 1.01)[1][0]["split"]
    assert not split_clusters(ZERO, u, SIZES, 0.4, 1.6, ratio=r * 0.99)[1][0]["split"]


def test_relative_thresholds_split_label_swap_where_the_papers_do_not():
    base = dict(dataset="digits", scenario="label_swap", clients=16, groups=4, rounds=15, local_epochs=2,
                method="sattler")
    absolute = run(Config(**base, params={"warmup_rounds": 5}))
    relative = run(Config(**base, params={"warmup_rounds": 5, "thresholds": "relative"}))
    assert absolute.summary["n_clusters"] == 1, "the paper's eps2 = 1.6 is far above our MLP's update norms"
    assert relative.summary["n_clusters"] >= 2 and relative.summary["ari"] > 0


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="unknown thresholds 'scaled'; choose one of: absolute, relative"):
        Config(method="sattler", params={"thresholds": "scaled"})
    with pytest.raises(ValueError, match="split_ratio"):
        Config(method="sattler", params={"split_ratio": 1.5})
