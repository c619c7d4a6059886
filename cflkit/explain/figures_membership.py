"""Figures of layers (a) and (d), in the paper style of :mod:`cflkit.plots`: the IMM
threshold tree, grouped permutation importance with the shuffled-label baseline, the
contingency heatmap of clusters against a planted factor, assignment stability over rounds.
Each returns the Figure and saves it (pdf + png) when given ``path``."""
from __future__ import annotations

import textwrap

import numpy as np

from ..plots import COLUMN, TEXT, _style, group_color, save, subplots


def _done(fig, path):
    if path is not None:
        save(fig, path)
    return fig


def threshold_tree(tree, width: float = TEXT, title: str | None = None, path=None):
    """The IMM tree (:class:`~cflkit.explain.trees.ThresholdTree`) as boxes: splits read
    ``feature <= threshold`` (left: yes), leaves name their cluster in its colour."""
    leaves = tree.leaves()
    depth = max((len(c) for c, _ in leaves), default=0)
    pos, order = {}, iter(range(len(leaves)))

    def place(node, d):  # in-order: leaves left to right, a split above its children's middle
        if node.is_leaf:
            pos[id(node)] = (next(order), d)
        else:
            place(node.left, d + 1)
            place(node.right, d + 1)
            pos[id(node)] = ((pos[id(node.left)][0] + pos[id(node.right)][0]) / 2, d)

    place(tree.root_, 0)
    fig, ax = subplots(width=width, height=0.45 + 0.55 * (depth + 1))
    with _style():
        ax.set_axis_off()
        ax.set_xlim(-0.6, max(len(leaves) - 0.4, 0.6))
        ax.set_ylim(depth + 0.5, -0.5)

        def draw(node):
            x, y = pos[id(node)]
            if node.is_leaf:
                ax.text(x, y, f"cluster {node.cluster}", ha="center", va="center", fontsize=7, color="white",
                        bbox=dict(boxstyle="round,pad=0.3", fc=group_color(node.cluster), ec="none"))
                return
            name = textwrap.fill(str(tree.feature_names[node.feature]), 22)
            ax.text(x, y, f"{name}\n≤ {node.threshold:.3g}", ha="center", va="center", fontsize=6.5,
                    bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.4", lw=0.6))
            for child, label in ((node.left, "yes"), (node.right, "no")):
                cx, cy = pos[id(child)]
                ax.annotate("", xy=(cx, cy - 0.22), xytext=(x, y + 0.22),
                            arrowprops=dict(arrowstyle="-", lw=0.6, color="0.4"))
                ax.text((x + cx) / 2, (y + cy) / 2, label, fontsize=6, color="0.3", ha="center", va="center",
                        bbox=dict(fc="white", ec="none", pad=0.5))
                draw(child)

        draw(tree.root_)
        if title:
            ax.set_title(title)
    return _done(fig, path)


def group_importance(membership, width: float = COLUMN, title: str | None = None, path=None):
    """Left: out-of-fold fidelity of the surrogate tree against the shuffled-label baseline
    (mean ± std, chance as a dotted line). Right: permutation importance per descriptor
    group (drop in held-out accuracy)."""
    gi = membership.group_importance
    fig, (a, b) = subplots(1, 2, width=width, height=1.2 + 0.16 * max(len(gi), 3),
                           gridspec_kw={"width_ratios": [1.3, 2]})
    with _style():
        a.bar([0, 1], [membership.fidelity, membership.baseline_fidelity], color=["#0072B2", "0.7"], width=0.6)
        a.errorbar([1], [membership.baseline_fidelity], yerr=[membership.baseline_std], color="black", capsize=2,
                   lw=0.6)
        a.axhline(membership.chance, ls=":", lw=0.8, color="0.3")
        a.set_xticks([0, 1], ["found", "shuffled"], fontsize=6.5)
        a.set_ylim(0, 1)
        a.set_ylabel("out-of-fold fidelity")
        verdict = ("explained" if membership.explained else "not explained"
                   if getattr(membership, "testable", True) else "too few clients to test")
        a.set_title(verdict, fontsize=7)
        y = np.arange(len(gi))[::-1]
        b.barh(y, gi["importance"], color=[("#0072B2" if s > 0 else "0.7") for s in gi["share"]], height=0.6)
        b.axvline(0, lw=0.6, color="0.3")
        b.set_yticks(y, [f"{g} ({t})" for g, t in zip(gi["group"], gi.get("tier", [""] * len(gi)))])
        b.set_xlabel("accuracy drop (shuffled group)", fontsize=7)
        for yi, (imp, s) in zip(y, zip(gi["importance"], gi["share"])):
            if s > 0:
                b.text(imp, yi, f" {s:.0%}", va="center", fontsize=6)
        if title:
            fig.suptitle(title)
    return _done(fig, path)


def contingency_heatmap(table, factor: str = "planted", width: float = COLUMN, title: str | None = None,
                        path=None):
    """Clients per (factor value, cluster), annotated; ``table`` from
    :func:`~cflkit.explain.agreement.contingency_table`."""
    values = table.to_numpy()
    fig, ax = subplots(width=width, height=0.7 + 0.25 * len(table))
    with _style():
        im = ax.imshow(values, cmap="Blues", aspect="auto", vmin=0)
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6.5,
                    color="white" if v > values.max() / 2 else "black")
        ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns])
        ax.set_yticks(range(table.shape[0]), [textwrap.shorten(str(r), 24) for r in table.index])
        ax.set_xlabel("cluster")
        ax.set_ylabel(factor)
        ax.spines[:].set_visible(False)
        fig.colorbar(im, ax=ax, label="clients", shrink=0.9)
        if title:
            ax.set_title(title)
    return _done(fig, path)


def stability_over_rounds(stability, width: float = COLUMN, title: str | None = None, path=None):
    """ARI between consecutive rounds' assignments (and against the final one) per round;
    ``stability`` from :func:`~cflkit.explain.agreement.assignment_stability`."""
    fig, ax = subplots(width=width, height=1.6)
    with _style():
        ax.plot(stability["round"], stability["ari"], marker="o", color="#0072B2", label="round r-1 vs r")
        if "ari_final" in stability:
            ax.plot(stability["round"], stability["ari_final"], ls="--", color="#E69F00", label="round r vs final")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("round")
        ax.set_ylabel("ARI")
        ax.legend(loc="lower right")
        if title:
            ax.set_title(title)
    return _done(fig, path)
