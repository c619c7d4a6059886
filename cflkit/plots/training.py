"""The results of runs: test accuracy over rounds and per client, any scalar over rounds."""
from __future__ import annotations

import textwrap

import numpy as np

from ._common import _history
from .style import COLUMN, MARKERS, METHOD_STYLES, OKABE_ITO, TEXT, _done, _figure, _style, method_colors


def _legend(fig, ax, own: bool, n: int, **kw):
    """Below the plot when the figure is ours, inside the axes when the caller's."""
    if own:
        fig.legend(loc="outside lower center", ncol=min(n, 3), columnspacing=1.2, **kw)
    else:
        ax.legend(loc="best", **kw)


def accuracy_curves(histories: dict, band: str | None = "minmax", metric: str = "accuracy",
                    title: str | None = None, width: float = COLUMN, ax=None, path=None):
    """Mean test ``metric`` over clients per round, one line per method.

    ``histories`` maps a label to a history DataFrame (or a :class:`~cflkit.Result`).
    ``band``: ``"minmax"`` shades the range over clients, ``"worst10"`` shades from the
    mean of the worst 10 % of clients up to the mean, ``None`` draws lines only.
    """
    from ..core.metrics import worst_fraction_mean

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
    table, keys = _round_data(data, key, by, panel, band, ax)
    names = [str(v) for v in dict.fromkeys(table[by])] if by else keys
    colors = method_colors(names) if by else {k: OKABE_ITO[i % len(OKABE_ITO)] for i, k in enumerate(keys)}
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(names)}
    panels = [(str(v), part) for v, part in table.groupby(panel, sort=False)] if panel else [(title, table)]
    with _style():
        own = ax is None
        fig, axes = _round_axes(len(panels), len(names), bool(panel), width) if own else (ax.figure, [ax])
        for ax_, (name, part) in zip(axes, panels):
            lines = ([(str(v), p, keys[0]) for v, p in part.groupby(by, sort=False)] if by
                     else [(k, part, k) for k in keys])
            for label, p, k in lines:
                _round_line(ax_, p, k, label, colors[label], markers[label], band, (labels or {}).get(label, label))
            _round_panel(ax_, name, thresholds, events, logy)
        axes[0].set_ylabel(ylabel or (keys[0] if len(keys) == 1 else "value"))
        if panel and title:
            fig.suptitle(title)
        if len(names) > 1:
            _round_legend(fig, axes, own, bool(panel), names)
    return _done(fig, path)


def _round_data(data, key, by, panel, band, ax):
    """Check :func:`metric_over_rounds`' arguments; ``(table, keys)``."""
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
    return table, keys


def _round_table(data):
    """Diagnostics (a list of per-round dicts, or a Result) or a table, as a DataFrame."""
    import pandas as pd

    data = getattr(data, "diagnostics", data)
    if isinstance(data, pd.DataFrame):
        return data
    rows = [{k: v for k, v in d.items() if np.ndim(v) == 0} for d in data]
    return pd.DataFrame(rows)


def _round_axes(n_panels: int, n_lines: int, panel: bool, width):
    """``(fig, axes)``: ``n_panels`` side by side sharing y, room below for the legend."""
    width = width or (TEXT if panel else COLUMN)
    ncol = 5 if panel else 3
    height = 1.9 + 0.2 * int(np.ceil(n_lines / ncol)) if n_lines > 1 else 2.0
    fig, axes = _figure(width, height, ncols=n_panels, squeeze=False, sharey=True)
    return fig, list(axes[0])


def _round_line(ax, part, key, label, color, marker, band, legend_label):
    """The mean of ``key`` per round, with its band over the rows of a round."""
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


def _round_panel(ax, name, thresholds, events, logy):
    """Thresholds, events, round axis, title and y scale of one panel."""
    _round_marks(ax, thresholds, events)
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if name:
        ax.set_title(name)
    if logy:
        ax.set_yscale("log")


def _round_marks(ax, thresholds, events):
    """Dashed horizontal lines at ``thresholds``, dotted vertical ones at ``events``, labelled."""
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


def _round_legend(fig, axes, own: bool, panel: bool, names):
    """One legend below the panels (each line once), or :func:`_legend`'s for one plot."""
    if own and panel:
        handles = {}
        for ax_ in axes:
            for h, label in zip(*ax_.get_legend_handles_labels()):
                handles.setdefault(label, h)
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(names), 5),
                   columnspacing=1.2)
    else:
        _legend(fig, axes[0], own, len(names))
