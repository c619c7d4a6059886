"""Methods compared across scenarios or sites: annotated heatmaps and bars of a results table."""
from __future__ import annotations

import textwrap

import numpy as np

from .style import COLUMN, TEXT, _done, _figure, _style, method_colors

# Readable names of results-table columns, for colour bars and axes.
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


def difficulty_curves(curves, knob: str, value: str = "ari", methods=None, harder: str = "up", panel: str | None = None,
                      ylabel: str | None = None, title: str | None = None, width: float = TEXT, path=None):
    """``value`` of every method against a difficulty knob, easiest setting on the left.

    ``curves`` has one row per method and knob value (and ``panel`` value: one axes each,
    e.g. the scenario), with columns ``mean`` and, optional, ``low`` / ``high`` (a band:
    bootstrap interval); ``harder`` says in which direction of the knob separation gets
    harder ("up": larger values, e.g. Dirichlet alpha; "down": smaller, e.g. the angle).
    """
    for column in ("method", knob, "mean", *([panel] if panel else [])):
        if column not in curves.columns:
            raise ValueError(f"the table has no column {column!r}; it has: {', '.join(map(str, curves.columns))}")
    if harder not in ("up", "down"):
        raise ValueError(f"harder must be 'up' or 'down', got {harder!r}")
    methods = list(methods) if methods is not None else list(dict.fromkeys(curves["method"]))
    panels = list(dict.fromkeys(curves[panel])) if panel else [None]
    colors = method_colors(methods)
    with _style():
        fig, axes = _figure(width, 2.2, ncols=len(panels), squeeze=False, sharey=True)
        for ax, p in zip(axes[0], panels):
            part = curves if p is None else curves[curves[panel] == p]
            levels = sorted(part[knob].unique(), reverse=harder == "down")
            where = {v: i for i, v in enumerate(levels)}
            for m in methods:
                rows = part[part["method"] == m].copy()
                if rows.empty:
                    continue
                rows = rows.assign(_x=rows[knob].map(where)).sort_values("_x")
                ax.plot(rows["_x"], rows["mean"], marker="o", ms=3, lw=1.2, color=colors[m], label=m)
                if {"low", "high"} <= set(rows.columns):
                    ax.fill_between(rows["_x"], rows["low"], rows["high"], color=colors[m], alpha=0.12, lw=0)
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([f"{v:g}" for v in levels])
            ax.set_xlabel(f"{knob} (harder →)")
            if p is not None:
                ax.set_title(str(p))
        axes[0][0].set_ylabel(ylabel or VALUE_LABELS.get(value, value))
        axes[0][-1].legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        if title:
            fig.suptitle(title)
    return _done(fig, path)
