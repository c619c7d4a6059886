"""Figures, one function per kind, made at final paper size.

Every function draws in paper style (IEEE: one column 3.5 in, text width 7.16 in, 8 pt
fonts, TrueType fonts embedded in PDFs, the colour-blind-safe Okabe–Ito palette), returns
the :class:`~matplotlib.figure.Figure`, and writes it through :func:`save` when given a
``path``. The same functions serve notebooks (shown inline) and batch runs (saved).

Figures are made with pyplot, so Jupyter shows them; a batch script that makes many should
``plt.close(fig)`` after saving. This module never selects a matplotlib backend.
"""
from __future__ import annotations

import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .core.results import atomic_file

COLUMN = 3.5  # IEEE column width, inches
TEXT = 7.16  # IEEE text width (two columns), inches

# Okabe & Ito (2008), "Color Universal Design"; yellow last, it is faint on white.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")

# Fixed colours for the baselines, so a method looks the same in every figure.
METHOD_COLORS = {"fedavg": "#0072B2", "fedprox": "#56B4E9", "local": "#E69F00", "oracle": "#009E73",
                 "random": "#CC79A7", "centralized": "#000000"}
METHOD_STYLES = {"local": ":", "centralized": "--", "random": "-."}

RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 8,
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
    "figure.dpi": 150, "savefig.dpi": 300,
    "axes.linewidth": 0.6, "lines.linewidth": 1.2, "lines.markersize": 3,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "xtick.major.size": 2.5, "ytick.major.size": 2.5,
    "axes.spines.top": False, "axes.spines.right": False,
    "legend.frameon": False, "legend.handlelength": 1.6,
}

FORMATS = ("pdf", "png", "svg")


@contextmanager
def _style():
    """Apply :data:`RC` and restore only those settings afterwards.

    Unlike ``plt.rc_context`` this leaves alone what matplotlib changes meanwhile: when
    the first figure loads Jupyter's inline backend it switches interactive mode on, and
    undoing that would stop later figures from being shown.
    """
    import matplotlib

    saved = {k: matplotlib.rcParams[k] for k in RC}
    matplotlib.rcParams.update(RC)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _figure(width: float, height: float, **kw):
    """A constrained-layout figure in paper style (call inside ``_style()``)."""
    return _plt().subplots(figsize=(width, height), layout="constrained", **kw)


def subplots(nrows: int = 1, ncols: int = 1, width: float = TEXT, height: float = 2.4, **kw):
    """``(fig, axes)`` in paper style, for combining several plots through their ``ax`` argument."""
    with _style():
        return _figure(width, height, nrows=nrows, ncols=ncols, **kw)


def group_color(g: int) -> str:
    """Colour of ground-truth group (or cluster) ``g``."""
    return OKABE_ITO[int(g) % len(OKABE_ITO)]


def method_color(name: str, i: int) -> str:
    """Colour of method ``name`` (fixed for baselines), else the ``i``-th palette colour."""
    return METHOD_COLORS.get(name, OKABE_ITO[i % len(OKABE_ITO)])


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
# After the Okabe–Ito colours, for figures with many methods: tab10's that differ most from them.
EXTRA_COLORS = ("#8C564B", "#9467BD", "#7F7F7F", "#BCBD22", "#17BECF")


