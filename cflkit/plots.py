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

from .results import atomic_file

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


def _client_ticks(axis, order, fed, every: int | None = None):
    n = len(order)
    every = every or max(1, int(np.ceil(n / 24)))
    shown = np.arange(0, n, every)
    axis.set_ticks(shown)
    axis.set_ticklabels([str(order[i]) for i in shown])
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
    from .metrics import worst_fraction_mean

    if band not in (None, "minmax", "worst10"):
        raise ValueError(f"unknown band {band!r}; choose one of: minmax, worst10, None")
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.4) if own else (ax.figure, ax)
        for i, (label, value) in enumerate(histories.items()):
            h = _history(value)
            per_round = h.groupby("round")[metric]
            rounds = np.asarray(sorted(h["round"].unique()))
            mean = per_round.mean().to_numpy()
            color = method_color(str(label), i)
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
        for i, (label, value) in enumerate(histories.items()):
            h = _history(value)
            last = h[h["round"] == (h["round"].max() if round is None else round)]
            color = method_color(str(label), i)
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
