"""What a clustering server sees and decides: client similarities, trees, assignments, losses.

Also :func:`co_clustering`, how often real sites share a cluster over seeds.
"""
from __future__ import annotations

import textwrap

import numpy as np

from ._common import _boundaries, _by_group, _client_ticks, _group_legend, _group_strip, _history
from .style import COLUMN, TEXT, _cluster_color, _done, _figure, _style, _title, group_color


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
    fed = _planted(groups, group_names)
    Z = _linkage(X, fed.n_clients, distances, metric, method)
    if clusters is not None:
        cut = _cut_height(Z, clusters, fed.n_clients)
    with _style():
        own = ax is None
        fig, ax = _figure(width, 2.2 + 0.25 * int(np.ceil(fed.n_groups / 2))) if own else (ax.figure, ax)
        right = _tree(ax, Z, fed)
        if cut is not None:
            ax.axhline(cut, color="#D55E00", ls="--", lw=0.8)
            ax.annotate(f"cut: {clusters} clusters" if clusters else "cut", (right, cut), xytext=(2, 2),
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


def _linkage(X, n: int, distances: bool, metric: str, method: str) -> np.ndarray:
    """The SciPy linkage matrix of ``n`` clients from :func:`dendrogram`'s ``X``."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    X = np.asarray(X, dtype=float)
    if X.ndim == 2 and X.shape == (n - 1, 4) and hierarchy.is_valid_linkage(X):
        return X
    if distances:
        if method == "ward":
            raise ValueError("Ward linkage needs representation rows, not distances; use method='average', "
                             "'complete' or 'single'")
        if X.shape != (n, n):
            raise ValueError(f"distances have shape {X.shape}, expected ({n}, {n})")
        D = (X + X.T) / 2
        np.fill_diagonal(D, 0.0)
        return hierarchy.linkage(squareform(np.clip(D, 0, None), checks=False), method=method)
    if len(X) != n:
        raise ValueError(f"X has {len(X)} rows, expected one per client ({n})")
    if method == "ward" and metric != "euclidean":
        raise ValueError("Ward linkage needs metric='euclidean'")
    return hierarchy.linkage(X.reshape(len(X), -1), method=method, metric=metric)


def _cut_height(Z, clusters: int, n: int) -> float:
    """The height half-way between the merges that leave ``clusters`` and ``clusters - 1`` clusters."""
    if not 2 <= clusters <= n:
        raise ValueError(f"clusters must be between 2 and the {n} clients, got {clusters}")
    heights = Z[:, 2]
    return float(heights[-clusters] + heights[-clusters + 1]) / 2


def _tree(ax, Z, fed):
    """Draw the tree with leaves (labels and markers) in group colours; the x right of the last leaf."""
    from scipy.cluster import hierarchy

    tree = hierarchy.dendrogram(Z, ax=ax, labels=[str(c) for c in range(fed.n_clients)],
                                link_color_func=lambda _: "0.25", leaf_font_size=6, leaf_rotation=90)
    leaves = np.asarray(tree["leaves"])
    for label, c in zip(ax.get_xticklabels(), leaves):
        label.set_color(group_color(fed.groups[c]))
    xs = 5 + 10 * np.arange(len(leaves))
    ax.scatter(xs, np.zeros(len(leaves)), c=[group_color(fed.groups[c]) for c in leaves], s=12,
               marker="s", zorder=3, clip_on=False, lw=0)
    return xs[-1] + 5


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
