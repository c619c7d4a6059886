"""Layer (a): client descriptors, the IMM threshold tree, the surrogate with its shuffled
baseline, group importance, LIME for one client; known answers on 8x8 digits (40 clients,
4 planted groups, the oracle assignment) and on the four Heart Disease hospitals."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cflkit import Config
from cflkit.core.experiment import federation_from
from cflkit.explain.descriptors import TIERS, client_descriptors, image_moments
from cflkit.explain.membership import (
    ALPHA,
    explain_client,
    explain_descriptors,
    explain_membership,
    is_explained,
    n_relabelings,
    separating_descriptors,
)
from cflkit.explain.trees import ThresholdTree

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ROOT.parent / "shared" / "data"


def digits(scenario, clients=40):
    return federation_from(Config(dataset="digits", scenario=scenario, clients=clients, groups=4, seed=0))


@pytest.fixture(scope="module")
def rotation():
    return digits("rotation")


@pytest.fixture(scope="module")
def rotation_membership(rotation):
    return explain_membership(rotation, rotation.groups, seed=3)


# -- descriptors -----------------------------------------------------------------------------
def test_descriptors_are_a_named_finite_matrix_with_a_group_per_column(rotation):
    table, groups = client_descriptors(rotation)
    assert table.shape[0] == rotation.n_clients
    assert list(table.columns) == list(groups) and len(set(table.columns)) == table.shape[1]
    assert set(groups.values()) == {"label", "spatial", "intensity"}
    assert set(groups.values()) <= set(TIERS)
    assert np.isfinite(table.to_numpy()).all()
    shares = table[[c for c in table.columns if groups[c] == "label"]].to_numpy()
    assert np.allclose(shares.sum(1), 1.0)  # every class varies across clients here: none dropped
    assert (table.std() > 0).all()  # constant descriptors are dropped


def test_laplace_noise_changes_label_shares_reproducibly(rotation):
    clean, _ = client_descriptors(rotation)
    a, _ = client_descriptors(rotation, noise=2.0, seed=1)
    b, _ = client_descriptors(rotation, noise=2.0, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["label_3_share"], clean["label_3_share"])
    assert np.allclose(a[[f"label_{k}_share" for k in range(10)]].sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="noise"):
        client_descriptors(rotation, noise=-1)


def test_image_moments_of_a_single_pixel_and_of_a_rotated_bar():
    img = np.zeros((1, 8, 8))
    img[0, 1, 6] = 1.0  # row 1, column 6: top right
    m = image_moments(img)
    assert m["centroid_x"][0] == pytest.approx(6 / 8) and m["centroid_y"][0] == pytest.approx(1 / 8)
    assert m["mass_top_right"][0] == pytest.approx(1.0) and m["var_x"][0] == pytest.approx(0.0)
    bar = np.zeros((1, 8, 8))
    bar[0, 2:6, 3] = 1.0  # vertical bar: orientation 90 deg, cos(2 theta) = -1
    assert image_moments(bar)["orientation_cos"][0] == pytest.approx(-1.0)
    assert image_moments(np.rot90(bar, 1, axes=(1, 2)))["orientation_cos"][0] == pytest.approx(1.0)


def test_update_descriptors_need_models_assignment_and_config(rotation):
    with pytest.raises(ValueError, match="assignment= and config="):
        client_descriptors(rotation, models=[np.zeros((4, 3))])


def test_update_and_similarity_descriptors_from_a_short_run():
    fed = digits("rotation", clients=8)
    config = Config(dataset="digits", scenario="rotation", clients=8, groups=4, method="oracle", rounds=1,
                    local_epochs=1, seed=0)
    from cflkit.core.experiment import run

    state = run(config, federation=fed).state
    table, groups = client_descriptors(fed, models=state.models, assignment=state.assignment, config=config)
    assert {"update", "similarity"} <= set(groups.values()) and TIERS["similarity"] == "T0"
    assert (table["update_norm"] > 0).all() and (table["global_loss"] > 0).all()
    sims = [c for c in table.columns if groups[c] == "similarity"]
    assert len(sims) == 6 * 4  # 6 weight arrays of the MLP x 4 clusters
    assert (table[sims].abs() <= 1 + 1e-9).all().all()
    m = explain_membership(fed, state.assignment, descriptors=(table, groups), include_groups=("label", "spatial"))
    assert set(m.groups.values()) <= {"label", "spatial"}
    with pytest.raises(ValueError, match="unknown descriptor group"):
        explain_membership(fed, state.assignment, descriptors=(table, groups), include_groups=("labels",))


# -- IMM threshold tree --------------------------------------------------------------------------
def test_threshold_tree_has_k_leaves_and_its_rules_partition_the_clients():
    rng = np.random.default_rng(0)
    k = 5
    centres = rng.normal(0, 3, size=(k, 4))
    y = np.repeat(np.arange(k), 12)
    X = centres[y] + rng.normal(0, 1.0, size=(len(y), 4))
    tree = ThresholdTree([f"d{i}" for i in range(4)]).fit(X, y)
    assert tree.n_leaves == k and len(tree.rules()) == k
    assert sorted(c for _, c in tree.leaves()) == list(range(k))  # one leaf per cluster
    ops = {"<=": np.less_equal, ">": np.greater}
    inside = np.stack([np.all([ops[op](X[:, f], t) for f, op, t in conds], axis=0) if conds else np.ones(len(X), bool)
                       for conds, _ in tree.leaves()])
    assert (inside.sum(0) == 1).all()  # every client satisfies exactly one rule
    leaf_cluster = np.array([c for _, c in tree.leaves()])
    assert np.array_equal(leaf_cluster[inside.argmax(0)], tree.predict(X))
    assert tree.mistakes_ == int((tree.predict(X) != y).sum())
    assert all("→ cluster" in r for r in tree.rules())


def test_threshold_tree_splits_on_the_separating_feature_without_mistakes():
    # feature 1 separates the clusters perfectly, feature 0 is noise
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    X = np.column_stack([rng.normal(size=40), np.where(y == 1, 5.0, 0.0) + rng.uniform(0, 1, 40)])
    tree = ThresholdTree(["noise", "signal"]).fit(X, y)
    assert tree.root_.feature == 1 and tree.mistakes_ == 0
    assert 1.0 < tree.root_.threshold < 5.0
    assert tree.rules()[0].startswith("signal <= ") and tree.rules()[0].endswith("→ cluster 0")


# -- surrogate, baseline, importance -------------------------------------------------------------
def test_fidelity_and_baseline_are_in_range_and_the_same_seed_gives_the_same_numbers(rotation, rotation_membership):
    a = rotation_membership
    b = explain_membership(rotation, rotation.groups, seed=3)
    assert 0 <= a.fidelity <= 1 and 0 <= a.baseline_fidelity <= 1 and a.baseline_std >= 0
    assert a.summary() == b.summary()
    pd.testing.assert_frame_equal(a.group_importance, b.group_importance)
    assert a.group_importance["share"].sum() == pytest.approx(1.0)
    assert len(a.threshold_tree_rules) == 4 and 1 <= len(a.tree_rules) <= 8
    assert set(a.tables()) >= {"descriptors", "group_importance", "rules", "descriptor_groups"}


def test_lime_for_one_client_is_reproducible(rotation_membership):
    m = rotation_membership
    first = explain_client(m, 5, seed=2, num_samples=300)
    assert first == explain_client(m, 5, seed=2, num_samples=300)
    assert len(first) == 6 and all(isinstance(f, str) and np.isfinite(w) for f, w in first)
    assert first != explain_client(m, 5, seed=3, num_samples=300)
    with pytest.raises(ValueError, match="client must be in 0..39"):
        explain_client(m, 40)


def test_explained_needs_a_clear_margin_over_the_shuffled_runs():
    shuffled = np.full(25, 0.25) + np.linspace(-0.05, 0.05, 25)
    assert is_explained(0.9, shuffled)
    assert not is_explained(0.32, shuffled)  # above every shuffle but by less than MIN_MARGIN
    assert not is_explained(0.28, shuffled)


def test_too_few_clients_for_a_test_are_described_not_explained():
    assert n_relabelings([0, 0, 1, 1]) == 6 and n_relabelings([0, 1, 2, 0]) == 12
    assert n_relabelings(np.repeat(np.arange(4), 10)) * ALPHA > 1
    table = pd.DataFrame({"a_share": [0.1, 0.2, 0.8, 0.9], "noise": [1.0, 3.0, 2.0, 0.0]})
    m = explain_descriptors(table, {"a_share": "label", "noise": "moments"}, [0, 0, 1, 1])
    assert not m.testable and not m.explained
    assert list(m.separating["descriptor"]) == ["a_share"]
    assert m.separating["margin"][0] == pytest.approx(0.6 / 0.8)


def test_separating_descriptors_rank_by_effect_in_within_client_spreads():
    table = pd.DataFrame({"bp_mean": [132.0, 131.0, 134.0, 135.0], "bp_std": [18.0] * 4,
                          "chol_zero_share": [0.0, 0.0, 1.0, 0.3]})
    sep = separating_descriptors(table, {}, [0, 0, 1, 1])
    assert list(sep["descriptor"]) == ["chol_zero_share", "bp_mean"]
    assert sep["effect"][1] == pytest.approx(3.0 / 18.0)


# -- known answers ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("scenario, group", [("label_skew", "label"), ("rotation", "spatial")])
def test_planted_factor_carries_most_of_the_group_importance(scenario, group):
    fed = digits(scenario)
    m = explain_membership(fed, fed.groups, seed=0)
    assert m.explained and m.fidelity > m.baseline_fidelity + 0.3
    gi = m.group_importance.set_index("group")
    assert gi["share"].idxmax() == group and gi.loc[group, "share"] > 0.6


@pytest.mark.slow
def test_label_swap_is_not_explained_by_client_summaries():
    fed = digits("label_swap")
    m = explain_membership(fed, fed.groups, seed=0)
    assert not m.explained
    assert m.fidelity <= m.baseline_fidelity + 2 * m.baseline_std


def test_heart_descriptors_use_raw_values_and_name_missing_cholesterol(monkeypatch):
    if not os.environ.get("CFLKIT_OFFLINE_DIRS"):
        if not (OFFLINE / "heart_disease_uci").is_dir():
            pytest.skip("no offline copy of heart_disease_uci (set CFLKIT_OFFLINE_DIRS)")
        monkeypatch.setenv("CFLKIT_OFFLINE_DIRS", str(OFFLINE))
    fed = federation_from(Config(dataset="heart_disease", scenario="natural"))
    table, groups = client_descriptors(fed)
    sites = fed.client_meta["site"]
    swiss, cleveland = sites.index("Switzerland"), sites.index("Cleveland")
    # per-client standardised inputs would give every client a mean of 0: these are raw values
    assert table.loc[cleveland, "chol_mean"] > 200 and table.loc[cleveland, "age_mean"] > 40
    assert groups["chol_zero_share"] == "missing" and groups["label_1_share"] == "label"
    assert table.loc[swiss, "chol_zero_share"] == 1.0 and table.loc[cleveland, "chol_zero_share"] == 0.0
    assert table.loc[swiss, "label_1_share"] == 1.0  # every kept Swiss training patient has heart disease
    # the split {Cleveland, Hungarian} | {Switzerland, VA} (what kmeans with K=2 finds): described by
    # cholesterol and prevalence, and never called "explained" with four clients
    assignment = np.array([0 if s in ("Cleveland", "Hungarian") else 1 for s in sites])
    m = explain_membership(fed, assignment)
    assert not m.testable and not m.explained
    top = list(m.separating["descriptor"][:5])
    assert "chol_zero_share" in top and "label_1_share" in top
