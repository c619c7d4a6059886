"""The clustering benchmark: a grid of methods × scenarios × seeds (× clustering parts)
run cell by cell into ordinary run directories, and summarised in one tidy table.

>>> from cflkit import Config
>>> from cflkit.study.compare import compare, summarize_grid
>>> results = compare({"method": ["fedavg", "flhc"], "scenario": ["rotation", "label_swap"],
...                    "seed": [0, 1, 2]}, "runs/compare", base=Config(rounds=10))  # doctest: +SKIP
>>> summarize_grid(results)  # doctest: +SKIP

What lands in ``out_dir``:

- ``cells/<cell-id>/`` — one normal run directory per cell (``config.json``,
  ``history.csv``, ``summary.json``), written atomically by :func:`cflkit.core.experiment.run`.
  ``<cell-id>`` is ``<method>-<scenario>-s<seed>``, then ``<field>_<value>`` for every
  other field that varies in the grid, then 8 hex digits of the hash of the full config.
- ``results.csv`` — one row per cell: its config values, final accuracy (AUROC, AUPRC and
  balanced accuracy for a binary task, NaN else), clustering scores against the planted
  groups, stable round, clusters, bytes, wall time, ``error``.
- ``ari_per_round.csv`` — ARI / AMI / V-measure per round per cell (for plots over rounds).
- ``table.md`` — mean ± std over seeds of ARI and accuracy, and of AUROC and AUPRC when the
  grid has a binary task, of the C-index (instead of accuracy) for a survival grid
  (:func:`headline`, :func:`summarize_grid`).
- ``grid.json`` — the grid and the base config the tables were made from.

Resume: a cell whose directory already holds a run of exactly the cell's config is not
run again (a run of it filed under another cell id, e.g. after the grid gained a field,
is renamed into place). An interrupted cell leaves no directory and is simply run again;
so is a failed cell. The tables are rewritten, atomically, at the end of every call.

Method parameters: a grid key may be a method's parameter (``restarts``, ``representation``,
``eps2``, ...). Each method takes only its own, so a method without the parameter gets one
cell, not repeats of the same run, and its column is empty in the tables; the
``representation`` / ``clusterer`` / ``trigger`` columns (:data:`PARTS`) always show the
parts a clustered method uses (its preset's, unless the grid changes them). A value that
no method of the grid accepts is a usage error; a combination that one method refuses
(e.g. ``pacfl`` with ``representation=update``) is a failed cell.

Worker processes are started with 'spawn': a script that calls :func:`compare` with
``workers > 1`` must do so under ``if __name__ == "__main__":`` (notebooks need nothing).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import FIELDS, Config, coerce, parameter_names
from ..core.results import RUN_FILES, atomic_file, write_text_atomic
from .executors import RETRIES, check_executor

log = logging.getLogger("cflkit")

PARTS = ("representation", "clusterer", "trigger")  # the parts of a clustered method: always table columns
KEY_FIELDS = ("method", "scenario", "seed")  # always in a cell id and the tables, in this order
SUMMARY_COLUMNS = ("accuracy_mean", "accuracy_weighted", "accuracy_worst10", "loss_mean",
                   "rmse_mean", "rmse_weighted", "rmse_worst10", "mae_mean", "r2_mean",  # regression (NaN else)
                   "auroc_mean", "auroc_weighted", "auroc_worst10", "auprc_mean", "auprc_weighted",  # binary
                   "balanced_accuracy_mean", "balanced_accuracy_weighted",  # classification (NaN else)
                   "c_index_mean", "c_index_weighted", "c_index_worst10",  # survival (NaN else)
                   "accuracy_group_worst", "accuracy_group_gap", "rmse_group_worst", "rmse_group_gap",  # fairness:
                   "c_index_group_worst", "c_index_group_gap",  # the worst planted group, best minus worst
                   "ari_unseen", "accuracy_unseen_mean", "unseen_matched", "late_matched",  # unseen / late clients
                   "ari_before_drift", "ari_after_drift", "rounds_to_recover",  # drift (NaN without)
                   "ari", "ami", "homogeneity", "completeness", "v_measure", "n_clusters", "stable_round", "rounds",
                   "bytes_total", "wall_seconds")
INTEGER_COLUMNS = ("n_clusters", "stable_round", "rounds", "bytes_total")
ROUND_COLUMNS = ("ari", "ami", "v_measure", "n_clusters")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its directory name, its config and its row labels; ``refused``
    says why a method refused the cell's combination of parameters (it is then not run)."""

    id: str
    config: Config
    labels: dict  # config columns of the tables: method, scenario, seed, parts used, other grid fields
    refused: str = ""


