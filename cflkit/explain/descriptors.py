"""Client descriptors: a named vector per client, each entry in a *group*, computed where
the data lives (the client) and sent to the server to explain its cluster membership.

Every group declares the privacy tier it needs (:data:`TIERS`):

- ``label`` (T1) — share of each class in the client's training labels (regression:
  mean / std / quartiles of the target). Optional Laplace noise on the counts
  (``noise`` = the Laplace scale b; b = 1/epsilon gives epsilon-differential privacy of
  the histogram, Dwork et al., TCC 2006).
- ``moments`` (T1, tabular) — per-feature mean and standard deviation. Computed on the
  client's *raw* (unstandardised) values when the federation came from a dataset that
  keeps them (natural federations: ``meta["raw_x"]``, mapped by ``federation.source_rows``):
  a real federation standardises each client with its own statistics, so moments of the
  model inputs would be 0 / 1 everywhere and say nothing.
- ``missing`` (T1, tabular) — share of exact zeros in every non-binary feature, on raw
  values: how sources such as UCI Heart Disease code a missing measurement (cholesterol 0).
- ``spatial`` (T1, images) — moments of the ink mass per image, averaged over the
  client: centroid, second central moments, orientation (as cos / sin of twice the angle,
  so 0° and 180° agree), third-order skew, share of mass per quadrant.
- ``intensity`` (T1, images) — mean and spread of pixel values, share of inked pixels.
- ``update`` (T1) — norm of a local update from the client's cluster model, and the
  loss of the global (size-weighted average) model on the client's training rows.
- ``similarity`` (T0) — per layer, cosine similarity of the client's update (from the
  global model, as an update-based CFL server sees it) to the mean update of each cluster,
  leaving the client itself out of its own cluster's mean.

Descriptors that are constant across all clients carry no information and are dropped.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("cflkit.explain")

TIERS = {"label": "T1", "moments": "T1", "missing": "T1", "spatial": "T1", "intensity": "T1",
         "update": "T1", "similarity": "T0"}


def client_descriptors(federation, *, models=None, assignment=None, config=None, seed: int = 0,
                       noise: float = 0.0):
    """``(descriptors, groups)``: a clients x descriptors DataFrame and descriptor -> group.

    ``models`` (stacked cluster weights, ``ServerState.models``) with ``assignment`` and
    ``config`` add the ``update`` and ``similarity`` groups (one local training round per
    client, seeded by ``seed``). ``noise`` > 0 adds Laplace noise of that scale to the
    label counts before they are turned into shares.
    """
    import pandas as pd

    if federation.task == "survival":
        raise ValueError("client descriptors do not support task 'survival' (their label block needs classes or "
                         "one regression target, not (event, time) pairs)")
    if noise < 0 or not np.isfinite(noise):
        raise ValueError(f"noise must be a finite number >= 0 (the Laplace scale), got {noise}")
    if models is not None and (assignment is None or config is None):
        raise ValueError("update descriptors need the models, the assignment and the run's config; "
                         "pass assignment= and config= with models=")
    rng = np.random.default_rng([int(seed), 7])
    blocks = [("label", label_descriptors(federation, noise, rng))]
    if federation.kind == "image":
        blocks += [("spatial", spatial_descriptors(federation)), ("intensity", intensity_descriptors(federation))]
    else:
        raw = raw_features(federation)
        blocks += [("moments", moment_descriptors(federation, raw))]
        missing = missing_descriptors(federation, raw)
        if missing.shape[1]:
            blocks.append(("missing", missing))
    if models is not None:
        update, similarity = update_descriptors(federation, models, np.asarray(assignment), config, seed)
        blocks += [("update", update), ("similarity", similarity)]
    frames, groups = [], {}
    for group, frame in blocks:
        keep = [c for c in frame.columns if np.ptp(frame[c].to_numpy(dtype=float)) > 1e-12]
        frames.append(frame[keep])
        groups.update({c: group for c in keep})
    table = pd.concat(frames, axis=1)
    table.index = pd.RangeIndex(federation.n_clients, name="client")
    if not np.all(np.isfinite(table.to_numpy(dtype=float))):
        bad = table.columns[~np.isfinite(table.to_numpy(dtype=float)).all(0)].tolist()
        raise ValueError(f"non-finite descriptors {bad}; a client without training rows?")
    return table, groups


# -- T1: labels -----------------------------------------------------------------------------
def label_descriptors(federation, noise: float = 0.0, rng=None):
    """Class shares (classification) or target quantiles (regression) per client."""
    import pandas as pd

    n = federation.n_clients
    if federation.task != "classification":
        rows = []
        for c in range(n):
            y = federation.y[federation.train_index[c]].astype(float)
            q25, q50, q75 = np.percentile(y, [25, 50, 75])
            rows.append({"target_mean": y.mean(), "target_std": y.std(), "target_q25": q25,
                         "target_median": q50, "target_q75": q75})
        return pd.DataFrame(rows)
    counts = np.stack([federation.label_histogram(c) for c in range(n)]).astype(float)
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        counts = np.clip(counts + rng.laplace(0.0, noise, size=counts.shape), 0.0, None)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1e-12)
    return pd.DataFrame(shares, columns=[f"label_{k}_share" for k in range(federation.n_classes)])


# -- T1: tabular ----------------------------------------------------------------------------
def raw_features(federation):
    """The federation's feature values before any per-client standardisation: the
    dataset's ``meta["raw_x"]`` rows of a natural federation, else the model inputs."""
    rows = getattr(federation, "source_rows", None)
    if rows is not None:
        from ..core.datasets import load_dataset

        raw = (load_dataset(federation.dataset).meta or {}).get("raw_x")
        if raw is not None and len(raw) > int(np.max(rows)):
            return np.asarray(raw, dtype=np.float64)[rows]
    return np.asarray(federation.x, dtype=np.float64).reshape(len(federation.x), -1)


