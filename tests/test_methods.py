import numpy as np
import pytest

from cflkit import Config, federation_from, run
from cflkit.core.aggregate import weighted_average
from cflkit.methods import METHODS

SUMMARY_KEYS = {"accuracy_mean", "accuracy_weighted", "accuracy_worst10", "ari", "ami", "homogeneity",
                "completeness", "v_measure", "n_clusters", "rounds", "bytes_total", "wall_seconds"}

SMALL = Config(scenario="rotation", clients=8, groups=4, rounds=2, local_epochs=1)


@pytest.fixture(scope="module")
def small_fed():
    return federation_from(SMALL)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_invariants_of_every_method(method, small_fed):
    result = run(SMALL.replace(method=method), federation=small_fed)
    h = result.history
    assert set(h.columns) >= {"round", "client", "group", "cluster", "loss", "accuracy", "bytes_up", "bytes_down"}
    assert len(h) == (SMALL.rounds + 1) * 8
    for _, rnd in h.groupby("round"):
        assert sorted(rnd["client"]) == list(range(8)), "every client appears once per round"
        clusters = sorted(rnd["cluster"].unique())
        assert clusters == list(range(len(clusters))), "cluster ids are contiguous"
    state = result.state
    assert state.n_clusters == len(np.unique(state.assignment)), "one model per non-empty cluster"
    assert SUMMARY_KEYS <= set(result.summary)
    assert 0.0 <= result.summary["accuracy_worst10"] <= result.summary["accuracy_mean"] <= 1.0


def test_same_seed_same_numbers(small_fed):
    a = run(SMALL.replace(method="random"), federation=small_fed)
    b = run(SMALL.replace(method="random"), federation=federation_from(SMALL))
    cols = ["cluster", "loss", "accuracy"]
    np.testing.assert_array_equal(a.history[cols].to_numpy(), b.history[cols].to_numpy())


def test_fedavg_round_is_the_size_weighted_average_of_local_training(small_fed):
    """One FedAvg round equals: broadcast, train each client as `local` does, average by size."""
    config = SMALL.replace(rounds=1)
    fedavg = run(config.replace(method="fedavg"), federation=small_fed)
    local = run(config.replace(method="local"), federation=small_fed)
    expected = weighted_average(local.state.models, small_fed.sizes)
    for got, want in zip(fedavg.state.models, expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_assignments_and_traffic_of_the_baselines(small_fed):
    by = {m: run(SMALL.replace(method=m), federation=small_fed)
          for m in ("fedavg", "oracle", "local", "random", "centralized")}
    assert by["oracle"].summary["ari"] == 1.0 and by["oracle"].summary["n_clusters"] == 4
    assert by["fedavg"].summary["n_clusters"] == 1 and by["fedavg"].summary["ari"] == 0.0
    assert by["local"].summary["n_clusters"] == 8 and by["local"].summary["bytes_total"] == 0
    assert by["random"].summary["n_clusters"] == 4
    params = sum(np.prod(w.shape[1:]) for w in by["fedavg"].state.models)
    assert by["fedavg"].summary["bytes_total"] == SMALL.rounds * 8 * 2 * 4 * params


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["rotation", "label_swap"])
def test_oracle_beats_fedavg_clearly_on_concept_shift(scenario):
    """16 clients in 4 groups on digits (default settings, 20 rounds): clustering matters."""
    config = Config(scenario=scenario, clients=16, groups=4, rounds=20)
    fed = federation_from(config)
    acc = {m: run(config.replace(method=m), federation=fed).summary["accuracy_mean"] for m in ("fedavg", "oracle")}
    assert acc["oracle"] > 0.85
    assert acc["oracle"] - acc["fedavg"] > 0.05


def test_divergence_is_reported_not_hidden(small_fed):
    from cflkit import DivergenceError

    with pytest.raises(DivergenceError, match="training diverged at round 1: non-finite loss.*lower learning_rate"):
        run(SMALL.replace(method="fedavg", learning_rate=1e8), federation=small_fed)


def test_random_clusters_are_not_the_planted_groups():
    """The method's RNG stream is not the federation's: same seed, different draws."""
    aris = []
    for seed in range(3):
        config = SMALL.replace(method="random", clients=16, rounds=0, seed=seed)
        aris.append(run(config).summary["ari"])
    assert max(aris) < 0.9, aris


def test_ifca_starts_from_distinct_models_even_for_a_model_that_starts_at_zero():
    """logreg starts at zero; IFCA's K models must still differ (Ghosh et al. draw them at
    random), or every client picks the first and IFCA is FedAvg."""
    from cflkit import Config, run
    from cflkit.core.experiment import build_context, federation_from
    from cflkit.methods import make_method
    from cflkit.methods.ifca import random_models

    config = Config(dataset="breast_cancer", scenario="label_swap", clients=8, groups=2, method="ifca",
                    model="logreg", clusters=2, restarts=1, rounds=5, local_epochs=1)
    ctx = build_context(config, federation_from(config))
    make_method(config)
    kernel, bias = random_models(ctx, 2, 7)
    assert not np.allclose(kernel[0], kernel[1]) and np.array_equal(bias, np.zeros_like(bias))
    assert np.array_equal(random_models(ctx, 2, 7)[0], kernel)  # seeded
    result = run(config)
    assert result.summary["n_clusters"] == 2 and result.summary["ari"] == 1.0