# -- the grid ---------------------------------------------------------------------------------
def expand_grid(grid: dict, base: Config = Config(), settings: dict | None = None,
                tuned: dict | None = None) -> list[Cell]:
    """The distinct cells of ``grid`` on top of ``base``, validated, in grid order.

    ``grid`` maps config fields and method parameters to a list of values (a single value
    is a list of one; for a tuple-valued field such as ``hidden`` a tuple is one value).
    Cells are the product of the lists (seeds innermost). A method parameter reaches only
    the methods that take it, so a method without it gets one cell, not repeats of the same
    run; a value that no method of the grid accepts, or a parameter none takes, raises
    ``ValueError`` naming it, before anything is run or written. A combination that one
    method refuses (``pacfl`` with ``representation=update``) is a failed cell. ``settings``
    are method parameters fixed for every method of the grid that takes them (the others
    ignore them): ``{"clusters": 2, "restarts": 5}``. ``tuned`` gives each method its own
    parameters, ``{method: {parameter: value}}`` (what ``cflkit tune`` chose:
    :func:`cflkit.study.tune.read_tuned`); they override ``settings`` for that method, and
    the tables gain a ``tuning`` column ("tuned" for a method listed there, else "default").
    """
    from ..core.experiment import validate
    from ..methods import make_method

    if not isinstance(grid, dict) or not grid:
        raise ValueError("the grid must be a non-empty dict of config field -> list of values, "
                         "e.g. {'method': ['fedavg', 'flhc'], 'seed': [0, 1]}")
    lists = {key: _values(key, values) for key, values in grid.items()}
    methods = lists.get("method", [base.method])
    params = [k for k in lists if k not in FIELDS]
    _check_parameters(params, lists, methods)
    settings = dict(settings or {})
    tuned = _check_tuned(tuned, lists) if tuned is not None else None
    for key in settings:
        if key not in parameter_names():
            raise ValueError(f"unknown method parameter {key!r} in settings (`cflkit list METHOD`)")
        if key in lists:
            raise ValueError(f"parameter {key!r} is both in settings and varied by the grid; keep one")
    order = [k for k in ("method", "scenario") if k in lists] + \
            [k for k in lists if k not in KEY_FIELDS] + (["seed"] if "seed" in lists else [])
    cells, seen = [], set()
    varying = [k for k in order if k not in KEY_FIELDS and len(lists[k]) > 1]
    for combo in itertools.product(*(lists[k] for k in order)):
        point = dict(zip(order, combo))
        shared = {k: v for k, v in point.items() if k in FIELDS}
        config = base.replace(**shared)
        mine = (tuned or {}).get(config.method, {})
        own = {k: v for k, v in {**settings, **mine, **point}.items()
               if k not in FIELDS and k in config.params.names()}
        key = (config, tuple(sorted(own.items())))
        if key in seen:
            continue
        seen.add(key)
        validate(config, method=False)  # the names (dataset, scenario, model): usage errors
        try:
            config = config.replace(**own)
            make_method(config)
        except ValueError as e:  # this method refuses the combination: a failed cell
            cell = _refused_cell(config, own, order, str(e))
        else:
            cell = Cell(cell_id(config, varying), config, _labels(config, order))
        if tuned is not None:
            cell.labels["tuning"] = "tuned" if config.method in tuned else "default"
        cells.append(cell)
    return _distinct(cells)


