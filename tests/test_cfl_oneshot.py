"""One-shot CFL methods — OCFL (clustering temperature) and FedGroup (EDC cold start) — and
the representation x clusterer grid of the generic ``clustered`` method."""
import itertools
import math
import traceback
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from cflkit import Config, federation_from, run
from cflkit.methods import METHODS, make_method
from cflkit.methods.fedgroup import FedGroup, decomposed_cosine_similarity, madc, nearest_group
from cflkit.methods.ocfl import OCFL, clustering_temperature, temperature_rises
from cflkit.methods.parts.clustering import CLUSTERERS, cluster, pairwise_distances
from cflkit.methods.parts.representations import REPRESENTATIONS

ONESHOT = ("ocfl", "fedgroup", "fedgroup_madc")
SMALL = Config(scenario="rotation", clients=8, groups=2, rounds=4, local_epochs=1)


@pytest.fixture(scope="module")
def small_fed():
    return federation_from(SMALL)


def planted_updates(sizes=(5, 5), d=200, noise=0.3, seed=0):
    """Client updates around orthogonal planted directions, with unequal norms."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(d, len(sizes))))[0].T
    groups = np.repeat(np.arange(len(sizes)), sizes)
    scale = rng.uniform(0.5, 3.0, size=(len(groups), 1))
    X = scale * (directions[groups] + noise * rng.normal(size=(len(groups), d)) / np.sqrt(d))
    return X, groups


# -- the clustering temperature ------------------------------------------------------------
def test_temperature_is_zero_for_identical_directions():
    g = np.random.default_rng(0).normal(size=50)
    updates = np.stack([g, 2 * g, 0.5 * g, g])  # same direction, different norms
    assert clustering_temperature(pairwise_distances(updates, "cosine")) == pytest.approx(0.0, abs=1e-12)


def test_temperature_is_one_for_an_opposite_pair():
    g = np.random.default_rng(1).normal(size=50)
    D = pairwise_distances(np.stack([g, -g]), "cosine")
    assert D[0, 1] == pytest.approx(2.0)
    assert clustering_temperature(D) == pytest.approx(1.0)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_temperature_of_orthogonal_updates_is_one_half_for_every_p(p):
    D = pairwise_distances(np.eye(6), "cosine")  # every off-diagonal distance is 1
    assert clustering_temperature(D, p) == pytest.approx(0.5)


def test_temperature_of_two_opposite_groups():
    """n = 4 (g, g, -g, -g): 8 ordered pairs at distance 2, the rest 0:
    T = sqrt(8 * 4) / sqrt(4 * 3 * 2^2) = sqrt(2/3)."""
    g = np.ones(10)
    D = pairwise_distances(np.stack([g, g, -g, -g]), "cosine")
    assert clustering_temperature(D) == pytest.approx(math.sqrt(2 / 3))
    # p = 1: sum of distances 16 over n (n - 1) 2 = 24
    assert clustering_temperature(D, 1.0) == pytest.approx(16 / 24)


def test_temperature_rejects_bad_input():
    with pytest.raises(ValueError, match="square distance matrix"):
        clustering_temperature(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="p must be a finite number > 0, got 0"):
        clustering_temperature(np.zeros((3, 3)), p=0)
    with pytest.raises(ValueError, match="non-negative"):
        clustering_temperature(-np.ones((3, 3)))
    assert clustering_temperature(np.zeros((1, 1))) == 0.0


def scripted_ocfl_run(small_fed, monkeypatch, temperatures, **params):
    """A real OCFL run (Clustered.round, the loop, HDBSCAN) whose temperatures are given, to
    test the trigger alone: the rounds it clustered in and the temperatures it reported."""
    scripted = iter(temperatures)
    monkeypatch.setattr(OCFL, "temperature", lambda self, ctx, start, trained: next(scripted))
    config = SMALL.replace(method="ocfl", rounds=len(temperatures), min_cluster_size=2, **params)
    result = run(config, federation=small_fed)
    fired = [d["round"] for d in result.diagnostics if d["clustered"]]
    return fired, result


def test_ocfl_clusters_once_at_the_first_rise_of_the_temperature(small_fed, monkeypatch):
    temps = [0.5, 0.4, 0.45, 0.3, 0.6, 0.7]
    fired, result = scripted_ocfl_run(small_fed, monkeypatch, temps)
    assert fired == [3], "T_3 = 0.45 > T_2 = 0.40 is the first rise; later rises do not re-cluster"
    assert result.state.clustered_at == 3 and result.state.temperature == 0.7
    assert [d["temperature"] for d in result.diagnostics] == temps
    partitions = result.history.groupby("round")["cluster"].apply(tuple)
    assert len(set(partitions.loc[3:])) == 1, "the partition of round 3 is kept to the end"
    assert temperature_rises(0.4, 0.45) and not temperature_rises(0.45, 0.45)


def test_ocfl_never_fires_in_round_one_and_respects_warmup(small_fed, monkeypatch):
    assert scripted_ocfl_run(small_fed, monkeypatch, [0.9])[0] == []  # T_0 = inf
    assert scripted_ocfl_run(small_fed, monkeypatch, [0.5, 0.4, 0.45, 0.3, 0.6], warmup_rounds=3)[0] == [5]


def test_ocfl_with_a_monotone_temperature_stays_fedavg(small_fed, monkeypatch):
    fired, result = scripted_ocfl_run(small_fed, monkeypatch, [0.5, 0.4, 0.3, 0.2])
    assert fired == [] and result.state.clustered_at is None and result.summary["n_clusters"] == 1


def test_the_trigger_is_a_pure_function_of_the_round():
    from cflkit.methods.parts.triggers import fires

    assert [r for r in range(1, 6) if fires("once", r, warmup=2)] == [3]
    assert [r for r in range(1, 6) if fires("every", r, warmup=2)] == [3, 4, 5]
    assert not any(fires("init", r, warmup=0) for r in range(1, 6))
    assert not fires("temperature", 4, warmup=0, clustered_at=2, previous_temperature=0.1, temperature=0.9)


# -- EDC, MADC and the FedGroup cold start -------------------------------------------------
def test_edc_separates_two_planted_directions():
    X, groups = planted_updates()
    rows = decomposed_cosine_similarity(X, 2)
    assert rows.shape == (10, 2) and np.all(np.abs(rows) <= 1 + 1e-12)
    D = pairwise_distances(rows, "euclidean")
    same = groups[:, None] == groups[None, :]
    assert D[same].max() < D[~same].min(), "EDC: within-group distances below between-group ones"
    labels = cluster(rows, "kmeans", k=2, metric="euclidean")
    assert adjusted_rand_score(groups, labels) == 1.0
    # the sign of singular vectors is arbitrary: EDC distances do not depend on it
    np.testing.assert_allclose(pairwise_distances(decomposed_cosine_similarity(-X, 2), "euclidean"), D, atol=1e-10)


def test_edc_and_madc_recover_three_groups_of_unequal_size():
    X, groups = planted_updates(sizes=(3, 6, 4), d=300, seed=3)
    edc_labels = cluster(decomposed_cosine_similarity(X, 3), "kmeans", k=3, metric="euclidean")
    madc_labels = cluster(None, "agglomerative", k=3, linkage="complete", distances=madc(X))
    assert adjusted_rand_score(groups, edc_labels) == 1.0
    assert adjusted_rand_score(groups, madc_labels) == 1.0


def test_edc_madc_and_newcomers_reject_bad_input():
    X, _ = planted_updates()
    with pytest.raises(ValueError, match="1 <= K <= min.*got K=0"):
        decomposed_cosine_similarity(X, 0)
    with pytest.raises(ValueError, match="got K=11"):
        decomposed_cosine_similarity(X, 11)
    with pytest.raises(ValueError, match="at least 3 clients, got 2"):
        madc(X[:2])
    with pytest.raises(ValueError, match="equal widths"):
        nearest_group(X, X[:, :5])


def test_newcomers_join_the_group_with_the_closest_update_direction():
    groups = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    newcomers = np.array([[5.0, 1.0, 0.0], [0.1, 2.0, 3.0], [-1.0, 0.0, 0.0]])
    assert nearest_group(newcomers, groups).tolist() == [0, 1, 1]


def fake_ctx(n, n_groups, seed=0, **config):
    cfg = Config(method="fedgroup", clients=n, groups=n_groups, **config)
    return SimpleNamespace(federation=SimpleNamespace(n_clients=n, n_groups=n_groups), config=cfg,
                           rng=np.random.default_rng(seed))


def test_fedgroup_cold_start_with_all_clients_clustering_recovers_planted_groups():
    X, groups = planted_updates(sizes=(4, 4, 4))
    ctx = fake_ctx(12, 3)
    method = FedGroup(ctx.config)
    assignment, members = method.cold_start(ctx, [np.zeros_like(X)], [X])
    assert members.all(), "alpha * K = 60 >= 12 clients: every client is a clustering client"
    assert adjusted_rand_score(groups, assignment) == 1.0


def test_fedgroup_cold_start_assigns_newcomers_by_cosine_to_group_updates():
    class FewClustering(FedGroup):
        name = ""
        alpha = 2  # 2 * K = 4 clustering clients, 6 newcomers

    X, groups = planted_updates(sizes=(5, 5), seed=1)
    ctx = fake_ctx(10, 2, seed=0)
    assignment, members = FewClustering(ctx.config).cold_start(ctx, [np.zeros_like(X)], [X])
    assert members.sum() == 4 and (~members).sum() == 6
    assert set(groups[members]) == {0, 1}, "this seed draws clustering clients from both groups"
    assert adjusted_rand_score(groups, assignment) == 1.0
    group_updates = np.stack([X[members & (assignment == g)].mean(0) for g in range(2)])
    np.testing.assert_array_equal(assignment[~members], nearest_group(X[~members], group_updates))


def test_fedgroup_accepts_only_the_once_trigger():
    with pytest.raises(ValueError, match="trigger 'every' is not supported; choose one of: once"):
        make_method(Config(method="fedgroup", trigger="every"))
    with pytest.raises(ValueError, match="unknown clusterer 'kmean'.*choose one of"):
        make_method(Config(method="fedgroup", clusterer="kmean"))


# -- invariants and determinism of the one-shot methods -------------------------------------
def run_recording_states(config, fed, monkeypatch):
    """run() while recording the server state after every round."""
    cls = METHODS[config.method]
    original_init, original_round, states = cls.init, cls.round, []

    def init(self, ctx):
        state = original_init(self, ctx)
        states.append(state)
        return state

    def round_(self, state, ctx, r):
        new, info = original_round(self, state, ctx, r)
        states.append(new)
        assert info.bytes_up.shape == info.bytes_down.shape == (fed.n_clients,)
        return new, info

    monkeypatch.setattr(cls, "init", init)
    monkeypatch.setattr(cls, "round", round_)
    result = run(config, federation=fed)
    return result, states


def assert_state_invariants(state, n):
    a = state.assignment
    assert a.shape == (n,), "every client in exactly one cluster"
    assert np.issubdtype(a.dtype, np.integer)
    ids = np.unique(a)
    assert ids.tolist() == list(range(len(ids))), "contiguous cluster ids"
    assert state.n_clusters == len(ids), "one model per non-empty cluster"
    assert all(w.shape[0] == len(ids) for w in state.models)


@pytest.mark.parametrize("method", ONESHOT)
def test_one_shot_invariants_at_every_round(method, small_fed, monkeypatch):
    result, states = run_recording_states(SMALL.replace(method=method), small_fed, monkeypatch)
    assert len(states) == SMALL.rounds + 1
    for state in states:
        assert_state_invariants(state, small_fed.n_clients)
    h = result.history
    for r, rnd in h.groupby("round"):
        assert sorted(rnd["client"]) == list(range(small_fed.n_clients))
        np.testing.assert_array_equal(rnd.sort_values("client")["cluster"].to_numpy(), states[r].assignment)
    partitions = [tuple(s.assignment) for s in states]
    changes = sum(a != b for a, b in zip(partitions, partitions[1:]))
    assert changes <= 1, "one shot: the partition changes at most once"


def test_ocfl_reports_the_temperature_every_round(small_fed):
    result = run(SMALL.replace(method="ocfl"), federation=small_fed)
    temps = [d["temperature"] for d in result.diagnostics]
    assert len(temps) == SMALL.rounds and all(0.0 <= t <= 1.0 for t in temps)
    clustered = [d["round"] for d in result.diagnostics if d["clustered"]]
    at = result.state.clustered_at
    assert clustered == ([] if at is None else [at])
    if at is not None:  # it fired at the first rise of the temperature
        rises = [r for r in range(2, SMALL.rounds + 1) if temps[r - 1] > temps[r - 2]]
        assert at == rises[0]


def test_fedgroup_reports_its_cold_start(small_fed):
    result = run(SMALL.replace(method="fedgroup"), federation=small_fed)
    first = result.diagnostics[0]
    assert first["clustering_clients"] == 8 and first["newcomers"] == 0
    assert result.state.clustered_at == 1
    assert result.summary["n_clusters"] == 2


@pytest.mark.parametrize("method", ONESHOT)
def test_one_shot_same_seed_same_history(method, small_fed):
    config = SMALL.replace(method=method, rounds=3)
    a = run(config, federation=small_fed)
    b = run(config, federation=federation_from(config))
    cols = ["cluster", "loss", "accuracy"]
    np.testing.assert_array_equal(a.history[cols].to_numpy(), b.history[cols].to_numpy())
    assert a.diagnostics == b.diagnostics


# -- known answers: 8x8 digits, 16 clients, 4 groups, 20 rounds, 3 seeds ---------------------
SEEDS = (0, 1, 2)
KNOWN = Config(clients=16, groups=4, rounds=20)
_results = {}


def known_result(scenario, method, seed):
    key = (scenario, method, seed)
    if key not in _results:
        config = KNOWN.replace(scenario=scenario, seed=seed)
        fed_key = (scenario, seed)
        if fed_key not in _results:
            _results[fed_key] = federation_from(config)
        _results[key] = run(config.replace(method=method), federation=_results[fed_key]).summary
    return _results[key]


@pytest.mark.slow
@pytest.mark.parametrize("method", ONESHOT)
@pytest.mark.parametrize("scenario", ["rotation", "label_swap", "shards"])
def test_one_shot_methods_recover_the_planted_groups(scenario, method):
    """Measured (mean over seeds 0-2): ARI 1.00 for all three methods on all three scenarios;
    accuracy ~0.93 rotation, ~0.94 label_swap, ~0.99 shards, against FedAvg's ~0.85, ~0.33, ~0.87."""
    ours = [known_result(scenario, method, s) for s in SEEDS]
    fedavg = [known_result(scenario, "fedavg", s) for s in SEEDS]
    aris = [s["ari"] for s in ours]
    assert min(aris) >= 0.9, aris
    assert all(s["n_clusters"] == 4 for s in ours), [s["n_clusters"] for s in ours]
    acc = np.mean([s["accuracy_mean"] for s in ours])
    acc_fedavg = np.mean([s["accuracy_mean"] for s in fedavg])
    assert acc - acc_fedavg > 0.05, (acc, acc_fedavg)
    assert acc > 0.9, acc


