"""Rank statistics of a method benchmark, after Demšar (2006), "Statistical Comparisons of
Classifiers over Multiple Data Sets", JMLR 7:1–30.

Every function takes a long results table (one row per method × block, e.g. the
``results.csv`` of :func:`cflkit.study.compare.compare`): columns naming the block
(default ``dataset``, ``scenario``, ``seed``), a ``method`` column and a score column
(``ari``, ``accuracy_mean``, ...; higher is better unless ``higher=False``).

>>> from cflkit.study import stats
>>> table = stats.summary_table(results, "ari")  # doctest: +SKIP
>>> fr = stats.friedman(results, "ari")  # doctest: +SKIP
>>> p = stats.posthoc(results, "ari", test="wilcoxon_holm")  # doctest: +SKIP
>>> cd = stats.critical_difference(fr.n_methods, fr.n_blocks)  # doctest: +SKIP
>>> stats.cd_diagram(stats.rank_table(results, "ari").mean_rank, cd, "figures/cd_ari")  # doctest: +SKIP

A block where some method has no score (failed run, missing row, NaN) is dropped from
every statistic, with a warning on the ``cflkit`` logger naming how many were dropped.
Rows are sorted by block and methods by name before anything is computed, so the row
order of ``results`` never changes a result. The tests come from scipy (``bootstrap``,
``studentized_range``, the χ² and F distributions) and scikit-posthocs
(``posthoc_nemenyi_friedman``, ``posthoc_wilcoxon``, ``critical_difference_diagram``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger("cflkit")

BLOCKS = ("dataset", "scenario", "seed")
TESTS = ("nemenyi", "wilcoxon_holm")
TIE = 1e-6  # default win/tie/loss tolerance: absorbs floating-point noise only


@dataclass(frozen=True)
class RankTable:
    """Ranks of the methods per block (1 = best, ties averaged) and their mean per method
    (ascending: best first); ``dropped`` counts the incomplete blocks left out."""

    ranks: pd.DataFrame  # blocks (index) × methods (columns)
    mean_rank: pd.Series  # method -> average rank over the blocks
    dropped: int = 0


@dataclass(frozen=True)
class Friedman:
    """Friedman's test (Demšar 2006, §3.2.2): χ²_F with k−1 degrees of freedom, and the
    Iman–Davenport F_F with (k−1, (k−1)(N−1)) degrees of freedom (the better one)."""

    chi2: float
    p_chi2: float
    f: float  # Iman–Davenport F_F; inf when every block ranks the methods alike
    p_f: float
    n_blocks: int  # N
    n_methods: int  # k
    tie_correction: bool


# ---- the results table as a blocks × methods matrix ---------------------------------

def _check_columns(results: pd.DataFrame, score: str, blocks, method: str) -> list[str]:
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame, not {type(results).__name__}")
    blocks = [blocks] if isinstance(blocks, str) else list(blocks)
    if not blocks:
        raise ValueError("blocks is empty; name the columns that identify a block, e.g. "
                         "('dataset', 'scenario', 'seed')")
    numeric = [c for c in results.columns if pd.api.types.is_numeric_dtype(results[c])]
    if score not in results.columns:
        raise ValueError(f"unknown score column {score!r}; choose one of: {', '.join(map(str, numeric))}")
    if not pd.api.types.is_numeric_dtype(results[score]):
        raise ValueError(f"score column {score!r} is not numeric; choose one of: {', '.join(map(str, numeric))}")
    for col in (*blocks, method):
        if col not in results.columns:
            raise ValueError(f"unknown column {col!r}; the results have: {', '.join(map(str, results.columns))}")
    return blocks


def score_matrix(results: pd.DataFrame, score: str, blocks=BLOCKS, method: str = "method",
                 higher: bool = True) -> tuple[pd.DataFrame, int]:
    """``(matrix, dropped)``: ``score`` as complete blocks (rows, sorted) × methods
    (columns, sorted), oriented so that larger is better (negated when ``higher=False``),
    and the number of incomplete blocks dropped (logged as a warning)."""
    blocks = _check_columns(results, score, blocks, method)
    keys = [*blocks, method]
    dup = results.duplicated(keys, keep=False)
    if dup.any():
        first = results.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(f"{int(dup.sum())} rows share a block and a method (e.g. {first}); add the column that "
                         f"tells them apart to blocks={tuple(blocks)} or average them first")
    if results[method].isna().any():
        raise ValueError(f"{int(results[method].isna().sum())} rows have no {method!r}; name the method of every row")
    wide = results.set_index(keys)[score].unstack(method)
    wide = wide.reindex(sorted(wide.columns, key=str), axis=1).sort_index().astype(float)
    complete = wide.notna().all(axis=1)
    dropped = int((~complete).sum())
    if dropped:
        missing = wide.columns[wide[~complete].isna().any(axis=0)]
        log.warning("stats: dropped %d of %d blocks where a method has no %r (methods missing somewhere: %s; "
                    "first dropped block: %s)", dropped, len(wide), score, ", ".join(map(str, missing)),
                    wide.index[~complete.to_numpy()][0])
    wide = wide[complete]
    if wide.shape[1] < 2:
        raise ValueError(f"need at least 2 methods, got {wide.shape[1]}: {', '.join(map(str, wide.columns))}")
    if wide.shape[0] < 2:
        raise ValueError(f"need at least 2 complete blocks, got {wide.shape[0]} (of {len(complete)}; "
                         f"{dropped} dropped for missing scores)")
    return (wide if higher else -wide), dropped


# ---- ranks, Friedman, post-hoc tests, critical difference ---------------------------

def _ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Ranks within each row of an oriented matrix: 1 = largest, ties averaged."""
    return wide.rank(axis=1, ascending=False, method="average")


