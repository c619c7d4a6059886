"""Fairness beside accuracy: per planted group scores, the worst group and the best-worst gap."""
import json

import numpy as np
import pandas as pd
import pytest

from cflkit import Config
from cflkit.core.metrics import group_summary


def test_group_summary_known_answer():
    last = pd.DataFrame({"group": [0, 0, 1, 1, 2], "accuracy": [0.9, 0.7, 0.5, np.nan, 0.6],
                         "rmse": [1.0, 3.0, 0.5, 0.5, np.nan]})
    acc = group_summary(last)
    assert acc["accuracy_per_group"] == pytest.approx({"0": 0.8, "1": 0.5, "2": 0.6})
    assert acc["accuracy_group_best"] == pytest.approx(0.8) and acc["accuracy_group_worst"] == pytest.approx(0.5)
    assert acc["accuracy_group_gap"] == pytest.approx(0.3)
    err = group_summary(last, "rmse", lower_is_better=True)  # group 2 has no score: left out
    assert set(err["rmse_per_group"]) == {"0", "1"}
    assert err["rmse_group_best"] == pytest.approx(0.5) and err["rmse_group_worst"] == pytest.approx(2.0)
    assert group_summary(last.assign(accuracy=np.nan)) == {}


def test_one_group_has_no_gap_and_the_mean_of_groups_is_bounded_by_them():
    last = pd.DataFrame({"group": [3, 3, 3], "accuracy": [0.2, 0.4, 0.9]})
    out = group_summary(last)
    assert out["accuracy_group_gap"] == 0 and out["accuracy_group_worst"] == pytest.approx(0.5)


def test_a_run_reports_every_planted_group_and_compare_tabulates_the_gap(tmp_path):
    from cflkit.study.compare import compare

    base = Config(dataset="digits", scenario="label_swap", clients=8, groups=2, rounds=2, local_epochs=1)
    results = compare({"method": ["fedavg", "oracle"], "seed": [0]}, tmp_path / "cmp", workers=1, base=base)
    for row in results.itertuples():
        cell = tmp_path / "cmp" / "cells" / row.cell
        summary = json.loads((cell / "summary.json").read_text())
        history = pd.read_csv(cell / "history.csv")
        last = history[history["round"] == history["round"].max()]
        per = summary["accuracy_per_group"]
        assert set(per) == {str(g) for g in last["group"].unique()} and len(per) == 2
        for g, value in per.items():
            assert value == pytest.approx(last.loc[last["group"] == int(g), "accuracy"].mean())
        assert row.accuracy_group_worst == pytest.approx(min(per.values()))
        assert row.accuracy_group_gap == pytest.approx(max(per.values()) - min(per.values()))
        assert row.accuracy_group_worst <= row.accuracy_mean + 1e-12
