"""Layer (b): how do the cluster models differ?

LIME (Ribeiro, Singh & Guestrin, "Why should I trust you?", KDD 2016) is run with the
*same* probe inputs — and, by resetting LIME's random states, the same perturbed
neighbourhood — through every cluster model, so that differences between the
explanations are differences between the models, not between LIME draws. Outputs:

- ``importance`` — per cluster, the mean absolute LIME weight of every feature (tabular
  data) or pixel (images: the weight of the pixel's segment), averaged over the probes
  *and over all classes*. Averaging magnitudes over classes makes the importance
  **label-swap-aware**: a cluster whose labels are permuted uses the same pixels for
  permuted classes and gets the same importance vector;
- ``rank_correlation`` — Spearman's rho between the clusters' importance vectors;
- ``agreement`` — the K×K prediction agreement on the probe rows (share of rows on which
  two cluster models predict the same class; regression: ``1 - mean |f_k - f_l| / range``,
  the range of all the models' outputs on those rows). High attribution correlation with
  near-zero agreement is the signature of a concept shift on labels (label swap);
  importance maps that match after undoing a planted rotation (:func:`aligned_correlation`)
  confirm a concept shift on features;
- quality numbers: top-k Jaccard across explainer seeds (``stability``) and deletion /
  insertion AUC of the LIME order against a random order (``faithfulness``; Petsiuk, Das &
  Saenko, "RISE", BMVC 2018).

Privacy tier: in simulation the probes are a seeded sample of the pooled test rows
(:func:`cflkit.methods.parts.representations.probe_rows`), standing in for a public data set the server
holds — T0 plus public data. On a real federation the probes are client data, so the
explanations must be computed on the clients and only aggregated importances sent
back — T2.

LIME details (lime 0.2.0.1): tabular data through ``LimeTabularExplainer`` (training
data = the pooled training rows, quartile discretisation as lime's default, one ridge fit
on all features: ``feature_selection="none"``); images through ``LimeImageExplainer`` on a
grid segmentation (2×2-pixel cells on 8×8 images, 4×4 on 28×28; lime's default quickshift
gives one segment on such small images), hidden segments set to 0 (the background of the
digit-like images used here). Nothing here imports TensorFlow or lime at module level.
"""
from __future__ import annotations

import hashlib
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from typing import NamedTuple

import numpy as np

log = logging.getLogger("cflkit.explain")

HIDE_VALUE = 0.0  # what a removed image segment becomes (the background of digit-like images)
RANDOM_ORDERS = 3  # random feature orders per probe for the faithfulness baseline
AGREEMENT_PROBES = 500  # rows on which prediction agreement is measured (capped by the test rows)


