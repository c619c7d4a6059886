"""The command line: what a researcher types, what comes back, what is left on disk."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from cflkit.cli import main

FAST = ["--clients", "8", "--rounds", "2", "--local_epochs", "1"]


def test_list_shows_datasets_scenarios_and_methods(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "breast_cancer", "iid", "dirichlet", "shards", "label_skew", "rotation", "label_swap",
                 "feature_skew", "quantity_skew", "fedavg", "fedprox", "local", "oracle", "random", "centralized"):
        assert f"  {name} " in out


def test_run_writes_a_complete_rerunnable_run_directory(tmp_path, capsys):
    out = tmp_path / "x"
    code = main(["run", "--dataset", "digits", "--scenario", "rotation", "--method", "oracle", "--seed", "0",
                 "--set", "groups=4", "--set", "learning_rate=0.1", *FAST, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "oracle" in printed and "ARI" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "oracle" and config["learning_rate"] == 0.1 and config["clients"] == 8
    history = pd.read_csv(out / "history.csv")
    assert len(history) == 3 * 8
    assert {"round", "client", "group", "cluster", "loss", "accuracy"} <= set(history.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ari"] == 1.0 and summary["n_clusters"] == 4 and summary["rounds"] == 2
    # the config re-runs to the same numbers
    again = tmp_path / "again"
    assert main(["run", "--config", str(out / "config.json"), "--out", str(again)]) == 0
    assert pd.read_csv(again / "history.csv")[["loss", "accuracy"]].equals(history[["loss", "accuracy"]])


@pytest.mark.parametrize("args, message", [
    (["--method", "fedavgg"], "unknown method 'fedavgg'; choose one of: fedavg, fedprox"),
    (["--scenario", "rotaton"], "unknown scenario 'rotaton'; choose one of: iid"),
    (["--dataset", "mnist9"], "unknown dataset 'mnist9'; choose one of: digits, breast_cancer"),
    (["--rounds", "-3"], "rounds must be >= 0, got -3"),
    (["--clients", "5000"], "impossible partition: 1797 samples of 'digits' cannot give 5000 clients"),
    (["--set", "alpha"], "--set expects KEY=VALUE, got 'alpha'"),
    (["--set", "colour=red"], "unknown option 'colour'"),
    (["--clients", "ten"], "option 'clients' expects an integer, got 'ten'"),
    (["--config", "nowhere.json"], "cannot read config file 'nowhere.json'"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_directory(args, message, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["run", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cflkit: error: ") and message in err and "\n" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_divergence_is_exit_1_with_advice_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "nan"
    assert main(["run", *FAST, "--learning_rate", "1e8", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "training diverged" in err and "lower learning_rate" in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_subcommand_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'frobnicate'" in err


def test_console_script_runs_without_importing_tensorflow_for_list():
    code = "import sys, cflkit.cli; cflkit.cli.main(['list']); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
