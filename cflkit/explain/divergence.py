"""Layer (c): how far apart are the cluster models, layer by layer?

Privacy tier T0: only the cluster models the server holds anyway. For every layer (one
weight array of the stacked models) and every pair of clusters, and for every cluster
against the *global* model — the size-weighted average of the cluster models, i.e. the
model FedAvg over all clients would hold after the same local training — the cosine
distance and the L2 distance of the flattened weights. The row ``layer = "all"`` is the
whole model flattened. Per-layer distances show *where* clusters diverge (Sattler et al.,
"Clustered Federated Learning", IEEE TNNLS 2021, cluster on cosine similarity of updates;
Briggs et al., FL+HC, IJCNN 2020 on per-layer distances): under concept shift on labels one
expects the output layer to differ most, under a feature shift the first layer.
"""
from __future__ import annotations

import numpy as np

ALL = "all"  # the pseudo-layer of the whole model


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos(a, b) of two flattened arrays, in [0, 2]; 0 for two zero arrays, 1 if only one is zero."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0 if na == nb else 1.0
    return float(np.clip(1.0 - a @ b / (na * nb), 0.0, 2.0))


def l2_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance of two flattened arrays."""
    return float(np.linalg.norm(np.ravel(a).astype(np.float64) - np.ravel(b).astype(np.float64)))


def global_model(models, sizes=None) -> list:
    """The size-weighted average of the stacked cluster models (equal weights without sizes)."""
    k = models[0].shape[0]
    w = np.ones(k) if sizes is None else np.asarray(sizes, dtype=np.float64)
    if w.shape != (k,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"sizes must be {k} non-negative numbers (one per cluster) with a positive sum, "
                         f"got {np.asarray(sizes).tolist()}")
    w = w / w.sum()
    return [np.tensordot(w, np.asarray(m, dtype=np.float64), axes=1) for m in models]


def default_layer_names(models) -> list:
    """``layer_0_kernel``, ``layer_0_bias``, ... for Dense/Conv weight lists (kernel then bias per layer)."""
    names, layer = [], 0
    for m in models:
        if np.ndim(m) - 1 >= 2:
            names.append(f"layer_{layer}_kernel")
        else:
            names.append(f"layer_{layer}_bias")
            layer += 1
    return names


def model_layer_names(config, federation) -> list:
    """The Keras variable paths (``0:Dense/kernel``, ``0:Dense/bias``, ...) of the model ``config`` builds for
    ``federation`` — the names :func:`layer_divergence` should print (imports TensorFlow)."""
    from ..core.models import build_model

    model = build_model(config.model, federation.input_shape, federation.n_outputs, config.hidden)
    layers = [layer for layer in model.layers if layer.trainable_weights]
    names = [f"{i}:{type(layer).__name__}/{v.name}" for i, layer in enumerate(layers) for v in layer.trainable_weights]
    if len(names) != len(model.trainable_variables):  # weights not owned by one layer each: plain names
        return default_layer_names([np.zeros((1, *v.shape)) for v in model.trainable_variables])
    return names


def layer_divergence(models, sizes=None, layer_names=None):
    """Per-layer distances between cluster models and to the global model.

    ``models``: the stacked cluster weights (``ServerState.models``, or the state itself),
    each array (K, ...). ``sizes``: per cluster, the training samples of its clients (the
    weights of the global average; equal without). Returns a DataFrame with one row per
    (layer, pair): ``pair`` is ``"k-l"`` (k < l) for cluster pairs and ``"k-global"``;
    columns ``layer``, ``pair``, ``cosine_distance``, ``l2``. The last layer, ``"all"``,
    is the whole model.
    """
    import pandas as pd

    from .contrast import stacked_weights

    models = [w.astype(np.float64) for w in stacked_weights(models)]
    k = models[0].shape[0]
    names = list(layer_names) if layer_names is not None else default_layer_names(models)
    if len(names) != len(models):
        raise ValueError(f"{len(names)} layer names for {len(models)} weight arrays")
    glob = global_model(models, sizes)
    flat = [np.concatenate([m[c].ravel() for m in models]) for c in range(k)]
    flat_global = np.concatenate([g.ravel() for g in glob])
    rows = []
    for name, m, g, whole in [*zip(names, models, glob, [False] * len(models)), (ALL, None, None, True)]:
        part = (lambda c: flat[c]) if whole else (lambda c, m=m: m[c])
        ref = flat_global if whole else g
        for a in range(k):
            for b in range(a + 1, k):
                rows.append({"layer": name, "pair": f"{a}-{b}", "cosine_distance": cosine_distance(part(a), part(b)),
                             "l2": l2_distance(part(a), part(b))})
        for a in range(k):
            rows.append({"layer": name, "pair": f"{a}-global", "cosine_distance": cosine_distance(part(a), ref),
                         "l2": l2_distance(part(a), ref)})
    return pd.DataFrame(rows, columns=["layer", "pair", "cosine_distance", "l2"])


def cluster_sizes(assignment, sizes, n_clusters: int) -> np.ndarray:
    """Training samples per cluster from each client's cluster and size (the global model's weights)."""
    return np.bincount(np.asarray(assignment, dtype=np.int64), weights=np.asarray(sizes, dtype=np.float64),
                       minlength=int(n_clusters))
