"""Layer (a): why is client i in cluster k? (T1 descriptors; T0 for the ``similarity`` group)

On the server, from the client descriptors (:mod:`.descriptors`) and the assignment:

- a shallow surrogate decision tree (scikit-learn, depth 3) whose *out-of-fold* accuracy
  in predicting the clusters is its **fidelity**;
- a **shuffled-label baseline**: the same cross-validated accuracy for randomly permuted
  assignments, the permutation test of Ojala & Garriga ("Permutation tests for studying
  classifier performance", JMLR 2010). Membership counts as **explained** only when the
  fidelity is *clearly* above it: above the shuffled runs' mean + 2 standard
  deviations, at least :data:`MIN_MARGIN` above the shuffled mean, and with permutation
  p-value <= 0.05. Otherwise the report says "membership not explained by these
  descriptors" rather than print rules of a tree no better than chance. With very few
  clients (fewer than 1 / 0.05 distinct relabelings, e.g. 4 hospitals) no test can say
  "explained": the membership is then only *described*, by the descriptors that separate
  the clusters without overlap (:func:`separating_descriptors`);
- an IMM threshold tree (:mod:`.trees`) with one leaf per cluster: readable rules;
- permutation importance per descriptor *group*, out of fold (Breiman 2001; per group
  because single descriptors are redundant — their importances collapse to zero when a
  correlated one stands in — while a group's does not);
- LIME (Ribeiro, Singh & Guestrin, KDD 2016) on the surrogate for one client:
  :func:`explain_client`, reproducible by resetting both random states of the explainer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .descriptors import TIERS, client_descriptors
from .trees import ThresholdTree, format_rule

log = logging.getLogger("cflkit.explain")

MAX_DEPTH = 3  # surrogate tree depth: at most 8 rules, readable
N_SPLITS = 5  # folds of the out-of-fold estimates (fewer when a cluster is smaller)
N_REPEATS = 3  # repeated cross-validation, different fold shuffles
N_SHUFFLES = 50  # label permutations of the baseline (smallest p-value 1/51)
N_PERMUTATIONS = 5  # shuffles of each descriptor group per held-out fold
MIN_MARGIN = 0.1  # fidelity must beat the shuffled mean by at least this much accuracy
ALPHA = 0.05  # permutation-test level
DATA_GROUPS = ("label", "moments", "missing", "spatial", "intensity")  # from the client's data (T1)


@dataclass
class Membership:
    """What layer (a) found for one assignment."""

    descriptors: "object"  # pandas.DataFrame, clients x named descriptors
    groups: dict  # descriptor name -> group
    tree_rules: list
    threshold_tree_rules: list
    fidelity: float
    baseline_fidelity: float
    explained: bool
    group_importance: "object"  # DataFrame: group, tier, n_descriptors, importance, share
    baseline_std: float = 0.0
    p_value: float = 1.0
    chance: float = 0.0  # share of the largest cluster: always guessing it scores this
    threshold_tree_fidelity: float = 0.0  # in-sample share of clients the IMM tree puts in their cluster
    assignment: np.ndarray = None
    surrogate: object = None  # the depth-3 tree fitted on all clients
    threshold_tree: object = None
    shuffled: np.ndarray = field(default=None, repr=False)  # the baseline's accuracies, one per shuffle
    testable: bool = True  # enough distinct relabelings for the permutation test to reach ALPHA
    separating: "object" = None  # DataFrame: descriptors whose clusters do not overlap (descriptive)

    def summary(self) -> dict:
        """Flat scalar quality numbers (report, paper macros)."""
        gi = self.group_importance
        # a top group only for an explained membership: otherwise its share describes noise
        top = gi.iloc[0] if self.explained and len(gi) and gi["share"].iloc[0] > 0 else None
        return {"fidelity": float(self.fidelity), "baseline_fidelity": float(self.baseline_fidelity),
                "baseline_std": float(self.baseline_std), "p_value": float(self.p_value),
                "chance": float(self.chance), "explained": bool(self.explained),
                "n_rules": len(self.tree_rules), "n_threshold_rules": len(self.threshold_tree_rules),
                "threshold_tree_fidelity": float(self.threshold_tree_fidelity),
                "top_group": str(top["group"]) if top is not None else "",
                "top_group_share": float(top["share"]) if top is not None else 0.0,
                "testable": bool(self.testable),
                "n_separating": int(len(self.separating)) if self.separating is not None else 0,
                "n_clients": int(len(self.descriptors)), "n_descriptors": int(self.descriptors.shape[1]),
                "n_clusters": int(len(np.unique(self.assignment)))}

    def tables(self) -> dict:
        import pandas as pd

        d = self.descriptors.copy()
        d.insert(0, "cluster", self.assignment)
        return {"descriptors": d.reset_index(),
                "group_importance": self.group_importance,
                "rules": pd.DataFrame({"kind": ["surrogate"] * len(self.tree_rules) +
                                       ["threshold_tree"] * len(self.threshold_tree_rules),
                                       "rule": list(self.tree_rules) + list(self.threshold_tree_rules)}),
                "descriptor_groups": pd.DataFrame({"descriptor": list(self.groups),
                                                   "group": list(self.groups.values()),
                                                   "tier": [TIERS[g] for g in self.groups.values()]}),
                "separating": self.separating if self.separating is not None else pd.DataFrame()}


def explain_membership(federation, assignment, *, models=None, config=None, seed: int = 0,
                       descriptors=None, include_groups=None) -> Membership:
    """Explain ``assignment`` (one cluster per client) by the clients' descriptors.

    ``models`` and ``config`` add the update descriptors (see :func:`client_descriptors`);
    ``descriptors`` may pass a ready ``(DataFrame, groups)`` pair instead.
    ``include_groups`` keeps only those descriptor groups, e.g. :data:`DATA_GROUPS` to ask
    what about the clients' *data* separates them, leaving out the update similarity that
    an update-based clustering is built on.
    """
    assignment = np.asarray(assignment).astype(int)
    if assignment.shape != (federation.n_clients,):
        raise ValueError(f"assignment must have one cluster per client ({federation.n_clients}), "
                         f"got shape {assignment.shape}")
    if descriptors is None:
        descriptors = client_descriptors(federation, models=models, assignment=assignment, config=config, seed=seed)
    table, groups = descriptors
    if include_groups is not None:
        unknown = sorted(set(include_groups) - set(TIERS))
        if unknown:
            raise ValueError(f"unknown descriptor group(s) {unknown}; choose from: {', '.join(TIERS)}")
        keep = [c for c in table.columns if groups[c] in set(include_groups)]
        table, groups = table[keep], {c: groups[c] for c in keep}
    return explain_descriptors(table, groups, assignment, seed=seed)


def explain_descriptors(table, groups: dict, assignment, *, seed: int = 0) -> Membership:
    """:func:`explain_membership` on a given descriptor table (clients x descriptors)."""
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    X = table.to_numpy(dtype=np.float64)
    y = np.asarray(assignment).astype(int)
    names = list(table.columns)
    counts = np.bincount(y)
    chance = float(counts.max() / len(y))
    if len(np.unique(y)) < 2 or X.shape[1] == 0:
        why = "one cluster" if len(np.unique(y)) < 2 else "no descriptor varies across clients"
        log.info("membership: nothing to explain (%s)", why)
        gi = pd.DataFrame({"group": sorted(set(groups.values())), "importance": 0.0, "share": 0.0})
        return Membership(table, groups, [], [], 1.0 if why == "one cluster" else chance, chance, False,
                          _with_tiers(gi, groups), chance=chance, assignment=y, testable=False,
                          separating=separating_descriptors(table, groups, y))

    folds = fold_plan(y, seed)
    fidelity = oof_accuracy(X, y, folds, seed)
    rng = np.random.default_rng([int(seed), 3])
    shuffled = np.array([oof_accuracy(X, yp, fold_plan(yp, seed), seed)
                         for yp in (rng.permutation(y) for _ in range(N_SHUFFLES))])
    base, spread = float(shuffled.mean()), float(shuffled.std())
    p_value = float((1 + (shuffled >= fidelity).sum()) / (1 + len(shuffled)))
    testable = n_relabelings(y) * ALPHA >= 1
    explained = bool(testable and is_explained(fidelity, shuffled))

    gi = group_importance(X, y, names, groups, folds, seed)
    surrogate = DecisionTreeClassifier(max_depth=MAX_DEPTH, random_state=seed).fit(X, y)
    tree_rules = surrogate_rules(surrogate, names)
    imm = ThresholdTree(feature_names=names).fit(X, y)
    return Membership(table, groups, tree_rules, imm.rules(), float(fidelity), base, explained,
                      _with_tiers(gi, groups), baseline_std=spread, p_value=p_value, chance=chance,
                      threshold_tree_fidelity=float((imm.predict(X) == y).mean()), assignment=y,
                      surrogate=surrogate, threshold_tree=imm, shuffled=shuffled, testable=bool(testable),
                      separating=separating_descriptors(table, groups, y))


def is_explained(fidelity: float, shuffled) -> bool:
    """The rule for "clearly above the shuffled baseline" (see the module docstring)."""
    shuffled = np.asarray(shuffled, dtype=float)
    base, spread = shuffled.mean(), shuffled.std()
    p_value = (1 + (shuffled >= fidelity).sum()) / (1 + len(shuffled))
    return bool(fidelity > base + 2 * spread and fidelity >= base + MIN_MARGIN and p_value <= ALPHA)


def n_relabelings(y) -> int:
    """Distinct assignments a shuffle of ``y`` can give (multinomial n! / prod n_k!). Below
    1 / ALPHA no permutation test can reach ALPHA: 4 clients in 2 + 2 give only 6."""
    from math import factorial, prod

    counts = np.bincount(np.asarray(y))
    return factorial(len(y)) // prod(factorial(int(c)) for c in counts)


def separating_descriptors(table, groups: dict, y):
    """Descriptors on which the clusters do not overlap: every cluster's clients fill an
    interval that contains no client of another cluster. Descriptive, in sample: with few
    clients many descriptors separate by chance; the permutation test is what says
    "explained". Columns: ``margin`` — the smallest gap between neighbouring clusters'
    intervals over the descriptor's range across clients; ``effect`` — the largest
    difference between cluster means in units of the spread *within* a client (Cohen's d:
    the mean of ``f_std`` for ``f_mean``, sqrt(p(1-p)) for a share p; NaN where no such
    spread exists), so that 132 vs 134 mmHg does not rank above 0 % vs 63 % missing
    cholesterol. Sorted by effect (NaN last), then margin."""
    import pandas as pd

    y = np.asarray(y)
    ks = np.unique(y)
    rows = []
    for name in table.columns:
        v = table[name].to_numpy(dtype=float)
        spread = np.ptp(v)
        if spread <= 0:
            continue
        lo = np.array([v[y == k].min() for k in ks])
        hi = np.array([v[y == k].max() for k in ks])
        order = np.argsort(lo)
        gaps = lo[order][1:] - hi[order][:-1]
        if len(gaps) and gaps.min() > 0:
            means = np.array([v[y == k].mean() for k in ks])
            rows.append({"descriptor": name, "group": groups.get(name, ""), "margin": float(gaps.min() / spread),
                         "effect": _effect(table, name, np.ptp(means)),
                         "cluster_means": ", ".join(f"{k}: {m:.3g}" for k, m in zip(ks, means))})
    out = pd.DataFrame(rows, columns=["descriptor", "group", "margin", "effect", "cluster_means"])
    out["_key"] = out["effect"].fillna(-1.0)
    out = out.sort_values(["_key", "margin"], ascending=False, kind="stable").drop(columns="_key")
    return out.reset_index(drop=True)


def _effect(table, name: str, difference: float) -> float:
    """``difference`` in units of the within-client spread of descriptor ``name`` (NaN if unknown)."""
    if name.endswith("_mean") and name[:-5] + "_std" in table.columns:
        sd = float(np.sqrt(np.mean(table[name[:-5] + "_std"].to_numpy(dtype=float) ** 2)))
    elif name.endswith("_share"):
        p = float(table[name].mean())
        sd = float(np.sqrt(p * (1 - p)))
    else:
        return float("nan")
    return float(difference / sd) if sd > 0 else float("nan")


# -- cross-validation ---------------------------------------------------------------------
def fold_plan(y, seed: int = 0) -> list:
    """``(train, test)`` index pairs of repeated K-fold, small-n aware: stratified with
    K = min(5, smallest cluster) when every cluster has >= 2 clients, else plain shuffled
    K-fold (a singleton cluster is then never seen in training: honestly unpredictable)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    n = len(y)
    smallest = np.bincount(y)[np.unique(y)].min()
    plans = []
    for r in range(N_REPEATS):
        rs = int(np.random.default_rng([int(seed), 5, r]).integers(2 ** 31))
        if smallest >= 2:
            cv = StratifiedKFold(n_splits=int(min(N_SPLITS, smallest)), shuffle=True, random_state=rs)
            plans.extend(cv.split(np.zeros(n), y))
        else:
            cv = KFold(n_splits=int(min(N_SPLITS, n)), shuffle=True, random_state=rs)
            plans.extend(cv.split(np.zeros(n)))
    return plans