def _check_tuned(tuned, lists: dict) -> dict:
    """``tuned`` as ``{method: {parameter: value}}``, every method and parameter checked."""
    from ..methods import METHODS

    if not isinstance(tuned, dict) or not all(isinstance(v, dict) for v in tuned.values()):
        raise ValueError("tuned must map a method to its parameters, {method: {parameter: value}} "
                         "(what `cflkit tune` writes in tuned.json)")
    for method, params in tuned.items():
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} in the tuned parameters; choose one of: {', '.join(METHODS)}")
        names = METHODS[method].Params.names()
        for key in params:
            if key not in names:
                raise ValueError(f"method {method!r} has no parameter {key!r} (in the tuned parameters); its "
                                 f"parameters: {', '.join(names) or 'none'}")
            if key in lists:
                raise ValueError(f"parameter {key!r} is both tuned for {method!r} and varied by the grid; keep one")
    return {m: dict(p) for m, p in tuned.items()}


def _check_parameters(params: list, lists: dict, methods: list):
    """Every method parameter of the grid is taken by a method of the grid, and each of its
    values is valid for at least one of them (a typo is a usage error, not a failed cell)."""
    from ..core.config import method_class

    known = parameter_names()
    for key in params:
        if key not in known:
            raise ValueError(f"unknown config field or method parameter {key!r} in the grid; choose one of: "
                             f"{', '.join(FIELDS)}, or a method's parameter (`cflkit list METHOD`)")
        takers = [m for m in methods if key in method_class(m).Params.names()]
        if not takers:
            raise ValueError(f"no method of the grid ({', '.join(methods)}) takes parameter {key!r}; "
                             f"it is a parameter of: {', '.join(known[key])}")
        for value in lists[key]:
            errors = []
            for m in takers:
                try:
                    method_class(m).Params.check_value(key, value)
                except ValueError as e:
                    errors.append(str(e))
            if len(errors) == len(takers):
                raise ValueError(errors[0])


def _labels(config: Config, order: list) -> dict:
    """The table labels of a cell: method, scenario, seed, the parts its method uses ('' for
    a method without parts) and the value of every other grid key ('' where it does not apply)."""
    labels = {k: getattr(config, k) for k in KEY_FIELDS}
    for k in [*PARTS, *(k for k in order if k not in KEY_FIELDS and k not in PARTS)]:
        value = getattr(config, k) if k in FIELDS else getattr(config.params, k, "")
        labels[k] = "" if value is None and k not in FIELDS else _label(value)
    return labels


def _refused_cell(config: Config, own: dict, order: list, error: str) -> Cell:
    """A cell whose method refuses its parameters: labelled with what was asked, never run."""
    labels = _labels(config, order)
    labels.update({k: _label(v) for k, v in own.items()})
    asked = json.dumps({k: _label(v) for k, v in sorted(own.items())})
    digest = hashlib.sha1((config.to_json() + asked).encode()).hexdigest()[:8]
    words = [config.method, config.scenario, f"s{config.seed}", *(f"{k}_{_label(v)}" for k, v in sorted(own.items()))]
    readable = re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(map(str, words)))[:150]
    return Cell(f"{readable}-{digest}", config, labels, refused=f"ValueError: {' '.join(error.split())}")


def _distinct(cells: list) -> list:
    """Cells in grid order without repeats of the same config (a refused cell is its own)."""
    out, seen = [], set()
    for cell in cells:
        key = (cell.config, cell.refused, cell.id if cell.refused else "")
        if key not in seen:
            seen.add(key)
            out.append(cell)
    return out


def cell_id(config: Config, varying=()) -> str:
    """``<method>-<scenario>-s<seed>[-<field>_<value>...]-<hash8>``: readable, deterministic,
    safe as a directory name. ``varying`` names the other fields and parameters to show
    (those the method lacks and empty values are left out); the hash covers the whole config."""
    digest = hashlib.sha1(config.to_json().encode()).hexdigest()[:8]
    words = [config.method, config.scenario, f"s{config.seed}"]
    for key in varying:
        value = getattr(config, key) if key in FIELDS else getattr(config.params, key, "")
        if value in ("", (), None):
            continue
        value = "x".join(map(str, value)) if isinstance(value, tuple) else value
        words.append(f"{key}_{value}")
    readable = re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(map(str, words)))[:150]
    return f"{readable}-{digest}"