# -- the generic clustered method: representation x clusterer grid ---------------------------
GRID = Config(method="clustered", scenario="rotation", clients=8, groups=2, rounds=2, local_epochs=1)


@pytest.fixture(scope="module")
def grid_fed():
    return federation_from(GRID)


def assert_clear_value_error(error, names):
    """A ValueError raised by cflkit itself (not deep inside a library) that names the bad value."""
    last = traceback.extract_tb(error.__traceback__)[-1]
    assert "cflkit" in last.filename, f"raised from {last.filename}:{last.lineno}: {error}"
    assert any(repr(n) in str(error) or str(n) in str(error) for n in names), str(error)


@pytest.mark.parametrize("representation,clusterer", list(itertools.product(REPRESENTATIONS, CLUSTERERS)))
def test_every_representation_clusterer_pair_runs_or_fails_clearly(representation, clusterer, grid_fed):
    config = GRID.replace(representation=representation, clusterer=clusterer)
    try:
        result = run(config, federation=grid_fed)
    except ValueError as error:
        assert_clear_value_error(error, [representation, clusterer])
        return
    assert_state_invariants(result.state, grid_fed.n_clients)
    for _, rnd in result.history.groupby("round"):
        ids = sorted(rnd["cluster"].unique())
        assert ids == list(range(len(ids)))
        assert sorted(rnd["client"]) == list(range(grid_fed.n_clients))


