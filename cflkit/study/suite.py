"""The statistics of a benchmark suite's finished runs (``experiments/suite-*.yaml``).

Every finished run of the suite's batch directory holds notebook 08's ``results.csv``;
:func:`suite_results` joins them (with the run's dataset) and labels the K setting of
each cell (:func:`cflkit.study.compare.k_settings`); :func:`suite_statistics` writes, per
setting, Demšar's comparison over the blocks dataset × scenario × seed
(:mod:`cflkit.study.stats`, the oracle left out: it is handed the groups): the summary
table of ARI and accuracy, the Friedman tests, the Wilcoxon–Holm p-values and the
critical-difference diagram of the ARI ranks. A block is one cell of the suite's design:
dataset × the run's own settings (``setting``: groups, clients, ...) × scenario × seed ×
the difficulty knob, where one varies.

Beside the ranking: :func:`difficulty_table` and :func:`breaking_points` (the difficulty
suite: a score against a knob, and the first setting where a method's mean ARI falls
below :data:`BREAK_ARI`), :func:`drift_table` (the dynamic suite: ARI before and after the
drift, rounds to recover; late clients' placement) and :func:`fairness_table` (the worst
planted group and the best-worst gap beside the mean).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.results import write_text_atomic

# Difficulty knobs (config fields) and the direction in which they make the planted groups
# harder to separate: "up" (larger: closer to IID) or "down" (smaller: closer to no shift).
KNOBS = {"alpha": "up", "rotation_angle": "down", "swapped_labels": "down", "noise": "down"}
BREAK_ARI = 0.5  # a method has broken where its mean ARI falls below this (halfway to chance)
# a run's parameters that are not part of its design (its block): the seeds and how it ran
NOT_SETTING = ("seeds", "out_dir", "workers", "interactive", "methods", "scenarios", "clusters", "axes", "dataset")


def suite_results(batch_dir) -> pd.DataFrame:
    """Every finished run's ``results.csv`` under ``batch_dir`` (``cflkit batch``'s
    ``runs/batch/<name>/``), with ``dataset`` and ``k``; failed cells refused."""
    from .compare import CANNOT_CHOOSE_K, k_settings

    batch_dir = Path(batch_dir)
    tables = []
    for params_file in sorted(batch_dir.glob("*/params.json")):
        run = params_file.parent
        if not (run / "out" / "results.csv").exists():
            continue
        params = json.loads(params_file.read_text())
        t = pd.read_csv(run / "out" / "results.csv")
        t["dataset"] = params.get("dataset", "digits")
        t["setting"] = json.dumps({k: v for k, v in sorted(params.items()) if k not in NOT_SETTING}, sort_keys=True)
        tables.append(t)
    if not tables:
        raise ValueError(f"no finished run with out/results.csv under {batch_dir}; run `cflkit batch` first")
    results = pd.concat(tables, ignore_index=True)
    errors = results["error"].astype(object).fillna("").astype(str)
    failed = (errors != "") & ~errors.str.contains(CANNOT_CHOOSE_K, regex=False)  # refusals: no K-unknown cell
    if failed.any():
        raise ValueError(f"{failed.sum()} cells failed, e.g. {errors[failed].iloc[0]}")
    return k_settings(results)


def suite_statistics(results: pd.DataFrame, out_dir) -> dict:
    """Per K setting: ``summary_<k>_<score>.csv``, ``wilcoxon_holm_<k>.csv``, ``cd_<k>.pdf``;
    returns (and writes as ``statistics.json``) the Friedman tests, the CD and the ranking."""
    import matplotlib.pyplot as plt

    from ..plots import difficulty_curves
    from . import stats

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    blocks = block_columns(results)
    for k, part in results.groupby("k", sort=False):
        ranked = part[part["method"] != "oracle"]
        entry = {}
        for score in ("ari", "accuracy_mean"):
            table = stats.summary_table(ranked, score, blocks=blocks, reference="fedavg")
            write_text_atomic(out / f"summary_{k}_{score}.csv", table.to_csv(index=False))
            fr = stats.friedman(ranked, score, blocks=blocks)
            entry[score] = {"friedman_chi2": fr.chi2, "p": fr.p_chi2, "iman_davenport_f": fr.f, "p_f": fr.p_f,
                            "blocks": fr.n_blocks, "methods": fr.n_methods,
                            "ranking": table[["method", "mean_rank", "mean"]].round(4).to_dict("records")}
        p = stats.posthoc(ranked, "ari", blocks=blocks, test="wilcoxon_holm")
        write_text_atomic(out / f"wilcoxon_holm_{k}.csv", p.to_csv())
        cd = stats.critical_difference(entry["ari"]["methods"], entry["ari"]["blocks"])
        ranks = stats.rank_table(ranked, "ari", blocks=blocks).mean_rank
        plt.close(stats.cd_diagram(ranks, cd, out / f"cd_{k}"))
        entry["cd"] = cd
        write_text_atomic(out / f"fairness_{k}.csv", fairness_table(part).to_csv(index=False))
        for knob in knobs_in(part):
            curves = difficulty_table(part, knob)
            write_text_atomic(out / f"difficulty_{k}_{knob}.csv", curves.to_csv(index=False))
            shown = curves[curves["method"] != "oracle"].assign(panel=curves["dataset"] + " · " + curves["scenario"])
            plt.close(difficulty_curves(shown, knob, harder=KNOBS[knob], panel="panel",
                                        path=out / f"difficulty_{k}_{knob}"))
            points = breaking_points(curves, knob)
            write_text_atomic(out / f"breaking_{k}_{knob}.csv", points.to_csv(index=False))
            entry.setdefault("breaking_points", {})[knob] = points.to_dict("records")
        if "ari_before_drift" in part and part["ari_before_drift"].notna().any():
            write_text_atomic(out / f"drift_{k}.csv", drift_table(part).to_csv(index=False))
        report[k] = entry
    write_text_atomic(out / "statistics.json", json.dumps(report, indent=2, default=_plain) + "\n")
    return report


def _plain(value):
    """JSON for numpy scalars and NaN-free floats in the report."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {value!r}")