def _values(key: str, values) -> list:
    if key not in FIELDS and key not in parameter_names():
        raise ValueError(f"unknown config field or method parameter {key!r} in the grid; choose one of: "
                         f"{', '.join(FIELDS)}, or a method's parameter (`cflkit list METHOD`)")
    tuple_field = key in FIELDS and isinstance(FIELDS[key].default, tuple)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (list, range)) or (isinstance(values, tuple) and not tuple_field):
        values = list(values)
    else:
        values = [values]
    if not values:
        raise ValueError(f"the grid gives no values for {key!r}; give at least one")
    out = []
    for v in values:
        v = coerce(key, v) if key in FIELDS else v  # a parameter's value is converted by each method's Params
        if v not in out:
            out.append(v)
    return out


def _label(value):
    """A config value as a table label: tuples joined by commas."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


# -- running ----------------------------------------------------------------------------------
def compare(grid: dict, out_dir, workers: int | None = None, progress: bool | None = None,
            base: Config = Config(), settings: dict | None = None, tuned: dict | None = None,
            executor: str = "local", address: str | None = None, retries: int = RETRIES) -> pd.DataFrame:
    """Run every cell of ``grid`` (see :func:`expand_grid`) into ``out_dir`` and return the
    results table, one row per cell (columns: ``cell``, the config labels, the
    :data:`SUMMARY_COLUMNS`, ``error``); ``settings``: see :func:`expand_grid`.

    Cells already in ``out_dir`` are not run again. ``workers`` worker processes (default:
    as many as cores, at most one per cell to run) each import TensorFlow once and run
    many cells; with one worker the cells run in this process. A cell that raises is
    recorded in ``error`` and the others go on. ``progress`` shows a bar over cells
    (default: when stderr is a terminal).

    ``executor="ray"`` hands the cells to the Ray cluster at ``address`` instead
    (:mod:`cflkit.study.executors`; ``workers`` then caps the cells running at once, ``retries``
    is how often a cell whose Ray worker died is run again): same cells, resume and tables.
    """
    from ..core.outputs import MANIFEST, TARGETS, WriteError, check_output, make_dirs, mark, remove_made

    check_executor(executor, address, retries)
    cells = expand_grid(grid, base, settings, tuned)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    progress = sys.stderr.isatty() if progress is None else progress
    out_dir = Path(out_dir)
    check_output(out_dir, "compare")
    cells_dir = out_dir / "cells"
    made = make_dirs(cells_dir)  # removed again if the device is full before anything is written
    try:
        mark(out_dir, "compare", TARGETS["compare"])
        runnable = [c for c in cells if not c.refused]
        pending = _resume(runnable, cells_dir)
        log.info("compare: %d cells, %d to run", len(cells), len(pending))
        ran = _run_cells(pending, cells_dir, workers, progress, done=len(cells) - len(pending),
                         ray=(address, retries) if executor == "ray" else None)
        errors = {c.id: c.refused or ran[c.id] for c in cells if c.refused or c.id in ran}  # grid order
        _write_tables(grid, base, cells, out_dir, errors, settings, tuned)
    except (WriteError, OSError):  # nothing half-made stays: the directories this call created go if empty
        if out_dir in made:
            (out_dir / MANIFEST).unlink(missing_ok=True)
        remove_made(made)
        raise
    if errors:
        lines = "\n".join(f"  {cid}: {err}" for cid, err in errors.items())
        log.warning("compare: %d of %d cells failed:\n%s", len(errors), len(cells), lines)
    return results_table(cells, cells_dir, errors)


def _write_tables(grid: dict, base: Config, cells: list, out_dir: Path, errors: dict, settings: dict | None = None,
                 tuned: dict | None = None):
    """``results.csv``, ``ari_per_round.csv``, ``table.md`` and ``grid.json``, each atomically."""
    cells_dir = out_dir / "cells"
    results = results_table(cells, cells_dir, errors)
    per_round = per_round_table(cells, cells_dir, errors)
    with atomic_file(out_dir / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    with atomic_file(out_dir / "ari_per_round.csv") as tmp:
        per_round.to_csv(tmp, index=False)
    write_text_atomic(out_dir / "table.md", markdown_table(summarize_grid(results, metrics=headline(results))) + "\n")
    write_text_atomic(out_dir / "grid.json", json.dumps(
        {"grid": {k: [_label(v) for v in _values(k, vs)] for k, vs in grid.items()}, "base": base.to_dict(),
         "settings": {k: _label(v) for k, v in (settings or {}).items()},
         "tuned": {m: {k: _label(v) for k, v in p.items()} for m, p in tuned.items()} if tuned is not None else None},
        indent=2) + "\n")


def _resume(cells: list[Cell], cells_dir: Path) -> list[Cell]:
    """The cells still to run; runs of a cell's config filed under another id are moved."""
    elsewhere = None
    pending = []
    for cell in cells:
        path = cells_dir / cell.id
        if _run_config(path) == cell.config:
            continue
        if elsewhere is None:
            elsewhere = {}
            for other in sorted(cells_dir.glob("*/config.json")) if cells_dir.is_dir() else ():
                config = _run_config(other.parent)
                if config is not None:
                    elsewhere.setdefault(config, other.parent)
        old = elsewhere.get(cell.config)
        if old is not None and old.exists() and not path.exists():
            os.replace(old, path)
            log.info("compare: reusing %s as %s", old.name, cell.id)
            continue
        pending.append(cell)
    return pending