def feature_names(federation) -> list[str]:
    """The tabular feature names (from the dataset registry when cheap), else ``f0, f1, ...``."""
    from ..core.datasets import load_dataset, natural_datasets

    d = int(np.prod(federation.x.shape[1:]))
    names = getattr(federation, "feature_names", None)
    if names is None and federation.dataset in ("breast_cancer", *natural_datasets()):
        names = load_dataset(federation.dataset).feature_names
    names = list(names or ())
    return names if len(names) == d else [f"f{i}" for i in range(d)]


def moment_descriptors(federation, raw=None):
    """Per-feature mean and standard deviation over the client's training rows."""
    import pandas as pd

    raw = raw_features(federation) if raw is None else raw
    names = feature_names(federation)
    rows = []
    for c in range(federation.n_clients):
        x = raw[federation.train_index[c]]
        rows.append(np.concatenate([x.mean(0), x.std(0)]))
    return pd.DataFrame(np.array(rows), columns=[f"{n}_mean" for n in names] + [f"{n}_std" for n in names])


def missing_descriptors(federation, raw=None):
    """Share of exact zeros per client in every non-binary feature (zero codes a missing
    value in several sources; for binary features the mean already says it)."""
    import pandas as pd

    raw = raw_features(federation) if raw is None else raw
    names = feature_names(federation)
    binary = np.array([np.isin(np.unique(raw[:, j]), (0.0, 1.0)).all() for j in range(raw.shape[1])])
    cols = np.flatnonzero(~binary & (raw == 0).any(0))
    data = np.array([(raw[federation.train_index[c]][:, cols] == 0).mean(0) for c in range(federation.n_clients)])
    return pd.DataFrame(data.reshape(federation.n_clients, len(cols)), columns=[f"{names[j]}_zero_share" for j in cols])


