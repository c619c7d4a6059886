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
    ({"mu": -0.1}, "mu must be >= 0"),
])
def test_impossible_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        Config(**changes)


def test_config_is_frozen():
    with pytest.raises(Exception):
        Config().clients = 3
