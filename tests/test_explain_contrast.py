"""Layer (b), the contrast between cluster models: invariants of explain_contrast, its pure
helpers, and the known answers on 8×8 digits (rotation: maps match once rotated back;
label swap: same attributions, different predictions)."""
import numpy as np
import pandas as pd
import pytest

from cflkit import Config
from cflkit.explain.contrast import (
    Contrast,
    aligned_correlation,
    curve_auc,
    explain_contrast,
    grid_segments,
    jaccard,
    mean_pairwise_jaccard,
    planted_rotation,
    prediction_agreement,
    raw_correlation,
    rotate_back,
    spearman_matrix,
)

SMALL = dict(probes=4, num_samples=60, explainer_seeds=2)


@pytest.fixture(scope="module")
def swap_run():
    import cflkit

    config = Config(dataset="digits", scenario="label_swap", clients=8, groups=2, method="oracle", rounds=4,
                    local_epochs=2)
    return config, cflkit.run(config)


@pytest.fixture(scope="module")
def swap_contrast(swap_run):
    config, result = swap_run
    return explain_contrast(result.state.models, result.federation, config, **SMALL)


# -- pure helpers -----------------------------------------------------------------------------
def test_spearman_matrix_matches_scipy():
    from scipy.stats import spearmanr

    v = np.random.default_rng(0).normal(size=(3, 20))
    v[1, :5] = v[1, 0]  # ties
    rho = spearman_matrix(v)
    for i in range(3):
        for j in range(3):
            assert rho[i, j] == pytest.approx(spearmanr(v[i], v[j]).statistic)
    constant = spearman_matrix(np.array([[1.0, 1, 1], [1, 2, 3]]))
    assert np.isnan(constant[0, 1]), "a constant vector has no rank correlation"


def test_prediction_agreement():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                      [[0.8, 0.2], [0.7, 0.3], [0.1, 0.9]]])
    a = prediction_agreement(probs)
    assert a.tolist() == [[1.0, 1 / 3], [1 / 3, 1.0]]
    r = prediction_agreement(np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 2.0]]), "regression")
    assert r[0, 1] == 1.0 and r[0, 2] == pytest.approx(0.5) and np.allclose(r, r.T)
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        prediction_agreement(probs, "ranking")


def test_jaccard_and_auc():
    assert jaccard([1, 2, 3], [2, 3, 4]) == 0.5 and jaccard([], []) == 1.0
    assert mean_pairwise_jaccard([[1, 2], [1, 2], [3, 4]]) == pytest.approx(1 / 3)
    assert np.isnan(mean_pairwise_jaccard([[1, 2]]))
    assert curve_auc([1.0, 1.0, 1.0]) == pytest.approx(1.0) and curve_auc([1.0, 0.0]) == pytest.approx(0.5)


def test_grid_segments():
    s = grid_segments((8, 8), 2)
    assert s.shape == (8, 8) and s.max() == 15 and np.all(np.bincount(s.ravel()) == 4)
    assert grid_segments((28, 28), 4).max() == 48
    with pytest.raises(ValueError, match="cell must be >= 1"):
        grid_segments((8, 8), 0)


def test_rotate_back_undoes_the_scenario_rotation():
    from scipy.ndimage import rotate

    rng = np.random.default_rng(1)
    m = rng.random((8, 8))
    maps = np.stack([np.rot90(m, k) for k in range(4)])  # the rotation scenario's np.rot90(x, g)
    assert np.allclose(rotate_back(maps, [0, 90, 180, 270]), m[None])
    flat = rotate_back(maps.reshape(4, -1), [0, 90, 180, 270], shape=(8, 8))
    assert flat.shape == (4, 64) and np.allclose(flat, m.ravel()[None])
    smooth = np.outer(np.hanning(16), np.hanning(16))
    turned = rotate(smooth, 45, reshape=False, order=1)  # scenarios with more than four groups
    assert np.abs(rotate_back(turned[None], [45])[0] - smooth).max() < 0.1
    with pytest.raises(ValueError, match="need shape"):
        rotate_back(maps.reshape(4, -1), [0, 0, 0, 0])


