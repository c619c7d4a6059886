"""The tuning protocol's split discipline (tuning seeds and validation rows never overlap the
reporting seeds and the test rows), its choice on a known answer, and its bad input."""
import json

import numpy as np
import pytest

import cflkit
from cflkit import Config
from cflkit.cli import main
from cflkit.methods import METHODS
from cflkit.study import tune as T

SMALL = dict(dataset="digits", scenario="label_swap", clients=8, groups=2, rounds=3, local_epochs=2)


def test_validation_rows_come_from_training_rows_and_the_test_rows_are_gone():
    fed = cflkit.federation_from(Config(**SMALL))
    val = T.validation_federation(fed, 0.2, seed=5)
    test_rows = set(np.concatenate(fed.test_index).tolist())
    for c in range(fed.n_clients):
        train, held = set(val.train_index[c].tolist()), set(val.test_index[c].tolist())
        assert train | held == set(fed.train_index[c].tolist()) and not train & held
        assert not (train | held) & test_rows, "no tuning run sees a test row"
        assert len(held) == round(0.2 * len(fed.train_index[c]))
    again = T.validation_federation(fed, 0.2, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(again.test_index, val.test_index)), "seeded"
    other = T.validation_federation(fed, 0.2, seed=6)
    assert any(not np.array_equal(a, b) for a, b in zip(other.test_index, val.test_index))
    with pytest.raises(ValueError, match=r"validation fraction must be in \(0, 1\), got 1.0"):
        T.validation_federation(fed, 1.0)


def test_tuning_seeds_must_not_be_reporting_seeds():
    assert T.check_seeds((100, 101), (0, 1)) == [100, 101]
    with pytest.raises(ValueError, match=r"tuning seeds \[1\] are also reporting seeds"):
        T.check_seeds((1, 100), (0, 1))
    with pytest.raises(ValueError, match="at least one tuning seed"):
        T.check_seeds((), (0,))


def test_every_declared_grid_names_the_methods_own_parameters_and_starts_at_the_default():
    for name, cls in METHODS.items():
        points = T.method_grid(name)
        assert points and all(set(p) <= set(cls.Params.names()) for p in points)
        defaults = cls.Params()
        for key, values in cls.tuning.items():
            assert values[0] == getattr(defaults, key), f"{name}.{key}: the first value is the paper's default"


def test_the_tuner_picks_the_better_point_on_validation_rows(monkeypatch):
    """Label swap: one model cannot fit two labellings, so K = 2 must beat K = 1 on the
    clients' validation accuracy; every run's federation holds only training rows."""
    seen = []
    real_run = cflkit.core.experiment.run

    def spy(config, federation=None, **kw):
        seen.append((config.seed, federation))
        return real_run(config, federation=federation, **kw)

    monkeypatch.setattr(cflkit.core.experiment, "run", spy)
    table, chosen = T.tune(["ifca"], Config(**SMALL), seeds=(100, 101), report_seeds=(0, 1),
                           grids={"ifca": {"clusters": (1, 2)}})
    assert chosen == {"ifca": {"clusters": 2}}
    means = table.groupby("params")["validation"].mean()
    assert means['{"clusters": 2}'] > means['{"clusters": 1}'] + 0.1
    assert sorted({s for s, _ in seen}) == [100, 101] and len(seen) == 4
    for seed, fed in seen:
        full = cflkit.federation_from(Config(**SMALL, seed=seed))
        test_rows = set(np.concatenate(full.test_index).tolist())
        assert not set(np.concatenate(fed.test_index).tolist()) & test_rows


def test_a_tie_keeps_the_earlier_point_and_lower_is_better_for_errors():
    import pandas as pd

    table = pd.DataFrame({"method": ["m"] * 4, "point": [0, 0, 1, 1], "validation": [0.5, 0.7, 0.6, 0.6]})
    points = {"m": [{"a": 1}, {"a": 2}]}
    assert T.choose(table, points, "accuracy_mean") == {"m": {"a": 1}}  # 0.6 = 0.6: the earlier (the default)
    table["validation"] = [3.0, 3.0, 2.0, 2.5]
    assert T.choose(table, points, "rmse_mean") == {"m": {"a": 2}}


