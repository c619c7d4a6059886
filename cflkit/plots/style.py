"""Paper style: sizes, palette, colours, figures in that style, and :func:`save`.

Nothing here imports matplotlib at import time; :func:`_style` and :func:`_figure` do when
a figure is drawn.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..core.results import atomic_file

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

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
# After the Okabe–Ito colours, for figures with many methods: tab10's that differ most from them.
EXTRA_COLORS = ("#8C564B", "#9467BD", "#7F7F7F", "#BCBD22", "#17BECF")


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


def _cluster_color(k: int) -> str:
    """Colour of cluster ``k``: the Okabe–Ito palette, then tab20 for clusters past it."""
    if k < len(OKABE_ITO):
        return OKABE_ITO[k]
    import matplotlib

    return matplotlib.colors.to_hex(matplotlib.colormaps["tab20"]((k - len(OKABE_ITO)) % 20))


def method_color(name: str, i: int) -> str:
    """Colour of method ``name`` (fixed for baselines), else the ``i``-th palette colour."""
    return METHOD_COLORS.get(name, OKABE_ITO[i % len(OKABE_ITO)])


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
    """Set ``title`` as the figure's suptitle (when given)."""
    if title:
        with _style():
            fig.suptitle(title)
    return fig


def _done(fig, path):
    """Save ``fig`` to ``path`` (when given) and return it."""
    if path is not None:
        save(fig, path)
    return fig
