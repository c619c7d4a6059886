"""Layer (c), per-layer divergence between cluster models: metric identities, symmetry, the
size-weighted global model, names and errors."""
import numpy as np
import pytest

from cflkit.explain.divergence import (
    cluster_sizes,
    cosine_distance,
    default_layer_names,
    global_model,
    l2_distance,
    layer_divergence,
)


def _models(k=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(k, 5, 4)), rng.normal(size=(k, 4)), rng.normal(size=(k, 4, 2)), rng.normal(size=(k, 2))]


def test_metric_identities():
    a = np.array([1.0, 2.0, 3.0])
    assert cosine_distance(a, a) == pytest.approx(0.0) and l2_distance(a, a) == 0.0
    assert cosine_distance(a, 3 * a) == pytest.approx(0.0)
    assert l2_distance(a, 3 * a) == pytest.approx(2 * np.linalg.norm(a))
    assert cosine_distance(a, -a) == pytest.approx(2.0)
    assert cosine_distance(np.zeros(3), np.zeros(3)) == 0.0 and cosine_distance(np.zeros(3), a) == 1.0


def test_table_layout_and_names():
    models = _models()
    table = layer_divergence(models)
    assert list(table.columns) == ["layer", "pair", "cosine_distance", "l2"]
    assert list(dict.fromkeys(table["layer"])) == ["layer_0_kernel", "layer_0_bias", "layer_1_kernel",
                                                   "layer_1_bias", "all"]
    assert list(dict.fromkeys(table["pair"])) == ["0-1", "0-2", "1-2", "0-global", "1-global", "2-global"]
    assert len(table) == 5 * 6 and (table[["cosine_distance", "l2"]] >= 0).all().all()
    named = layer_divergence(models, layer_names=["a", "b", "c", "d"])
    assert list(dict.fromkeys(named["layer"]))[:4] == ["a", "b", "c", "d"]
    whole = table[(table.layer == "all") & (table.pair == "0-1")]["l2"].item()
    per_layer = table[(table.layer != "all") & (table.pair == "0-1")]["l2"]
    assert whole == pytest.approx(np.sqrt((per_layer ** 2).sum())), "the whole model's L2 combines the layers'"


def test_identical_models_have_zero_divergence():
    one = _models(k=1)
    table = layer_divergence([np.repeat(w, 3, axis=0) for w in one])
    assert np.allclose(table["cosine_distance"], 0.0, atol=1e-12) and np.allclose(table["l2"], 0.0)


def test_pair_k_l_equals_l_k():
    models = _models()
    swapped = [w[[1, 0, 2]] for w in models]
    a = layer_divergence(models).set_index(["layer", "pair"])
    b = layer_divergence(swapped).set_index(["layer", "pair"])
    assert np.allclose(a.loc[(slice(None), "0-1"), :].to_numpy(), b.loc[(slice(None), "0-1"), :].to_numpy())
    assert np.allclose(a.loc[(slice(None), "0-2"), :].to_numpy(), b.loc[(slice(None), "1-2"), :].to_numpy())


def test_global_model_is_the_size_weighted_average():
    models = _models(k=2)
    g = global_model(models, sizes=[3, 1])
    assert all(np.allclose(gw, 0.75 * w[0] + 0.25 * w[1]) for gw, w in zip(g, models))
    table = layer_divergence(models, sizes=[5, 0]).set_index(["layer", "pair"])
    assert np.allclose(table.loc[(slice(None), "0-global"), "l2"], 0.0), "all weight on cluster 0: global = model 0"
    assert cluster_sizes([0, 1, 1, 0], [10, 20, 30, 5], 3).tolist() == [15, 50, 0]


def test_bad_input():
    models = _models()
    with pytest.raises(ValueError, match="sizes must be 3 non-negative numbers"):
        layer_divergence(models, sizes=[1, 2])
    with pytest.raises(ValueError, match="2 layer names for 4 weight arrays"):
        layer_divergence(models, layer_names=["a", "b"])
    with pytest.raises(ValueError, match="leading axes \\[2, 3\\]"):
        layer_divergence([models[0], models[1][:2]])
    with pytest.raises(ValueError, match="non-empty list"):
        layer_divergence([])


def test_keras_layer_names_fit_the_models():
    import cflkit
    from cflkit import Config
    from cflkit.explain.divergence import model_layer_names

    config = Config(dataset="digits", scenario="rotation", clients=4, groups=2, method="oracle", rounds=1,
                    local_epochs=1)
    result = cflkit.run(config)
    names = model_layer_names(config, result.federation)
    assert names == ["0:Dense/kernel", "0:Dense/bias", "1:Dense/kernel", "1:Dense/bias", "2:Dense/kernel",
                     "2:Dense/bias"]
    assert default_layer_names(result.state.models) == ["layer_0_kernel", "layer_0_bias", "layer_1_kernel",
                                                        "layer_1_bias", "layer_2_kernel", "layer_2_bias"]
    table = layer_divergence(result.state, layer_names=names)
    assert set(table["pair"]) == {"0-1", "0-global", "1-global"}