# -- T1: images -----------------------------------------------------------------------------
def image_moments(images: np.ndarray) -> dict:
    """Moments of the ink mass of each image (N, H, W[, C]) in pixel units, x to the right
    and y downwards: centroid, central second moments, orientation, skew, quadrant shares."""
    img = np.asarray(images, dtype=np.float64)
    if img.ndim == 4:
        img = img.mean(-1)
    n, h, w = img.shape
    mass = img.sum((1, 2))
    mass = np.where(mass > 0, mass, 1e-12)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx = (img * xs).sum((1, 2)) / mass
    cy = (img * ys).sum((1, 2)) / mass
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    mu20 = (img * dx ** 2).sum((1, 2)) / mass
    mu02 = (img * dy ** 2).sum((1, 2)) / mass
    mu11 = (img * dx * dy).sum((1, 2)) / mass
    two_theta = np.arctan2(2 * mu11, mu20 - mu02)  # principal axis angle, doubled
    skew_x = (img * dx ** 3).sum((1, 2)) / mass / np.maximum(mu20, 1e-12) ** 1.5
    skew_y = (img * dy ** 3).sum((1, 2)) / mass / np.maximum(mu02, 1e-12) ** 1.5
    top, left = ys < h / 2, xs < w / 2
    quad = {name: (img * (mask[None])).sum((1, 2)) / mass
            for name, mask in (("top_left", top & left), ("top_right", top & ~left),
                               ("bottom_left", ~top & left), ("bottom_right", ~top & ~left))}
    return {"centroid_x": cx / w, "centroid_y": cy / h, "var_x": mu20, "var_y": mu02, "cov_xy": mu11,
            "orientation_cos": np.cos(two_theta), "orientation_sin": np.sin(two_theta),
            "skew_x": skew_x, "skew_y": skew_y, **{f"mass_{k}": v for k, v in quad.items()}}


def spatial_descriptors(federation):
    """Per client: the mean over its training images of :func:`image_moments`."""
    import pandas as pd

    rows = [{k: float(v.mean()) for k, v in image_moments(federation.x[federation.train_index[c]]).items()}
            for c in range(federation.n_clients)]
    return pd.DataFrame(rows)


def intensity_descriptors(federation):
    """Per client: mean pixel value, mean per-image spread, share of inked pixels (> 0.5)."""
    import pandas as pd

    rows = []
    for c in range(federation.n_clients):
        x = np.asarray(federation.x[federation.train_index[c]], dtype=np.float64).reshape(
            len(federation.train_index[c]), -1)
        rows.append({"intensity_mean": x.mean(), "intensity_std": x.std(1).mean(), "ink_share": (x > 0.5).mean()})
    return pd.DataFrame(rows)


# -- T1 / T0: updates ---------------------------------------------------------------------
def update_descriptors(federation, models, assignment, config, seed: int = 0):
    """``(update, similarity)`` DataFrames from one round of local training.

    ``update``: norm of each client's update from its cluster model, and the loss of the
    global model (cluster models averaged with their clients' total sizes) on the client's
    training rows. ``similarity``: per weight array ("layer") and cluster, the cosine of the
    client's update from the global model to the mean update of that cluster's other clients.
    """
    import pandas as pd

    from ..core.experiment import build_context
    from ..core.trainer import stack, take

    models = [np.asarray(m) for m in models]
    k = models[0].shape[0]
    if assignment.shape != (federation.n_clients,) or assignment.min() < 0 or assignment.max() >= k:
        raise ValueError(f"assignment must give each of the {federation.n_clients} clients a cluster in 0..{k - 1}")
    ctx = build_context(config, federation)
    ctx.rng = np.random.default_rng([int(seed), 11])
    sizes = federation.sizes.astype(float)
    weight = np.array([sizes[assignment == j].sum() for j in range(k)])
    weight = weight / weight.sum()
    global_model = [np.tensordot(weight, m, axes=1) for m in models]
    n = federation.n_clients

    start = take(models, assignment)
    own = [a - b for a, b in zip(ctx.train(start), start)]
    glob_start = stack(global_model, n)
    loss = ctx.trainer.metrics(glob_start, federation.train_index)["loss"]
    from_global = [a - b for a, b in zip(ctx.train(glob_start), glob_start)]

    update = pd.DataFrame({"update_norm": np.sqrt(sum((u.reshape(n, -1) ** 2).sum(1) for u in own)),
                           "global_loss": loss})
    sim = {}
    for layer, u in enumerate(from_global):
        flat = u.reshape(n, -1)
        for j in range(k):
            members = assignment == j
            cos = np.zeros(n)
            for c in range(n):
                others = members.copy()
                others[c] = False
                if others.any():
                    cos[c] = _cosine(flat[c], flat[others].mean(0))
            sim[f"sim_layer{layer}_cluster{j}"] = cos
    return update, pd.DataFrame(sim)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0