def oof_accuracy(X, y, folds, seed: int = 0) -> float:
    """Mean over repeats of the out-of-fold accuracy of the depth-3 surrogate tree."""
    from sklearn.tree import DecisionTreeClassifier

    hits = 0
    for train, test in folds:
        tree = DecisionTreeClassifier(max_depth=MAX_DEPTH, random_state=seed).fit(X[train], y[train])
        hits += int((tree.predict(X[test]) == y[test]).sum())
    return hits / (N_REPEATS * len(y))


def group_importance(X, y, names, groups, folds, seed: int = 0):
    """Out-of-fold permutation importance of every descriptor group: the mean drop in
    held-out accuracy when the group's columns are shuffled together across the held-out
    clients (rows keep their joint values within the group). Share = positive part / sum."""
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    order = list(dict.fromkeys(groups[n] for n in names))
    cols = {g: [i for i, n in enumerate(names) if groups[n] == g] for g in order}
    rng = np.random.default_rng([int(seed), 9])
    drop = dict.fromkeys(order, 0.0)
    for train, test in folds:
        tree = DecisionTreeClassifier(max_depth=MAX_DEPTH, random_state=seed).fit(X[train], y[train])
        Xt = X[test]
        base = (tree.predict(Xt) == y[test]).sum()
        for g in order:
            for _ in range(N_PERMUTATIONS):
                Xp = Xt.copy()
                Xp[:, cols[g]] = Xt[rng.permutation(len(test))][:, cols[g]]
                drop[g] += (base - (tree.predict(Xp) == y[test]).sum()) / N_PERMUTATIONS
    importance = np.array([drop[g] / (N_REPEATS * len(y)) for g in order])
    positive = np.clip(importance, 0, None)
    share = positive / positive.sum() if positive.sum() > 0 else np.zeros_like(positive)
    out = pd.DataFrame({"group": order, "importance": importance, "share": share})
    return out.sort_values(["share", "importance"], ascending=False, kind="stable").reset_index(drop=True)