@dataclass
class Contrast:
    """What layer (b) found; arrays are indexed by cluster 0..K-1."""

    importance: np.ndarray  # (K, n_features) mean |LIME weight| per feature / pixel, over probes and classes
    feature_names: list
    rank_correlation: np.ndarray  # (K, K) Spearman between the clusters' importance vectors
    agreement: np.ndarray  # (K, K) share of probe rows on which two cluster models predict the same class
    top_features: dict  # cluster -> its top-k features (images: grid cells), most important first
    stability: dict  # cluster -> mean top-k Jaccard across explainer seeds (quality number)
    faithfulness: object  # pandas.DataFrame: deletion / insertion AUC per cluster, LIME vs random order
    class_importance: np.ndarray = None  # (K, outputs, n_features) signed mean LIME weight per class
    curves: object = None  # pandas.DataFrame: mean deletion / insertion curves per cluster and order
    probe_stability: dict = field(default_factory=dict)  # cluster -> top-k Jaccard of single probes' explanations
    image_shape: tuple = ()  # (H, W) for images, () for tabular data
    segments: np.ndarray = None  # (H, W) segment id of every pixel (images)
    segment_names: list = field(default_factory=list)  # names of LIME's interpretable features (images)
    task: str = "classification"
    probes: np.ndarray = None  # the pooled rows explained
    seconds: float = 0.0

    @property
    def n_clusters(self) -> int:
        return int(self.importance.shape[0])

    def maps(self) -> np.ndarray:
        """Importance as (K, H, W) images (images only)."""
        if not self.image_shape:
            raise ValueError("maps() needs image data; this contrast was computed on tabular data")
        return self.importance.reshape(self.n_clusters, *self.image_shape)

    def summary(self) -> dict:
        """Flat scalar quality numbers (off-diagonal means over cluster pairs, means over clusters)."""
        off = ~np.eye(self.n_clusters, dtype=bool)
        f = self.faithfulness
        return {
            "contrast_clusters": self.n_clusters,
            "contrast_probes": int(len(self.probes)) if self.probes is not None else 0,
            "rank_correlation_mean": _mean(self.rank_correlation[off]),
            "agreement_mean": _mean(self.agreement[off]),
            "topk_stability_mean": _mean(list(self.stability.values())),
            "probe_topk_stability_mean": _mean(list(self.probe_stability.values())),
            "deletion_auc": _mean(f["deletion_auc"]), "deletion_auc_random": _mean(f["deletion_auc_random"]),
            "insertion_auc": _mean(f["insertion_auc"]), "insertion_auc_random": _mean(f["insertion_auc_random"]),
            "contrast_seconds": float(self.seconds),
        }

    def tables(self) -> dict:
        """Tidy tables, each with a ``cluster`` column (written with ``index=False``): importance,
        rank_correlation, agreement, top_features, stability, faithfulness, curves."""
        import pandas as pd

        clusters = list(range(self.n_clusters))

        def by_cluster(values, columns):
            frame = pd.DataFrame(values, columns=[str(c) for c in columns])
            frame.insert(0, "cluster", clusters)
            return frame

        top = [{"cluster": c, "rank": r + 1, "feature": name} for c, names in self.top_features.items()
               for r, name in enumerate(names)]
        out = {
            "importance": by_cluster(self.importance, self.feature_names),
            "rank_correlation": by_cluster(self.rank_correlation, clusters),
            "agreement": by_cluster(self.agreement, clusters),
            "top_features": pd.DataFrame(top, columns=["cluster", "rank", "feature"]),
            "stability": pd.DataFrame({"cluster": list(self.stability),
                                       "topk_jaccard_seeds": list(self.stability.values()),
                                       "probe_topk_jaccard_seeds": [self.probe_stability.get(c, np.nan)
                                                                    for c in self.stability]}),
            "faithfulness": self.faithfulness,
        }
        if self.curves is not None:
            out["curves"] = self.curves
        return out


def _mean(values) -> float:
    """Mean ignoring NaN; NaN when nothing is defined."""
    a = np.asarray(values, dtype=float)
    return float(np.nanmean(a)) if a.size and not np.all(np.isnan(a)) else float("nan")