def rank_table(results: pd.DataFrame, score: str, blocks=BLOCKS, method: str = "method",
               higher: bool = True) -> RankTable:
    """Rank the methods within every block, 1 = best, ties sharing the average rank, and
    average the ranks per method (Demšar 2006, §3.2.2)."""
    wide, dropped = score_matrix(results, score, blocks, method, higher)
    ranks = _ranks(wide)
    mean = ranks.mean(axis=0).sort_values(kind="stable")
    mean.name = "mean_rank"
    return RankTable(ranks=ranks, mean_rank=mean, dropped=dropped)


def friedman(results: pd.DataFrame, score: str, blocks=BLOCKS, method: str = "method", higher: bool = True,
             tie_correction: bool = True) -> Friedman:
    """Friedman's χ²_F and the Iman–Davenport F_F = (N−1)χ²_F / (N(k−1) − χ²_F)
    (Demšar 2006, §3.2.2).

    χ²_F = N(k−1) Σ_j N(R_j − (k+1)/2)² / S on the average ranks R_j. With
    ``tie_correction`` (default) S = Σ_ij (r_ij − (k+1)/2)², the correction for tied ranks of
    ``scipy.stats.friedmanchisquare`` and R's ``friedman.test`` (F_F is then exactly the
    ANOVA F of the ranks); without it S = Nk(k²−1)/12, Demšar's formula
    χ²_F = 12N/(k(k+1)) [Σ R_j² − k(k+1)²/4]. Unlike scipy this also serves k = 2.
    """
    from scipy import stats as ss

    wide, _ = score_matrix(results, score, blocks, method, higher)
    n, k = wide.shape
    centred = _ranks(wide).to_numpy() - (k + 1) / 2
    between = n * np.sum(centred.mean(axis=0) ** 2)
    spread = np.sum(centred**2) if tie_correction else n * k * (k * k - 1) / 12
    chi2 = float(n * (k - 1) * between / spread) if spread > 0 else 0.0  # every block one big tie: no evidence
    denominator = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denominator if denominator > 1e-12 * n * k else np.inf
    return Friedman(chi2=chi2, p_chi2=float(ss.chi2.sf(chi2, k - 1)), f=float(f),
                    p_f=float(ss.f.sf(f, k - 1, (k - 1) * (n - 1))), n_blocks=n, n_methods=k,
                    tie_correction=tie_correction)


