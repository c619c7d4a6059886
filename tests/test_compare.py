"""The clustering benchmark: a grid of cells → run directories → one tidy table, resumable,
parallel with the same numbers, and failures recorded rather than fatal."""
import json
import logging
import re
import shutil

import pandas as pd
import pytest

from cflkit import Config
from cflkit.cli import main
from cflkit.core import experiment
from cflkit.core.outputs import MANIFEST
from cflkit.study.compare import ROUND_COLUMNS, SUMMARY_COLUMNS, compare, expand_grid, load_comparison, summarize_grid

BASE = Config(clients=8, groups=4, rounds=2, local_epochs=1)
# fedavg ignores the representation, so it gets one cell per seed, flhc one per representation and seed
GRID = {"method": ["fedavg", "random", "flhc"], "representation": ["update", "weights"], "seed": [0, 1]}
N_CELLS = 2 + 2 + 2 * 2


@pytest.fixture
def count_runs(monkeypatch):
    """Counts the runs made in this process."""
    calls = []
    real = experiment.run

    def counting(config, *args, **kwargs):
        calls.append(config)
        return real(config, *args, **kwargs)

    monkeypatch.setattr(experiment, "run", counting)
    return calls


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return out, compare(GRID, out, workers=1, progress=False, base=BASE)


def test_one_row_per_distinct_cell_with_the_documented_columns(grid_run):
    out, results = grid_run
    assert len(results) == N_CELLS and results["cell"].is_unique
    assert list(results.columns[:7]) == ["cell", "method", "scenario", "seed", "representation", "clusterer",
                                         "trigger"]
    assert set(SUMMARY_COLUMNS) | {"error"} <= set(results.columns)
    assert (results["error"] == "").all()
    assert results["ari"].between(-1, 1).all() and results["accuracy_mean"].between(0, 1).all()
    assert (results["rounds"] == 2).all() and (results["bytes_total"] > 0).all()
    # duplicates skipped: fedavg and random once per seed, with no parts; flhc per representation
    counts = results.groupby("method").size().to_dict()
    assert counts == {"fedavg": 2, "random": 2, "flhc": 4}
    assert (results.loc[results["method"] != "flhc", ["representation", "clusterer", "trigger"]] == "").all().all()
    flhc = results[results["method"] == "flhc"]
    assert sorted(flhc["representation"]) == ["update", "update", "weights", "weights"]
    assert set(flhc["clusterer"]) == {"agglomerative"}, "the preset's part is shown where the grid leaves it"
    # every cell is a normal run directory holding exactly the cell's config
    for row in results.itertuples():
        config = json.loads((out / "cells" / row.cell / "config.json").read_text())
        assert (config["method"], config["seed"], config["clients"]) == (row.method, row.seed, 8)
        assert config["params"].get("representation", "") == ("" if row.method != "flhc" else row.representation)
        assert row.cell.startswith(f"{row.method}-rotation-s{row.seed}")


def test_tables_are_written_and_read_back(grid_run):
    out, results = grid_run
    assert {"results.csv", "ari_per_round.csv", "table.md", "grid.json", "cells"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST], "no temporary files left behind"
    saved, per_round = load_comparison(out)
    pd.testing.assert_frame_equal(saved[["cell", "method", "representation", "error"]],
                                  results[["cell", "method", "representation", "error"]])
    assert saved["ari"].tolist() == pytest.approx(results["ari"].tolist())
    table = (out / "table.md").read_text()
    assert table.startswith("| method | scenario | representation |") and "| flhc | rotation | weights |" in table


def test_per_round_table_has_every_round_of_every_cell(grid_run):
    out, results = grid_run
    _, per_round = load_comparison(out)
    assert set(ROUND_COLUMNS) <= set(per_round.columns)
    assert len(per_round) == N_CELLS * (BASE.rounds + 1)
    for cell, rows in per_round.groupby("cell"):
        assert sorted(rows["round"]) == [0, 1, 2]
    last = per_round[per_round["round"] == BASE.rounds].set_index("cell")
    ari = results.set_index("cell")["ari"]
    assert last.loc[ari.index, "ari"].tolist() == pytest.approx(ari.tolist()), "final round = summary ARI"
    assert (per_round[per_round["method"] == "fedavg"]["n_clusters"] == 1).all()