# -- small pure functions ---------------------------------------------------------------------
def spearman_matrix(vectors: np.ndarray) -> np.ndarray:
    """Spearman's rho between the rows of ``vectors`` (ties get average ranks); a constant
    row has no defined correlation (NaN), except with itself (1)."""
    from scipy.stats import rankdata

    v = np.asarray(vectors, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"expected one importance vector per cluster (2-D), got shape {v.shape}")
    r = rankdata(v, axis=1)
    r = r - r.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(r, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (r @ r.T) / np.outer(norm, norm)
    rho = np.clip(rho, -1.0, 1.0)
    np.fill_diagonal(rho, 1.0)
    return rho


def prediction_agreement(outputs: np.ndarray, task: str = "classification") -> np.ndarray:
    """K×K agreement of K models' ``outputs`` (K, rows, outputs) on the same rows.

    Classification: the share of rows on which models k and l predict the same class.
    Regression: ``1 - mean |f_k - f_l| / (max - min)`` over all models' outputs (1 for
    identical models, clipped at 0).
    """
    out = np.asarray(outputs, dtype=float)
    if out.ndim == 2:
        out = out[..., None]
    if task == "classification":
        pred = out.argmax(axis=-1)
        return (pred[:, None, :] == pred[None, :, :]).mean(axis=-1)
    if task != "regression":
        raise ValueError(f"unknown task {task!r}; choose one of: classification, regression")
    y = out[..., 0]
    spread = float(y.max() - y.min()) or 1.0
    diff = np.abs(y[:, None, :] - y[None, :, :]).mean(axis=-1)
    return np.clip(1.0 - diff / spread, 0.0, 1.0)


def top_indices(importance: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(importance, dtype=float), kind="stable")
    return order[:k]


def jaccard(a, b) -> float:
    """|a ∩ b| / |a ∪ b| of two sets (1 for two empty sets)."""
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def mean_pairwise_jaccard(sets: list) -> float:
    """Mean Jaccard index over all pairs of ``sets`` (NaN with fewer than two)."""
    pairs = list(combinations(range(len(sets)), 2))
    return float(np.mean([jaccard(sets[i], sets[j]) for i, j in pairs])) if pairs else float("nan")


def grid_segments(shape: tuple, cell: int) -> np.ndarray:
    """Segment id of every pixel of an ``shape`` = (H, W) image cut into ``cell``×``cell`` squares,
    numbered row by row."""
    h, w = int(shape[0]), int(shape[1])
    if cell < 1:
        raise ValueError(f"cell must be >= 1 pixel, got {cell}")
    cols = -(-w // cell)
    r, c = np.indices((h, w))
    return (r // cell) * cols + c // cell


def default_cell(shape: tuple) -> int:
    """Grid cell size for LIME on small images: 2 pixels up to 16×16 (8×8 digits: 16 cells),
    4 above (28×28: 49 cells)."""
    return 2 if max(shape[:2]) <= 16 else 4


def curve_auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions 0..1 of the features (trapezoid)."""
    curve = np.asarray(curve, dtype=float)
    return float(np.trapezoid(curve, dx=1.0 / max(len(curve) - 1, 1)))


def rotate_back(importance_maps: np.ndarray, angles, shape: tuple | None = None) -> np.ndarray:
    """Undo a planted rotation: map k rotated by ``-angles[k]`` degrees.

    ``importance_maps`` is (K, H, W), or (K, H*W) with ``shape`` = (H, W); the result has
    the input's shape. Multiples of 90° are exact (``np.rot90``, as the rotation scenario
    uses); other angles are interpolated like the scenario's ``scipy.ndimage.rotate``.
    """
    m = np.asarray(importance_maps, dtype=float)
    flat = m.ndim == 2
    if flat:
        if shape is None:
            raise ValueError("flat importance maps (K, H*W) need shape=(H, W)")
        m = m.reshape(len(m), *shape)
    if len(angles) != len(m):
        raise ValueError(f"one angle per map: got {len(angles)} angles for {len(m)} maps")
    out = np.empty_like(m)
    for k, (mk, angle) in enumerate(zip(m, angles)):
        if float(angle) % 90 == 0:
            out[k] = np.rot90(mk, k=-int(round(float(angle) / 90)))
        else:
            from scipy.ndimage import rotate

            out[k] = rotate(mk, -float(angle), reshape=False, order=1, mode="constant")
    return out.reshape(len(m), -1) if flat else out


def planted_rotation(federation, assignment, n_clusters: int | None = None) -> np.ndarray:
    """Per cluster, the planted rotation angle (degrees) of the planted group most of its
    clients belong to (the rotation scenario: group g is rotated by g · 90°, or g · 360/G
    for more than four groups). Empty clusters get 0."""
    from ..core.scenarios import parse_scenario

    if "rotation" not in parse_scenario(federation.scenario) or federation.kind != "image":
        raise ValueError(f"planted_rotation needs an image federation with a rotation scenario, got "
                         f"{federation.kind} data with scenario {federation.scenario!r}")
    assignment = np.asarray(assignment, dtype=np.int64)
    n_groups = int(federation.params.get("groups", federation.n_groups))
    step = 90.0 if n_groups <= 4 else 360.0 / n_groups
    k = int(n_clusters if n_clusters is not None else assignment.max() + 1)
    angles = np.zeros(k)
    for c in range(k):
        members = federation.groups[assignment == c]
        if members.size:
            angles[c] = step * np.bincount(members).argmax()
    return angles


def aligned_correlation(contrast: Contrast, angles, per_class: bool = False) -> np.ndarray:
    """Spearman matrix of the clusters' importance maps after rotating each back by its
    planted angle (:func:`planted_rotation`). ``per_class``: compare the signed per-class
    maps (``class_importance``, classes concatenated) instead of the magnitudes averaged
    over classes — sharper under rotation, where the classes keep their meaning."""
    return spearman_matrix(_maps(contrast, per_class, angles))


def raw_correlation(contrast: Contrast, per_class: bool = False) -> np.ndarray:
    """Spearman matrix of the importance maps as they are (the baseline of
    :func:`aligned_correlation`)."""
    return spearman_matrix(_maps(contrast, per_class, None))


def _maps(contrast, per_class, angles):
    K = contrast.n_clusters
    if not per_class:
        maps = contrast.maps()
        return (maps if angles is None else rotate_back(maps, angles)).reshape(K, -1)
    if contrast.class_importance is None:
        raise ValueError("per_class=True needs class_importance, which this contrast lacks")
    ci = contrast.class_importance.reshape(K, -1, *contrast.image_shape)  # (K, classes, H, W)
    if angles is not None:
        ci = np.stack([rotate_back(ci[k], [angles[k]] * ci.shape[1]) for k in range(K)])
    return ci.reshape(K, -1)


# -- the models ---------------------------------------------------------------------------
def stacked_weights(models) -> list:
    """``models`` (a ServerState or its ``models`` list: arrays (K, ...)) as float32 arrays."""
    weights = getattr(models, "models", models)
    if not isinstance(weights, (list, tuple)) or not weights:
        raise ValueError("models must be a non-empty list of stacked cluster weights (ServerState.models)")
    weights = [np.asarray(w, dtype=np.float32) for w in weights]
    k = {w.shape[0] for w in weights}
    if len(k) != 1:
        raise ValueError(f"stacked weights disagree on the number of clusters: leading axes {sorted(k)}")
    return weights


class ClusterPredictor:
    """Outputs of all K cluster models on the same inputs, in one compiled call:
    probabilities (softmax of the logits) for classification, values for regression."""

    def __init__(self, config, federation, weights: list, chunk: int = 4096):
        from ..core._tf import tf
        from ..core.models import build_model

        tf_ = tf()
        model = build_model(config.model, federation.input_shape, federation.n_outputs, config.hidden)
        expected = [tuple(v.shape) for v in model.trainable_variables]
        got = [tuple(w.shape[1:]) for w in weights]
        if expected != got:
            raise ValueError(f"the models do not fit config.model={config.model!r} with hidden={list(config.hidden)} "
                             f"on inputs {federation.input_shape}: expected layer shapes {expected}, got {got}")
        self.task, self.chunk, self.n_clusters = federation.task, chunk, weights[0].shape[0]
        self.input_shape = tuple(federation.input_shape)
        self._w = [tf_.constant(w) for w in weights]

        def forward(w, x):
            return tf_.vectorized_map(lambda wk: model.stateless_call(list(wk), [], x, training=False)[0], tuple(w))

        self._fn = tf_.function(forward, reduce_retracing=True)
        self._tf = tf_

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(K, rows, outputs) for ``x`` of shape (rows, *input_shape)."""
        x = np.asarray(x, dtype=np.float32).reshape(-1, *self.input_shape)
        parts = [self._fn(self._w, self._tf.constant(x[i:i + self.chunk])).numpy()
                 for i in range(0, len(x), self.chunk)]
        out = np.concatenate(parts, axis=1) if parts else np.zeros((self.n_clusters, 0, 1), np.float32)
        if self.task == "classification":
            z = out - out.max(axis=-1, keepdims=True)
            e = np.exp(z)
            out = e / e.sum(axis=-1, keepdims=True)
        return out.astype(np.float64)


class _SharedCall:
    """A classifier function per cluster that evaluates all K models once per distinct input
    (LIME calls it with the same neighbourhood for every cluster)."""

    def __init__(self, predictor, to_model):
        self.predictor, self.to_model = predictor, to_model
        self._key, self._out = None, None
        self.calls = 0

    def for_cluster(self, k: int):
        def fn(x):
            key = (x.shape, hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest())
            if key != self._key:
                self._key, self._out = key, self.predictor(self.to_model(x))
                self.calls += 1
            out = self._out[k]
            return out[:, 0] if self.predictor.task == "regression" else out
        return fn


@contextmanager
def _lime_progress(progress: bool):
    """lime_image shows a tqdm bar per explanation that its API cannot switch off (0.2.0.1;
    only ``TQDM_DISABLE=1`` set before tqdm is imported can): replace it while we run."""
    from lime import lime_image

    saved = lime_image.tqdm
    if not progress:
        lime_image.tqdm = lambda iterable, *a, **kw: iterable
    try:
        yield
    finally:
        lime_image.tqdm = saved


def _reset(explainer, seed_words):
    """Make the next explanation reproducible: LIME keeps random states in the explainer,
    its LimeBase and (tabular) its discretizer; all three are reset."""
    state = np.random.RandomState(np.random.SeedSequence(seed_words).generate_state(4))
    explainer.random_state = state
    explainer.base.random_state = state
    if getattr(explainer, "discretizer", None) is not None:
        explainer.discretizer.random_state = state


# -- LIME on every cluster model ----------------------------------------------------------------
def _image_setup(federation):
    shape = federation.input_shape
    if len(shape) not in (2, 3):
        raise ValueError(f"image inputs must be (H, W) or (H, W, C), got {shape}")
    hw, channels = tuple(shape[:2]), (shape[2] if len(shape) == 3 else 1)
    cell = default_cell(hw)
    segments = grid_segments(hw, cell)
    rows, cols = -(-hw[0] // cell), -(-hw[1] // cell)
    names = [f"rows {r * cell}-{min((r + 1) * cell, hw[0]) - 1}, cols {c * cell}-{min((c + 1) * cell, hw[1]) - 1}"
             for r in range(rows) for c in range(cols)]

    def to_model(imgs):  # lime hands RGB images; a grey model reads one channel
        imgs = np.asarray(imgs, dtype=np.float32)
        return imgs[..., :1] if channels == 1 else imgs

    def to_lime(x):  # a grey image as (H, W): lime turns it into RGB itself
        return np.asarray(x, dtype=np.float64).reshape(hw + ((channels,) if channels > 1 else ()))

    return hw, channels, segments, names, to_model, to_lime


def _lime_weights(federation, predictor, rows, labels, num_samples, seeds, seed, progress):
    """Signed LIME weights (seeds, probes, K, labels, interpretable features), the
    segmentation (images) and the segment names."""
    K, L = predictor.n_clusters, len(labels)
    x = federation.x
    train = np.concatenate(federation.train_index)
    if federation.kind == "image":
        from lime.lime_image import LimeImageExplainer

        hw, channels, segments, seg_names, to_model, to_lime = _image_setup(federation)
        n_feat = int(segments.max()) + 1
        explainer = LimeImageExplainer(feature_selection="none", random_state=seed)
        shared = _SharedCall(predictor, to_model)

        def explain(row, k):
            return explainer.explain_instance(to_lime(x[row]), shared.for_cluster(k), labels=labels,
                                              hide_color=HIDE_VALUE, top_labels=None, num_features=n_feat,
                                              num_samples=num_samples, batch_size=num_samples,
                                              segmentation_fn=lambda image: segments, random_seed=seed)
    else:
        from lime.lime_tabular import LimeTabularExplainer

        segments, seg_names = None, None
        n_feat = int(np.prod(federation.input_shape))
        explainer = LimeTabularExplainer(x[train].reshape(len(train), -1), mode=federation.task,
                                         feature_selection="none", random_state=seed)
        shared = _SharedCall(predictor, lambda rows_: rows_)

        def explain(row, k):
            return explainer.explain_instance(x[row].reshape(-1), shared.for_cluster(k), labels=labels,
                                              num_features=n_feat, num_samples=num_samples)

    W = np.zeros((len(seeds), len(rows), K, L, n_feat))
    bar = _bar(len(seeds) * len(rows), progress)
    with _lime_progress(progress):
        for si, s in enumerate(seeds):
            for p, row in enumerate(rows):
                for k in range(K):
                    _reset(explainer, [int(seed), int(s), int(p)])
                    exp = explain(row, k)
                    for li, label in enumerate(labels):
                        key = 1 if federation.task == "regression" else label  # lime negates key 0 in regression
                        for f, w in exp.local_exp[key]:
                            W[si, p, k, li, f] = w
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    log.debug("LIME: %d model evaluations for %d explanations", shared.calls, len(seeds) * len(rows) * K)
    return W, segments, seg_names


def _bar(total, progress):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="LIME", unit="probe", leave=False)


# -- faithfulness ---------------------------------------------------------------------------
def _faithfulness(federation, predictor, rows, W0, segments, seed):
    """Deletion and insertion curves (Petsiuk et al. 2018) of every cluster's LIME order,
    against random orders of the same features.

    For probe p and cluster k the explained output is the cluster's predicted class (its
    probability; regression: the predicted value). Deletion removes features from the
    probe in order (tabular: set to the training mean; images: segment set to 0) — a
    faithful order makes the score fall fast (low AUC); insertion adds them to the fully
    removed input — the score should rise fast (high AUC).
    """
    K, n_feat = W0.shape[1], W0.shape[-1]
    probes = _faithfulness_probes(federation, rows, n_feat, segments)
    base_out = predictor(probes.x)  # (K, P, outputs)
    rng = np.random.default_rng([int(seed), 3])  # drawn in cluster, then probe order
    records, curve_rows = [], []
    for k in range(K):
        target = base_out[k].argmax(axis=1) if federation.task == "classification" else np.zeros(len(rows), int)
        orders = _feature_orders(W0, k, target, federation.task, n_feat, rng)
        for name, per_probe in orders.items():
            for kind in ("deletion", "insertion"):
                score = _curve_scores(predictor, k, probes, per_probe, kind, target, federation.task, n_feat)
                records.append((k, name, kind, np.mean([curve_auc(c) for c in score])))
                curve_rows += _curve_rows(k, name, kind, score.mean(axis=0), n_feat)
    return _faithfulness_tables(records, curve_rows, len(rows))


class _Probes(NamedTuple):
    """The probes of the faithfulness curves, flat (P, inputs); each input's interpretable feature; removed values."""

    x: np.ndarray
    pixel_of: np.ndarray
    background: np.ndarray


def _faithfulness_probes(federation, rows, n_feat, segments) -> _Probes:
    """The probes flat, the interpretable feature of each input, and what a removed input becomes."""
    x = federation.x[rows].reshape(len(rows), -1).astype(np.float64)
    if segments is not None:
        pixel_of = np.repeat(segments.reshape(-1), x.shape[1] // segments.size)  # pixel-major, channels last
        background = np.full(x.shape[1], HIDE_VALUE)
    else:
        pixel_of = np.arange(n_feat)
        train = np.concatenate(federation.train_index)
        background = federation.x[train].reshape(len(train), -1).mean(axis=0).astype(np.float64)
    return _Probes(x, pixel_of, background)


def _feature_orders(W0, k, target, task, n_feat, rng) -> dict:
    """Per probe, cluster ``k``'s LIME order of the features (of its target) and ``RANDOM_ORDERS`` random ones."""
    orders = {"lime": [], "random": []}
    for p in range(len(target)):
        w = W0[p, k, 0 if task == "regression" else target[p]]
        orders["lime"].append([np.argsort(-w, kind="stable")])
        orders["random"].append([rng.permutation(n_feat) for _ in range(RANDOM_ORDERS)])
    return orders


def _curve_scores(predictor, k, probes: _Probes, per_probe, kind, target, task, n_feat) -> np.ndarray:
    """Cluster ``k``'s explained output along each order's deletion or insertion curve: (orders, features + 1)."""
    x, pixel_of, background = probes
    steps = np.arange(n_feat + 1)
    batch, owner = [], []
    for p, order_list in enumerate(per_probe):
        for order in order_list:
            rank = np.empty(n_feat, dtype=np.int64)
            rank[order] = np.arange(n_feat)
            # step j: the first j features of the order are removed (deletion) / present (insertion)
            moved = rank[pixel_of][None, :] < steps[:, None]
            keep = ~moved if kind == "deletion" else moved
            batch.append(np.where(keep, x[p], background))
            owner.append(p)
    out = predictor(np.concatenate(batch))[k]  # (len(batch)*(n_feat+1), outputs)
    out = out.reshape(len(batch), n_feat + 1, -1)
    idx = np.asarray(owner)
    return out[np.arange(len(batch)), :, target[idx]] if task == "classification" else out[..., 0]


def _curve_rows(k, name, kind, curve, n_feat) -> list[dict]:
    """One row per step of a mean curve, at its fraction of the features moved."""
    return [{"cluster": k, "order": name, "kind": kind, "fraction": j / n_feat, "score": float(v)}
            for j, v in zip(np.arange(n_feat + 1), curve)]


def _faithfulness_tables(records, curve_rows, n_probes):
    """``(faithfulness, curves)``: per cluster the AUCs of its LIME and random orders, and every mean curve."""
    import pandas as pd

    table = pd.DataFrame(records, columns=["cluster", "order", "kind", "auc"])
    wide = table.pivot_table(index="cluster", columns=["kind", "order"], values="auc")
    faith = pd.DataFrame({"cluster": wide.index,
                          "deletion_auc": wide[("deletion", "lime")].to_numpy(),
                          "deletion_auc_random": wide[("deletion", "random")].to_numpy(),
                          "insertion_auc": wide[("insertion", "lime")].to_numpy(),
                          "insertion_auc_random": wide[("insertion", "random")].to_numpy()})
    faith["probes"] = n_probes
    return faith.reset_index(drop=True), pd.DataFrame(curve_rows)


# -- the layer --------------------------------------------------------------------------------
def feature_names(federation) -> list:
    """Names of the model's input features: ``pixel_r_c`` for images, the dataset's column
    names for tabular data (``x0``, ``x1``, ... when the dataset is not a registered one)."""
    shape = federation.input_shape
    if federation.kind == "image":
        names = [f"pixel_{r}_{c}" for r in range(shape[0]) for c in range(shape[1])]
        channels = shape[2] if len(shape) == 3 else 1
        return names if channels == 1 else [f"{n}_ch{ch}" for n in names for ch in range(channels)]
    names = tuple(getattr(federation, "feature_names", ()) or ())
    if not names:
        from ..core.datasets import DATASETS, load_dataset

        if federation.dataset in DATASETS:
            try:
                names = load_dataset(federation.dataset).feature_names
            except (OSError, ValueError) as err:  # e.g. a real dataset with no cached copy
                log.warning("no feature names for %s (%s); using x0, x1, ...", federation.dataset, err)
    n = int(np.prod(shape))
    return list(names) if len(names) == n else [f"x{i}" for i in range(n)]


def _check(probes, num_samples, top_k, explainer_seeds):
    for name, value, low in (("probes", probes, 1), ("num_samples", num_samples, 10), ("top_k", top_k, 1),
                             ("explainer_seeds", explainer_seeds, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def explain_contrast(models, federation, config, *, probes: int = 20, num_samples: int = 300, top_k: int = 5,
                     explainer_seeds: int = 2, seed: int = 0, progress: bool = False) -> Contrast:
    """Explain how the K cluster models differ (layer b): LIME on the same probes through
    every model, rank correlation of the importances, prediction agreement, and the quality
    numbers (top-k stability across ``explainer_seeds``, deletion / insertion AUC).

    ``models`` are the stacked cluster weights (``ServerState.models``, each (K, ...)) of a
    model built from ``config`` (``config.model``, ``config.hidden``) for ``federation``.
    ``probes`` rows of the pooled test rows are explained (``num_samples`` LIME
    perturbations each); agreement is measured on up to 500 such rows (prediction only).
    Privacy tier: T0 + public probes in simulation, T2 when the probes are client data.
    """
    if federation.task == "survival":
        raise ValueError("explain_contrast does not support task 'survival' (LIME explains class "
                         "probabilities or a regression value, not a Cox risk score)")
    start = time.perf_counter()
    _check(probes, num_samples, top_k, explainer_seeds)
    from ..methods.parts.representations import probe_rows

    weights = stacked_weights(models)
    predictor = ClusterPredictor(config, federation, weights)
    K = predictor.n_clusters
    rows = probe_rows(federation, int(probes), seed)
    agreement_rows = probe_rows(federation, AGREEMENT_PROBES, seed)
    agreement = prediction_agreement(predictor(federation.x[agreement_rows]), federation.task)

    labels = list(range(federation.n_classes)) if federation.task == "classification" else [0]
    seeds = list(range(int(explainer_seeds)))
    W, segments, seg_names = _lime_weights(federation, predictor, rows, labels, int(num_samples), seeds, seed,
                                           progress)
    names = feature_names(federation)
    seg_level = np.abs(W).mean(axis=(1, 3))  # (seeds, K, interpretable features)
    signed = W[0].mean(axis=0)  # (K, labels, interpretable features)
    if segments is not None:
        flat = segments.reshape(-1)
        channels = len(names) // flat.size
        pix = np.repeat(flat, channels)  # pixel-major, channels last
        importance, class_importance = seg_level[0][:, pix], signed[..., pix]
        top_names = seg_names
    else:
        importance, class_importance, top_names = seg_level[0], signed, names
    k_top = min(int(top_k), seg_level.shape[-1])
    top = {k: [top_names[i] for i in top_indices(seg_level[0, k], k_top)] for k in range(K)}
    stability = {k: mean_pairwise_jaccard([top_indices(seg_level[s, k], k_top) for s in range(len(seeds))])
                 for k in range(K)}
    per_probe = np.abs(W).mean(axis=3)  # (seeds, probes, K, features)
    probe_stability = {k: float(np.mean([mean_pairwise_jaccard([top_indices(per_probe[s, p, k], k_top)
                                                                for s in range(len(seeds))])
                                         for p in range(len(rows))])) if len(seeds) > 1 else float("nan")
                       for k in range(K)}
    faith, curves = _faithfulness(federation, predictor, rows, W[0], segments, seed)
    return Contrast(importance=importance, feature_names=names, rank_correlation=spearman_matrix(importance),
                    agreement=agreement, top_features=top, stability=stability, faithfulness=faith,
                    class_importance=class_importance, curves=curves, probe_stability=probe_stability,
                    image_shape=tuple(federation.input_shape[:2]) if segments is not None else (),
                    segments=segments, segment_names=list(seg_names or []), task=federation.task,
                    probes=rows, seconds=time.perf_counter() - start)
