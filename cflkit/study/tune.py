"""A tuning protocol that does not peek: each method's own parameters chosen on validation rows.

For every method, every point of its declared grid (``Method.tuning``: parameter -> values,
the first value the paper's default; or a grid given here) runs on *tuning seeds*, which must
be disjoint from the seeds the benchmark reports. Each run sees a validation federation
(:func:`validation_federation`): a seeded share of every client's **training** rows is held
out as its evaluation set, and the client's test rows are dropped — no run of the tuner sees
them. The point with the best mean validation score over the tuning seeds wins (``accuracy_mean``
by default: the clients' mean validation accuracy — never ARI, never test accuracy); ties go
to the earlier point, so the paper's default wins a tie. :func:`write_tuning` writes the
table of every point and the chosen parameters (``tuned.json``), which ``cflkit.study.compare``
grids take as per-method settings.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import Config, parameter_names
from ..core.results import write_text_atomic

log = logging.getLogger(__name__)

LOWER_IS_BETTER = ("rmse", "mae", "loss")  # metric name prefixes where a smaller value is better
VALIDATION_FRACTION = 0.2  # share of each client's training rows held out for validation
TUNING_SEEDS = (100, 101)  # default tuning seeds: far from the reporting seeds 0, 1, 2, ...


def validation_federation(fed, fraction: float = VALIDATION_FRACTION, seed: int = 0):
    """``fed`` with each client's training rows split into training and validation (the
    validation rows become its ``test_index``); its real test rows are gone. At least one
    row stays on each side for a client with two or more rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for rows in fed.train_index:
        rows = np.asarray(rows)
        n_val = int(round(fraction * len(rows)))
        n_val = min(max(n_val, 1), len(rows) - 1) if len(rows) >= 2 else 0
        order = rng.permutation(len(rows))
        val.append(np.sort(rows[order[:n_val]]))
        train.append(np.sort(rows[order[n_val:]]))
    return dataclasses.replace(fed, train_index=train, test_index=val,
                               description=f"{fed.description} (validation split: {fraction:g} of training rows)")


def method_grid(method: str, grid: dict | None = None) -> list[dict]:
    """The points (parameter dicts) tried for ``method``: the product of ``grid`` (default: the
    method's declared ``tuning``), in order; one empty point when there is nothing to tune."""
    from ..methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    grid = dict(METHODS[method].tuning if grid is None else grid)
    own = METHODS[method].Params.names()
    for key, values in grid.items():
        if key not in own:
            raise ValueError(f"method {method!r} has no parameter {key!r}; its parameters: {', '.join(own) or 'none'}")
        if not len(values):
            raise ValueError(f"the tuning grid of {method!r} gives no values for {key!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] or [{}]


def check_seeds(tuning_seeds, report_seeds) -> list[int]:
    """The tuning seeds, refused when empty or when one is also a reporting seed."""
    tuning = [int(s) for s in tuning_seeds]
    if not tuning:
        raise ValueError("give at least one tuning seed")
    overlap = sorted(set(tuning) & {int(s) for s in report_seeds})
    if overlap:
        raise ValueError(f"tuning seeds {overlap} are also reporting seeds; tune on seeds the benchmark does not "
                         f"report (default: {', '.join(map(str, TUNING_SEEDS))})")
    return tuning


def tune(methods, base: Config = Config(), seeds=TUNING_SEEDS, report_seeds=(0, 1), grids: dict | None = None,
         fraction: float = VALIDATION_FRACTION, metric: str = "accuracy_mean", settings: dict | None = None,
         progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Tune each of ``methods`` on ``base`` (its dataset, scenario, training). Returns the table
    (method, point, params, seed, validation score) and ``{method: chosen parameters}``.
    ``grids`` maps a method to its own grid (default: its declared one); ``settings`` are
    parameters fixed for every method that takes them (e.g. ``clusters="auto"``)."""
    from ..core.experiment import federation_from, run

    seeds = check_seeds(seeds, report_seeds)
    methods = list(methods)
    points = {m: method_grid(m, (grids or {}).get(m)) for m in methods}  # every check before any run
    if metric not in ("accuracy_mean", "rmse_mean", "mae_mean", "loss_mean", "c_index_mean", "auroc_mean",
                      "balanced_accuracy_mean", "r2_mean"):
        raise ValueError(f"unknown tuning metric {metric!r}; choose one of: accuracy_mean, balanced_accuracy_mean, "
                         f"auroc_mean, c_index_mean, r2_mean, rmse_mean, mae_mean, loss_mean")
    known = parameter_names()
    for key in settings or {}:
        if key not in known:
            raise ValueError(f"unknown method parameter {key!r} in settings (`cflkit list METHOD`)")
    feds = {s: validation_federation(federation_from(base.replace(seed=s)), fraction, seed=s) for s in seeds}
    rows = []
    for m in methods:
        own = {k: v for k, v in (settings or {}).items() if k in _names(m)}
        for i, point in enumerate(points[m]):
            for s in seeds:
                config = base.replace(method=m, seed=s, params={**own, **point})
                summary = run(config, federation=feds[s], progress=progress).summary
                rows.append({"method": m, "point": i, "params": json.dumps(point, sort_keys=True), "seed": s,
                             "validation": float(summary.get(metric, np.nan))})
                log.info("tune %s %s seed %d: %s %.4f", m, point, s, metric, rows[-1]["validation"])
    table = pd.DataFrame(rows)
    return table, choose(table, points, metric)


def _names(method: str) -> tuple:
    from ..methods import METHODS

    return METHODS[method].Params.names()


def choose(table: pd.DataFrame, points: dict, metric: str = "accuracy_mean") -> dict:
    """Per method, the point of the best mean validation score (ties and NaN: the earlier point)."""
    lower = metric.startswith(LOWER_IS_BETTER)
    chosen = {}
    for m, part in table.groupby("method", sort=False):
        means = part.groupby("point")["validation"].mean()
        score = (-means if lower else means).fillna(-np.inf)
        chosen[m] = points[m][int(score.idxmax())] if len(score) else {}
    return chosen


def write_tuning(out_dir, table: pd.DataFrame, chosen: dict, protocol: dict) -> Path:
    """``tuning.csv`` (every point and seed) and ``tuned.json`` (chosen parameters + protocol)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "tuning.csv", table.to_csv(index=False))
    write_text_atomic(out / "tuned.json", json.dumps({"protocol": protocol, "chosen": chosen}, indent=2) + "\n")
    return out / "tuned.json"


def read_tuned(path) -> dict:
    """The chosen parameters of a ``tuned.json``: ``{method: {parameter: value}}``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"cannot read the tuned parameters {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e}); give the tuned.json written by `cflkit tune`") from None
    if not isinstance(data, dict) or not isinstance(data.get("chosen"), dict):
        raise ValueError(f"{path}: not a tuned.json written by `cflkit tune` (no 'chosen' mapping)")
    return data["chosen"]
