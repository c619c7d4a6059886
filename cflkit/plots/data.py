"""What the clients' data look like: samples, labels, sizes, PACFL's subspaces, real sites."""
from __future__ import annotations

import textwrap

import numpy as np

from ._common import _boundaries, _by_group, _client_ticks, _group_label, _group_legend, _group_strip
from .style import COLUMN, OKABE_ITO, _done, _figure, _style, _title, group_color


def _pick_clients(fed, per_group: int = 2, most: int = 8) -> np.ndarray:
    """Up to ``per_group`` clients of each group (lowest ids), at most ``most`` in all."""
    picked = [c for g in np.unique(fed.groups) for c in np.flatnonzero(fed.groups == g)[:per_group]]
    return np.asarray(picked[:most], dtype=np.int64)


def _bare(ax):
    """No ticks, no spines: ``ax`` holds an image tile."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def _row_label(ax, fed, c: int):
    """Client ``c`` and its group's name left of a row of tiles, in the group's colour."""
    g = int(fed.groups[c])
    ax.set_ylabel(f"client {c}\n{_group_label(fed, g, 14)}", rotation=0, ha="right", va="center", fontsize=7,
                  color=group_color(g))


def client_samples(federation, clients=None, per_client: int = 6, title: str | None = None,
                   width: float = COLUMN, path=None):
    """Example training samples of several clients, one row per client, labelled by group.

    Images: ``per_client`` images per client with their labels. Tabular data: heatmaps
    of each client's mean and standard deviation of every feature, clients ordered by group.
    ``clients`` defaults to two clients of each group (at most eight) for images and to
    every client for tabular data.
    """
    fed = federation
    if fed.kind == "image":
        fig = _image_samples(fed, _pick_clients(fed) if clients is None else np.asarray(clients), per_client, width)
    else:
        fig = _feature_means(fed, clients, width)
    return _done(_title(fig, title), path)


def _image_samples(fed, clients, per_client, width):
    label_w = 1.0
    tile = (width - label_w) / per_client
    with _style():
        fig, axes = _figure(width, len(clients) * tile * 1.2 + 0.1, nrows=len(clients), ncols=per_client,
                            squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
        for row, c in zip(axes, clients):
            rows = fed.train_index[c][:per_client]
            for j, ax in enumerate(row):
                _bare(ax)
                if j >= len(rows):
                    continue
                ax.imshow(np.clip(fed.x[rows[j]].squeeze(), 0, 1), cmap="gray_r", vmin=0, vmax=1,
                          interpolation="nearest")
                ax.set_title(str(fed.y[rows[j]]), fontsize=7, pad=1)
            _row_label(row[0], fed, c)
    return fig


def _feature_means(fed, clients, width):
    order = _by_group(fed, clients)
    rows = [fed.x[fed.train_index[c]].reshape(len(fed.train_index[c]), -1) for c in order]
    panels = (("mean", np.stack([r.mean(axis=0) for r in rows]), "RdBu_r"),
              ("standard deviation", np.stack([r.std(axis=0) for r in rows]), "Blues"))
    with _style():
        fig, axes = _figure(width, min(0.6 + 0.12 * len(order), 6.0) + 0.7, ncols=2, sharey=True)
        for ax, (name, values, cmap) in zip(axes, panels):
            lim = float(np.nanmax(np.abs(values))) or 1.0
            im = ax.imshow(values, aspect="auto", cmap=cmap, vmin=-lim if cmap == "RdBu_r" else 0, vmax=lim,
                           interpolation="nearest")
            for boundary in _boundaries(fed.groups[order]):
                ax.axhline(boundary, color="black", lw=0.6)
            ax.set_xlabel("feature")
            ax.set_title(f"per-client {name}", fontsize=7)
            fig.colorbar(im, ax=ax, location="bottom", shrink=0.9, aspect=15)
        axes[0].set_ylabel("client")
        _client_ticks(axes[0].yaxis, order, fed)
        axes[0].tick_params(axis="y", labelsize=7)
        _group_legend(fig, fed, np.unique(fed.groups[order]))
    return fig


def label_histograms(federation, title: str | None = None, width: float = COLUMN, path=None):
    """Class counts of every client's training data: a clients × classes heatmap.

    Clients are ordered by ground-truth group; the strip above and the tick colours give
    each client's group.
    """
    fed = federation
    if fed.task != "classification":
        raise ValueError(f"label_histograms needs a classification federation; {fed.dataset!r} is {fed.task}")
    order = _by_group(fed)
    counts = np.stack([fed.label_histogram(c) for c in order]).T  # classes × clients
    with _style():
        fig, ax = _figure(width, 0.9 + 0.14 * fed.n_classes + 0.25 * int(np.ceil(fed.n_groups / 2)))
        im = ax.imshow(counts, aspect="auto", cmap="Blues", origin="lower", interpolation="nearest")
        ax.set_xlabel("client (ordered by group)")
        ax.set_ylabel("class")
        ax.set_yticks(np.arange(fed.n_classes))
        _client_ticks(ax.xaxis, order, fed)
        ax.tick_params(axis="x", labelsize=7)
        for boundary in _boundaries(fed.groups[order]):
            ax.axvline(boundary, color="black", lw=0.6)
        _group_strip(ax, fed, order)
        fig.colorbar(im, ax=ax, label="training samples", shrink=0.9)
        _group_legend(fig, fed, np.unique(fed.groups))
    return _done(_title(fig, title), path)


def client_sizes(federation, title: str | None = None, width: float = COLUMN, path=None):
    """Training samples per client, clients ordered by group, bars coloured by group."""
    fed = federation
    order = _by_group(fed)
    with _style():
        fig, ax = _figure(width, 1.8 + 0.25 * int(np.ceil(fed.n_groups / 2)))
        ax.bar(np.arange(len(order)), fed.sizes[order], color=[group_color(g) for g in fed.groups[order]],
               width=0.8)
        ax.set_xlabel("client (ordered by group)")
        ax.set_ylabel("training samples")
        ax.set_xlim(-0.6, len(order) - 0.4)
        _client_ticks(ax.xaxis, order, fed)
        ax.tick_params(axis="x", labelsize=7)
        _group_legend(fig, fed, np.unique(fed.groups))
    return _done(_title(fig, title), path)


def subspace_bases(bases, federation, clients=None, title: str | None = None, width: float = COLUMN, path=None):
    """What PACFL clients send: the basis vectors of their data subspaces, drawn as images.

    ``bases[c]`` is client ``c``'s orthonormal (features, p) basis
    (:func:`cflkit.methods.parts.representations.data_subspace`). One row per client (default: one client of
    each group, at most eight), one column per basis vector, on a diverging scale (a singular
    vector's sign is arbitrary). Image federations only.
    """
    fed = federation
    if fed.kind != "image":
        raise ValueError(f"subspace_bases draws image-shaped vectors; {fed.dataset!r} is {fed.kind} data")
    clients = _pick_clients(fed, per_group=1) if clients is None else np.asarray(clients, dtype=np.int64)
    shape = tuple(fed.input_shape[:2])
    p = int(np.asarray(bases[clients[0]]).shape[1])
    label_w = 1.0
    tile = min((width - label_w) / p, 0.6)
    with _style():
        fig, axes = _figure(label_w + tile * p + 0.1, len(clients) * tile * 1.15 + 0.35, nrows=len(clients), ncols=p,
                            squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
        for row, c in zip(axes, clients):
            U = np.asarray(bases[c])
            for j, ax in enumerate(row):
                v = U[:, j].reshape(shape) if j < U.shape[1] else np.zeros(shape)
                lim = float(np.abs(v).max()) or 1.0
                ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
                _bare(ax)
                if c == clients[0]:
                    ax.set_title(f"$u_{j + 1}$", fontsize=7, pad=2)
            _row_label(row[0], fed, c)
    return _done(_title(fig, title), path)


# -- real federations: one client per site (hospital, station) ------------------------------
def site_distributions(values: dict, groups=None, group_names=None, ylabel: str = "", log: bool = False,
                       title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """The distribution of one quantity at every site, as box plots side by side.

    ``values`` maps a site name to its values (e.g. a station's daily PM2.5, a hospital's
    cholesterol); boxes span the quartiles, whiskers 1.5 IQR, outliers as small dots.
    ``groups`` (one group id per site, in ``values`` order) colours the boxes and adds a
    legend named by ``group_names``.
    """
    names = list(values)
    data = [np.asarray(values[n], dtype=float) for n in names]
    g = None if groups is None else np.asarray(groups, dtype=np.int64)
    if g is not None and g.shape != (len(names),):
        raise ValueError(f"groups must hold one group id per site ({len(names)}), got shape {g.shape}")
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.4) if own else (ax.figure, ax)
        box = ax.boxplot(data, patch_artist=True, widths=0.6, flierprops={"markersize": 1.5, "alpha": 0.4,
                                                                             "markeredgewidth": 0})
        for i, patch in enumerate(box["boxes"]):
            color = group_color(g[i]) if g is not None else OKABE_ITO[0]
            patch.set_facecolor(color)
            patch.set_alpha(0.6)
            patch.set_edgecolor("black")
            patch.set_linewidth(0.5)
            box["fliers"][i].set_markerfacecolor(color)
        for median in box["medians"]:
            median.set_color("black")
        ax.set_xticks(np.arange(1, len(names) + 1))
        many = len(names) > 6
        ax.set_xticklabels(names if many else [textwrap.fill(n, 11) for n in names], rotation=45 if many else 0,
                           ha="right" if many else "center")
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if g is not None:
            _site_legend(fig, ax, own, g, group_names)
    return _done(fig, path)


def _site_legend(fig, ax, own: bool, g, group_names):
    """One patch per group of the sites: below the figure when it is ours, else inside ``ax``."""
    from matplotlib.patches import Patch

    labels = list(group_names or ())
    handles = [Patch(color=group_color(k), alpha=0.6,
                     label=str(labels[k]) if k < len(labels) else f"group {k}") for k in np.unique(g)]
    if own:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    else:
        ax.legend(handles=handles, loc="best")
