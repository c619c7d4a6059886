"""A suite's statistics from its batch directory: the runs' results joined with their dataset,
the K settings separated, one ranking per setting, the oracle left out."""
import json

import pandas as pd
import pytest

from cflkit.study.suite import suite_results, suite_statistics


def fake_batch(tmp_path):
    """Two finished runs (digits, breast_cancer) of notebook 08's results table: 'good' beats
    'bad' on every block with K unknown, the reverse with K given; one unfinished run."""
    for dataset in ("digits", "breast_cancer"):
        run = tmp_path / f"{dataset}-0"
        (run / "out").mkdir(parents=True)
        (run / "params.json").write_text(json.dumps({"dataset": dataset}))
        rows = []
        for scenario in ("label_swap", "shards"):
            for seed in (0, 1, 2):
                for method, clusters, ari in (("fedavg", None, 0.0), ("oracle", None, 1.0), ("good", "auto", 0.9),
                                              ("bad", "auto", 0.3), ("good", "groups", 0.2), ("bad", "groups", 0.8)):
                    rows.append({"cell": f"{method}-{scenario}-{seed}-{clusters}", "method": method,
                                 "scenario": scenario, "seed": seed, "clusters": clusters, "ari": ari + 0.01 * seed,
                                 "accuracy_mean": 0.5 + ari / 2, "error": None})
        pd.DataFrame(rows).to_csv(run / "out" / "results.csv", index=False)
    (tmp_path / "unfinished-0").mkdir()
    (tmp_path / "unfinished-0" / "params.json").write_text("{}")
    return tmp_path


def test_one_ranking_per_k_setting_without_the_oracle(tmp_path):
    results = suite_results(fake_batch(tmp_path))
    assert set(results["dataset"]) == {"digits", "breast_cancer"} and set(results["k"]) == {"unknown", "given"}
    report = suite_statistics(results, tmp_path / "stats")
    for k, first in (("unknown", "good"), ("given", "bad")):
        ranking = report[k]["ari"]["ranking"]
        assert [r["method"] for r in ranking] == [first, "good" if first == "bad" else "bad", "fedavg"]
        assert ranking[0]["mean_rank"] == 1.0 and ranking[-1]["mean_rank"] == 3.0
        assert report[k]["ari"]["blocks"] == 12 and report[k]["ari"]["methods"] == 3
        assert report[k]["ari"]["p"] < 0.001
        assert (tmp_path / "stats" / f"cd_{k}.pdf").read_bytes()[:5] == b"%PDF-"
        table = pd.read_csv(tmp_path / "stats" / f"summary_{k}_ari.csv").set_index("method")
        assert table.loc[first, "wins"] == 12 and "oracle" not in table.index
    assert json.loads((tmp_path / "stats" / "statistics.json").read_text()).keys() == {"unknown", "given"}


def test_an_empty_or_failed_suite_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no finished run with out/results.csv"):
        suite_results(tmp_path)
    batch = fake_batch(tmp_path)
    table = pd.read_csv(batch / "digits-0" / "out" / "results.csv")
    table["error"] = table["error"].astype(object)
    table.loc[0, "error"] = "RuntimeError: boom"
    table.to_csv(batch / "digits-0" / "out" / "results.csv", index=False)
    with pytest.raises(ValueError, match="1 cells failed, e.g. RuntimeError: boom"):
        suite_results(batch)


