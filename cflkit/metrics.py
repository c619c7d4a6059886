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
    """Mean over clients, test-size-weighted mean (= pooled test accuracy), worst 10 %."""
    acc = np.asarray(accuracy, dtype=float)
    w = np.asarray(test_sizes, dtype=float)
    return {
        "accuracy_mean": float(np.mean(acc)),
        "accuracy_weighted": float(np.sum(acc * w) / np.sum(w)),
        "accuracy_worst10": worst_fraction_mean(acc, 0.10),
    }


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
