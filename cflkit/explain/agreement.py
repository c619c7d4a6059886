"""Layer (d): agreement of a clustering with the planted heterogeneity (simulation), or
with site attributes of a real federation (country, area).

Extrinsic cluster scores per factor: adjusted Rand index (Hubert & Arabie 1985), adjusted
mutual information (Vinh, Epps & Bailey, JMLR 2010), homogeneity, completeness and
V-measure (Rosenberg & Hirschberg, EMNLP 2007); the contingency table; the stability of
the assignment between consecutive rounds and across seeds (ARI, which ignores renamed
cluster ids).
"""
from __future__ import annotations

import numpy as np


def planted_factors(federation) -> dict:
    """factor name -> one value per client: what a clustering could be compared with.

    Every ``client_meta`` attribute that groups the clients (at least two distinct values,
    and fewer values than clients); a composed planted scenario whose group names read
    ``"a, b"`` also gives one factor per part (``planted[0]``, ``planted[1]``). Empty when
    nothing is planted and no attribute groups the clients.
    """
    n = federation.n_clients
    out = {}
    for key, values in (getattr(federation, "client_meta", None) or {}).items():
        values = [str(v) for v in values]
        if len(values) != n:
            continue
        distinct = len(set(values))
        if 2 <= distinct < n:
            out[key] = values
            parts = [v.split(", ") for v in values]
            if len({len(p) for p in parts}) == 1 and len(parts[0]) > 1:
                for i in range(len(parts[0])):
                    sub = [p[i] for p in parts]
                    if len(set(sub)) >= 2:
                        out[f"{key}[{i}]"] = sub
    return out


def agreement_scores(assignment, truth) -> dict:
    """ARI, AMI, homogeneity, completeness, V-measure of ``assignment`` against ``truth``."""
    from sklearn import metrics

    a, t = np.asarray(assignment), np.asarray(truth)
    h, c, v = metrics.homogeneity_completeness_v_measure(t, a)
    return {"ari": float(metrics.adjusted_rand_score(t, a)), "ami": float(metrics.adjusted_mutual_info_score(t, a)),
            "homogeneity": float(h), "completeness": float(c), "v_measure": float(v)}


def agreement_with_planted(assignment, federation):
    """One row per planted factor (see :func:`planted_factors`): factor, n_values and the
    scores of :func:`agreement_scores`. Empty (same columns) when there is no factor."""
    import pandas as pd

    assignment = np.asarray(assignment)
    if assignment.shape != (federation.n_clients,):
        raise ValueError(f"assignment must have one cluster per client ({federation.n_clients}), "
                         f"got shape {assignment.shape}")
    rows = [{"factor": k, "n_values": len(set(v)), **agreement_scores(assignment, v)}
            for k, v in planted_factors(federation).items()]
    return pd.DataFrame(rows, columns=["factor", "n_values", "ari", "ami", "homogeneity", "completeness",
                                       "v_measure"])


def contingency_table(assignment, truth):
    """Clients per (factor value, cluster): rows = values of the factor (in natural order:
    "rotated 90°" before "rotated 180°"), columns = clusters."""
    import re

    import pandas as pd

    table = pd.crosstab(pd.Series(np.asarray(truth), name="value"), pd.Series(np.asarray(assignment), name="cluster"))
    natural = sorted(table.index, key=lambda v: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(v))])
    return table.loc[natural]


def assignment_stability(history):
    """ARI between the assignments of consecutive rounds, from a run's ``history``
    (columns round, client, cluster): one row per round r >= 1 with ``ari`` (r-1 vs r) and
    ``ari_final`` (r vs the last round)."""
    import pandas as pd

    missing = {"round", "client", "cluster"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}; expected round, client, cluster")
    from sklearn.metrics import adjusted_rand_score

    rounds = sorted(history["round"].unique())
    parts = [history[history["round"] == r].sort_values("client")["cluster"].to_numpy() for r in rounds]
    rows = [{"round": int(r), "ari": float(adjusted_rand_score(parts[i - 1], parts[i])),
             "ari_final": float(adjusted_rand_score(parts[i], parts[-1]))}
            for i, r in enumerate(rounds) if i > 0]
    return pd.DataFrame(rows, columns=["round", "ari", "ari_final"])


def seed_stability(assignments) -> "object":
    """ARI between every pair of assignments (e.g. one run per seed): rows i, j, ari.
    The same clients in the same order in each."""
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    assignments = [np.asarray(a) for a in assignments]
    if len({a.shape for a in assignments}) > 1:
        raise ValueError(f"assignments must cover the same clients; got shapes {[a.shape for a in assignments]}")
    rows = [{"i": i, "j": j, "ari": float(adjusted_rand_score(assignments[i], assignments[j]))}
            for i in range(len(assignments)) for j in range(i + 1, len(assignments))]
    return pd.DataFrame(rows, columns=["i", "j", "ari"])