def test_difficulty_curves_and_breaking_points_follow_the_knob_direction():
    from cflkit.study.suite import breaking_points, difficulty_table

    rows = []
    for angle, robust, fragile in ((90, 1.0, 0.9), (45, 0.9, 0.6), (20, 0.8, 0.3), (5, 0.2, 0.0)):
        for seed in (0, 1, 2):
            for method, ari in (("robust", robust), ("fragile", fragile)):
                rows.append({"dataset": "digits", "scenario": "rotation", "method": method, "seed": seed,
                             "rotation_angle": angle, "ari": ari})
    rows.append({"dataset": "digits", "scenario": "shards", "method": "robust", "seed": 0, "rotation_angle": None,
                 "ari": 0.0})  # a cell of another entry: no knob, left out
    curves = difficulty_table(pd.DataFrame(rows), "rotation_angle")
    assert len(curves) == 8 and (curves["n"] == 3).all() and (curves["low"] <= curves["mean"]).all()
    points = breaking_points(curves, "rotation_angle").set_index("method")
    # smaller angles are harder: the easiest setting is 90 degrees, the first below 0.5 is the break
    assert points.loc["robust", "easiest"] == 90 and points.loc["robust", "hardest"] == 5
    assert points.loc["robust", "breaks_at"] == 5 and points.loc["fragile", "breaks_at"] == 20
    with pytest.raises(ValueError, match="unknown difficulty knob 'angle'"):
        difficulty_table(pd.DataFrame(rows), "angle")


def test_a_suite_with_a_knob_ranks_per_knob_block_and_writes_its_curves(tmp_path):
    run = tmp_path / "digits-0"
    (run / "out").mkdir(parents=True)
    (run / "params.json").write_text(json.dumps({"dataset": "digits", "groups": 4, "seeds": [0]}))
    rows = []
    for alpha in (0.1, 10.0):
        for seed in (0, 1):
            for method, ari in (("fedavg", 0.0), ("good", 1.0 if alpha < 1 else 0.4), ("bad", 0.5)):
                rows.append({"cell": f"{method}-{alpha}-{seed}", "method": method, "scenario": "dirichlet",
                             "seed": seed, "clusters": "auto", "alpha": alpha, "ari": ari, "accuracy_mean": 0.5,
                             "accuracy_group_worst": 0.4, "accuracy_group_gap": 0.2, "error": None})
    pd.DataFrame(rows).to_csv(run / "out" / "results.csv", index=False)
    results = suite_results(tmp_path)
    report = suite_statistics(results, tmp_path / "stats")
    assert report["unknown"]["ari"]["blocks"] == 4  # seed x alpha, not seed alone
    assert {r["method"]: r["breaks_at"] for r in report["unknown"]["breaking_points"]["alpha"]}["good"] == 10.0
    assert (tmp_path / "stats" / "difficulty_unknown_alpha.csv").exists()
    assert (tmp_path / "stats" / "difficulty_unknown_alpha.pdf").read_bytes()[:5] == b"%PDF-"
    fair = pd.read_csv(tmp_path / "stats" / "fairness_unknown.csv").set_index("method")
    assert fair.loc["good", "accuracy_group_gap"] == pytest.approx(0.2)


def test_drift_table_measures_the_drop_and_the_recovery():
    from cflkit.study.suite import drift_table

    table = pd.DataFrame({"method": ["a", "a", "b"], "ari_before_drift": [1.0, 0.8, 1.0],
                          "ari_after_drift": [0.5, 0.6, 0.2], "rounds_to_recover": [2.0, None, 4.0],
                          "ari": [1.0, 0.6, 0.9]})
    out = drift_table(table).set_index("method")
    assert out.loc["a", "drop"] == pytest.approx(0.35) and out.loc["a", "recovered"] == pytest.approx(0.5)
    assert out.loc["a", "rounds_to_recover"] == 2.0 and out.loc["b", "cells"] == 1


def test_real_cells_carry_the_knob_drift_and_fairness_columns(tmp_path):
    from cflkit import Config
    from cflkit.study.compare import compare

    base = Config(dataset="digits", scenario="rotation", clients=8, groups=2, rounds=3, local_epochs=1, drift_round=2)
    results = compare({"method": ["oracle"], "rotation_angle": [90.0, 10.0], "seed": [0]}, tmp_path / "c",
                      workers=1, base=base)
    assert sorted(results["rotation_angle"]) == [10.0, 90.0] and (results["error"] == "").all()
    assert results["ari_before_drift"].notna().all() and results["accuracy_group_gap"].notna().all()
