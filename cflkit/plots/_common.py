"""Helpers about clients and their planted groups, shared by the data, training and clustering figures."""
from __future__ import annotations

import textwrap

import numpy as np

from .style import group_color


def _history(value):
    """A history DataFrame from a DataFrame or anything with ``.history`` (a Result)."""
    return getattr(value, "history", value)


def _group_label(fed, g: int, width: int = 18) -> str:
    """The name of group ``g`` (``"group g"`` when unnamed), wrapped at ``width``."""
    names = getattr(fed, "group_names", ()) or ()
    name = names[g] if g < len(names) else f"group {g}"
    return textwrap.fill(str(name), width)


def _group_legend(fig, fed, groups, ncol=2):
    """A legend of group colours and names below the figure."""
    from matplotlib.patches import Patch

    handles = [Patch(color=group_color(g), label=f"{g}: {_group_label(fed, g, 40)}") for g in groups]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(ncol, len(handles)),
               title="ground-truth group", title_fontsize=8, handlelength=1.0, columnspacing=1.0)


def _by_group(fed, clients=None) -> np.ndarray:
    """Clients (default: all) ordered by ground-truth group, then by id."""
    clients = np.arange(fed.n_clients) if clients is None else np.asarray(clients, dtype=np.int64)
    return clients[np.lexsort((clients, fed.groups[clients]))]


def _boundaries(groups_in_order) -> np.ndarray:
    """Positions half-way between neighbours of different groups (where to draw a line)."""
    return np.flatnonzero(np.diff(groups_in_order)) + 0.5


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