def _with_tiers(gi, groups):
    gi = gi.copy()
    gi.insert(1, "tier", [TIERS.get(g, "") for g in gi["group"]])
    gi.insert(2, "n_descriptors", [sum(1 for v in groups.values() if v == g) for g in gi["group"]])
    return gi


def surrogate_rules(tree, names, digits: int = 3) -> list[str]:
    """One rule per leaf of a fitted scikit-learn tree: ``a <= 0.2 and b > 3 → cluster 1
    (12 clients, 92%)`` — purity of the leaf in the training clients."""
    t = tree.tree_
    out = []

    def walk(node, path):
        if t.children_left[node] == -1:
            counts = t.value[node][0]
            k = int(np.argmax(counts))
            n = int(t.n_node_samples[node])
            purity = counts[k] / counts.sum()
            out.append(format_rule(path, f"cluster {tree.classes_[k]} ({n} clients, {purity:.0%})", digits))
            return
        f, thr = names[t.feature[node]], float(t.threshold[node])
        walk(t.children_left[node], path + [(f, "<=", thr)])
        walk(t.children_right[node], path + [(f, ">", thr)])

    walk(0, [])
    return out


# -- LIME ------------------------------------------------------------------------------------
def explain_client(membership: Membership, client: int, seed: int = 0, num_features: int = 6,
                   num_samples: int = 1000) -> list:
    """LIME on the surrogate tree for one client: ``[(feature condition, weight), ...]``
    towards the client's predicted cluster, strongest first. Same seed, same list: both the
    explainer's and its discretizer's random states are reset before explaining."""
    if membership.surrogate is None:
        raise ValueError("this membership has no surrogate (one cluster or no varying descriptor): nothing to explain")
    n = len(membership.descriptors)
    if not 0 <= int(client) < n:
        raise ValueError(f"client must be in 0..{n - 1}, got {client}")
    from lime.lime_tabular import LimeTabularExplainer

    X = membership.descriptors.to_numpy(dtype=np.float64)
    model = membership.surrogate
    explainer = LimeTabularExplainer(X, feature_names=list(membership.descriptors.columns),
                                     class_names=[f"cluster {k}" for k in model.classes_],
                                     discretize_continuous=True, random_state=seed)
    explainer.random_state = np.random.RandomState(seed)
    if explainer.discretizer is not None:
        explainer.discretizer.random_state = np.random.RandomState(seed)
    label = int(np.argmax(model.predict_proba(X[int(client)][None])[0]))
    exp = explainer.explain_instance(X[int(client)], model.predict_proba, labels=(label,),
                                     num_features=num_features, num_samples=num_samples)
    return [(str(f), float(w)) for f, w in exp.as_list(label=label)]