def test_resume_runs_nothing_again_and_gives_the_same_table(grid_run, count_runs, tmp_path):
    out, results = grid_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    mtimes = {p: p.stat().st_mtime_ns for p in (copy / "cells").rglob("history.csv")}
    again = compare(GRID, copy, workers=1, progress=False, base=BASE)
    assert count_runs == []
    pd.testing.assert_frame_equal(again, results)
    assert {p: p.stat().st_mtime_ns for p in (copy / "cells").rglob("history.csv")} == mtimes
    # a lost cell and a cell whose directory holds another config are run again, nothing else
    first, second = results["cell"].iloc[0], results["cell"].iloc[1]
    shutil.rmtree(copy / "cells" / first)
    config = json.loads((copy / "cells" / second / "config.json").read_text())
    (copy / "cells" / second / "config.json").write_text(json.dumps({**config, "learning_rate": 0.5}))
    again = compare(GRID, copy, workers=1, progress=False, base=BASE)
    cells = {c.id: c.config for c in expand_grid(GRID, BASE)}
    assert count_runs == [cells[first], cells[second]]
    pd.testing.assert_frame_equal(again.drop(columns="wall_seconds"), results.drop(columns="wall_seconds"))


def test_a_smaller_grid_reuses_the_runs_filed_under_other_names(grid_run, count_runs, tmp_path):
    out, results = grid_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    sub = compare({"method": ["flhc"], "representation": ["weights"], "seed": [0, 1]}, copy, workers=1,
                  progress=False, base=BASE)
    assert count_runs == [] and len(sub) == 2
    assert sub["ari"].tolist() == results[results["representation"] == "weights"]["ari"].tolist()


