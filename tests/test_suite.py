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
