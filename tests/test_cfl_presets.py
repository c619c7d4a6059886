"""Server-side clustered presets (FL+HC, k-means, FedClust, PACFL, metadata) and the
generic representation x clusterer x trigger method: known answers and clear errors."""
import numpy as np
import pytest

from cflkit import Config, federation_from, run


def planted(scenario, seed=0, **kw):
    config = Config(scenario=scenario, clients=16, groups=4, rounds=20, seed=seed, **kw)
    return config, federation_from(config)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["flhc", "kmeans"])
@pytest.mark.parametrize("scenario", ["rotation", "label_swap"])
def test_server_side_methods_recover_concept_shift_and_beat_fedavg(method, scenario):
    config, fed = planted(scenario)
    fedavg = run(config.replace(method="fedavg"), federation=fed).summary
    s = run(config.replace(method=method), federation=fed).summary
    assert s["ari"] >= 0.9
    assert s["accuracy_mean"] > fedavg["accuracy_mean"] + 0.05


@pytest.mark.slow
def test_pacfl_recovers_disjoint_label_skew_in_one_shot_before_training():
    config, fed = planted("shards", classes_per_client=2)
    result = run(config.replace(method="pacfl", rounds=3), federation=fed)
    assert result.summary["ari"] >= 0.9
    assert result.summary["stable_round"] == 0, "clustered before the first round, never changed"
    assert result.state.clustered_at == 0


def test_pacfl_cannot_see_label_swap_because_labels_are_not_in_the_data_matrix():
    """The paper's subspaces come from features only; a label permutation leaves them equal."""
    config, fed = planted("label_swap")
    assert run(config.replace(method="pacfl", rounds=0), federation=fed).summary["ari"] < 0.3


def test_flhc_clusters_after_its_warmup_and_not_before():
    config, fed = planted("rotation")
    h = run(config.replace(method="flhc", rounds=6, local_epochs=1), federation=fed).history
    k = h.groupby("round")["cluster"].nunique()
    assert (k.loc[0:3] == 1).all() and (k.loc[4:] == 4).all()  # 3 FedAvg rounds (the default), then 4 clusters


def test_threshold_clustering_reports_the_k_it_found():
    config, fed = planted("rotation")
    s = run(config.replace(method="fedclust", rounds=1, distance_threshold=1e-9), federation=fed).summary
    assert s["n_clusters"] == 16  # a tiny threshold leaves every client alone
    s = run(config.replace(method="fedclust", rounds=1, distance_threshold=1e9), federation=fed).summary
    assert s["n_clusters"] == 1


def test_metadata_groups_by_a_client_attribute():
    config, fed = planted("rotation")
    s = run(config.replace(method="metadata", rounds=1), federation=fed).summary
    assert s["ari"] == 1.0  # synthetic federations carry their planted group as metadata
    with pytest.raises(ValueError, match="unknown metadata_key 'hospital'; choose one of: planted"):
        run(config.replace(method="metadata", metadata_key="hospital", rounds=1), federation=fed)


@pytest.mark.parametrize("changes, message", [
    (dict(method="flhc", representation="weight"), "unknown representation 'weight'; choose one of: weights"),
    (dict(method="flhc", clusterer="kmedoids"), "unknown clusterer 'kmedoids'"),
    (dict(method="flhc", trigger="sometimes"), "unknown trigger 'sometimes'"),
    (dict(method="clustered", trigger="init", representation="update"), "needs local training first"),
    (dict(method="flhc", metric="cosine"), "linkage 'ward' needs euclidean"),
    (dict(method="kmeans", metric="principal_angle"), "metric 'principal_angle' needs representation 'subspace'"),
    (dict(method="pacfl", clusterer="kmeans"), "clusterer 'kmeans' needs representation vectors"),
    (dict(method="fedclust", linkage="median"), "unknown linkage 'median'; choose one of"),
])
def test_bad_part_combinations_fail_with_the_valid_choices(changes, message):
    config, fed = planted("rotation")
    with pytest.raises(ValueError, match=message):
        run(config.replace(rounds=1, local_epochs=1, **changes), federation=fed)


@pytest.mark.parametrize("representation", ["weights", "update", "last_layer", "gradient", "outputs", "descriptors"])
def test_every_representation_plugs_into_the_generic_method(representation):
    config, fed = planted("label_swap")
    trigger = "init" if representation in ("gradient", "descriptors") else "once"
    r = run(config.replace(method="clustered", representation=representation, trigger=trigger, metric="cosine",
                           rounds=1, local_epochs=1), federation=fed)
    a = r.state.assignment
    assert a.shape == (16,) and r.state.n_clusters == len(np.unique(a)) == 4