def test_parallel_workers_give_the_same_numbers(grid_run, count_runs, tmp_path):
    out, results = grid_run
    grid = {"method": ["fedavg", "flhc"], "representation": ["weights"], "seed": [0, 1]}
    parallel = compare(grid, tmp_path / "p", workers=2, progress=False, base=BASE)
    assert count_runs == [], "the cells ran in the worker processes"
    assert (parallel["error"] == "").all() and len(parallel) == 4
    serial = results[results["method"].isin(["fedavg", "flhc"]) & results["representation"].isin(["", "weights"])]
    key = lambda cell: cell.rsplit("-", 1)[1]  # noqa: E731 — the hash of the full config
    serial = serial.set_index(serial["cell"].map(key)).sort_index()
    parallel = parallel.set_index(parallel["cell"].map(key)).sort_index()
    cols = ["accuracy_mean", "accuracy_worst10", "loss_mean", "ari", "ami", "n_clusters", "stable_round",
            "bytes_total"]
    pd.testing.assert_frame_equal(parallel[cols], serial[cols])
    for h in parallel.index:
        a = pd.read_csv(tmp_path / "p" / "cells" / parallel.loc[h, "cell"] / "history.csv").drop(columns="seconds")
        b = pd.read_csv(out / "cells" / serial.loc[h, "cell"] / "history.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)


def test_a_failing_cell_is_recorded_and_the_others_complete(tmp_path, caplog):
    # random cannot make 12 clusters of 8 clients; pacfl clusters before training, so it refuses
    # a representation that needs training: both are failed cells, not usage errors
    with caplog.at_level(logging.WARNING, logger="cflkit"):
        results = compare({"method": ["random", "oracle", "pacfl"], "clusters": [12], "representation": ["update"]},
                          tmp_path, workers=1, progress=False, base=BASE.replace(rounds=1))
    by_method = results.set_index("method")
    assert by_method.loc["random", "error"] == "ValueError: clusters=12 exceeds the 8 clients"
    assert by_method.loc["pacfl", "error"].startswith("ValueError: representation 'update' needs local training")
    assert by_method.loc["pacfl", "representation"] == "update" and by_method.loc["pacfl", "trigger"] == "init"
    assert pd.isna(by_method.loc["random", "ari"]) and pd.isna(by_method.loc["random", "n_clusters"])
    assert by_method.loc["oracle", "error"] == "" and by_method.loc["oracle", "ari"] == 1.0
    assert "2 of 3 cells failed" in caplog.text and "clusters=12 exceeds" in caplog.text
    assert [p.name.split("-")[0] for p in (tmp_path / "cells").iterdir()] == ["oracle"]
    saved, per_round = load_comparison(tmp_path)
    assert saved.set_index("method").loc["random", "error"].startswith("ValueError")
    assert set(per_round["method"]) == {"oracle"} and len(per_round) == 2
    summary = summarize_grid(results).set_index("method")
    assert summary.loc["random", ["runs", "failed"]].tolist() == [0, 1]
    assert summary.loc["oracle", ["ari", "runs", "failed"]].tolist() == ["1.00", 1, 0]


def test_summarize_grid_gives_mean_and_std_over_seeds():
    results = pd.DataFrame({"cell": list("abcd"), "method": ["fedavg"] * 2 + ["flhc"] * 2,
                            "scenario": ["rotation"] * 4, "seed": [0, 1, 0, 1], "ari": [0.0, 0.0, 0.5, 1.0],
                            "accuracy_mean": [0.2, 0.4, 0.8, 0.9], "error": ""})
    summary = summarize_grid(results)
    assert summary.to_dict("records") == [
        {"method": "fedavg", "scenario": "rotation", "ari": "0.00 ± 0.00", "accuracy_mean": "0.30 ± 0.14",
         "runs": 2, "failed": 0},
        {"method": "flhc", "scenario": "rotation", "ari": "0.75 ± 0.35", "accuracy_mean": "0.85 ± 0.07",
         "runs": 2, "failed": 0}]


@pytest.mark.parametrize("grid, message", [
    ({"method": ["fedavgg"]}, "unknown method 'fedavgg'; choose one of: fedavg, fedprox"),
    ({"method": ["fedavg"], "scenario": ["rotaton"]}, "unknown scenario 'rotaton'; choose one of: iid"),
    ({"method": ["flhc"], "colour": ["red"]},
     "unknown config field or method parameter 'colour' in the grid; choose one of: dataset"),
    ({"method": ["fedavg", "oracle"], "restarts": [5]},
     "no method of the grid (fedavg, oracle) takes parameter 'restarts'; it is a parameter of: ifca"),
    ({"method": ["fedavg", "ifca"], "restarts": [0]}, "parameter 'restarts' must be >= 1, got 0"),
    ({"method": []}, "the grid gives no values for 'method'"),
    ({"method": ["fedavg", "flhc"], "representation": ["weightz"]},
     "unknown representation 'weightz'; choose one of: weights"),
    ({"method": ["flhc"], "seed": ["one"]}, "option 'seed' expects an integer, got 'one'"),
])
def test_bad_grid_fails_before_anything_is_written(grid, message, tmp_path):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        compare(grid, tmp_path / "out", base=BASE)
    assert not (tmp_path / "out").exists()


def test_expand_grid_prunes_parts_of_methods_that_do_not_use_them():
    cells = expand_grid({"method": ["oracle", "kmeans"], "clusterer": ["kmeans", "agglomerative"],
                         "trigger": ["once", "every"]}, BASE)
    assert [c.config.method for c in cells] == ["oracle"] + ["kmeans"] * 4
    assert cells[0].config.params.names() == () and cells[0].id.startswith("oracle-rotation-s0-")
    assert cells[0].labels["clusterer"] == "" and cells[1].labels["clusterer"] == "kmeans"
    assert "clusterer_agglomerative-trigger_every" in cells[-1].id
    assert expand_grid({"method": ["kmeans"]}, BASE)[0].id == expand_grid({"method": "kmeans"}, BASE)[0].id


@pytest.mark.parametrize("args, message", [
    (["--methods", "fedavg,flhcc"], "unknown method 'flhcc'; choose one of: fedavg"),
    (["--methods", "fedavg", "--scenarios", "rotation,swap"], "unknown scenario 'swap'; choose one of: iid"),
    (["--methods", "flhc", "--grid", "colour=red,blue"],
     "unknown config field or method parameter 'colour' in --grid; choose one of:"),
    (["--methods", "flhc", "--grid", "representation="], "--grid representation gives no values for 'representation'"),
    (["--methods", "flhc", "--grid", "clusterer=kmeans,kmedoids"],
     "unknown clusterer 'kmedoids'; choose one of: kmeans"),
    (["--methods", "flhc", "--seeds", ""], "--seeds gives no values for 'seed'"),
    (["--methods", "flhc", "--set", "rounds=2", "--grid", "rounds=1,2"], "field 'rounds' is both fixed by --set"),
    (["--methods", "flhc", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
    (["--methods", "flhc", "--workers", "two"], "argument --workers: expects an integer >= 1, got 'two'"),
])
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert _cli(["compare", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cflkit: error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def _cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own usage errors
        return e.code


def test_cli_compare_prints_the_summary_and_writes_the_tables(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--methods", "oracle,fedavg", "--seeds", "0", "--set", "rounds=1", "--set", "clients=8",
                 "--set", "local_epochs=1", "--out", str(out), "--workers", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["method", "scenario", "ari", "accuracy_mean", "runs", "failed"]
    assert "oracle  rotation  1.00" in printed and "2 of 2 cells done" in printed
    assert (out / "table.md").read_text().startswith("| method | scenario | ari |")
    assert len(pd.read_csv(out / "results.csv")) == 2