def method_colors(names) -> dict:
    """A distinct colour for every method of one figure: the baselines keep their fixed
    colours (:data:`METHOD_COLORS`), the other methods take, in order, the Okabe–Ito colours
    no baseline of this figure uses, then :data:`EXTRA_COLORS`, yellow (faint) last."""
    names = [str(n) for n in dict.fromkeys(names)]
    taken = {METHOD_COLORS[n] for n in names if n in METHOD_COLORS}
    spare = [c for c in (*OKABE_ITO[:-1], *EXTRA_COLORS, OKABE_ITO[-1]) if c not in taken]
    free = iter(spare * (1 + len(names) // max(len(spare), 1)))
    return {n: METHOD_COLORS[n] if n in METHOD_COLORS else next(free) for n in names}


def save(fig, path, dpi: int | None = None) -> list[Path]:
    """Write ``fig`` to ``path`` atomically (temporary sibling file, then ``os.replace``).

    The suffix picks the format (``.pdf``, ``.png``, ``.svg``); a path without one of
    these suffixes is written as both ``<path>.pdf`` (vector, for the paper) and
    ``<path>.png`` (for quick viewing). Missing directories are created. Returns the
    paths written.
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    targets = [path] if suffix in FORMATS else [path.with_name(path.name + f".{f}") for f in ("pdf", "png")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _style():
        for target in targets:
            with atomic_file(target) as tmp:
                fig.savefig(tmp, format=target.suffix[1:].lower(), dpi=dpi or RC["savefig.dpi"])
    return targets


def _title(fig, title):
    if title:
        with _style():
            fig.suptitle(title)
    return fig


def _done(fig, path):
    if path is not None:
        save(fig, path)
    return fig


def _group_label(fed, g: int, width: int = 18) -> str:
    names = getattr(fed, "group_names", ()) or ()
    name = names[g] if g < len(names) else f"group {g}"
    return textwrap.fill(str(name), width)


def _group_legend(fig, fed, groups, ncol=2):
    from matplotlib.patches import Patch

    handles = [Patch(color=group_color(g), label=f"{g}: {_group_label(fed, g, 40)}") for g in groups]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)),
               title="ground-truth group", title_fontsize=8, handlelength=1.0, columnspacing=1.0)


def _legend(fig, ax, own: bool, n: int, **kw):
    """Below the plot when the figure is ours, inside the axes when the caller's."""
    if own:
        fig.legend(loc="outside lower center", ncol=min(n, 3), columnspacing=1.2, **kw)
    else:
        ax.legend(loc="best", **kw)


def _by_group(fed, clients=None) -> np.ndarray:
    """Clients (default: all) ordered by ground-truth group, then by id."""
    clients = np.arange(fed.n_clients) if clients is None else np.asarray(clients, dtype=np.int64)
    return clients[np.lexsort((clients, fed.groups[clients]))]


def _pick_clients(fed, per_group: int = 2, most: int = 8) -> np.ndarray:
    """Up to ``per_group`` clients of each group (lowest ids), at most ``most`` in all."""
    picked = [c for g in np.unique(fed.groups) for c in np.flatnonzero(fed.groups == g)[:per_group]]
    return np.asarray(picked[:most], dtype=np.int64)


def _group_strip(ax, fed, order):
    """A thin bar of group colours above the client axis of ``ax``."""
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([group_color(g) for g in range(int(fed.groups.max()) + 1)])
    strip = ax.inset_axes([0, 1.02, 1, 0.06])
    strip.imshow(fed.groups[order][None, :], aspect="auto", cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5,
                 interpolation="nearest")
    strip.set_axis_off()
    return strip


def _client_ticks(axis, order, fed, every: int | None = None, names=None):
    """Tick every ``every``-th position with its client id (``names[order[i]]`` if given),
    coloured by group."""
    n = len(order)
    every = every or max(1, int(np.ceil(n / 24)))
    shown = np.arange(0, n, every)
    axis.set_ticks(shown)
    axis.set_ticklabels([str(order[i] if names is None else names[order[i]]) for i in shown])
    for label, i in zip(axis.get_ticklabels(), shown):
        label.set_color(group_color(fed.groups[order[i]]))


# -- the data of a federation ---------------------------------------------------------------
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
            g = int(fed.groups[c])
            for j, ax in enumerate(row):
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
                if j >= len(rows):
                    continue
                ax.imshow(np.clip(fed.x[rows[j]].squeeze(), 0, 1), cmap="gray_r", vmin=0, vmax=1,
                          interpolation="nearest")
                ax.set_title(str(fed.y[rows[j]]), fontsize=7, pad=1)
            row[0].set_ylabel(f"client {c}\n{_group_label(fed, g, 14)}", rotation=0, ha="right",
                              va="center", fontsize=7, color=group_color(g))
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
            for boundary in np.flatnonzero(np.diff(fed.groups[order])) + 0.5:
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
        for boundary in np.flatnonzero(np.diff(fed.groups[order])) + 0.5:
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


# -- the results of runs --------------------------------------------------------------------
def _history(value):
    """A history DataFrame from a DataFrame or anything with ``.history`` (a Result)."""
    return getattr(value, "history", value)


def accuracy_curves(histories: dict, band: str | None = "minmax", metric: str = "accuracy",
                    title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """Mean test ``metric`` over clients per round, one line per method.

    ``histories`` maps a label to a history DataFrame (or a :class:`~cflkit.Result`).
    ``band``: ``"minmax"`` shades the range over clients, ``"worst10"`` shades from the
    mean of the worst 10 % of clients up to the mean, ``None`` draws lines only.
    """
    from .core.metrics import worst_fraction_mean

    if band not in (None, "minmax", "worst10"):
        raise ValueError(f"unknown band {band!r}; choose one of: minmax, worst10, None")
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.4) if own else (ax.figure, ax)
        colors = method_colors(histories)
        for i, (label, value) in enumerate(histories.items()):
            h = _history(value)
            per_round = h.groupby("round")[metric]
            rounds = np.asarray(sorted(h["round"].unique()))
            mean = per_round.mean().to_numpy()
            color = colors[str(label)]
            ax.plot(rounds, mean, color=color, ls=METHOD_STYLES.get(str(label), "-"), label=str(label))
            if band == "minmax":
                ax.fill_between(rounds, per_round.min().to_numpy(), per_round.max().to_numpy(),
                                color=color, alpha=0.15, lw=0)
            elif band == "worst10":
                low = per_round.apply(lambda v: worst_fraction_mean(v.to_numpy(), 0.10)).to_numpy()
                ax.fill_between(rounds, low, mean, color=color, alpha=0.15, lw=0)
        ax.set_xlabel("round")
        ax.set_ylabel(f"mean test {metric}")
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if title:
            ax.set_title(title)
        _legend(fig, ax, own, len(histories))
    return _done(fig, path)


def per_client_accuracy(histories: dict, round: int | None = None, group_names=None, metric: str = "accuracy",
                        title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """Test ``metric`` of every client at ``round`` (default: the last), grouped by ground truth.

    One dot per client, methods side by side within each group, a bar at the group mean.
    ``group_names`` defaults to the federation's names when the values are Results.
    """
    if group_names is None:
        fed = next((getattr(v, "federation", None) for v in histories.values()
                    if getattr(v, "federation", None) is not None), None)
        group_names = getattr(fed, "group_names", None)
    rng = np.random.default_rng(0)  # jitter only
    n = len(histories)
    step = 0.8 / max(n, 1)
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.4) if own else (ax.figure, ax)
        groups = []
        colors = method_colors(histories)
        for i, (label, value) in enumerate(histories.items()):
            h = _history(value)
            last = h[h["round"] == (h["round"].max() if round is None else round)]
            color = colors[str(label)]
            for g, part in last.groupby("group"):
                groups.append(int(g))
                x = int(g) - 0.4 + step * (i + 0.5)
                v = part[metric].to_numpy()
                ax.scatter(x + rng.uniform(-0.25, 0.25, len(v)) * step, v, s=6, color=color, lw=0,
                           alpha=0.8, label=str(label) if g == last["group"].min() else None)
                ax.hlines(v.mean(), x - 0.4 * step, x + 0.4 * step, color=color, lw=1.5)
        ticks = sorted(set(groups))
        ax.set_xticks(ticks)
        names = list(group_names or ())
        ax.set_xticklabels([textwrap.fill(str(names[g]) if g < len(names) else f"group {g}", 12) for g in ticks],
                           fontsize=7)
        for g in ticks[:-1]:
            ax.axvline(g + 0.5, color="0.85", lw=0.5)
        ax.set_xlim(min(ticks, default=0) - 0.5, max(ticks, default=0) + 0.5)
        ax.set_xlabel("ground-truth group")
        ax.set_ylabel(f"test {metric} per client")
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)
        if title:
            ax.set_title(title)
        _legend(fig, ax, own, n, handletextpad=0.2, markerscale=1.5)
    return _done(fig, path)


# -- what a clustering server sees, and what it decides ---------------------------------------
def _planted(groups, group_names=None):
    """``groups`` (a federation, a Result, or one group id per client) as a small federation-like
    object with ``groups``, ``group_names``, ``n_clients`` and ``n_groups``."""
    from types import SimpleNamespace

    source = getattr(groups, "federation", None) or groups
    names = group_names if group_names is not None else getattr(source, "group_names", ())
    g = np.asarray(getattr(source, "groups", source), dtype=np.int64)
    if g.ndim != 1 or g.size == 0 or g.min() < 0:
        raise ValueError(f"groups must be one non-negative group id per client, got {g.tolist()[:10]}")
    return SimpleNamespace(groups=g, group_names=tuple(names or ()), n_clients=len(g),
                           n_groups=int(g.max()) + 1)


def _cluster_color(k: int) -> str:
    """Colour of cluster ``k``: the Okabe–Ito palette, then tab20 for clusters past it."""
    if k < len(OKABE_ITO):
        return OKABE_ITO[k]
    import matplotlib

    return matplotlib.colors.to_hex(matplotlib.colormaps["tab20"]((k - len(OKABE_ITO)) % 20))


def _boundaries(groups_in_order) -> np.ndarray:
    return np.flatnonzero(np.diff(groups_in_order)) + 0.5


def similarity_matrix(matrix, groups, label: str = "cosine similarity", group_names=None,
                      cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
                      title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """A clients × clients matrix (similarities or distances) with clients ordered by planted group.

    Rows and columns are sorted by ground-truth group (then client id); black lines mark the
    group boundaries and a coloured strip on top gives each client's group, so a method that
    sees the groups shows as bright (or dark) blocks on the diagonal. ``groups`` is a
    federation, a Result or one group id per client. A matrix with negative entries is drawn
    on a diverging scale centred at 0 (``RdBu_r``), otherwise on ``viridis``; ``label``
    names the colour bar.
    """
    fed = _planted(groups, group_names)
    M = np.asarray(matrix, dtype=float)
    if M.shape != (fed.n_clients, fed.n_clients):
        raise ValueError(f"matrix has shape {M.shape}, expected ({fed.n_clients}, {fed.n_clients}): "
                         f"one row and one column per client")
    order = _by_group(fed)
    M = M[np.ix_(order, order)]
    diverging = np.nanmin(M) < 0
    if diverging and vmin is None and vmax is None:
        lim = float(np.nanmax(np.abs(M))) or 1.0
        vmin, vmax = -lim, lim
    with _style():
        own = ax is None
        fig, ax = _figure(width, width * 0.86 + 0.25 * int(np.ceil(fed.n_groups / 2))) if own else (ax.figure, ax)
        im = ax.imshow(M, cmap=cmap or ("RdBu_r" if diverging else "viridis"), vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        for b in _boundaries(fed.groups[order]):
            ax.axhline(b, color="black", lw=0.6)
            ax.axvline(b, color="black", lw=0.6)
        _client_ticks(ax.xaxis, order, fed)
        _client_ticks(ax.yaxis, order, fed)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("client (ordered by group)")
        ax.set_ylabel("client")
        for side in ax.spines.values():
            side.set_visible(True)
        _group_strip(ax, fed, order)
        fig.colorbar(im, ax=ax, label=label, shrink=0.85)
        if title:
            ax.set_title(title, pad=10)
        if own:
            _group_legend(fig, fed, np.unique(fed.groups))
    return _done(fig, path)


def dendrogram(X, groups, distances: bool = False, metric: str = "euclidean", method: str = "ward",
               cut: float | None = None, clusters: int | None = None, group_names=None, ylabel: str | None = None,
               title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """Hierarchical clustering of the clients as a tree, leaves coloured by planted group.

    ``X`` is one of: representation rows (one per client, clustered with ``metric`` and
    ``method`` linkage — Ward on Euclidean rows, as FL+HC does); a square distance matrix
    (with ``distances=True``; not with Ward); or a SciPy linkage matrix. Each leaf is a client,
    its label and the marker below it in its group's colour: a clustering that recovers the
    groups joins each colour first. ``cut`` draws the height at which the tree is cut;
    ``clusters=K`` draws the cut that leaves K clusters (half-way between the two merges).
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    fed = _planted(groups, group_names)
    X = np.asarray(X, dtype=float)
    if X.ndim == 2 and X.shape == (fed.n_clients - 1, 4) and hierarchy.is_valid_linkage(X):
        Z = X
    elif distances:
        if method == "ward":
            raise ValueError("Ward linkage needs representation rows, not distances; use method='average', "
                             "'complete' or 'single'")
        if X.shape != (fed.n_clients, fed.n_clients):
            raise ValueError(f"distances have shape {X.shape}, expected ({fed.n_clients}, {fed.n_clients})")
        D = (X + X.T) / 2
        np.fill_diagonal(D, 0.0)
        Z = hierarchy.linkage(squareform(np.clip(D, 0, None), checks=False), method=method)
    else:
        if len(X) != fed.n_clients:
            raise ValueError(f"X has {len(X)} rows, expected one per client ({fed.n_clients})")
        if method == "ward" and metric != "euclidean":
            raise ValueError("Ward linkage needs metric='euclidean'")
        Z = hierarchy.linkage(X.reshape(len(X), -1), method=method, metric=metric)
    if clusters is not None:
        if not 2 <= clusters <= fed.n_clients:
            raise ValueError(f"clusters must be between 2 and the {fed.n_clients} clients, got {clusters}")
        heights = Z[:, 2]
        cut = float(heights[-clusters] + heights[-clusters + 1]) / 2
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.2 + 0.25 * int(np.ceil(fed.n_groups / 2))) if own else (ax.figure, ax)
        tree = hierarchy.dendrogram(Z, ax=ax, labels=[str(c) for c in range(fed.n_clients)],
                                    link_color_func=lambda _: "0.25", leaf_font_size=6, leaf_rotation=90)
        leaves = np.asarray(tree["leaves"])
        for label, c in zip(ax.get_xticklabels(), leaves):
            label.set_color(group_color(fed.groups[c]))
        xs = 5 + 10 * np.arange(len(leaves))
        ax.scatter(xs, np.zeros(len(leaves)), c=[group_color(fed.groups[c]) for c in leaves], s=12,
                   marker="s", zorder=3, clip_on=False, lw=0)
        if cut is not None:
            ax.axhline(cut, color="#D55E00", ls="--", lw=0.8)
            ax.annotate(f"cut: {clusters} clusters" if clusters else "cut", (xs[-1] + 5, cut), xytext=(2, 2),
                        textcoords="offset points", fontsize=7, color="#D55E00", ha="right", va="bottom")
        ax.set_xlabel("client")
        ax.set_ylabel(ylabel or ("linkage distance" if method != "ward" else "Ward linkage distance"))
        ax.spines["bottom"].set_visible(False)
        ax.tick_params(axis="x", length=0)
        if title:
            ax.set_title(title)
        if own:
            _group_legend(fig, fed, np.unique(fed.groups))
    return _done(fig, path)


def _match_to_groups(clusters: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Rename cluster ids to the planted group they overlap most (Hungarian matching);
    clusters left unmatched get ids ``n_groups, n_groups + 1, ...``."""
    from scipy.optimize import linear_sum_assignment

    ids, inverse = np.unique(clusters, return_inverse=True)
    overlap = np.zeros((len(ids), n_groups))
    np.add.at(overlap, (inverse, groups), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.full(len(ids), -1, dtype=np.int64)
    mapping[rows] = cols
    unmatched = np.flatnonzero(mapping < 0)
    mapping[unmatched] = n_groups + np.arange(len(unmatched))
    return mapping[inverse]


def assignment_over_rounds(history, match_groups: bool = True, group_names=None, title: str | None = None,
                           width: float = COLUMN, ax=None, path=None):
    """Every client's cluster in every round: a clients × rounds grid coloured by cluster.

    ``history`` is a history DataFrame (columns round, client, group, cluster) or a Result.
    Clients are ordered by planted group, shown by the strip on the left. With
    ``match_groups`` (default) each round's cluster ids are renamed to the planted group they
    overlap most, so a recovered group takes its group's colour and a perfect clustering
    looks like the strip; extra clusters get further colours. This renames, it never
    regroups: who is with whom is exactly the method's assignment.
    """
    h = _history(history)
    rounds = np.asarray(sorted(h["round"].unique()))
    grid = h.pivot(index="client", columns="round", values="cluster").loc[:, rounds]
    clients = grid.index.to_numpy()
    group_of = h.drop_duplicates("client").set_index("client")["group"].loc[clients].to_numpy()
    fed = _planted(group_of, group_names if group_names is not None
                   else getattr(getattr(history, "federation", None), "group_names", None))
    step = max(1, int(np.ceil(len(rounds) / 12)))
    ticks = {j: str(r) for j, r in enumerate(rounds) if j % step == 0}
    return _assignment_grid(grid.to_numpy(), clients, fed, ticks, "round", match_groups, title, width, ax, path)


def assignment_comparison(assignments: dict, groups, match_groups: bool = True, group_names=None,
                          title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """Several assignments of the same clients side by side, one column each.

    ``assignments`` maps a column label (``"server"``, ``"clients"``, ``"round 3"``) to one
    cluster id per client; ``groups`` is a federation, a Result or the planted group ids.
    Drawn like :func:`assignment_over_rounds`: clients ordered by planted group (strip on
    the left), each column's ids renamed to the planted group they overlap most (with
    ``match_groups``), so two columns of the same colours group the clients identically.
    """
    fed = _planted(groups, group_names)
    columns = [np.asarray(a, dtype=np.int64) for a in assignments.values()]
    for label, a in zip(assignments, columns):
        if a.shape != (fed.n_clients,):
            raise ValueError(f"assignment {label!r} has shape {a.shape}, expected ({fed.n_clients},)")
    ticks = {j: str(label) for j, label in enumerate(assignments)}
    return _assignment_grid(np.stack(columns, axis=1), np.arange(fed.n_clients), fed, ticks, None, match_groups,
                            title, width, ax, path)


def _assignment_grid(values, clients, fed, ticks: dict, xlabel, match_groups, title, width, ax, path):
    """Draw a clients × columns grid of cluster ids (rows in ``clients`` order)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    order = _by_group(fed)
    values = np.asarray(values)[order].astype(np.int64)
    if match_groups:
        for j in range(values.shape[1]):
            values[:, j] = _match_to_groups(values[:, j], fed.groups[order], fed.n_groups)
    n_colors = int(max(values.max(), fed.groups.max())) + 1
    cmap = ListedColormap([_cluster_color(k) for k in range(n_colors)])
    with _style():
        own = ax is None
        height = min(0.9 + 0.09 * len(order), 5.0) + 0.35
        fig, ax = _figure(width, height) if own else (ax.figure, ax)
        ax.imshow(values, aspect="auto", cmap=cmap, vmin=-0.5, vmax=n_colors - 0.5, interpolation="nearest")
        for b in _boundaries(fed.groups[order]):
            ax.axhline(b, color="white", lw=1.0)
        for j in range(1, values.shape[1]) if xlabel is None else ():
            ax.axvline(j - 0.5, color="white", lw=1.5)
        strip = ax.inset_axes([-0.06, 0, 0.035, 1])
        strip.imshow(fed.groups[order][:, None], aspect="auto", cmap=cmap, vmin=-0.5, vmax=n_colors - 0.5,
                     interpolation="nearest")
        strip.set_axis_off()
        ax.set_xticks(list(ticks))
        ax.set_xticklabels([textwrap.fill(t, 12) for t in ticks.values()])
        if xlabel:
            ax.set_xlabel(xlabel)
        else:
            ax.tick_params(axis="x", length=0)
        _client_ticks(ax.yaxis, order, fed, names=clients)
        ax.tick_params(axis="y", labelsize=6, pad=12)
        ax.set_ylabel("client (strip: planted group)")
        if title:
            ax.set_title(title)
        if own:
            shown = sorted(set(np.unique(values).tolist()))
            handles = [Patch(color=_cluster_color(k), label=str(k)) for k in shown]
            fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(handles)), handlelength=1.0,
                       columnspacing=0.8, title_fontsize=8,
                       title="cluster (named after the planted group it overlaps most)" if match_groups
                       else "cluster")
    return _done(fig, path)


def _round_table(data):
    """Diagnostics (a list of per-round dicts, or a Result) or a table, as a DataFrame."""
    import pandas as pd

    data = getattr(data, "diagnostics", data)
    if isinstance(data, pd.DataFrame):
        return data
    rows = [{k: v for k, v in d.items() if np.ndim(v) == 0} for d in data]
    return pd.DataFrame(rows)


def metric_over_rounds(data, key, by: str | None = None, panel: str | None = None, band: str | None = "minmax",
                       thresholds: dict | None = None, events: dict | None = None, labels: dict | None = None,
                       ylabel: str | None = None, logy: bool = False, title: str | None = None,
                       width: float | None = None, ax=None, path=None):
    """Scalar quantities over rounds: a method's diagnostics, or a column of a tidy table.

    ``data`` is a Result's ``diagnostics`` (a list of per-round dicts; non-scalar entries are
    ignored), a Result, or a DataFrame with a ``round`` column. ``key`` is one column or a list
    of columns (one line each). ``by`` draws one line per value of that column (e.g.
    ``"method"``); rows sharing a round and a line (several seeds, clients) are averaged,
    and ``band="minmax"`` shades their range (``"std"``: ± one standard deviation; ``None``:
    lines only). ``panel`` draws one panel per value of that column (e.g. ``"scenario"``),
    side by side with a shared y axis and one legend (width defaults to the text width).
    ``thresholds`` maps a label to a value drawn as a dashed horizontal line (e.g.
    Sattler's ε1 and ε2); ``events`` maps a label to a round, or a list of rounds, marked by
    dotted vertical lines (e.g. ``{"splits": [11, 13]}``). ``labels`` renames lines in the
    legend (``{"max_update_norm": "largest client update"}``).
    """
    if band not in (None, "minmax", "std"):
        raise ValueError(f"unknown band {band!r}; choose one of: minmax, std, None")
    table = _round_table(data)
    keys = [key] if isinstance(key, str) else list(key)
    missing = [k for k in keys + [c for c in (by, panel) if c] + ["round"] if k not in table.columns]
    if missing:
        raise ValueError(f"no column {missing[0]!r} to plot; the data has: {', '.join(map(str, table.columns))}")
    if by and len(keys) > 1:
        raise ValueError("give one key when lines are drawn per value of 'by'")
    if panel and ax is not None:
        raise ValueError("'panel' makes its own figure; leave 'ax' out")
    names = [str(v) for v in dict.fromkeys(table[by])] if by else keys
    colors = method_colors(names) if by else {k: OKABE_ITO[i % len(OKABE_ITO)] for i, k in enumerate(keys)}
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    panels = [(str(v), part) for v, part in table.groupby(panel, sort=False)] if panel else [(title, table)]
    with _style():
        own = ax is None
        if own:
            width = width or (TEXT if panel else COLUMN)
            ncol = 5 if panel else 3
            height = 1.9 + 0.2 * int(np.ceil(len(names) / ncol)) if len(names) > 1 else 2.0
            fig, axes = _figure(width, height, ncols=len(panels), squeeze=False, sharey=True)
            axes = list(axes[0])
        else:
            fig, axes = ax.figure, [ax]
        for ax_, (name, part) in zip(axes, panels):
            lines = ([(str(v), p, keys[0]) for v, p in part.groupby(by, sort=False)] if by
                     else [(k, part, k) for k in keys])
            for label, p, k in lines:
                _round_line(ax_, p, k, label, colors[label], markers[label], band, (labels or {}).get(label, label))
            _round_marks(ax_, thresholds, events)
            ax_.set_xlabel("round")
            ax_.xaxis.get_major_locator().set_params(integer=True)
            if name:
                ax_.set_title(name)
            if logy:
                ax_.set_yscale("log")
        axes[0].set_ylabel(ylabel or (keys[0] if len(keys) == 1 else "value"))
        if panel and title:
            fig.suptitle(title)
        if len(names) > 1 and own and panel:
            handles = {}
            for ax_ in axes:
                for h, label in zip(*ax_.get_legend_handles_labels()):
                    handles.setdefault(label, h)
            fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(names), 5),
                       columnspacing=1.2)
        elif len(names) > 1:
            _legend(fig, axes[0], own, len(names))
    return _done(fig, path)


def _round_line(ax, part, key, label, color, marker, band, legend_label):
    per_round = part.groupby("round")[key]
    rounds = np.asarray(sorted(part["round"].unique()))
    mean = per_round.mean().to_numpy(dtype=float)
    ax.plot(rounds, mean, color=color, ls=METHOD_STYLES.get(label, "-"), label=legend_label,
            marker=marker if len(rounds) <= 25 else None, ms=3, mfc="none", mew=0.8)
    if band and per_round.size().max() > 1:
        if band == "minmax":
            low, high = per_round.min().to_numpy(dtype=float), per_round.max().to_numpy(dtype=float)
        else:
            sd = per_round.std().fillna(0).to_numpy(dtype=float)
            low, high = mean - sd, mean + sd
        ax.fill_between(rounds, low, high, color=color, alpha=0.15, lw=0)


def _round_marks(ax, thresholds, events):
    for j, (name, value) in enumerate((thresholds or {}).items()):
        ax.axhline(value, color="0.3", ls=("--", ":", "-.")[j % 3], lw=0.8)
        ax.annotate(name, (1.0, value), xycoords=("axes fraction", "data"), xytext=(-2, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.3")
    for name, when in (events or {}).items():
        when = [when] if np.ndim(when) == 0 else list(when)
        for r in when:
            ax.axvline(r, color="#D55E00", ls=":", lw=0.9)
        if when:
            ax.annotate(name, (max(when), 1.0), xycoords=("data", "axes fraction"), xytext=(2, -2),
                        textcoords="offset points", ha="left", va="top", fontsize=7, color="#D55E00")


VALUE_LABELS = {"ari": "ARI", "ami": "AMI", "v_measure": "V-measure", "accuracy_mean": "mean test accuracy",
                "accuracy_worst10": "test accuracy, worst 10 %", "accuracy_weighted": "pooled test accuracy",
                "n_clusters": "clusters", "stable_round": "stable from round"}


def method_scenario_heatmap(table, value: str = "ari", methods=None, scenarios=None, fmt: str = "{:.2f}",
                            label: str | None = None, cmap: str = "viridis", vmin: float | None = None,
                            vmax: float | None = None, title: str | None = None, width: float = COLUMN, ax=None,
                            path=None):
    """Mean ``value`` of every method (rows) on every scenario (columns), annotated.

    ``table`` is a tidy results table with columns ``method``, ``scenario`` and ``value``
    (one row per run, e.g. from :func:`cflkit.study.compare.compare`); runs sharing a method and a
    scenario (seeds) are averaged, and a cell shows ``mean`` or, with several runs,
    ``mean ± std``. ``methods`` and ``scenarios`` choose and order rows and columns. ARI and
    accuracy get the scale [0, 1] unless ``vmin`` / ``vmax`` say otherwise; ``label`` names
    the colour bar (default: a readable name of ``value``).
    """
    bounded = value in ("ari", "ami", "homogeneity", "completeness", "v_measure") or value.startswith("accuracy")
    vmin = vmin if vmin is not None else (0.0 if bounded else None)
    vmax = vmax if vmax is not None else (1.0 if bounded else None)
    wrap = lambda s: "+\n".join(textwrap.fill(p, 14, break_long_words=False) for p in str(s).split("+"))  # noqa: E731
    return _method_heatmap(table, value, "scenario", methods, scenarios, fmt, 1.0, label, cmap, vmin, vmax, title,
                           width, ax, path, column_label=wrap, height=lambda n: 0.7 + 0.24 * n,
                           fontsize=6.5, pad=0.02, std_when_many=True)


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
            g = int(fed.groups[c])
            for j, ax in enumerate(row):
                v = U[:, j].reshape(shape) if j < U.shape[1] else np.zeros(shape)
                lim = float(np.abs(v).max()) or 1.0
                ax.imshow(v, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
                if c == clients[0]:
                    ax.set_title(f"$u_{j + 1}$", fontsize=7, pad=2)
            row[0].set_ylabel(f"client {c}\n{_group_label(fed, g, 14)}", rotation=0, ha="right", va="center",
                              fontsize=7, color=group_color(g))
    return _done(_title(fig, title), path)


def client_model_losses(matrices, groups, label: str = "training loss", group_names=None,
                        title: str | None = None, width: float = TEXT, path=None):
    """Each client's loss under each of K models, in one or more rounds (IFCA's view).

    ``matrices`` is one (clients, K) matrix or a dict ``{panel title: matrix}`` (e.g. one per
    round); each is drawn as a clients × models heatmap, clients ordered by planted group
    (coloured ticks, lines between groups), on its own colour scale. A dot marks each
    client's lowest loss — the model it picks in a loss-based assignment.
    """
    fed = _planted(groups, group_names)
    panels = matrices if isinstance(matrices, dict) else {"": matrices}
    order = _by_group(fed)
    with _style():
        fig, axes = _figure(width, min(0.9 + 0.1 * fed.n_clients, 5.0) + 0.25 * int(np.ceil(fed.n_groups / 2)),
                            ncols=len(panels), squeeze=False)
        for ax, (name, M) in zip(axes[0], panels.items()):
            M = np.asarray(M, dtype=float)
            if M.ndim != 2 or M.shape[0] != fed.n_clients:
                raise ValueError(f"loss matrix {name!r} has shape {M.shape}, expected ({fed.n_clients}, K)")
            M = M[order]
            im = ax.imshow(M, aspect="auto", cmap="viridis_r", interpolation="nearest")
            best = M.argmin(axis=1)
            ax.scatter(best, np.arange(len(order)), s=6, color="white", edgecolor="black", lw=0.4)
            for b in _boundaries(fed.groups[order]):
                ax.axhline(b, color="white", lw=0.8)
            ax.set_xticks(np.arange(M.shape[1]))
            ax.set_xlabel("model")
            _client_ticks(ax.yaxis, order, fed)
            ax.tick_params(axis="y", labelsize=6)
            ax.set_title(str(name))
            fig.colorbar(im, ax=ax, location="bottom", shrink=0.9, aspect=15, label=label)
        axes[0][0].set_ylabel("client")
        _group_legend(fig, fed, np.unique(fed.groups), ncol=4)
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
            from matplotlib.patches import Patch

            labels = list(group_names or ())
            handles = [Patch(color=group_color(k), alpha=0.6,
                             label=str(labels[k]) if k < len(labels) else f"group {k}") for k in np.unique(g)]
            if own:
                fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
            else:
                ax.legend(handles=handles, loc="best")
    return _done(fig, path)


def co_clustering(matrices: dict, names, title: str | None = None, width: float = TEXT, path=None):
    """How often two sites end in the same cluster: one annotated sites × sites panel per method.

    ``matrices`` maps a method to its (sites, sites) matrix of co-clustering frequencies in
    [0, 1] (e.g. the share of seeds in which sites i and j shared a cluster at the last
    round); ``names`` labels the sites. 1 everywhere is one global model, the identity is
    every site alone; entries strictly between 0 and 1 are assignments that change with
    the seed.
    """
    names = [str(n) for n in names]
    n = len(names)
    panels = list(matrices.items())
    cols = min(len(panels), 4 if n <= 6 else 3)
    rows = int(np.ceil(len(panels) / cols))
    side = width / cols
    annotate = n <= 6
    with _style():
        fig, axes = _figure(width, rows * side * 0.95 + 0.3, nrows=rows, ncols=cols, squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_axis_off()
        im = None
        for ax, (label, M) in zip(axes.flat, panels):
            M = np.asarray(M, dtype=float)
            if M.shape != (n, n):
                raise ValueError(f"co-clustering matrix {label!r} has shape {M.shape}, expected ({n}, {n})")
            im = ax.imshow(M, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            if annotate:
                for i in range(n):
                    for j in range(n):
                        ax.text(j, i, f"{M[i, j]:.2f}".rstrip("0").rstrip(".") if M[i, j] not in (0, 1)
                                else f"{M[i, j]:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if M[i, j] < 0.5 else "black")
            ax.set_xticks(np.arange(n))
            ax.set_yticks(np.arange(n))
            short = [textwrap.shorten(s, 11, placeholder=".") for s in names]
            ax.set_xticklabels(short, rotation=90, fontsize=6)
            ax.set_yticklabels(short if ax in axes[:, 0] else [], fontsize=6)
            ax.tick_params(length=0)
            ax.set_title(str(label))
            for spine in ax.spines.values():
                spine.set_visible(False)
        if im is not None:
            fig.colorbar(im, ax=axes, label="share of seeds in one cluster", shrink=0.6, pad=0.02)
    return _done(_title(fig, title), path)


def method_site_heatmap(table, value: str, site: str = "site", methods=None, sites=None, fmt: str = "{:.2f}",
                        scale: float = 1.0, label: str | None = None, cmap: str = "viridis",
                        vmin: float | None = None, vmax: float | None = None, title: str | None = None,
                        width: float = TEXT, ax=None, path=None):
    """Each method's ``value`` at each site: methods × sites, averaged over seeds, annotated.

    ``table`` is tidy: one row per method × site × run, with columns ``method``, ``site`` and
    ``value`` (e.g. the last-round accuracy or RMSE of every client of every run). Values
    are multiplied by ``scale`` (e.g. 100 to show PM2.5 in µg/m³). A cell shows the mean
    over runs, and ``± std`` when there are several. For an error (lower is better) pass a
    reversed colour map such as ``"viridis_r"``.
    """
    if vmin is None and vmax is None and value.startswith("accuracy"):
        vmin, vmax = 0.0, 1.0
    many = table[site].nunique() > 6 if site in table.columns else False
    return _method_heatmap(table, value, site, methods, sites, fmt, scale, label, cmap, vmin, vmax, title, width,
                           ax, path, column_label=str, height=lambda n: 0.9 + 0.22 * n + (0.4 if many else 0),
                           fontsize=6, pad=0.01, std_when_many=False)


def _method_heatmap(table, value, column, methods, columns, fmt, scale, label, cmap, vmin, vmax, title, width, ax,
                    path, column_label, height, fontsize, pad, std_when_many):
    """Methods (rows) × ``column`` values, mean (± std over runs) of ``value`` annotated."""
    for name in ("method", column, value):
        if name not in table.columns:
            raise ValueError(f"the table has no column {name!r}; it has: {', '.join(map(str, table.columns))}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    columns = list(columns) if columns is not None else list(dict.fromkeys(table[column]))
    stats = (table[value].astype(float) * scale).groupby([table["method"], table[column]]).agg(["mean", "std", "count"])
    mean, std, count = (stats[k].unstack().reindex(index=methods, columns=columns) for k in ("mean", "std", "count"))
    M = mean.to_numpy(dtype=float)
    many = len(columns) > 6
    with _style():
        import matplotlib

        own = ax is None
        fig, ax = _figure(width, height(len(methods))) if own else (ax.figure, ax)
        im = ax.imshow(M, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
        for i in range(len(methods)):
            for j in range(len(columns)):
                if np.isnan(M[i, j]):
                    continue
                text = fmt.format(M[i, j])
                sd = std.iat[i, j]
                if count.iat[i, j] > 1 and np.isfinite(sd) and (std_when_many or not many):
                    text += "±" + (fmt.format(sd).lstrip("0") if sd < 1 else fmt.format(sd))
                r, g, b, _ = matplotlib.colormaps[cmap](im.norm(M[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")
        ax.set_xticks(np.arange(len(columns)))
        rotate = many and not std_when_many
        ax.set_xticklabels([column_label(c) for c in columns], rotation=45 if rotate else 0,
                           ha="right" if rotate else "center")
        ax.set_yticks(np.arange(len(methods)))
        ax.set_yticklabels([str(m) for m in methods])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(im, ax=ax, label=label or VALUE_LABELS.get(value, value), shrink=0.9, pad=pad)
        if title:
            ax.set_title(title)
    return _done(fig, path)


def method_bars(table, value: str, methods=None, scale: float = 1.0, ylabel: str | None = None,
                title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """One bar per method: the mean of ``value`` over its runs (seeds), a dot per run.

    ``table`` has one row per run with columns ``method`` and ``value`` (e.g. the results
    table of :func:`cflkit.study.compare.compare`); values are multiplied by ``scale``.
    """
    for column in ("method", value):
        if column not in table.columns:
            raise ValueError(f"the table has no column {column!r}; it has: {', '.join(map(str, table.columns))}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    colors = method_colors(methods)
    rng = np.random.default_rng(0)  # jitter only
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.2) if own else (ax.figure, ax)
        for i, m in enumerate(methods):
            v = table.loc[table["method"] == m, value].astype(float).to_numpy() * scale
            v = v[np.isfinite(v)]
            if v.size == 0:
                continue
            ax.bar(i, v.mean(), width=0.7, color=colors[m], alpha=0.75, lw=0)
            ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=5, color="black", lw=0, zorder=3)
        ax.set_xticks(np.arange(len(methods)))
        ax.set_xticklabels(methods, rotation=45, ha="right")
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(ylabel or VALUE_LABELS.get(value, value))
        if title:
            ax.set_title(title)
    return _done(fig, path)
