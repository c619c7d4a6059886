"""Figures of layers (b) and (c): per-cluster LIME maps, K×K rank-correlation and agreement
heatmaps, deletion / insertion curves, and the layers × pairs divergence heatmap.

Paper style from :mod:`cflkit.plots` (IEEE sizes, 8 pt, Okabe–Ito); every function returns
the Figure and writes it (pdf + png) when given ``path``.
"""
from __future__ import annotations

import numpy as np

from ..plots import COLUMN, TEXT, _cluster_color, _done, _figure, _style

__all__ = ["importance_maps", "cluster_heatmap", "rank_correlation_heatmap", "agreement_heatmap",
           "faithfulness_curves", "divergence_heatmap", "cluster_pair"]


def _annotate(ax, im, M, fmt, fontsize=7):
    cmap = im.get_cmap()
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if not np.isfinite(M[i, j]):
                continue
            r, g, b, _ = cmap(im.norm(M[i, j]))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, fmt.format(M[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")


def _cluster_labels(k, cluster_names):
    return [str(cluster_names[c]) if cluster_names is not None else f"cluster {c}" for c in range(k)]


def importance_maps(contrast, per_class: bool = False, cluster_names=None, classes=None, top: int | None = None,
                    title: str | None = None, width: float | None = None, path=None):
    """Per-cluster LIME importance.

    Images: one heatmap per cluster of the mean |LIME weight| per pixel (a row of K maps),
    or with ``per_class`` a K × classes grid of the signed mean weight per class (red: for
    the class, blue: against; ``classes`` picks the columns). Tabular data: one panel per
    cluster with horizontal bars of its ``top`` most important features (default: the
    contrast's top-k count).
    """
    K = contrast.n_clusters
    names = _cluster_labels(K, cluster_names)
    with _style():
        if contrast.image_shape:
            if per_class:
                ci = contrast.class_importance.reshape(K, contrast.class_importance.shape[1], *contrast.image_shape,
                                                       -1).mean(axis=-1)
                cols = list(range(ci.shape[1])) if classes is None else list(classes)
                width = width or TEXT
                cell = min(width / (len(cols) + 0.6), 0.9)
                fig, axes = _figure(width, cell * K + 0.4, nrows=K, ncols=len(cols), squeeze=False)
                lim = float(np.abs(ci[:, cols]).max()) or 1.0
                for k in range(K):
                    for j, c in enumerate(cols):
                        ax = axes[k, j]
                        im = ax.imshow(ci[k, c], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
                        ax.set_xticks([])
                        ax.set_yticks([])
                        if k == 0:
                            ax.set_title(f"class {c}", fontsize=7)
                        if j == 0:
                            ax.set_ylabel(names[k], fontsize=7)
                fig.colorbar(im, ax=axes, label="signed LIME weight", shrink=0.8)
            else:
                maps = contrast.maps()
                maps = maps.reshape(K, *contrast.image_shape, -1).mean(axis=-1) if maps.ndim > 3 else maps
                width = width or (COLUMN if K <= 4 else TEXT)
                fig, axes = _figure(width, width / (K + 0.5) + 0.45, ncols=K, squeeze=False)
                vmax = float(maps.max()) or 1.0
                for k, ax in enumerate(axes[0]):
                    im = ax.imshow(maps[k], cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_title(names[k], fontsize=7)
                fig.colorbar(im, ax=axes, label="mean |LIME weight|", shrink=0.8)
        else:
            n = int(top or max(len(v) for v in contrast.top_features.values()))
            width = width or TEXT
            fig, axes = _figure(width, 0.6 + 0.16 * n, ncols=K, squeeze=False, sharex=True)
            feats = np.asarray(contrast.feature_names)
            for k, ax in enumerate(axes[0]):
                order = np.argsort(-contrast.importance[k], kind="stable")[:n]
                ax.barh(np.arange(len(order))[::-1], contrast.importance[k, order], color=_cluster_color(k))
                ax.set_yticks(np.arange(len(order))[::-1])
                ax.set_yticklabels(feats[order], fontsize=6)
                ax.set_title(names[k], fontsize=7)
                ax.set_xlabel("mean |LIME weight|")
        if title:
            fig.suptitle(title)
    return _done(fig, path)


def cluster_heatmap(matrix, label: str, cluster_names=None, vmin: float | None = None, vmax: float | None = None,
                    cmap: str = "viridis", fmt: str = "{:.2f}", title: str | None = None, width: float = COLUMN * 0.62,
                    ax=None, path=None):
    """An annotated K×K matrix between clusters (rank correlation, agreement, ...)."""
    M = np.asarray(matrix, dtype=float)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"expected a square K×K matrix, got shape {M.shape}")
    K = M.shape[0]
    with _style():
        own = ax is None
        fig, ax = _figure(width, width * 0.85) if own else (ax.figure, ax)
        im = ax.imshow(M, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        _annotate(ax, im, M, fmt, fontsize=7 if K <= 6 else 5)
        ticks = [str(cluster_names[c]) if cluster_names is not None else str(c) for c in range(K)]
        ax.set_xticks(range(K))
        ax.set_xticklabels(ticks)
        ax.set_yticks(range(K))
        ax.set_yticklabels(ticks)
        ax.set_xlabel("cluster")
        ax.set_ylabel("cluster")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
        if title:
            ax.set_title(title)
    return _done(fig, path)


def rank_correlation_heatmap(contrast, matrix=None, label: str = "Spearman ρ", **kw):
    """The clusters' importance rank correlation (or another K×K ``matrix``, e.g. the aligned one)."""
    return cluster_heatmap(contrast.rank_correlation if matrix is None else matrix, label, vmin=-1, vmax=1,
                           cmap="RdBu_r", **kw)


def agreement_heatmap(contrast, label: str = "prediction agreement", **kw):
    """The K×K prediction agreement of the cluster models on the probe rows."""
    return cluster_heatmap(contrast.agreement, label, vmin=0, vmax=1, **kw)


def faithfulness_curves(contrast, title: str | None = None, width: float = COLUMN, path=None):
    """Deletion and insertion curves: the explained score as features are removed (left) or
    added (right) in LIME's order (solid) or at random (dashed), one colour per cluster."""
    curves = contrast.curves
    with _style():
        fig, axes = _figure(width, 1.6, ncols=2, sharey=True)
        for ax, kind in zip(axes, ("deletion", "insertion")):
            for k in range(contrast.n_clusters):
                for order, style in (("lime", "-"), ("random", "--")):
                    part = curves[(curves["cluster"] == k) & (curves["kind"] == kind) & (curves["order"] == order)]
                    ax.plot(part["fraction"], part["score"], style, color=_cluster_color(k),
                            label=f"cluster {k}" if order == "lime" and kind == "deletion" else None)
            ax.set_title(kind)
            ax.set_xlabel("share " + ("removed" if kind == "deletion" else "added"))
        axes[0].plot([], [], "-", color="black", label="LIME order")
        axes[0].plot([], [], "--", color="black", label="random order")
        axes[0].set_ylabel("explained score")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                   ncol=min(contrast.n_clusters + 2, 3), fontsize=7)
        if title:
            fig.suptitle(title)
    return _done(fig, path)


def divergence_heatmap(table, metric: str = "cosine_distance", title: str | None = None, fmt: str = "{:.2f}",
                       width: float = COLUMN, ax=None, path=None):
    """Layers (rows) × cluster pairs (columns) of ``metric`` from :func:`~.divergence.layer_divergence`."""
    if metric not in ("cosine_distance", "l2"):
        raise ValueError(f"unknown metric {metric!r}; choose one of: cosine_distance, l2")
    M = table.pivot_table(index="layer", columns="pair", values=metric, sort=False)
    layers, pairs = list(dict.fromkeys(table["layer"])), list(dict.fromkeys(table["pair"]))
    M = M.reindex(index=layers, columns=pairs).to_numpy(dtype=float)
    with _style():
        own = ax is None
        fig, ax = _figure(width, 0.7 + 0.2 * len(layers)) if own else (ax.figure, ax)
        im = ax.imshow(M, cmap="viridis", vmin=0, aspect="auto", interpolation="nearest")
        _annotate(ax, im, M, fmt, fontsize=5 if len(pairs) > 6 else 6)
        ax.set_xticks(range(len(pairs)))
        ax.set_xticklabels(pairs, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers, fontsize=6)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(im, ax=ax, label=metric.replace("_", " "), shrink=0.9)
        if title:
            ax.set_title(title)
    return _done(fig, path)


def cluster_pair(contrast, k: int, l: int, width: float = COLUMN, path=None):  # noqa: E741 - k and l as in the text
    """Two clusters side by side, titled with their rank correlation and prediction agreement.

    Images: cluster k's and cluster l's importance maps and their difference (k - l).
    Tabular data: the importance of the features that are in either cluster's top-k.
    """
    K = contrast.n_clusters
    for name, c in (("k", k), ("l", l)):
        if not 0 <= int(c) < K:
            raise ValueError(f"{name} must be a cluster in 0..{K - 1}, got {c}")
    caption = (f"clusters {k} and {l}: Spearman ρ {contrast.rank_correlation[k, l]:.2f}, "
               f"agreement {contrast.agreement[k, l]:.2f}")
    with _style():
        if contrast.image_shape:
            maps = contrast.maps()
            maps = maps.reshape(K, *contrast.image_shape, -1).mean(axis=-1) if maps.ndim > 3 else maps
            fig, axes = _figure(width, width / 3.2 + 0.5, ncols=3)
            vmax = float(max(maps[k].max(), maps[l].max())) or 1.0
            diff = maps[k] - maps[l]
            lim = float(np.abs(diff).max()) or 1.0
            for ax, m, title, kw in ((axes[0], maps[k], f"cluster {k}", dict(cmap="viridis", vmin=0, vmax=vmax)),
                                     (axes[1], maps[l], f"cluster {l}", dict(cmap="viridis", vmin=0, vmax=vmax)),
                                     (axes[2], diff, f"{k} − {l}", dict(cmap="RdBu_r", vmin=-lim, vmax=lim))):
                ax.imshow(m, interpolation="nearest", **kw)
                ax.set_title(title, fontsize=7)
                ax.set_xticks([])
                ax.set_yticks([])
        else:
            shown = list(dict.fromkeys([*contrast.top_features[k], *contrast.top_features[l]]))
            idx = [list(contrast.feature_names).index(f) for f in shown]
            fig, ax = _figure(width, 0.7 + 0.16 * len(shown))
            y = np.arange(len(shown))[::-1]
            ax.barh(y + 0.2, contrast.importance[k, idx], height=0.4, color=_cluster_color(k), label=f"cluster {k}")
            ax.barh(y - 0.2, contrast.importance[l, idx], height=0.4, color=_cluster_color(l), label=f"cluster {l}")
            ax.set_yticks(y)
            ax.set_yticklabels(shown, fontsize=6)
            ax.set_xlabel("mean |LIME weight|")
            ax.legend(loc="lower right", fontsize=6)
        fig.suptitle(caption, fontsize=7)
    return _done(fig, path)