def posthoc(results: pd.DataFrame, score: str, blocks=BLOCKS, method: str = "method", higher: bool = True,
            test: str = "nemenyi", zero_method: str = "zsplit") -> pd.DataFrame:
    """Methods × methods p-values of a post-hoc test (diagonal 1), methods sorted by name.

    - ``"nemenyi"``: all pairs on the average ranks (Demšar 2006, §3.2.2),
      ``scikit_posthocs.posthoc_nemenyi_friedman``; p < α exactly when the rank
      difference exceeds :func:`critical_difference`.
    - ``"wilcoxon_holm"``: Wilcoxon signed-rank test of every pair over the blocks
      (Demšar 2006, §3.1.3), Holm's step-down adjustment over all pairs,
      ``scikit_posthocs.posthoc_wilcoxon(p_adjust="holm")``. ``zero_method`` (scipy's)
      treats equal scores: ``"zsplit"`` splits their ranks between the sides, as Demšar.
    """
    import scikit_posthocs as sp

    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of: {', '.join(TESTS)}")
    wide, _ = score_matrix(results, score, blocks, method, higher)
    methods = list(wide.columns)
    plain = pd.DataFrame(wide.to_numpy(), columns=range(len(methods)))
    if test == "nemenyi":
        p = sp.posthoc_nemenyi_friedman(plain)
    else:
        # Long format, every method's values in the same (sorted) block order: the
        # library pairs observations by their order within each group.
        long = plain.melt(var_name="method", value_name="score")
        p = sp.posthoc_wilcoxon(long, val_col="score", group_col="method", p_adjust="holm",
                                zero_method=zero_method)
    p = p.reindex(index=range(len(methods)), columns=range(len(methods)))
    p.index, p.columns = pd.Index(methods, name=method), pd.Index(methods, name=method)
    return p.astype(float)


