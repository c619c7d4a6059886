"""Layer (d): agreement of an assignment with the planted factors, contingency tables,
stability across rounds and seeds."""
import numpy as np
import pandas as pd
import pytest

from cflkit import Config
from cflkit.core.experiment import federation_from
from cflkit.explain.agreement import (
    agreement_scores,
    agreement_with_planted,
    assignment_stability,
    contingency_table,
    planted_factors,
    seed_stability,
)


@pytest.fixture(scope="module")
def fed():
    return federation_from(Config(dataset="digits", scenario="rotation", clients=12, groups=4, seed=0))


def test_the_oracle_assignment_agrees_perfectly_and_renaming_clusters_changes_nothing(fed):
    table = agreement_with_planted(fed.groups, fed)
    assert list(table["factor"]) == ["planted"] and table["n_values"][0] == 4
    assert np.allclose(table[["ari", "ami", "homogeneity", "completeness", "v_measure"]].to_numpy(), 1.0)
    renamed = (fed.groups + 1) % 4
    pd.testing.assert_frame_equal(agreement_with_planted(renamed, fed), table)


def test_merging_two_groups_keeps_homogeneity_below_one_and_completeness_at_one(fed):
    merged = np.where(fed.groups == 3, 2, fed.groups)
    s = agreement_scores(merged, fed.groups)
    assert s["completeness"] == pytest.approx(1.0) and s["homogeneity"] < 1.0 and 0 < s["ari"] < 1
    split = np.where(np.arange(fed.n_clients) % 2 == 0, fed.groups, fed.groups + 4)
    s = agreement_scores(split, fed.groups)
    assert s["homogeneity"] == pytest.approx(1.0) and s["completeness"] < 1.0


def test_contingency_table_counts_clients_in_natural_order(fed):
    ct = contingency_table(fed.groups, fed.client_meta["planted"])
    assert ct.to_numpy().sum() == fed.n_clients
    assert list(ct.index) == ["rotated 0°", "rotated 90°", "rotated 180°", "rotated 270°"]
    assert (ct.to_numpy() > 0).sum() == 4  # the oracle: one cluster per planted group


def test_factors_of_a_composed_scenario_and_of_real_sites():
    composed = federation_from(Config(dataset="digits", scenario="label_skew+rotation", clients=8, groups=4, seed=0))
    factors = planted_factors(composed)
    assert {"planted", "planted[0]", "planted[1]"} <= set(factors)
    assert all(len(v) == 8 for v in factors.values())
    one_group = federation_from(Config(dataset="digits", scenario="iid", clients=8, seed=0))
    assert planted_factors(one_group) == {}
    assert agreement_with_planted(np.zeros(8, int), one_group).empty

    class Sites:  # what a natural federation carries: one value per client and attribute
        n_clients = 4
        client_meta = {"country": ["USA", "Hungary", "Switzerland", "USA"], "site": ["a", "b", "c", "d"]}

    assert planted_factors(Sites()) == {"country": ["USA", "Hungary", "Switzerland", "USA"]}


def test_assignment_stability_between_rounds_and_seeds():
    rows = []
    parts = {0: [0, 0, 0, 0], 1: [0, 0, 1, 1], 2: [1, 1, 0, 0], 3: [0, 1, 0, 1]}
    for r, part in parts.items():
        rows += [{"round": r, "client": c, "cluster": k} for c, k in enumerate(part)]
    st = assignment_stability(pd.DataFrame(rows))
    assert list(st["round"]) == [1, 2, 3]
    assert st["ari"][1] == pytest.approx(1.0)  # round 2 only renames round 1's clusters
    assert st["ari"][2] < 0 and st["ari_final"][2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cluster"):
        assignment_stability(pd.DataFrame({"round": [0], "client": [0]}))
    seeds = seed_stability([[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1]])
    assert len(seeds) == 3 and seeds["ari"][0] == pytest.approx(1.0) and seeds["ari"][1] < 1
