"""Regression end to end: MSE training, RMSE / MAE / R² per client and in the summary."""
import json

import numpy as np
import pytest

from cflkit import Config, make_federation, params_for, run
from cflkit.core.datasets import Dataset


@pytest.fixture(scope="module")
def linear():
    """y = x·w + noise: learnable by an MLP; 'rotation' permutes features per group (concept shift)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1600, 6)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5, 0.0, 1.5, -2.0]) + 0.1 * rng.normal(size=1600)).astype(np.float32)
    data = Dataset("linear", x, y, "tabular", task="regression")
    return make_federation(data, "rotation", clients=8, groups=2, seed=0)


def test_history_and_summary_report_regression_errors(linear, tmp_path):
    config = Config(method="fedavg", rounds=3, local_epochs=2, learning_rate=0.02, hidden=(32,))
    result = run(config, federation=linear, out=tmp_path / "r")
    h = result.history
    assert {"loss", "rmse", "mae", "r2"} <= set(h.columns) and h["accuracy"].isna().all()
    last = h[h["round"] == 3]
    np.testing.assert_allclose(last["rmse"], np.sqrt(last["loss"]), rtol=1e-6)
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["accuracy_mean"] is None  # no accuracy for regression, written as JSON null
    assert s["rmse_worst10"] >= s["rmse_mean"] > 0 and s["r2_mean"] <= 1
    pooled = np.sqrt(np.sum(last["rmse"] ** 2 * last["test_size"]) / last["test_size"].sum())
    assert s["rmse_weighted"] == pytest.approx(pooled)


@pytest.mark.slow
def test_clustering_lowers_the_error_under_concept_shift(linear):
    config = Config(rounds=15, local_epochs=2, learning_rate=0.02, hidden=(32,))
    rmse = {m: run(config.replace(method=m, **params_for(m, restarts=5)), federation=linear).summary  # IFCA: README
            for m in ("fedavg", "oracle", "ifca", "flhc")}
    assert rmse["oracle"]["rmse_mean"] < 0.7 * rmse["fedavg"]["rmse_mean"]
    for m in ("ifca", "flhc"):  # loss-based and update-based clustering work unchanged on MSE
        assert rmse[m]["ari"] == 1.0, m
        assert rmse[m]["rmse_mean"] < 0.7 * rmse["fedavg"]["rmse_mean"], m


def test_a_client_with_a_constant_test_target_has_no_r2_and_the_summary_skips_it():
    """Parkinson's UPDRS is interpolated between clinic visits: a short test window can hold
    one value, where R² = 1 - MSE / 0 has no meaning (it came out near -1e13 before)."""
    import pandas as pd

    from cflkit.core.metrics import regression_summary
    from cflkit.core.trainer import _metrics

    flat = np.full(12, 2.7, dtype=np.float32)
    assert np.isnan(_metrics("regression", flat[:, None] + 0.1, flat)["r2"])
    moving = np.arange(12, dtype=np.float32)
    assert _metrics("regression", moving[:, None] + 0.5, moving)["r2"] == pytest.approx(1 - 0.25 / np.var(moving))
    last = pd.DataFrame({"rmse": [0.1, 0.5], "mae": [0.1, 0.5], "r2": [np.nan, 0.6], "test_size": [12, 12]})
    assert regression_summary(last)["r2_mean"] == pytest.approx(0.6)