def _run_config(path: Path) -> Config | None:
    """The config of the complete run in ``path``, or None."""
    from ..core.results import read_config

    if not all((path / f).is_file() for f in RUN_FILES):
        return None
    try:
        return read_config(path / "config.json")
    except ValueError:  # unreadable: the cell is run again
        return None


def _run_cells(cells: list[Cell], cells_dir: Path, workers, progress: bool, done: int, ray=None) -> dict:
    """Run ``cells`` (on the Ray cluster when ``ray`` is ``(address, retries)``); return
    {cell id: one-line error} of those that failed."""
    errors = {}
    if not cells:
        return errors
    n = min(int(workers) if workers else available_cores(), len(cells))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=done + len(cells), initial=done, desc="compare", unit="cell")
    try:
        if ray is not None:
            errors = _run_ray(cells, cells_dir, *ray, workers, bar)
        elif n <= 1:
            for cell in cells:
                error = run_cell(cell.config, cells_dir / cell.id)
                if error:
                    errors[cell.id] = error
                if bar is not None:
                    bar.update(1)
        else:
            errors = _run_pool(cells, cells_dir, n, bar)
    finally:
        if bar is not None:
            bar.close()
    return {cell.id: errors[cell.id] for cell in cells if cell.id in errors}  # grid order


def _run_pool(cells, cells_dir, n: int, bar) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, available_cores() // n)
    errors = {}
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads, os.getpid()))
    try:
        futures = {pool.submit(run_cell, cell.config, cells_dir / cell.id, True): cell for cell in cells}
        for future in as_completed(futures):
            try:
                error = future.result()  # a full device (WriteError) ends the grid: raised here
            except BrokenProcessPool:
                error = ("BrokenProcessPool: a worker process died (out of memory? or a script calling "
                         "compare() without `if __name__ == '__main__':`); run again to resume")
            if error:
                errors[futures[future].id] = error
            if bar is not None:
                bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return errors


def _run_ray(cells, cells_dir, address, retries, limit, bar) -> dict:
    """The cells as Ray tasks; each one's files are written here, atomically, as it ends."""
    from ..core.results import atomic_directory
    from .executors import error_line, ray_cell, ray_tasks, write_tree

    errors = {}
    for index, value in ray_tasks(ray_cell, [(cell.config, 1) for cell in cells], address, retries, limit):
        cell = cells[index]
        if isinstance(value, BaseException):  # its worker died retries + 1 times
            errors[cell.id] = error_line(value)
        elif value[0]:
            errors[cell.id] = value[0]
        else:
            files = value[1]
            with atomic_directory(cells_dir / cell.id, "run", sizes=[len(b) for b in files.values()]) as tmp:
                write_tree(tmp, files)
        if bar is not None:
            bar.update(1)
    return errors


