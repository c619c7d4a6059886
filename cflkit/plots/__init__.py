"""Figures, one function per kind, made at final paper size.

Every function draws in paper style (IEEE: one column 3.5 in, text width 7.16 in, 8 pt
fonts, TrueType fonts embedded in PDFs, the colour-blind-safe Okabe–Ito palette), returns
the :class:`~matplotlib.figure.Figure`, and writes it through :func:`save` when given a
``path``. The same functions serve notebooks (shown inline) and batch runs (saved).

Figures are made with pyplot, so Jupyter shows them; a batch script that makes many should
``plt.close(fig)`` after saving. This package never selects a matplotlib backend, and
importing it does not import matplotlib.

Every name below is importable as ``cflkit.plots.<name>``; the modules hold:

- :mod:`.style` — paper style and sizes (:data:`COLUMN`, :data:`TEXT`, :data:`RC`, :data:`FORMATS`),
  palette and colours (:data:`OKABE_ITO`, :data:`EXTRA_COLORS`, :data:`METHOD_COLORS`, :data:`METHOD_STYLES`,
  :data:`MARKERS`, :func:`group_color`, :func:`method_color`, :func:`method_colors`), :func:`subplots`, :func:`save`;
- :mod:`.data` — the clients' data: :func:`client_samples`, :func:`label_histograms`, :func:`client_sizes`,
  :func:`subspace_bases`, :func:`site_distributions`;
- :mod:`.training` — results over rounds: :func:`accuracy_curves`, :func:`per_client_accuracy`,
  :func:`metric_over_rounds`;
- :mod:`.clustering` — what a clustering server sees and decides: :func:`similarity_matrix`, :func:`dendrogram`,
  :func:`assignment_over_rounds`, :func:`assignment_comparison`, :func:`client_model_losses`,
  :func:`co_clustering`;
- :mod:`.benchmark` — methods compared on a results table: :data:`VALUE_LABELS`, :func:`method_scenario_heatmap`,
  :func:`method_site_heatmap`, :func:`method_bars`, :func:`difficulty_curves`;
- :mod:`._common` — private helpers about clients and their groups, shared by the figure modules.
"""
from __future__ import annotations

from . import style
from .benchmark import VALUE_LABELS, difficulty_curves, method_bars, method_scenario_heatmap, method_site_heatmap
from .clustering import (
    assignment_comparison,
    assignment_over_rounds,
    client_model_losses,
    co_clustering,
    dendrogram,
    similarity_matrix,
)
from .data import client_samples, client_sizes, label_histograms, site_distributions, subspace_bases
from .style import (
    COLUMN,
    EXTRA_COLORS,
    FORMATS,
    MARKERS,
    METHOD_COLORS,
    METHOD_STYLES,
    OKABE_ITO,
    RC,
    TEXT,
    group_color,
    method_color,
    method_colors,
    save,
    subplots,
)
from .training import accuracy_curves, metric_over_rounds, per_client_accuracy

# Private helpers that cflkit.explain's figures import from here.
_cluster_color, _done, _figure, _style = style._cluster_color, style._done, style._figure, style._style

__all__ = [
    "COLUMN", "EXTRA_COLORS", "FORMATS", "MARKERS", "METHOD_COLORS", "METHOD_STYLES", "OKABE_ITO", "RC", "TEXT",
    "VALUE_LABELS", "accuracy_curves", "assignment_comparison", "assignment_over_rounds", "client_model_losses",
    "client_samples", "client_sizes", "co_clustering", "dendrogram", "group_color", "label_histograms",
    "difficulty_curves", "method_bars", "method_color", "method_colors", "method_scenario_heatmap",
    "method_site_heatmap",
    "metric_over_rounds", "per_client_accuracy", "save", "similarity_matrix", "site_distributions",
    "subplots", "subspace_bases",
]