# -- invariants ---------------------------------------------------------------------------------
def test_shapes_and_ranges(swap_run, swap_contrast):
    config, result = swap_run
    c = swap_contrast
    K = result.state.n_clusters
    assert isinstance(c, Contrast) and c.n_clusters == K == 2
    assert c.importance.shape == (K, 64) and len(c.feature_names) == 64 and (c.importance >= 0).all()
    assert c.maps().shape == (K, 8, 8) and c.class_importance.shape == (K, 10, 64)
    for M in (c.rank_correlation, c.agreement):
        assert M.shape == (K, K) and np.allclose(M, M.T) and np.allclose(np.diag(M), 1.0)
    assert (np.abs(c.rank_correlation) <= 1).all() and ((c.agreement >= 0) & (c.agreement <= 1)).all()
    assert set(c.top_features) == set(range(K)) and all(len(v) == 5 for v in c.top_features.values())
    assert all(name in c.segment_names for v in c.top_features.values() for name in v)
    assert all(0 <= v <= 1 for v in c.stability.values())
    assert list(c.faithfulness["cluster"]) == list(range(K))
    summary = c.summary()
    assert all(np.isscalar(v) for v in summary.values()) and summary["contrast_probes"] == SMALL["probes"]
    tables = c.tables()
    assert {"importance", "rank_correlation", "agreement", "top_features", "stability", "faithfulness"} <= set(tables)
    assert all(isinstance(t, pd.DataFrame) and len(t) for t in tables.values())


def test_same_seed_same_importances(swap_run, swap_contrast):
    config, result = swap_run
    again = explain_contrast(result.state.models, result.federation, config, **SMALL)
    assert np.array_equal(again.importance, swap_contrast.importance)
    other = explain_contrast(result.state.models, result.federation, config, **SMALL, seed=1)
    assert not np.array_equal(other.importance, swap_contrast.importance)


def test_identical_models_agree_and_explain_alike(swap_run):
    """Control: the same model twice gets agreement 1 and identical LIME weights (LIME sees
    the same perturbations through every cluster model)."""
    config, result = swap_run
    twice = [np.repeat(w[:1], 2, axis=0) for w in result.state.models]
    c = explain_contrast(twice, result.federation, config, probes=3, num_samples=40, explainer_seeds=1)
    assert np.array_equal(c.agreement, np.ones((2, 2)))
    assert np.array_equal(c.importance[0], c.importance[1]) and np.allclose(c.rank_correlation, 1.0)


def test_lime_order_is_faithful(swap_contrast):
    """Deleting features in LIME's order lowers the explained probability faster than a
    random order, and inserting them raises it faster."""
    f = swap_contrast.faithfulness
    assert (f["deletion_auc"] < f["deletion_auc_random"]).all()
    assert (f["insertion_auc"] > f["insertion_auc_random"]).all()


def test_tabular_contrast_names_features():
    import cflkit

    config = Config(dataset="breast_cancer", scenario="rotation", clients=4, groups=2, method="oracle", rounds=2,
                    local_epochs=1)
    result = cflkit.run(config)
    c = explain_contrast(result.state, result.federation, config, probes=3, num_samples=50, top_k=3,
                         explainer_seeds=1)
    assert c.importance.shape == (2, 30) and c.feature_names[0] == "mean radius"
    assert all(len(v) == 3 and set(v) <= set(c.feature_names) for v in c.top_features.values())
    assert np.isnan(c.summary()["topk_stability_mean"]), "one explainer seed: stability is undefined, not 1"
    with pytest.raises(ValueError, match="maps\\(\\) needs image data"):
        c.maps()
    from cflkit.explain import figures_contrast as F

    F.importance_maps(c)
    F.cluster_pair(c, 0, 1)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_28x28_images_use_a_4_pixel_grid():
    import cflkit
    from cflkit.core.datasets import Dataset
    from cflkit.core.scenarios import make_federation

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    x = np.zeros((120, 28, 28, 1), dtype=np.float32)
    for i, label in enumerate(y):  # a bar whose row says the class
        x[i, 6 + 7 * label: 9 + 7 * label, 4:24, 0] = 1.0
    x += rng.uniform(0, 0.1, size=x.shape).astype(np.float32)
    fed = make_federation(Dataset("bars", x, y, "image", n_classes=3), "label_swap", clients=4, groups=2)
    config = Config(scenario="label_swap", clients=4, groups=2, method="oracle", rounds=2, local_epochs=1, hidden=(16,))
    result = cflkit.run(config, federation=fed)
    c = explain_contrast(result.state.models, fed, config, probes=2, num_samples=40, explainer_seeds=1)
    assert c.importance.shape == (2, 784) and c.maps().shape == (2, 28, 28)
    assert len(c.segment_names) == 49 and c.segment_names[0] == "rows 0-3, cols 0-3"
    assert c.segments.max() == 48 and np.all(np.bincount(c.segments.ravel()) == 16)