def run_cell(config: Config, out, fresh_session: bool = False) -> str | None:
    """Run one cell into ``out``; return None, or its error as one line."""
    from ..core import experiment
    from ..core.outputs import WriteError

    try:
        experiment.run(config, out=out)
    except WriteError:  # a full device is not this cell's fault: it ends the grid
        raise
    except Exception as e:  # noqa: BLE001 — one cell's failure must not end the grid
        return one_line(e)
    finally:
        if fresh_session:  # a worker runs many cells: free each one's graphs and models
            from ..core._tf import keras

            keras().backend.clear_session()
    return None


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _init_worker(threads: int, parent: int | None = None):
    """Worker start: exit with the parent (a killed ``compare`` leaves no worker behind);
    import TensorFlow once for all the cells this worker runs, with its thread pools
    limited (only possible before its runtime starts)."""
    from ..core._tf import keras, tf
    from ..core.processes import die_with_parent

    die_with_parent(parent)

    tf(threads=threads)
    keras()


# -- tables -----------------------------------------------------------------------------------
def results_table(cells: list[Cell], cells_dir, errors: dict | None = None) -> pd.DataFrame:
    """One row per cell from its run directory: labels, :data:`SUMMARY_COLUMNS`, ``error``."""
    errors = errors or {}
    rows = []
    for cell in cells:
        row = {"cell": cell.id, **cell.labels}
        path = Path(cells_dir) / cell.id
        error = errors.get(cell.id, "")
        summary = {}
        if not error:
            try:
                summary = json.loads((path / "summary.json").read_text())
            except (OSError, ValueError) as e:
                error = f"no run in {path}: {one_line(e)}"
        for key in SUMMARY_COLUMNS:
            value = summary.get(key)
            row[key] = np.nan if value is None else value
        row["error"] = error
        rows.append(row)
    table = pd.DataFrame(rows)
    for key in INTEGER_COLUMNS:
        table[key] = table[key].astype("Int64")
    return table


def per_round_scores(history: pd.DataFrame) -> pd.DataFrame:
    """ARI, AMI, V-measure and number of clusters of every round of one run's history."""
    from ..core.metrics import clustering_scores

    rows = []
    for r, rnd in history.sort_values(["round", "client"]).groupby("round", sort=True):
        scores = clustering_scores(rnd["group"].to_numpy(), rnd["cluster"].to_numpy())
        rows.append({"round": int(r), "ari": scores["ari"], "ami": scores["ami"],
                     "v_measure": scores["v_measure"], "n_clusters": int(rnd["cluster"].nunique())})
    return pd.DataFrame(rows, columns=["round", *ROUND_COLUMNS])


