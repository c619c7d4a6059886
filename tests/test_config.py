import json

import pytest

from cflkit.core.config import Config, coerce


def test_json_round_trip_gives_the_same_config():
    c = Config(scenario="rotation+quantity_skew", hidden=(32, 16), quantity_ratios=(1.0, 3.0), jit_compile=True)
    assert Config.from_dict(json.loads(c.to_json())) == c


def test_cli_strings_are_coerced_to_field_types():
    c = Config().replace(clients="8", alpha="0.3", hidden="128,64", jit_compile="true")
    assert (c.clients, c.alpha, c.hidden, c.jit_compile) == (8, 0.3, (128, 64), True)


@pytest.mark.parametrize("name, value, message", [
    ("clients", "many", "option 'clients' expects an integer, got 'many'"),
    ("rounds", 2.5, "expects an integer"),
    ("jit_compile", "maybe", "expects true or false"),
    ("colour", "red", "unknown option 'colour'; choose one of: dataset, scenario"),
])
def test_bad_values_name_the_option(name, value, message):
    with pytest.raises(ValueError, match=message):
        coerce(name, value)


@pytest.mark.parametrize("changes, message", [
    ({"rounds": -1}, "rounds must be >= 0, got -1"),
    ({"clients": 0}, "clients must be >= 1, got 0"),
    ({"learning_rate": 0.0}, "learning_rate must be > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"method": "fedprox", "mu": -0.1}, "parameter 'mu' must be >= 0.0, got -0.1"),
    ({"method": "ifca", "clusters": 0}, "parameter 'clusters' must be an integer >= 1 or 'groups'"),
    ({"method": "ifca", "clusters": "all"}, "parameter 'clusters' must be an integer >= 1 or 'groups'"),
    ({"method": "ifca", "restarts": True}, "parameter 'restarts' expects an integer, got True"),
    ({"method": "sattler", "eps2": "nan"}, "parameter 'eps2' expects a finite number, got 'nan'"),
    ({"method": "flhc", "representation": "weightz"}, "unknown representation 'weightz'; choose one of: weights"),
    ({"method": "pacfl", "representation": "update"}, "representation 'update' needs local training first"),
    ({"method": "methodz"}, "unknown method 'methodz'; choose one of: fedavg"),
])
def test_impossible_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        Config(**changes)


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().clients = 3


def test_method_parameters_belong_to_the_method():
    c = Config(method="ifca", restarts=5)
    assert c.params.restarts == 5 and c.params.clusters == "groups"
    with pytest.raises(ValueError, match=r"method 'ifca' has no parameter 'eps2'; its parameters: clusters, restarts"):
        Config(method="ifca", eps2=0.8)
    with pytest.raises(ValueError, match="method 'fedavg' has no parameter 'restarts'; it takes no parameters"):
        Config(restarts=5)
    assert Config(method="ifca").replace(restarts="3").params.restarts == 3  # CLI strings
    # a new method starts from its own defaults: nothing is carried over from another method
    assert Config(method="ifca", clusters=3).replace(method="random").params.clusters == "groups"
    assert Config(method="sattler").replace(method="flhc", warmup_rounds=1).params.warmup_rounds == 1


def test_every_parameter_has_a_real_default_and_a_help_line():
    """No placeholders ('' / -1 / 0 resolved privately by each method): what `cflkit list
    METHOD` shows is what runs."""
    from cflkit.methods import METHODS

    for name, cls in METHODS.items():
        for pname, default, help_ in cls.Params.describe():
            assert default not in ("", "-1"), f"{name}.{pname} defaults to a placeholder {default!r}"
            assert len(help_) > 10, f"{name}.{pname} has no help line"
    assert Config(method="sattler").params.warmup_rounds == 20 and Config(method="flhc").params.warmup_rounds == 3
    assert Config(method="clustered").params.linkage == "average" and Config(method="sattler").params.linkage == \
        "complete"


def test_parameter_names_never_shadow_shared_fields():
    from cflkit.core.config import FIELDS, parameter_names

    assert not set(parameter_names()) & set(FIELDS)


def test_json_round_trip_with_method_parameters():
    c = Config(method="pacfl", distance_threshold=30.0, subspace_dim=4)
    data = json.loads(c.to_json())
    assert data["params"]["distance_threshold"] == 30.0 and "distance_threshold" not in data
    assert Config.from_dict(data) == c
    assert Config.from_dict(json.loads(Config(method="metadata").to_json())).params.metadata_key is None


@pytest.mark.parametrize("name", ["sattler", "ifca_restarts", "pacfl", "cornflqs_ward", "clustered_outputs",
                                  "metadata_heart", "fedprox"])
def test_config_files_of_the_release_before_still_load(name):
    """The flat config.json of the release before: placeholders map to the methods' defaults,
    other methods' fields are left out (the golden runs re-run to the same numbers:
    test_equivalence.py)."""
    from pathlib import Path

    old = json.loads((Path(__file__).parent / "golden" / "runs" / name / "config.json").read_text())
    assert "params" not in old and "eps1" in old and "restarts" in old  # the old format, every field flat
    c = Config.from_dict(old)
    assert c.method == old["method"] and c.seed == old["seed"] and c.rounds == old["rounds"]
    own = set(c.params.names())
    for key, value in old.items():
        if key in own and value not in (0, -1, "", 0.0):
            assert getattr(c.params, key) == value, key
    if name == "sattler":
        assert (c.params.eps1, c.params.eps2, c.params.warmup_rounds, c.params.linkage) == (10.0, 0.01, 1, "complete")
    if name == "cornflqs_ward":
        assert (c.params.clusterer, c.params.linkage, c.params.clusters) == ("agglomerative", "ward", "groups")
    if name == "metadata_heart":
        assert c.params.metadata_key is None


def test_a_new_config_file_with_a_field_the_method_does_not_take_is_refused():
    data = json.loads(Config(method="ifca").to_json())
    data["params"]["eps2"] = 0.8
    with pytest.raises(ValueError, match="method 'ifca' has no parameter 'eps2'"):
        Config.from_dict(data)