def knobs_in(results: pd.DataFrame) -> list[str]:
    """The difficulty knobs (:data:`KNOBS`) that take more than one value in ``results``."""
    return [k for k in KNOBS if k in results.columns and results[k].dropna().nunique() > 1]


def block_columns(results: pd.DataFrame) -> tuple:
    """The columns that name a block of ``results``: dataset, setting, scenario, seed, knobs."""
    from .stats import BLOCKS

    extra = tuple(c for c in ("setting",) if c in results.columns)
    knobs = tuple(k for k in knobs_in(results))
    blocks = (BLOCKS[0], *extra, *BLOCKS[1:], *knobs)
    return blocks


def difficulty_table(results: pd.DataFrame, knob: str, score: str = "ari", level: float = 0.95) -> pd.DataFrame:
    """Per dataset, scenario, method and value of ``knob``: the mean ``score`` over seeds, a
    bootstrap interval (``low``, ``high``) and the number of runs ``n``; cells without the
    knob are left out."""
    from .stats import bootstrap_ci

    if knob not in KNOBS:
        raise ValueError(f"unknown difficulty knob {knob!r}; choose one of: {', '.join(KNOBS)}")
    part = results[results[knob].notna()] if knob in results else results.iloc[0:0]
    if part.empty:
        raise ValueError(f"no cell varies {knob!r}; the difficulty suite's runs set it with axes: {{{knob}: [...]}}")
    rows = []
    for (dataset, scenario, method, value), cell in part.groupby(["dataset", "scenario", "method", knob], sort=True):
        v = cell[score].astype(float).dropna().to_numpy()
        low, high = bootstrap_ci(v, level) if v.size else (float("nan"), float("nan"))
        rows.append({"dataset": dataset, "scenario": scenario, "method": method, knob: value,
                     "mean": float(v.mean()) if v.size else float("nan"), "low": low, "high": high, "n": int(v.size)})
    return pd.DataFrame(rows)


def breaking_points(curves: pd.DataFrame, knob: str, threshold: float = BREAK_ARI) -> pd.DataFrame:
    """Per dataset, scenario and method of a :func:`difficulty_table`: its mean at the easiest
    and the hardest setting and ``breaks_at``, the first setting (easiest first) where the mean
    falls below ``threshold`` (NaN: it never does; the easiest itself: it never worked)."""
    down = KNOBS[knob] == "down"
    rows = []
    for (dataset, scenario, method), part in curves.groupby(["dataset", "scenario", "method"], sort=True):
        part = part.sort_values(knob, ascending=not down)
        below = part[part["mean"] < threshold]
        rows.append({"dataset": dataset, "scenario": scenario, "method": method,
                     "easiest": part[knob].iloc[0], "mean_easiest": part["mean"].iloc[0],
                     "hardest": part[knob].iloc[-1], "mean_hardest": part["mean"].iloc[-1],
                     "breaks_at": below[knob].iloc[0] if len(below) else float("nan")})
    return pd.DataFrame(rows)


def drift_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per method, over the cells with a drift: mean ARI just before and just after it, the
    drop, the share of cells that recovered and the median rounds to recover (of those)."""
    part = results[results["ari_before_drift"].notna()]
    rows = []
    for method, cell in part.groupby("method", sort=False):
        recovered = cell["rounds_to_recover"].notna()
        rows.append({"method": method, "cells": int(len(cell)), "ari_before": float(cell["ari_before_drift"].mean()),
                     "ari_after": float(cell["ari_after_drift"].mean()),
                     "drop": float((cell["ari_before_drift"] - cell["ari_after_drift"]).mean()),
                     "recovered": float(recovered.mean()),
                     "rounds_to_recover": float(cell.loc[recovered, "rounds_to_recover"].median())
                     if recovered.any() else float("nan"),
                     "ari_final": float(cell["ari"].mean())})
    return pd.DataFrame(rows)


def fairness_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean accuracy, the mean accuracy of the worst planted group and the mean
    best-worst gap (cells of classification tasks; the oracle included as the reference)."""
    rows = []
    for method, cell in results.groupby("method", sort=False):
        row = {"method": method, "cells": int(len(cell))}
        for column in ("accuracy_mean", "accuracy_group_worst", "accuracy_group_gap"):
            row[column] = float(cell[column].mean()) if column in cell else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)