def per_round_table(cells: list[Cell], cells_dir, errors: dict | None = None) -> pd.DataFrame:
    """The long table of :func:`per_round_scores` of every cell that ran (rounds 0..R)."""
    frames = []
    for cell in cells:
        if cell.id in (errors or {}):
            continue
        path = Path(cells_dir) / cell.id / "history.csv"
        if not path.is_file():
            continue
        scores = per_round_scores(pd.read_csv(path, usecols=["round", "client", "group", "cluster"]))
        labels = pd.DataFrame([{"cell": cell.id, **cell.labels}] * len(scores))
        frames.append(pd.concat([labels, scores], axis=1))
    if not frames:
        columns = ["cell", *(cells[0].labels if cells else KEY_FIELDS), "round", *ROUND_COLUMNS]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def load_comparison(out_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, per_round)`` as :func:`compare` wrote them to ``out_dir``."""
    out_dir = Path(out_dir)
    missing = [f for f in ("results.csv", "ari_per_round.csv") if not (out_dir / f).is_file()]
    if missing:
        raise ValueError(f"{str(out_dir)!r} holds no comparison: missing {', '.join(missing)}")
    tables = []
    for name in ("results.csv", "ari_per_round.csv"):
        table = pd.read_csv(out_dir / name)
        for key in table.columns:
            text = key in FIELDS and isinstance(FIELDS[key].default, str)
            if key in ("cell", "error", *PARTS) or text or (key in parameter_names() and table[key].dtype == object):
                table[key] = table[key].astype(object).fillna("").astype(str)
        tables.append(table)
    return tables[0], tables[1]


def headline(results: pd.DataFrame) -> tuple:
    """The metrics of ``table.md``: ARI and mean accuracy, plus mean AUROC and AUPRC when a
    cell has them (a binary task, whose accuracy says little when one class is rare); for a
    survival task the mean C-index, in place of the accuracy when no cell has one."""
    def has(column: str) -> bool:
        return column in results and results[column].astype(float).notna().any()

    survival = has("c_index_mean")
    accuracy = ("accuracy_mean",) if has("accuracy_mean") or not survival else ()
    return (("ari",) + accuracy + (("c_index_mean",) if survival else ())
            + (("auroc_mean", "auprc_mean") if has("auroc_mean") else ()))


def summarize_grid(results: pd.DataFrame, by=None, metrics=("ari", "accuracy_mean"),
                   digits: int = 2) -> pd.DataFrame:
    """Mean ± std over seeds (sample std; the mean alone for one run) of ``metrics``.

    ``by`` defaults to method, scenario and every other config column of ``results`` that
    takes more than one value (seed excepted). Failed cells are left out of the means
    and counted in ``failed``; ``runs`` counts the cells that finished.
    """
    if by is None:
        config_cols = [c for c in results.columns if (c in FIELDS or c in parameter_names())
                       and c not in SUMMARY_COLUMNS and c != "seed"]
        by = [c for c in config_cols if c in ("method", "scenario") or results[c].nunique(dropna=False) > 1]
    by = list(by)
    errors = results["error"].fillna("").astype(str) if "error" in results else pd.Series("", index=results.index)
    rows = []
    for key, group in results.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = group[errors.loc[group.index] == ""]
        row = dict(zip(by, ("" if isinstance(k, float) and math.isnan(k) else k for k in key)))
        for m in metrics:
            row[m] = _mean_std(ok[m].astype(float).to_numpy(), digits)
        row["runs"] = len(ok)
        row["failed"] = len(group) - len(ok)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *metrics, "runs", "failed"])


def _mean_std(values: np.ndarray, digits: int) -> str:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return "–"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """``table`` as a GitHub-flavoured Markdown table (no extra dependency)."""
    cells = [[str(c) for c in table.columns]] + [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in table.columns) + "|")
    return "\n".join(lines)


def text_table(table: pd.DataFrame) -> str:
    """``table`` as aligned plain text, for the terminal."""
    cells = [[str(c) for c in table.columns]] + [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


K_SETTINGS = {"auto": "unknown", "groups": "given"}  # clusters= value -> the benchmark's setting
CANNOT_CHOOSE_K = "this method cannot choose K itself"  # the refusal of clusters=auto (methods/params.py)


def k_settings(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with a ``k`` column: "unknown" for the cells run with ``clusters=auto``,
    "given" for ``clusters=groups`` (the planted number) or an integer K; a method that
    takes no K (FedAvg, the oracle, Sattler, the density clusterers) ran once and serves both
    settings, so its rows appear under each; a method that cannot choose K (FedGroup) has its
    refused ``clusters=auto`` cells left out. A table without a ``clusters`` column is "given"."""
    if "clusters" not in results:
        return results.assign(k="given")
    refused = results["error"].astype(object).fillna("").astype(str).str.contains(CANNOT_CHOOSE_K, regex=False) \
        if "error" in results else pd.Series(False, index=results.index)
    if refused.any():
        logging.getLogger(__name__).info("no K-unknown runs for %s: the method cannot choose K itself",
                                         ", ".join(dict.fromkeys(results.loc[refused, "method"])))
        results = results[~refused]
    clusters = results["clusters"]
    takes_k = clusters.notna() & (clusters.astype(str) != "")
    labelled = results[takes_k].assign(k=clusters[takes_k].astype(str).map(lambda v: K_SETTINGS.get(v, "given")))
    both = [results[~takes_k].assign(k=setting) for setting in ("unknown", "given")]
    return pd.concat([labelled, *both], ignore_index=True).sort_values(
        "k", key=lambda k: k.map({"unknown": 0, "given": 1}), kind="stable").reset_index(drop=True)