def test_regression_contrast():
    """Regression models: LIME in regression mode, agreement = 1 - normalised mean |difference|."""
    import cflkit
    from cflkit.core.datasets import Dataset
    from cflkit.core.scenarios import make_federation

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (2 * x[:, 0] - x[:, 1]).astype(np.float32)
    fed = make_federation(Dataset("linear", x, y, "tabular", task="regression"), "rotation", clients=4, groups=2)
    config = Config(scenario="rotation", clients=4, groups=2, method="oracle", rounds=3, local_epochs=2,
                    learning_rate=0.01)
    result = cflkit.run(config, federation=fed)
    c = explain_contrast(result.state.models, fed, config, probes=3, num_samples=50, top_k=2)
    assert c.task == "regression" and c.class_importance.shape == (2, 1, 4)
    assert c.feature_names == ["x0", "x1", "x2", "x3"]
    assert ((c.agreement >= 0) & (c.agreement <= 1)).all() and np.allclose(np.diag(c.agreement), 1.0)
    assert c.agreement[0, 1] < 1.0, "two models trained on differently permuted features do not predict alike"


def test_bad_input(swap_run):
    config, result = swap_run
    with pytest.raises(ValueError, match="probes must be an integer >= 1, got 0"):
        explain_contrast(result.state.models, result.federation, config, probes=0)
    with pytest.raises(ValueError, match="do not fit config.model='mlp' with hidden=\\[32\\]"):
        explain_contrast(result.state.models, result.federation, config.replace(hidden=(32,)))
    with pytest.raises(ValueError, match="non-empty list"):
        explain_contrast([], result.federation, config)
    with pytest.raises(ValueError, match="rotation scenario"):
        planted_rotation(result.federation, result.state.assignment)


def test_figures_are_written(swap_run, swap_contrast, tmp_path):
    import matplotlib.pyplot as plt

    from cflkit.explain import figures_contrast as F
    from cflkit.explain.divergence import layer_divergence

    F.importance_maps(swap_contrast, path=tmp_path / "maps")
    F.importance_maps(swap_contrast, per_class=True, classes=[0, 1, 2], path=tmp_path / "maps_class")
    F.rank_correlation_heatmap(swap_contrast, path=tmp_path / "corr")
    F.agreement_heatmap(swap_contrast, path=tmp_path / "agree")
    F.faithfulness_curves(swap_contrast, path=tmp_path / "faith")
    F.divergence_heatmap(layer_divergence(swap_run[1].state.models), path=tmp_path / "div")
    F.cluster_pair(swap_contrast, 0, 1, path=tmp_path / "pair")
    plt.close("all")
    for name in ("maps", "maps_class", "corr", "agree", "faith", "div", "pair"):
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
        assert (tmp_path / f"{name}.png").exists()
    assert not list(tmp_path.glob(".*")), "temporary files left behind"
    with pytest.raises(ValueError, match="unknown metric 'cos'"):
        F.divergence_heatmap(layer_divergence(swap_run[1].state.models), metric="cos")
    with pytest.raises(ValueError, match="l must be a cluster in 0..1, got 2"):
        F.cluster_pair(swap_contrast, 0, 2)


# -- known answers on digits, 40 clients, 4 planted groups, oracle clusters ---------------------
def _digits(scenario):
    import cflkit

    config = Config(dataset="digits", scenario=scenario, clients=40, groups=4, method="oracle", rounds=10,
                    local_epochs=5)
    result = cflkit.run(config)
    return config, result, explain_contrast(result.state.models, result.federation, config)


@pytest.mark.slow
def test_rotation_maps_match_once_rotated_back():
    config, result, c = _digits("rotation")
    angles = planted_rotation(result.federation, result.state.assignment)
    assert sorted(angles.tolist()) == [0, 90, 180, 270]
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(raw_correlation(c), c.rank_correlation)
    raw, aligned = c.rank_correlation[off].mean(), aligned_correlation(c, angles)[off].mean()
    assert aligned > raw, (raw, aligned)
    # per class, signed: the rotated models' maps are unrelated as they are, alike once rotated back
    raw_c, aligned_c = raw_correlation(c, per_class=True)[off].mean(), aligned_correlation(c, angles, True)[off].mean()
    assert raw_c < 0.3 and aligned_c > 0.5, (raw_c, aligned_c)


@pytest.mark.slow
def test_label_swap_same_attributions_different_predictions():
    config, result, c = _digits("label_swap")
    off = ~np.eye(4, dtype=bool)
    assert c.rank_correlation[off].min() > 0.8, c.rank_correlation
    assert c.agreement[off].max() < 0.3, c.agreement
    f = c.faithfulness
    assert (f["deletion_auc"] < f["deletion_auc_random"]).all()
    assert (f["insertion_auc"] > f["insertion_auc_random"]).all()