def test_cli_tune_writes_the_choice_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "tune"
    argv = ["tune", "--methods", "ocfl", "--set", "scenario=label_swap", "--set", "clients=8", "--set", "groups=2",
            "--set", "rounds=2", "--set", "local_epochs=1", "--out", str(out)]
    assert main(argv) == 0
    tuned = json.loads((out / "tuned.json").read_text())
    assert set(tuned["chosen"]) == {"ocfl"} and tuned["protocol"]["tuning_seeds"] == [100, 101]
    assert tuned["protocol"]["report_seeds"] == [0, 1] and tuned["protocol"]["metric"] == "accuracy_mean"
    assert T.read_tuned(out / "tuned.json") == tuned["chosen"]
    assert "chosen (*)" in capsys.readouterr().out
    assert main(argv) == 2 and "exists; choose another --out" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown method 'nope'; choose one of: "),
    (["--methods", "ifca", "--seeds", "0,100"], "tuning seeds [0] are also reporting seeds"),
    (["--methods", "ifca", "--seeds", "a"], "--seeds expects a comma list of integers, got 'a'"),
    (["--methods", "ifca", "--set", "bogus=1"], "unknown config field or method parameter 'bogus' in --set"),
    (["--methods", "ifca", "--metric", "ari"], "unknown tuning metric 'ari'"),
])
def test_cli_tune_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    assert main(["tune", *argv, "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "t").exists()


def test_tuned_parameters_reach_their_method_only_and_override_the_settings():
    from cflkit.study.compare import expand_grid

    grid = {"method": ["ifca", "pacfl", "fedavg"], "seed": [0]}
    cells = expand_grid(grid, Config(**SMALL), settings={"clusters": 2},
                        tuned={"ifca": {"restarts": 3, "clusters": 3}, "pacfl": {}})
    by = {c.config.method: c for c in cells}
    assert by["ifca"].config.params.restarts == 3 and by["ifca"].config.params.clusters == 3  # tuned over settings
    assert by["pacfl"].config.params.clusters == 2                                            # settings stay
    assert [by[m].labels["tuning"] for m in ("ifca", "pacfl", "fedavg")] == ["tuned", "tuned", "default"]
    plain = {c.config.method: c for c in expand_grid(grid, Config(**SMALL), settings={"clusters": 2})}
    assert "tuning" not in plain["ifca"].labels and plain["ifca"].id != by["ifca"].id
    assert plain["pacfl"].config == by["pacfl"].config  # nothing tuned: the same run, so resume reuses it


@pytest.mark.parametrize("tuned, message", [
    ({"nope": {}}, "unknown method 'nope' in the tuned parameters"),
    ({"ifca": {"eps1": 0.1}}, "method 'ifca' has no parameter 'eps1' (in the tuned parameters)"),
    ({"ifca": {"restarts": 2}}, "parameter 'restarts' is both tuned for 'ifca' and varied by the grid"),
    ({"ifca": 3}, "tuned must map a method to its parameters"),
])
def test_bad_tuned_parameters_are_refused_before_any_run(tuned, message):
    from cflkit.study.compare import expand_grid

    with pytest.raises(ValueError) as e:
        expand_grid({"method": ["ifca"], "restarts": [1, 2]}, Config(**SMALL), tuned=tuned)
    assert message in str(e.value)


def test_cli_compare_runs_with_what_cli_tune_chose(tmp_path, capsys):
    out = tmp_path / "tune"
    common = ["--set", "scenario=label_swap", "--set", "clients=8", "--set", "groups=2", "--set", "rounds=2",
              "--set", "local_epochs=1"]
    assert main(["tune", "--methods", "ocfl", *common, "--out", str(out)]) == 0
    chosen = T.read_tuned(out / "tuned.json")["ocfl"]
    capsys.readouterr()
    assert main(["compare", "--methods", "ocfl,fedavg", "--seeds", "0", *common, "--tuned", str(out / "tuned.json"),
                 "--workers", "1", "--out", str(tmp_path / "cmp")]) == 0
    import pandas as pd

    results = pd.read_csv(tmp_path / "cmp" / "results.csv")
    assert dict(zip(results["method"], results["tuning"])) == {"ocfl": "tuned", "fedavg": "default"}
    cell = results.loc[results["method"] == "ocfl", "cell"].item()
    config = json.loads((tmp_path / "cmp" / "cells" / cell / "config.json").read_text())
    assert all(config["params"][k] == v for k, v in chosen.items())
    grid = json.loads((tmp_path / "cmp" / "grid.json").read_text())
    assert grid["tuned"] == {"ocfl": chosen}
    assert main(["compare", "--methods", "ocfl", "--tuned", str(tmp_path / "missing.json"),
                 "--out", str(tmp_path / "c2")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the tuned parameters" in err and err.count("\n") == 1 and not (tmp_path / "c2").exists()