def q_alpha(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value q_α for k methods: the studentized range quantile
    (infinite degrees of freedom) divided by √2 (Demšar 2006, Table 5a; 2.569 for k=4)."""
    from scipy import stats as ss

    if int(k) != k or k < 2:
        raise ValueError(f"need k >= 2 methods, got {k!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    return float(ss.studentized_range.ppf(1 - alpha, int(k), np.inf) / np.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference CD = q_α √(k(k+1)/(6N)) of average ranks, for k
    methods over N blocks (Demšar 2006, §3.2.2; 1.25 for k=4, N=14)."""
    if int(n) != n or n < 2:
        raise ValueError(f"need n >= 2 blocks, got {n!r}")
    return q_alpha(k, alpha) * float(np.sqrt(k * (k + 1) / (6 * n)))


# ---- intervals, win/tie/loss, the summary table --------------------------------------

def bootstrap_ci(values, level: float = 0.95, n: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (``scipy.stats.bootstrap``,
    ``n`` resamples, seeded). NaNs are dropped with a warning; constant values (or a single
    one) give the zero-width interval at that value."""
    from scipy import stats as ss

    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    x = np.asarray(values, dtype=float).ravel()
    nan = np.isnan(x)
    if nan.any():
        log.warning("bootstrap_ci: dropped %d NaN of %d values", int(nan.sum()), x.size)
        x = x[~nan]
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value that is not NaN")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    res = ss.bootstrap((x,), np.mean, confidence_level=level, n_resamples=int(n), method="percentile",
                       rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _win_tie_loss(wide: pd.DataFrame, reference, tie: float) -> pd.DataFrame:
    if reference not in wide.columns:
        raise ValueError(f"unknown reference method {reference!r}; choose one of: "
                         f"{', '.join(map(str, wide.columns))}")
    if not tie >= 0:
        raise ValueError(f"tie must be >= 0, got {tie!r}")
    diff = wide.drop(columns=reference).sub(wide[reference], axis=0)
    return pd.DataFrame({"wins": (diff > tie).sum(), "ties": (diff.abs() <= tie).sum(),
                         "losses": (diff < -tie).sum()}).astype(int)


def win_tie_loss(results: pd.DataFrame, score: str, reference: str = "fedavg", tie: float = TIE,
                 blocks=BLOCKS, method: str = "method", higher: bool = True) -> pd.DataFrame:
    """Per method (rows, by name; the reference left out): the number of blocks where it
    ``wins`` against ``reference``, ``ties`` (scores at most ``tie`` apart; the default
    1e-6 only absorbs floating-point noise) or ``losses``."""
    wide, _ = score_matrix(results, score, blocks, method, higher)
    table = _win_tie_loss(wide, reference, tie)
    table.index.name = method
    return table


def summary_table(results: pd.DataFrame, score: str, blocks=BLOCKS, method: str = "method",
                  higher: bool = True, reference: str | None = "fedavg", tie: float = TIE,
                  level: float = 0.95, n: int = 9999, seed: int = 0) -> pd.DataFrame:
    """The article's table of one suite: per method (best mean rank first) the ``mean``
    score over the complete blocks, its percentile bootstrap interval ``ci_low`` /
    ``ci_high`` (:func:`bootstrap_ci`), the ``mean_rank`` (:func:`rank_table`) and the
    ``wins`` / ``ties`` / ``losses`` against ``reference`` (:func:`win_tie_loss`; empty
    on the reference's own row; no such columns with ``reference=None``).

    For several suites: ``{s: summary_table(t, score) for s, t in results.groupby("suite")}``.
    """
    wide, _ = score_matrix(results, score, blocks, method, higher)
    raw = wide if higher else -wide
    ranks = _ranks(wide).mean(axis=0)
    rows = []
    for m in wide.columns:
        low, high = bootstrap_ci(raw[m].to_numpy(), level=level, n=n, seed=seed)
        rows.append({method: m, "mean": float(raw[m].mean()), "ci_low": low, "ci_high": high,
                     "mean_rank": float(ranks[m])})
    table = pd.DataFrame(rows).set_index(method)
    if reference is not None:
        table = table.join(_win_tie_loss(wide, reference, tie).astype("Int64"))
    table = table.sort_values(["mean_rank"], kind="stable")
    return table.reset_index()


# ---- the critical-difference diagram --------------------------------------------------

def cd_diagram(ranks, cd: float | None, path=None, p_values: pd.DataFrame | None = None, alpha: float = 0.05,
               title: str | None = None, width: float | None = None, ax=None):
    """Critical-difference diagram (Demšar 2006, Fig. 1) of the mean ranks ``ranks``
    (a Series or dict method -> mean rank, e.g. ``rank_table(...).mean_rank``), drawn by
    ``scikit_posthocs.critical_difference_diagram`` in paper style, best rank on the left.

    Methods joined by a bar are not significantly different: by default those whose mean
    ranks differ by at most ``cd`` (Nemenyi); with ``p_values`` (e.g. :func:`posthoc`'s
    ``"wilcoxon_holm"`` matrix) those whose p-value is at least ``alpha``. ``cd`` (when
    given) is drawn as a scale bar. Saved atomically through :func:`cflkit.plots.save`
    when ``path`` is given; returns the figure.
    """
    import scikit_posthocs as sp

    from ..plots import COLUMN, _done, _figure, _style, method_colors

    ranks = pd.Series(ranks, dtype=float)
    if len(ranks) < 2:
        raise ValueError(f"need the mean ranks of at least 2 methods, got {len(ranks)}")
    if p_values is None:
        if cd is None:
            raise ValueError("give cd (Nemenyi's critical difference) or a p_values matrix")
        gap = np.abs(ranks.to_numpy()[:, None] - ranks.to_numpy()[None, :])
        p_values = pd.DataFrame(np.where(gap <= cd, 1.0, 0.0), index=ranks.index, columns=ranks.index)
    else:
        missing = sorted(set(map(str, ranks.index)) - set(map(str, p_values.index)))
        if missing:
            raise ValueError(f"p_values lacks methods {', '.join(missing)}; it has: "
                             f"{', '.join(map(str, p_values.index))}")
        p_values = p_values.reindex(index=ranks.index, columns=ranks.index)
    with _style():
        if ax is None:
            fig, ax = _figure(width or COLUMN, 0.5 + 0.16 * len(ranks))
        else:
            fig = ax.figure
        sp.critical_difference_diagram(ranks, p_values, alpha=alpha, ax=ax, color_palette=method_colors(ranks.index),
                                       label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
                                       marker_props={"s": 10}, elbow_props={"linewidth": 0.8},
                                       crossbar_props={"linewidth": 1.6})
        low, high = int(np.floor(ranks.min())), int(np.ceil(ranks.max()))
        ax.set_xticks(range(low, high + 1))
        if cd is not None:  # a scale bar above the tick labels, starting at the best rank
            _cd_bar(ax, float(ranks.min()), float(cd))
        if title:
            fig.suptitle(title)
    return _done(fig, path)


def _cd_bar(ax, start: float, cd: float):
    """Nemenyi's CD as a labelled bar, 14 pt above the rank axis (clear of its tick labels)."""
    from matplotlib.transforms import offset_copy

    bar = offset_copy(ax.transData, fig=ax.figure, y=14, units="points")
    ax.plot([start, start + cd], [0, 0], color="k", linewidth=0.8, transform=bar, clip_on=False)
    text = offset_copy(ax.transData, fig=ax.figure, y=16, units="points")
    ax.text(start + cd / 2, 0, f"CD = {cd:.2f}", ha="center", va="bottom", transform=text, clip_on=False)
