"""IMM threshold trees: a k-leaf decision tree, one feature per split, that explains a
given clustering (Moshkovitz, Dasgupta, Rashtchian & Frost, "Explainable k-Means and
k-Medians Clustering", ICML 2020, Algorithm 1 "Iterative Mistake Minimization").

Every node holds the cluster centres that reach it; a split ``x_i <= theta`` must send at
least one centre each way, and among such splits IMM takes the one with the fewest
*mistakes* — points that go to the other side than their own cluster's centre. Mistaken
points are dropped below the node; the tree stops when each leaf holds one centre, so it
has exactly k leaves (one per cluster) and k - 1 splits. Ties in the number of mistakes go
to the split with the widest gap around the threshold (in units of the feature's spread),
then to the first feature: deterministic, and thresholds fall in the middle of empty space.

Written here (the ExKMC package that implements IMM is unmaintained).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Node:
    """A split (``feature``, ``threshold``: left is ``x <= threshold``) or a leaf (``cluster``)."""

    feature: int = -1
    threshold: float = 0.0
    left: "Node | None" = None
    right: "Node | None" = None
    cluster: int = -1
    n_points: int = 0  # points that reached this node (mistakes above it removed)
    mistakes: int = 0  # points this split sent away from their centre

    @property
    def is_leaf(self) -> bool:
        return self.left is None


@dataclass
class ThresholdTree:
    """An IMM tree fitted to ``X`` (n x d) and a clustering ``labels``.

    After :meth:`fit`: ``root_``, ``centers_`` (k x d), ``clusters_`` (the cluster ids),
    ``mistakes_`` (points the tree sends to another cluster than their own).
    """

    feature_names: list = field(default_factory=list)
    root_: Node = None
    centers_: np.ndarray = None
    clusters_: np.ndarray = None
    mistakes_: int = 0

    def fit(self, X, labels, centers=None) -> "ThresholdTree":
        """Build the tree; ``centers`` default to the cluster means of ``X``."""
        X = np.asarray(X, dtype=np.float64)
        labels = np.asarray(labels)
        if X.ndim != 2 or len(X) != len(labels):
            raise ValueError(f"X must be (n, d) with one label per row; got X {X.shape}, {len(labels)} labels")
        if not self.feature_names:
            self.feature_names = [f"x{i}" for i in range(X.shape[1])]
        if len(self.feature_names) != X.shape[1]:
            raise ValueError(f"{len(self.feature_names)} feature names for {X.shape[1]} features")
        self.clusters_ = np.unique(labels)
        if centers is None:
            centers = np.stack([X[labels == k].mean(0) for k in self.clusters_])
        self.centers_ = np.asarray(centers, dtype=np.float64)
        index = np.searchsorted(self.clusters_, labels)  # label -> row of centers_
        spread = X.std(0)
        self._spread = np.where(spread > 0, spread, 1.0)
        self.mistakes_ = 0
        self.root_ = self._build(X, index, np.arange(len(self.clusters_)))
        self.mistakes_ = int((self.predict(X) != labels).sum())
        return self

    def _build(self, X, index, centres) -> Node:
        if len(centres) == 1:
            return Node(cluster=int(self.clusters_[centres[0]]), n_points=len(X))
        split = best_split(X, index, self.centers_, centres, self._spread)
        if split is None:  # the remaining centres coincide in every feature: one leaf
            majority = (np.bincount(index, minlength=len(self.clusters_))[centres] if len(index)
                        else np.ones(len(centres)))
            return Node(cluster=int(self.clusters_[centres[int(np.argmax(majority))]]), n_points=len(X))
        feature, theta, mistakes = split
        go_left = X[:, feature] <= theta
        centre_left = self.centers_[index, feature] <= theta
        keep = go_left == centre_left
        left_c = centres[self.centers_[centres, feature] <= theta]
        right_c = centres[self.centers_[centres, feature] > theta]
        node = Node(feature=int(feature), threshold=float(theta), n_points=len(X), mistakes=int(mistakes))
        node.left = self._build(X[keep & go_left], index[keep & go_left], left_c)
        node.right = self._build(X[keep & ~go_left], index[keep & ~go_left], right_c)
        return node

    # -- use ----------------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """The cluster of the leaf each row of ``X`` reaches."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(len(X), dtype=self.clusters_.dtype)
        for i, x in enumerate(X):
            node = self.root_
            while not node.is_leaf:
                node = node.left if x[node.feature] <= node.threshold else node.right
            out[i] = node.cluster
        return out

    def leaves(self) -> list[tuple[list, int]]:
        """Every leaf as ``(conditions, cluster)``; a condition is ``(feature, "<=" or ">", threshold)``."""
        out = []

        def walk(node, path):
            if node.is_leaf:
                out.append((path, node.cluster))
                return
            walk(node.left, path + [(node.feature, "<=", node.threshold)])
            walk(node.right, path + [(node.feature, ">", node.threshold)])

        walk(self.root_, [])
        return out

    @property
    def n_leaves(self) -> int:
        return len(self.leaves())

    def rules(self, digits: int = 3) -> list[str]:
        """One readable rule per leaf, e.g. ``label_3_share > 0.41 → cluster 2``."""
        return [format_rule([(self.feature_names[f], op, t) for f, op, t in conds], f"cluster {k}", digits)
                for conds, k in self.leaves()]


def best_split(X, index, centers, centres, spread):
    """IMM's split at one node: ``(feature, threshold, mistakes)`` or None when no feature
    separates the node's centres. Thresholds lie midway between consecutive distinct values
    (points and centres) inside the centres' range."""
    best = None
    mu = centers[centres]
    own = centers[index]  # each point's own centre
    for f in range(X.shape[1]):
        lo, hi = mu[:, f].min(), mu[:, f].max()
        if hi <= lo:
            continue
        values = np.unique(np.concatenate([X[:, f], mu[:, f]]))
        values = values[(values >= lo) & (values <= hi)]
        cuts = (values[:-1] + values[1:]) / 2  # lo <= cut < hi: both sides get a centre
        if not len(cuts):
            continue
        gaps = (values[1:] - values[:-1]) / spread[f]
        point_left = X[:, f][None, :] <= cuts[:, None]
        centre_left = own[:, f][None, :] <= cuts[:, None]
        mistakes = (point_left != centre_left).sum(1)
        order = np.lexsort((-gaps, mistakes))
        i = order[0]
        key = (int(mistakes[i]), -float(gaps[i]))
        if best is None or key < best[0]:
            best = (key, f, float(cuts[i]), int(mistakes[i]))
    return None if best is None else best[1:]


def format_rule(conditions, outcome: str, digits: int = 3) -> str:
    """``a > 0.41 and b <= 2 → outcome`` (``always → outcome`` for no condition)."""
    if not conditions:
        return f"always → {outcome}"
    merged = merge_conditions(conditions)
    return " and ".join(f"{name} {op} {value:.{digits}g}" for name, op, value in merged) + f" → {outcome}"


def merge_conditions(conditions):
    """Keep the tightest bound per (feature, direction): ``x > 1 and x > 2`` is ``x > 2``."""
    tight = {}
    for name, op, value in conditions:
        key = (name, op)
        if key not in tight:
            tight[key] = value
        else:
            tight[key] = min(tight[key], value) if op == "<=" else max(tight[key], value)
    return [(name, op, value) for (name, op), value in tight.items()]