@pytest.mark.parametrize("changes,bad,match", [
    (dict(representation="update", clusterer="agglomerative", metric="cosine", linkage="ward"), "ward",
     "linkage 'ward' needs euclidean vectors.*use complete, average or single"),
    (dict(representation="update", clusterer="kmeans", metric="principal_angle"), "principal_angle",
     "metric 'principal_angle' needs representation 'subspace'"),
    (dict(representation="weights", clusterer="hdbscan", metric="principal_angle"), "principal_angle",
     "needs representation 'subspace'"),
    (dict(representation="update", trigger="init"), "update", "needs local training first: use trigger"),
    (dict(linkage="wardd"), "wardd", "choose one of: ward, complete, average, single"),
    (dict(metric="manhattan"), "manhattan", "choose one of: euclidean, cosine, principal_angle"),
    (dict(clusterer="kmean"), "kmean", "choose one of: kmeans, agglomerative"),
    (dict(representation="weight"), "weight", "choose one of: weights, update"),
    (dict(trigger="sometimes"), "sometimes", "choose one of: init, once, every, temperature"),
])
def test_bad_combinations_fail_with_a_clear_value_error(changes, bad, match, grid_fed):
    with pytest.raises(ValueError, match=match) as info:
        run(GRID.replace(**changes), federation=grid_fed)
    assert_clear_value_error(info.value, [bad])


@pytest.mark.parametrize("clusterer", ["kmeans", "gmm"])
def test_vector_clusterers_refuse_principal_angle_distances(clusterer, grid_fed):
    """k-means / GMM would cluster the sign-ambiguous flattened bases, not the principal angles."""
    with pytest.raises(ValueError, match=f"clusterer '{clusterer}' needs representation vectors.*choose") as info:
        run(GRID.replace(representation="subspace", clusterer=clusterer, metric="principal_angle", trigger="init"),
            federation=grid_fed)
    assert_clear_value_error(info.value, [clusterer])


def test_dbscan_on_coinciding_clients_runs_or_names_distance_threshold():
    try:
        labels = cluster(np.ones((8, 5)), "dbscan", metric="euclidean")
    except ValueError as error:
        assert_clear_value_error(error, ["distance_threshold"])
    else:
        assert labels.tolist() == [0] * 8


def test_hdbscan_with_too_large_min_cluster_size_names_the_option():
    X, _ = planted_updates()
    with pytest.raises(ValueError) as info:
        cluster(X, "hdbscan", min_cluster_size=20, metric="cosine")
    assert_clear_value_error(info.value, ["min_cluster_size"])
