import json

import pandas as pd
import pytest

from cflkit import Config, load_run, run, save_run
from cflkit.core.results import Result


def _result(n=2):
    h = pd.DataFrame({"round": [0, 1], "client": [0, 0], "loss": [1.0, 0.5]})
    return Result(Config(rounds=n), h, {"accuracy_mean": 0.5, "rounds": n, "ari": float("nan")})


def test_save_and_load_round_trip(tmp_path):
    save_run(_result(), tmp_path / "r")
    back = load_run(tmp_path / "r")
    assert back.config == Config(rounds=2)
    assert back.summary["ari"] is None  # NaN is written as JSON null, never as invalid JSON
    assert back.history["loss"].tolist() == [1.0, 0.5]


def test_rewriting_a_run_replaces_it_and_leaves_no_temporary_files(tmp_path):
    save_run(_result(2), tmp_path / "r")
    save_run(_result(5), tmp_path / "r")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["rounds"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_a_failed_write_leaves_the_previous_run_intact(tmp_path, monkeypatch):
    save_run(_result(2), tmp_path / "r")
    bad = _result(7)
    monkeypatch.setattr(bad.history, "to_csv", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_run(bad, tmp_path / "r")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["rounds"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_refuses_to_overwrite_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="a directory that cflkit did not write and it is not empty"):
        save_run(_result(), tmp_path / "notes")


def test_load_run_names_missing_files(tmp_path):
    with pytest.raises(ValueError, match="missing config.json, history.csv, summary.json"):
        load_run(tmp_path)


def test_run_with_out_writes_the_directory(tmp_path):
    config = Config(scenario="iid", clients=4, rounds=1, local_epochs=1)
    result = run(config, out=tmp_path / "iid")
    back = load_run(tmp_path / "iid")
    assert back.summary["accuracy_mean"] == pytest.approx(result.summary["accuracy_mean"])
    # the final models and assignment come back bit-exact, so a run can be explained later
    assert (back.state.assignment == result.state.assignment).all()
    assert len(back.state.models) == len(result.state.models)
    for saved, kept in zip(back.state.models, result.state.models):
        assert saved.dtype == kept.dtype and (saved == kept).all()
