"""Accuracy and clustering-quality metrics of a run."""
from __future__ import annotations

import numpy as np

CLUSTERING_METRICS = ("ari", "ami", "homogeneity", "completeness", "v_measure")


def worst_fraction_mean(values, fraction: float = 0.10) -> float:
    """Mean of the lowest ``fraction`` of ``values`` (at least one value)."""
    v = np.sort(np.asarray(values, dtype=float)[~np.isnan(values)])
    if v.size == 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * v.size)))
    return float(v[:k].mean())


def accuracy_summary(accuracy, test_sizes) -> dict:
    """Mean over clients, test-size-weighted mean (= pooled test accuracy), worst 10 %.
    All NaN (regression tasks) gives NaN keys, written as JSON null."""
    acc = np.asarray(accuracy, dtype=float)
    w = np.asarray(test_sizes, dtype=float)
    if np.all(np.isnan(acc)):
        return {"accuracy_mean": float("nan"), "accuracy_weighted": float("nan"), "accuracy_worst10": float("nan")}
    return {
        "accuracy_mean": float(np.mean(acc)),
        "accuracy_weighted": float(np.sum(acc * w) / np.sum(w)),
        "accuracy_worst10": worst_fraction_mean(acc, 0.10),
    }


def group_summary(last, name: str = "accuracy", lower_is_better: bool = False) -> dict:
    """Fairness across the planted groups: ``<name>_per_group`` (the mean of the clients'
    final ``name`` in each group), the best and the worst group (``lower_is_better`` for an
    error such as RMSE) and their gap, ``|best - worst|``. A clustering that serves one group
    well and sacrifices another shows a large gap behind a fine mean. Empty when no client
    has the score."""
    v, g = last[name].to_numpy(dtype=float), last["group"].to_numpy()
    per = {}
    for group in sorted(set(g.tolist()), key=str):
        values = v[g == group]
        if np.isfinite(values).any():
            per[str(group)] = float(np.nanmean(values))
    if not per:
        return {}
    scores = list(per.values())
    best, worst = (min(scores), max(scores)) if lower_is_better else (max(scores), min(scores))
    return {f"{name}_per_group": per, f"{name}_group_best": best, f"{name}_group_worst": worst,
            f"{name}_group_gap": abs(best - worst)}


def regression_summary(last) -> dict:
    """Regression errors of the final round: RMSE mean / test-size-weighted (= pooled RMSE)
    / worst 10 % of clients (the highest), MAE and R² means."""
    rmse = last["rmse"].to_numpy(dtype=float)
    w = last["test_size"].to_numpy(dtype=float)
    pooled_mse = float(np.sum(rmse ** 2 * w) / np.sum(w))
    return {
        "rmse_mean": float(np.mean(rmse)),
        "rmse_weighted": float(np.sqrt(pooled_mse)),
        "rmse_worst10": -worst_fraction_mean(-rmse, 0.10),
        "mae_mean": float(last["mae"].mean()),
        "r2_mean": float(last["r2"].mean()),
    }


def nan_weighted_mean(values, weights) -> float:
    """Mean of ``values`` weighted by ``weights`` over the finite values only (NaN if none)."""
    v, w = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    ok = np.isfinite(v)
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() and np.sum(w[ok]) > 0 else float("nan")


def score_summary(last, name: str, worst: bool = True) -> dict:
    """A higher-is-better per-client score of the final round over clients, NaN-aware (a
    client without the score is left out): ``<name>_mean``, ``<name>_weighted`` (test-size
    weights over clients, not the score of the pooled test rows) and, with ``worst``,
    ``<name>_worst10`` (the lowest 10 %) and ``<name>_clients`` (how many entered)."""
    v = last[name].to_numpy(dtype=float)
    out = {f"{name}_mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
           f"{name}_weighted": nan_weighted_mean(v, last["test_size"].to_numpy(dtype=float))}
    if worst:
        out[f"{name}_worst10"] = worst_fraction_mean(v, 0.10)
        out[f"{name}_clients"] = int(np.isfinite(v).sum())
    return out


SURVIVAL_SUMMARY = ("c_index_mean", "c_index_weighted", "c_index_worst10", "c_index_clients")


def survival_summary(last) -> dict:
    """C-index of the final round over clients (:data:`SURVIVAL_SUMMARY`, :func:`score_summary`):
    a client whose test set has no comparable pair has no C-index. The weighted mean is not
    the C-index of the pooled test rows (FLamby's "Pooled Test")."""
    return score_summary(last, "c_index")


BINARY_SUMMARY = ("auroc_mean", "auroc_weighted", "auroc_worst10", "auroc_clients", "auprc_mean", "auprc_weighted",
                  "balanced_accuracy_mean", "balanced_accuracy_weighted")


def binary_summary(last) -> dict:
    """Binary-classification scores of the final round over clients (:data:`BINARY_SUMMARY`,
    :func:`score_summary`): AUROC mean, weighted mean, worst 10 % and client count; AUPRC and
    balanced-accuracy means and weighted means. A client whose test set has one class only
    has no AUROC or AUPRC."""
    return {**score_summary(last, "auroc"), **score_summary(last, "auprc", worst=False),
            **score_summary(last, "balanced_accuracy", worst=False)}


def clustering_scores(groups, assignment) -> dict:
    """ARI, AMI, homogeneity, completeness and V-measure of ``assignment`` against ``groups``.

    With one ground-truth group every measure but completeness is degenerate; scikit-learn's
    conventions are kept (e.g. ARI = 1 when both are a single cluster).
    """
    from sklearn import metrics as m

    h, c, v = m.homogeneity_completeness_v_measure(groups, assignment)
    return {
        "ari": float(m.adjusted_rand_score(groups, assignment)),
        "ami": float(m.adjusted_mutual_info_score(groups, assignment)),
        "homogeneity": float(h),
        "completeness": float(c),
        "v_measure": float(v),
    }


def ari_by_round(history) -> dict:
    """ARI of each round's clusters against that round's groups (``{round: ari}``), over the
    clients that trained: those held out (``holdout``) and those not joined yet (``joined``)
    left out. With drift the groups of a round are its own truth."""
    rows = history
    if "holdout" in rows:
        rows = rows[rows["holdout"] == 0]
    if "joined" in rows:
        rows = rows[rows["joined"] == 1]
    out = {}
    for r, part in rows.groupby("round"):
        part = part.sort_values("client")
        out[int(r)] = clustering_scores(part["group"].to_numpy(), part["cluster"].to_numpy())["ari"]
    return out
