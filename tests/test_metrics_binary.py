"""AUROC, AUPRC and balanced accuracy of binary classification tasks: per client (trainer,
history) and in the run summary, against scikit-learn; other tasks and other metrics
unchanged."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from cflkit.core.metrics import BINARY_SUMMARY, binary_summary
from cflkit.core.trainer import BINARY_METRICS, METRICS, binary_metrics, metric_names


def _logits(score):
    """Two-class logits whose log-odds of class 1 is ``score``."""
    score = np.asarray(score, dtype=float)
    return np.column_stack([np.zeros_like(score), score])


# -- per client, on hand-made examples ------------------------------------------------------------
def test_perfect_ranking_gives_one_and_reversed_gives_zero():
    y = np.array([0, 0, 0, 1, 1])
    perfect = binary_metrics(_logits([-3, -2, -1, 1, 2]), y)
    assert perfect == {"auroc": 1.0, "auprc": 1.0, "balanced_accuracy": 1.0}
    reversed_ = binary_metrics(_logits([3, 2, 1, -1, -2]), y)
    assert reversed_["auroc"] == 0.0 and reversed_["balanced_accuracy"] == 0.0
    assert reversed_["auprc"] == pytest.approx(average_precision_score(y, [-3, -2, -1, 1, 2][::-1]))


def test_a_known_small_answer():
    # 2 positives, 2 negatives; the positives rank 1st and 3rd: 3 of the 4 pairs ordered, AUROC 3/4;
    # precision at the positives 1/1 and 2/3: AP = (1 + 2/3) / 2; predictions (score > 0) [1, 1, 0, 0]
    y = np.array([1, 0, 1, 0])
    m = binary_metrics(_logits([4.0, 3.0, -1.0, -2.0]), y)
    assert m["auroc"] == pytest.approx(0.75)
    assert m["auprc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["balanced_accuracy"] == pytest.approx(0.5)  # recall 1/2 of each class


def test_a_client_with_one_class_has_no_auroc_nor_auprc():
    for y in (np.zeros(4, dtype=int), np.ones(4, dtype=int)):
        m = binary_metrics(_logits([0.5, -1.0, 2.0, -0.2]), y)
        assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "y_pred contains classes not in y_true"
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, [1, 0, 1, 0]))


def test_random_scores_with_ties_match_scikit_learn():
    rng = np.random.default_rng(0)
    for n in (2, 7, 40, 301):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        out = np.round(rng.normal(size=(n, 2)) * 2) / 2  # coarse logits (exact halves): many ties
        m = binary_metrics(out, y)
        score = out[:, 1] - out[:, 0]
        assert m["auroc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert m["auprc"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, out.argmax(1)), abs=1e-12)
    # without ties, the ranking is that of the softmax probability of class 1 (with ties, the
    # probability's rounding could break them: the logit difference keeps them exact)
    out = rng.normal(size=(50, 2))
    y = rng.integers(0, 2, 50)
    p1 = np.exp(out[:, 1]) / np.exp(out).sum(1)
    assert binary_metrics(out, y)["auroc"] == pytest.approx(roc_auc_score(y, p1), abs=1e-12)


def test_metric_names_only_binary_classification_gains_the_new_ones():
    assert metric_names("classification", 2) == ("loss", "accuracy", *BINARY_METRICS)
    assert metric_names("classification", 10) == METRICS["classification"] == ("loss", "accuracy")
    assert metric_names("regression", 0) == METRICS["regression"]


# -- the summary ----------------------------------------------------------------------------------
def test_summary_is_nan_aware_and_weighted_by_test_size():
    last = pd.DataFrame({"auroc": [1.0, 0.5, np.nan, 0.0], "auprc": [1.0, 0.5, np.nan, 0.25],
                         "balanced_accuracy": [1.0, 0.5, 0.75, 0.0], "test_size": [10, 30, 5, 60]})
    s = binary_summary(last)
    assert list(s) == list(BINARY_SUMMARY)
    assert s["auroc_mean"] == pytest.approx(0.5) and s["auroc_clients"] == 3
    assert s["auroc_weighted"] == pytest.approx((10 * 1 + 30 * 0.5 + 60 * 0.0) / 100)
    assert s["auroc_worst10"] == 0.0
    assert s["auprc_mean"] == pytest.approx(1.75 / 3)
    assert s["balanced_accuracy_mean"] == pytest.approx(2.25 / 4)
    assert s["balanced_accuracy_weighted"] == pytest.approx((10 + 15 + 3.75) / 105)
    none = binary_summary(last.assign(auroc=np.nan, auprc=np.nan))
    assert math.isnan(none["auroc_mean"]) and math.isnan(none["auroc_weighted"]) and none["auroc_clients"] == 0


# -- runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binary_run():
    from cflkit import Config, run

    return run(Config(dataset="breast_cancer", scenario="iid", clients=6, groups=1, method="local", rounds=2,
                      local_epochs=1, model="logreg"))


def test_binary_runs_record_the_metrics_per_client_and_round(binary_run):
    h = binary_run.history
    assert list(h.columns[4:9]) == ["loss", "accuracy", "auroc", "auprc", "balanced_accuracy"]
    assert h[["auroc", "auprc", "balanced_accuracy"]].notna().all().all()
    last = h[h["round"] == 2]
    s = binary_run.summary
    assert s["auroc_mean"] == pytest.approx(last["auroc"].mean()) and 0.5 < s["auroc_mean"] <= 1
    assert s["auprc_weighted"] == pytest.approx(np.average(last["auprc"], weights=last["test_size"]))
    assert set(BINARY_SUMMARY) <= set(s)


def test_the_trainers_auroc_is_scikit_learns_on_its_own_predictions(binary_run):
    from cflkit.core.experiment import build_context

    fed = binary_run.federation
    ctx = build_context(binary_run.config, fed)
    state = binary_run.state
    m = ctx.trainer.metrics(state.client_models(), fed.test_index)
    assert set(m) == set(ctx.trainer.metric_names)  # what a Flower node sends, in sorted order
    outs = ctx.trainer.predict(state.client_models(), fed.test_index)
    for c, (out, rows) in enumerate(zip(outs, fed.test_index)):
        y = fed.y[rows]
        assert m["auroc"][c] == pytest.approx(roc_auc_score(y, out[:, 1] - out[:, 0]))
        assert m["auprc"][c] == pytest.approx(average_precision_score(y, out[:, 1] - out[:, 0]))
        assert m["balanced_accuracy"][c] == pytest.approx(balanced_accuracy_score(y, out.argmax(1)))
    last = binary_run.history[binary_run.history["round"] == 2].sort_values("client")
    np.testing.assert_allclose(last["auroc"].to_numpy(), m["auroc"])


def test_the_other_metrics_of_a_binary_run_do_not_change(binary_run, monkeypatch):
    import cflkit.core.trainer as trainer
    from cflkit import run

    monkeypatch.setattr(trainer, "metric_names", lambda task, n_classes=0: trainer.METRICS[task])  # as before
    before = run(binary_run.config)
    assert "auroc" not in before.history and "auroc_mean" not in before.summary
    common = list(before.history.columns.drop("seconds"))
    pd.testing.assert_frame_equal(binary_run.history[common], before.history[common], check_exact=True)
    for k, v in before.summary.items():
        if k != "wall_seconds":
            assert binary_run.summary[k] == v or (isinstance(v, float) and math.isnan(v)), k


def test_other_tasks_gain_no_columns():
    from cflkit import Config, run

    result = run(Config(dataset="digits", scenario="iid", clients=3, groups=1, method="fedavg", rounds=1,
                        local_epochs=1, model="logreg"))
    assert not {"auroc", "auprc", "balanced_accuracy"} & set(result.history.columns)
    assert not set(BINARY_SUMMARY) & set(result.summary)


def test_a_round_that_is_not_evaluated_has_the_columns_as_nan(binary_run):
    from cflkit.core.experiment import build_context
    from cflkit.core.loop import Hooks, run_rounds
    from cflkit.methods import make_method

    class EveryOther(Hooks):
        def evaluates(self, r):
            return r != 1

    config = binary_run.config
    ctx = build_context(config, binary_run.federation)
    rows = pd.DataFrame(run_rounds(make_method(config), ctx, 2, hooks=EveryOther()).rows)
    assert rows.loc[rows["round"] == 1, ["auroc", "auprc", "balanced_accuracy"]].isna().all().all()
    assert rows.loc[rows["round"] == 2, "auroc"].notna().all()


def test_a_one_class_client_is_nan_in_the_history_and_left_out_of_the_summary():
    from cflkit import Config, run
    from cflkit.core.federation import Federation

    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    y[80:] = 1  # client 1's test rows: one class only
    fed = Federation(x, y, [np.arange(0, 40), np.arange(60, 80)], [np.arange(40, 60), np.arange(80, 100)],
                     np.zeros(2), 2, "classification", "tabular", "toy", "iid", ("one",))
    result = run(Config(dataset="breast_cancer", scenario="iid", clients=2, groups=1, method="local", rounds=1,
                        local_epochs=1, model="logreg"), federation=fed)
    last = result.history[result.history["round"] == 1].sort_values("client")
    assert math.isfinite(last["auroc"].iloc[0]) and math.isnan(last["auroc"].iloc[1])
    assert math.isnan(last["auprc"].iloc[1]) and math.isfinite(last["balanced_accuracy"].iloc[1])
    assert result.summary["auroc_clients"] == 1 and result.summary["auroc_mean"] == last["auroc"].iloc[0]


# -- the benchmark's tables -----------------------------------------------------------------------
def test_compare_lists_the_binary_columns_and_puts_auroc_in_the_headline(tmp_path):
    from cflkit import Config
    from cflkit.study.compare import SUMMARY_COLUMNS, compare, headline

    assert set(BINARY_SUMMARY) - {"auroc_clients"} <= set(SUMMARY_COLUMNS)
    results = compare({"method": ["fedavg"], "seed": [0]}, tmp_path / "c", workers=1, progress=False,
                      base=Config(dataset="breast_cancer", scenario="iid", clients=4, groups=1, rounds=1,
                                  local_epochs=1, model="logreg"))
    assert results["auroc_mean"].notna().all()
    assert headline(results) == ("ari", "accuracy_mean", "auroc_mean", "auprc_mean")
    assert (tmp_path / "c" / "table.md").read_text().startswith(
        "| method | scenario | ari | accuracy_mean | auroc_mean | auprc_mean |")
    assert headline(results.assign(auroc_mean=np.nan)) == ("ari", "accuracy_mean")
