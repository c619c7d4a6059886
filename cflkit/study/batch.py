"""``cflkit batch``: run the numbered notebooks over parameter grids with papermill.

An experiment file (``experiments/*.yaml``) names notebooks and parameter grids::

    name: paper                     # runs go to runs/batch/paper/
    timeout: 1800                   # seconds a notebook cell may run (papermill's execution_timeout)
    parameters: {workers: 1}        # defaults for every entry's notebook parameters
    paper: {dir: paper}             # after the runs, aggregate them into the article (cflkit.article.builder)
    runs:
      - name: benchmark
        notebook: notebooks/08_benchmark_of_clustering.ipynb
        parameters: {seeds: [0, 1]} # fixed values, passed as they are (a list stays a list)
        grid: {dataset: [digits, fashion_mnist]}   # every combination is one run
        overrides:                  # per grid point: where `when` matches, `set` these
          - {when: {dataset: fashion_mnist}, set: {rounds: 20}}
        figures: [ari_heatmap]      # <name>.pdf the run must write into its out_dir
        tables: [results.csv]       # files the run must write into its out_dir
        requires: [fashion_mnist]   # datasets whose files must be found (offline dirs, cache), else
                                    # the entry is skipped with a note (not failed, not run)

Each grid point is one *run*, keyed by the notebook's bytes and its parameters (canonical
JSON): a run whose directory ``runs/batch/<name>/<entry>-<key>/`` exists is done and never
run twice; a changed notebook or parameter is a new key. A run executes in a temporary
directory (``.tmp/``) with ``cwd`` there and ``out_dir = "out"``, and is renamed into place
only when the notebook finished and wrote every declared figure and table; a failed run
goes to ``failed/<entry>-<key>/`` (its executed notebook kept for reading) and is retried on
the next batch; an interrupted run leaves only ``.tmp/`` (shown as ``interrupted`` once its
worker is dead), which the next batch clears. ``index.csv`` lists every planned run with its
status, parameters, seed, versions and wall time; it is computed from the run directories and
rewritten atomically by every batch (at its start and after each run) and every dry run.

Bad input is refused before anything runs, naming the field: names that are not plain names
(the experiment's name becomes a directory), timeouts that are not positive integers, and
parameters that the notebook's ``parameters`` cell does not declare or whose values do not
fit its annotation (``clients: int = 16``). File-level ``parameters`` are defaults: each
goes to the entries whose notebook declares it. Nothing is deleted or renamed over unless it
resolves inside the experiment's directory.

One batch at a time per experiment, its workers counted: the batch holds ``.lock`` and each
worker holds ``.lock-workers`` (shared) for its lifetime; a new batch needs both (it waits up to
``WORKERS_GRACE_S`` for the workers of a batch killed just before to be reaped). Workers
are processes (spawn) that die with the batch (:func:`cflkit.core.processes.die_with_parent`);
each papermill run starts its own ``python3`` kernel, which exits within a second of its
worker (ipykernel's parent poller); a new batch also ends any process left with its
experiment's mark (``CFLKIT_BATCH_DIR`` in the environment of the workers' kernels).

The environment is passed through to the kernels (``CFLKIT_OFFLINE_DIRS`` for the real
datasets). Notebooks that have their own ``workers`` parameter should get 1 here.
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.processes import die_with_parent, pid_alive
from ..core.results import write_text_atomic
from .executors import RETRIES, check_executor

log = logging.getLogger("cflkit.study.batch")

ENTRY_KEYS = ("name", "notebook", "parameters", "grid", "overrides", "figures", "tables", "timeout", "requires")
FILE_KEYS = ("name", "timeout", "parameters", "paper", "runs")
SET_BY_BATCH = ("out_dir",)  # parameters batch sets itself, not part of a run's key
DEFAULT_TIMEOUT = 1800
NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")  # a plain directory name: no '/', not '.', '..', '.x'
ENV_MARK = "CFLKIT_BATCH_DIR"  # set in workers (so in their kernels' environment): the experiment directory
WORKERS_LOCK = ".lock-workers"
WORKERS_GRACE_S = 10.0  # how long a new batch waits for the workers of a just-killed one to be gone
OWNER = "owner.json"  # in a run's .tmp/ directory: the pid and start time of the worker running it
TYPES = {  # papermill's inferred_type_name (the annotation) -> the check a value must pass; others unchecked
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str), "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list), "dict": lambda v: isinstance(v, dict)}
INDEX_COLUMNS = ("entry", "label", "key", "status", "seed", "wall_seconds", "started", "notebook", "path",
                 "executed", "error", "parameters", "versions")


@dataclass(frozen=True)
class Entry:
    """One notebook and its grid, as written in the experiment file."""
    name: str
    notebook: Path
    parameters: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    overrides: tuple = ()
    figures: tuple = ()
    tables: tuple = ()
    timeout: int = DEFAULT_TIMEOUT
    where: str = ""  # its place in the experiment file, e.g. "runs[1]" (for error messages)
    inherited: tuple = ()  # names in `parameters` that came from the file-level defaults
    requires: tuple = ()  # datasets whose files must be present; else the entry is skipped with a note


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    entries: tuple
    paper: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """One grid point: a notebook with its full parameters."""
    entry: str
    notebook: Path
    parameters: dict
    key: str
    label: str
    figures: tuple
    tables: tuple
    timeout: int

    @property
    def dirname(self) -> str:
        return f"{self.entry}-{self.key}"


# ---------------------------------------------------------------- experiment files

def _check_keys(what: str, given: dict, valid) -> None:
    unknown = [k for k in given if k not in valid]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in {what}; choose from: {', '.join(valid)}")


def _mapping(what: str, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a mapping (key: value), got {value!r}")
    return dict(value)


def check_name(what: str, value) -> str:
    """``value`` as a plain name (letters, digits, '-', '_', '.' but not first): it becomes a directory
    name, and a name like ``/abs``, ``..`` or ``a/b`` would put (and later delete) runs elsewhere."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not NAME.fullmatch(str(value)):
        raise ValueError(f"{what} {value!r} must be a plain name: letters, digits, '-', '_' and '.' (not first), "
                         f"at most 100 characters, e.g. 'paper'")
    return str(value)


def check_timeout(what: str, value) -> int:
    """``value`` as papermill's cell timeout: a positive whole number of seconds (not a bool, not text)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer number of seconds, got {value!r}")
    return value


def _file_names(what: str, value, relative_paths: bool = False) -> tuple:
    """A list of ``figures`` (plain names: each becomes ``<name>.pdf`` and a file of the paper) or ``tables``
    (relative paths inside a run's out_dir, without '..')."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of file names, got {value!r}")
    for j, name in enumerate(value):
        if relative_paths:
            if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"{what}[{j}] {name!r} must be a relative path inside the run's out_dir, without '..'")
        else:
            check_name(f"{what}[{j}]", name)
    return tuple(map(str, value))


def parse_experiment(data: dict, path: Path = Path("experiment.yaml")) -> Experiment:
    """An :class:`Experiment` from the parsed YAML ``data``; ``ValueError`` on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an experiment file is a mapping with keys {', '.join(FILE_KEYS)}")
    _check_keys(str(path), data, FILE_KEYS)
    if data.get("name") in (None, ""):
        name = check_name(f"{path}: the experiment's name (from the file's name; set 'name:')", path.stem)
    else:
        name = check_name(f"{path}: name", data["name"])
    defaults = _mapping(f"{path}: parameters", data.get("parameters"))
    timeout = check_timeout(f"{path}: timeout", data.get("timeout", DEFAULT_TIMEOUT))
    paper = _mapping(f"{path}: paper", data.get("paper"))  # read by the article builder, which checks it
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: 'runs' must be a non-empty list of entries (name, notebook, grid, ...)")
    entries, seen = [], set()
    for i, raw in enumerate(runs):
        what = f"{path}: runs[{i}]"
        raw = _mapping(what, raw)
        _check_keys(what, raw, ENTRY_KEYS)
        for required in ("name", "notebook"):
            if not raw.get(required):
                raise ValueError(f"{what} has no {required!r}")
        ename = check_name(f"{what}: entry name", raw["name"])
        if ename in seen:
            raise ValueError(f"{what}: entry name {ename!r} is used twice; names must be unique")
        seen.add(ename)
        if not isinstance(raw["notebook"], str):
            raise ValueError(f"{what}.notebook must be a path to an .ipynb file, got {raw['notebook']!r}")
        grid = _mapping(f"{what}.grid", raw.get("grid"))
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{what}.grid.{key} must be a non-empty list of values, got {values!r}")
        overrides = raw.get("overrides") or []
        if not isinstance(overrides, list):
            raise ValueError(f"{what}.overrides must be a list of {{when: {{...}}, set: {{...}}}}")
        sets = []
        for j, o in enumerate(overrides):
            o = _mapping(f"{what}.overrides[{j}]", o)
            _check_keys(f"{what}.overrides[{j}]", o, ("when", "set"))
            _mapping(f"{what}.overrides[{j}].when", o.get("when"))
            sets += _mapping(f"{what}.overrides[{j}].set", o.get("set"))
        own = _mapping(f"{what}.parameters", raw.get("parameters"))
        params = {**defaults, **own}
        for reserved in SET_BY_BATCH:
            if reserved in params or reserved in grid or reserved in sets:
                raise ValueError(f"{what}: {reserved!r} is set by the batch runner (each run's out/); remove it")
        entries.append(Entry(
            name=ename, notebook=Path(raw["notebook"]), parameters=params, grid=grid,
            overrides=tuple(overrides), figures=_file_names(f"{what}.figures", raw.get("figures")),
            tables=_file_names(f"{what}.tables", raw.get("tables"), relative_paths=True),
            timeout=check_timeout(f"{what}.timeout", raw.get("timeout", timeout)), where=f"runs[{i}]",
            inherited=tuple(k for k in defaults if k not in own), requires=_requires(what, raw.get("requires"))))
    return Experiment(name=name, path=path, entries=tuple(entries), paper=paper)


def _requires(what: str, value) -> tuple:
    """The ``requires`` list of an entry: dataset names, each known."""
    from ..core.datasets import DATASETS

    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what}.requires must be a list of dataset names, got {value!r}")
    for name in value:
        if name not in DATASETS:
            raise ValueError(f"{what}.requires: unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return tuple(value)


def missing_data(datasets) -> list[str]:
    """The datasets of ``datasets`` whose files are found neither in the offline directories
    (``CFLKIT_OFFLINE_DIRS``) nor in the cache; built-in ones (digits, breast_cancer) never are."""
    from ..data import find_source, source_status

    missing = []
    for name in datasets:
        try:
            key, _ = find_source(name)
        except ValueError:  # no download: shipped with scikit-learn
            continue
        if source_status(key)[0] == "missing":
            missing.append(name)
    return missing


def skipped_entries(experiment: Experiment) -> dict[str, str]:
    """``{entry: note}`` for the entries whose required datasets are missing here."""
    notes = {}
    for entry in experiment.entries:
        gone = missing_data(entry.requires)
        if gone:
            notes[entry.name] = (f"entry {entry.name!r} skipped: dataset {', '.join(gone)} not found in "
                                 f"CFLKIT_OFFLINE_DIRS or the cache (`cflkit data fetch {gone[0]}` downloads it)")
    return notes


def load_experiment(path) -> Experiment:
    """Read and check an experiment file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read experiment file {str(path)!r}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from None
    return parse_experiment(data, path)


def _expand(entry: Entry) -> tuple[list[dict], set]:
    """The grid points' parameters and the indices of the overrides that matched at least one."""
    keys = list(entry.grid)
    points, matched = [], set()
    for values in itertools.product(*(entry.grid[k] for k in keys)):
        params = {**entry.parameters, **dict(zip(keys, values))}
        for j, o in enumerate(entry.overrides):
            when = o.get("when") or {}
            if all(params.get(k) == v for k, v in when.items()):
                params.update(o.get("set") or {})
                matched.add(j)
        points.append(params)
    return points, matched


def expand(entry: Entry) -> list[dict]:
    """Every grid point's parameters: the product of ``grid`` over the fixed ``parameters``,
    then each matching override applied in order (grid order: first key varies slowest)."""
    return _expand(entry)[0]


def canonical(params: dict) -> str:
    """Parameters as canonical JSON (sorted keys, no spaces): equal parameters, equal text."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def run_key(notebook_bytes: bytes, params: dict) -> str:
    """12 hex digits of SHA-256 over the notebook's bytes and the canonical parameters."""
    h = hashlib.sha256(notebook_bytes)
    h.update(b"\0")
    h.update(canonical(params).encode())
    return h.hexdigest()[:12]


def _label(entry: Entry, params: dict) -> str:
    varying = [k for k in entry.grid if len(entry.grid[k]) > 1]
    parts = [f"{k}={params[k]}" for k in varying]
    return entry.name + (f"[{','.join(parts)}]" if parts else "")


# ---------------------------------------------------------------- notebook parameters

def _assigned_names(source: str) -> list[str]:
    """Names assigned at the top level of Python ``source`` (empty if it does not parse)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def notebook_parameters(notebook: Path) -> dict[str, str]:
    """``{name: annotation}`` of the parameters that the notebook's ``parameters`` cell declares:
    papermill's inspection (``clients: int = 16`` -> ``'int'``, ``'None'`` without annotation),
    plus names its line parser skips (a line with two ``=``), found by parsing the cell."""
    import nbformat
    import papermill

    try:
        found = {n: p["inferred_type_name"] for n, p in papermill.inspect_notebook(str(notebook)).items()}
        cells = nbformat.read(notebook, as_version=4).cells
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is bad input, reported in one line
        raise ValueError(f"cannot read notebook {str(notebook)!r}: {type(e).__name__}: {e}") from None
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            for name in _assigned_names(cell.source):
                found.setdefault(name, "None")
            break
    return found


def _declared(params: dict) -> str:
    return ", ".join(params) if params else "none (it has no cell tagged 'parameters')"


def _values(entry: Entry):
    """``(field of the name, field of the value, name, value)`` for every value that the entry can pass
    to its notebook, named as in the file (``runs[1].grid.clients[2]``)."""
    for k, v in entry.parameters.items():
        field_ = f"parameters.{k}" if k in entry.inherited else f"{entry.where}.parameters.{k}"
        yield field_, field_, k, v
    for k, values in entry.grid.items():
        for j, v in enumerate(values):
            yield f"{entry.where}.grid.{k}", f"{entry.where}.grid.{k}[{j}]", k, v
    for j, o in enumerate(entry.overrides):
        for k in o.get("when") or {}:
            yield f"{entry.where}.overrides[{j}].when.{k}", None, k, None
        for k, v in (o.get("set") or {}).items():
            yield f"{entry.where}.overrides[{j}].set.{k}", f"{entry.where}.overrides[{j}].set.{k}", k, v


def _type_error(value_field: str, name: str, annotation: str, value, entry: Entry) -> str:
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = " (YAML reads this as text: write a number such as 1.0e-3 with a dot, without quotes)"
        except ValueError:
            pass
    return (f"{value_field} must be {annotation}, as notebook {str(entry.notebook)!r} declares "
            f"'{name}: {annotation}' (entry {entry.name!r}); got {value!r} ({type(value).__name__}){hint}")


def check_parameters(entry: Entry, declared: dict, path) -> None:
    """Refuse a parameter that the entry's notebook does not declare (papermill would only log a
    warning and the run would count as done) and a value that does not fit its annotation: int
    (not bool), float (int or float), str, bool, list, dict; other annotations are not checked."""
    for missing in SET_BY_BATCH:
        if missing not in declared:
            raise ValueError(f"{path}: {entry.where} (entry {entry.name!r}): notebook {str(entry.notebook)!r} declares "
                             f"no parameter {missing!r}, which the batch sets to each run's out/ (its parameters: "
                             f"{_declared(declared)}); add '{missing}: str = \"out\"' to its parameters cell")
    for name_field, value_field, name, value in _values(entry):
        if name not in declared:
            raise ValueError(f"{path}: {name_field} (entry {entry.name!r}): notebook {str(entry.notebook)!r} declares "
                             f"no parameter {name!r}; its parameters: {_declared(declared)}")
        check = TYPES.get(declared[name].split("[")[0].strip().lower())
        if value_field is not None and check is not None and not check(value):
            raise ValueError(f"{path}: " + _type_error(value_field, name, declared[name], value, entry))


def _with_declared_defaults(entry: Entry, declared: dict) -> Entry:
    """The entry without the file-level defaults its notebook does not declare (a default for every
    entry goes to those that have the parameter)."""
    dropped = [k for k in entry.inherited if k not in declared]
    if not dropped:
        return entry
    return replace(entry, parameters={k: v for k, v in entry.parameters.items() if k not in dropped},
                   inherited=tuple(k for k in entry.inherited if k not in dropped))


def plan(experiment: Experiment) -> list[Run]:
    """Every run of the experiment, in file order; ``ValueError`` if a notebook is missing, a
    parameter is not the notebook's or does not fit it, an override matches no grid point, or two
    grid points are the same run."""
    runs, keys, used = [], {}, set()
    defaults = {k for e in experiment.entries for k in e.inherited}
    skipped = skipped_entries(experiment)
    for note in skipped.values():
        log.warning("%s", note)
    for entry in experiment.entries:
        if entry.name in skipped:
            used |= set(entry.inherited)
            continue
        entry = entry if entry.where else replace(entry, where=f"entry {entry.name}")
        where = f"{experiment.path}: {entry.where}"
        if not entry.notebook.is_file():
            raise ValueError(f"{where}: notebook {str(entry.notebook)!r} does not exist")
        declared = notebook_parameters(entry.notebook)
        entry = _with_declared_defaults(entry, declared)
        used |= set(entry.inherited)
        check_parameters(entry, declared, experiment.path)
        points, matched = _expand(entry)
        for j, o in enumerate(entry.overrides):
            if j not in matched:
                raise ValueError(f"{where}.overrides[{j}]: when {o.get('when')!r} matches no grid point of entry "
                                 f"{entry.name!r}; grid: {canonical(entry.grid)}")
        nb_bytes = entry.notebook.read_bytes()
        for params in points:
            key = run_key(nb_bytes, params)
            label = _label(entry, params)
            if (entry.name, key) in keys:
                raise ValueError(f"entry {entry.name!r}: grid points {keys[(entry.name, key)]} and {label} are the "
                                 f"same run (same parameters after overrides)")
            keys[(entry.name, key)] = label
            runs.append(Run(entry.name, entry.notebook, params, key, label, entry.figures, entry.tables, entry.timeout))
    unused = sorted(defaults - used)
    if unused:
        raise ValueError(f"{experiment.path}: parameters.{unused[0]}: no notebook of this file declares it")
    return runs


def select(runs: list[Run], only: str | None) -> list[Run]:
    """The runs whose entry name or label matches the shell pattern ``only`` (all when None)."""
    if not only:
        return runs
    chosen = [r for r in runs if fnmatch.fnmatchcase(r.entry, only) or fnmatch.fnmatchcase(r.label, only)
              or fnmatch.fnmatchcase(r.dirname, only)]
    if not chosen:
        names = ", ".join(dict.fromkeys(r.entry for r in runs))
        raise ValueError(f"--only {only!r} matches no run; entries: {names}")
    return chosen


# ---------------------------------------------------------------- run directories

def batch_dir(experiment: Experiment, root="runs/batch") -> Path:
    """``root/<name>``; the name is checked again, for experiments not read from a file."""
    return Path(root) / check_name("experiment name", experiment.name)


def _inside(path, base) -> Path:
    """``path`` resolved (links followed); ``RuntimeError`` unless it lies strictly inside ``base``
    (resolved too). The guard before anything is deleted or renamed over: no name, link or spec
    can make the batch delete outside the experiment's directory."""
    resolved, home = Path(path).resolve(), Path(base).resolve()
    if home not in resolved.parents:
        raise RuntimeError(f"refusing to delete or replace {str(path)!r}: it resolves to {str(resolved)!r}, "
                           f"outside {str(home)!r}")
    return resolved


def _start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot, from /proc), to tell it from a later process
    that reuses its pid; None where /proc cannot tell."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def _owner_alive(tmp: Path) -> bool:
    """Whether the worker that ``tmp/owner.json`` names (pid and start time) is still running."""
    try:
        owner = json.loads((tmp / OWNER).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return pid_alive(pid) and _start_time(pid) == owner.get("start")


def _in_progress(run: Run, exp_dir: Path) -> list[Path]:
    """The run's directories in ``.tmp/`` (``<entry>-<key>.<8 hex>``), the live one first."""
    found = [p for p in (exp_dir / ".tmp").glob(f"{run.dirname}.*") if p.is_dir()]
    return sorted(found, key=lambda p: not _owner_alive(p))


def run_status(run: Run, exp_dir: Path) -> str:
    """``done`` (its directory exists: only complete runs are renamed there), ``running`` (in ``.tmp/``,
    its worker alive), ``interrupted`` (in ``.tmp/``, its worker dead), ``failed``, or ``todo``."""
    if (exp_dir / run.dirname / "status.json").is_file():
        return "done"
    tmp = _in_progress(run, exp_dir)
    if tmp:
        return "running" if _owner_alive(tmp[0]) else "interrupted"
    if (exp_dir / "failed" / run.dirname / "status.json").is_file():
        return "failed"
    return "todo"


def run_path(run: Run, exp_dir: Path) -> Path:
    """Where the run's directory is: its done place, else its ``.tmp/`` place, else its failed place."""
    done = exp_dir / run.dirname
    if done.is_dir():
        return done
    tmp = _in_progress(run, exp_dir)
    return tmp[0] if tmp else exp_dir / "failed" / run.dirname


def versions() -> dict:
    """Versions of Python, cflkit and the libraries a run depends on, and the git commit."""
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for pkg in ("cflkit", "numpy", "tensorflow", "keras", "scikit-learn", "papermill"):
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            found[pkg] = None
    try:
        found["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                      timeout=10, cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        found["git"] = None
    return found


def _seed(params: dict):
    for key in ("seed", "seeds"):
        if key in params:
            return params[key]
    return None


def _make_tmp(tmp: Path) -> None:
    """The run's temporary directory, made under a hidden name and renamed into place with its
    ``owner.json`` (this worker's pid and start time) inside: a run seen in ``.tmp/`` always has an
    owner to tell ``running`` from ``interrupted``."""
    staging = tmp.with_name("." + tmp.name)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "out").mkdir(parents=True)
    write_text_atomic(staging / OWNER, json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}) + "\n")
    os.rename(staging, tmp)


def execute(spec: dict) -> dict:
    """Execute one run (in a worker process): papermill into ``spec['tmp']``, then move it to
    ``spec['final']`` when complete or to ``spec['failed']`` when not. Returns its status.
    Every path it deletes or replaces must resolve inside ``spec['exp_dir']`` (``RuntimeError``)."""
    import papermill

    tmp, final, failed = _run_places(spec)
    _make_tmp(tmp)
    params = spec["parameters"]
    source = _write_inputs(tmp, spec, params)
    status = _new_status(spec)
    saved_stderr = _stderr_to_log(tmp) if spec.get("stderr_to_log") else None
    pm_log, handler = _papermill_to_log(tmp)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(tmp / "executed.ipynb"),
                                   parameters={**params, "out_dir": "out"}, kernel_name="python3", cwd=str(tmp),
                                   execution_timeout=spec["timeout"], progress_bar=False, log_output=True)
        _check_outputs(tmp / "out", spec)
        status["status"] = "done"
    except BaseException as e:  # noqa: BLE001 - every failure is recorded; KeyboardInterrupt re-raised below
        status["error"] = _error_line(e)
        if not isinstance(e, Exception):
            raise
    finally:
        pm_log.removeHandler(handler)
        handler.close()
        if saved_stderr is not None:
            _restore_stderr(saved_stderr)
    status["wall_seconds"] = round(time.perf_counter() - start, 2)
    status["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    status["path"] = str(_move_into_place(tmp, status, final, failed))
    return status


def _new_status(spec: dict, error: str = "") -> dict:
    """A run's status as it starts: failed until it is done."""
    return {"status": "failed", "entry": spec["entry"], "label": spec["label"], "key": spec["key"],
            "notebook": spec["notebook"], "seed": _seed(spec["parameters"]), "versions": spec["versions"],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "error": error}


def _run_places(spec: dict) -> tuple[Path, Path, Path]:
    """``(tmp, final, failed)`` of a run, each checked to resolve inside the experiment's directory."""
    exp_dir = Path(spec["exp_dir"]).resolve()
    tmp = _inside(spec["tmp"], _inside(exp_dir / ".tmp", exp_dir))
    final = _inside(spec["final"], exp_dir)
    failed = _inside(spec["failed"], _inside(exp_dir / "failed", exp_dir))
    return tmp, final, failed


def _write_inputs(tmp: Path, spec: dict, params: dict) -> Path:
    """The notebook's source and ``params.json`` into the run's directory; returns the notebook's path."""
    source = tmp / Path(spec["notebook"]).name
    source.write_text(spec["source"])
    write_text_atomic(tmp / "params.json", json.dumps(params, indent=2) + "\n")
    return source


def _stderr_to_log(tmp: Path) -> int:
    """Point fd 2 at the run's log (the kernel inherits it: its warnings go there); returns the saved fd 2."""
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    log_fd = os.open(tmp / "run.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return saved_stderr


def _restore_stderr(saved_stderr: int) -> None:
    """Point fd 2 back where :func:`_stderr_to_log` found it."""
    sys.stderr.flush()
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)


def _papermill_to_log(tmp: Path) -> tuple[logging.Logger, logging.Handler]:
    """Papermill's log (INFO and up) also into the run's ``run.log``; returns the logger and the handler to remove."""
    handler = logging.FileHandler(tmp / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    pm_log = logging.getLogger("papermill")
    pm_log.addHandler(handler)
    pm_log.setLevel(logging.INFO)
    return pm_log, handler


def _check_outputs(out: Path, spec: dict) -> None:
    """Refuse a notebook that finished without writing its declared figures (``.pdf``) and tables into ``out``."""
    missing = [f"{f}.pdf" for f in spec["figures"] if not (out / f"{f}.pdf").is_file()]
    missing += [t for t in spec["tables"] if not (out / t).is_file()]
    if missing:
        raise RuntimeError(f"the notebook finished but did not write {', '.join(missing)} into out_dir")


def _error_line(e: BaseException) -> str:
    """A failure as the status records it: its type and the last line of its message, at most 500 characters."""
    return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:500]


def _move_into_place(tmp: Path, status: dict, final: Path, failed: Path) -> Path:
    """Write ``status.json`` and rename the run to ``final`` (done) or ``failed`` at once; returns where it went."""
    write_text_atomic(tmp / "status.json", json.dumps(status, indent=2) + "\n")
    target = final if status["status"] == "done" else failed
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, target)  # the run appears complete, at once, or not at all
    if status["status"] == "done":
        shutil.rmtree(failed, ignore_errors=True)  # an earlier failure of this run is now superseded
    return target


def index_table(runs: list[Run], exp_dir: Path):
    """One row per planned run, read from the run directories (the single source of truth)."""
    import pandas as pd

    rows = []
    for r in runs:
        state = run_status(r, exp_dir)
        path = run_path(r, exp_dir) if state != "todo" else None
        status = read_status(path) if path else {}
        rows.append({"entry": r.entry, "label": r.label, "key": r.key, "status": state, "seed": _seed(r.parameters),
                     "wall_seconds": status.get("wall_seconds"), "started": status.get("started", ""),
                     "notebook": str(r.notebook), "path": str(path) if path else "",
                     "executed": str(path / "executed.ipynb") if path else "",
                     "error": status.get("error", ""), "parameters": canonical(r.parameters),
                     "versions": canonical(status.get("versions", {})) if status else ""})
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def read_status(path: Path) -> dict:
    """A run's ``status.json``; one that cannot be read is reported in the index, not raised."""
    file = path / "status.json"
    if not file.is_file():
        return {}
    try:
        status = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {"error": f"unreadable {file}: {' '.join(str(e).split())}"}
    return status if isinstance(status, dict) else {"error": f"unreadable {file}: not a JSON object"}


def write_index(runs: list[Run], exp_dir: Path) -> Path:
    path = exp_dir / "index.csv"
    write_text_atomic(path, index_table(runs, exp_dir).to_csv(index=False))
    return path


# ---------------------------------------------------------------- one batch at a time, workers included

def _try_flock(path: Path, how: int):
    """``path`` opened and flock-ed (``how``: LOCK_EX or LOCK_SH) without waiting; None if it is taken."""
    import fcntl

    file = open(path, "a")
    try:
        fcntl.flock(file, how | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    return file


class _Lock:
    """One batch at a time per experiment, its workers counted: the batch holds ``.lock`` exclusively,
    each worker holds ``.lock-workers`` shared for its whole life (:func:`_init_worker`). A new batch
    needs both exclusively, so a worker that outlived a killed batch keeps the experiment locked."""

    def __init__(self, exp_dir: Path):
        self.path = exp_dir / ".lock"
        self.workers = exp_dir / WORKERS_LOCK

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = _try_flock(self.path, fcntl.LOCK_EX)
        if self.file is None:
            raise RuntimeError(f"another batch is running on {self.path.parent} (lock {self.path})")
        workers = _try_flock(self.workers, fcntl.LOCK_EX)
        deadline = time.monotonic() + WORKERS_GRACE_S
        while workers is None and time.monotonic() < deadline:  # workers of a batch killed just now
            time.sleep(0.2)                                      # release it as the kernel reaps them
            workers = _try_flock(self.workers, fcntl.LOCK_EX)
        if workers is None:
            self.file.close()
            raise RuntimeError(f"workers of an earlier batch on {self.path.parent} are still running (they hold "
                               f"{self.workers}; `fuser -v {self.workers}` lists them); wait for them or end them")
        workers.close()  # free for this batch's own workers, which take it shared
        return self

    def __exit__(self, *exc):
        self.file.close()


_worker_lock = None  # in a worker process: its shared lock on .lock-workers, held until it exits


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def kernel_threads(workers: int) -> int:
    """TensorFlow threads per kernel when ``workers`` kernels run side by side: the cores shared
    out. TensorFlow's default (every core, in every kernel) oversubscribes the CPU; two kernels
    on 2 cores run 1.9x slower so (``bench/cell_throughput.py``)."""
    from .compare import available_cores

    return max(1, available_cores() // max(1, workers))


def size_kernel_threads(threads: int) -> None:
    """Size the thread pools of the TensorFlow this process's kernels start (they inherit the
    environment); a size the user set in the environment is kept."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))


def _init_worker(batch_pid: int, exp_dir: str, threads: int = 0) -> None:
    """Initializer of every worker process: die with the batch, hold the workers' lock shared for
    life, and mark the environment (inherited by the kernels it starts) with the experiment and
    the kernels' TensorFlow threads (``threads``; 0: TensorFlow's default)."""
    import fcntl

    global _worker_lock
    die_with_parent(batch_pid)
    os.environ[ENV_MARK] = exp_dir
    if threads:
        size_kernel_threads(threads)
    _worker_lock = _try_flock(Path(exp_dir) / WORKERS_LOCK, fcntl.LOCK_SH)
    if _worker_lock is None:
        raise RuntimeError(f"cannot take {Path(exp_dir) / WORKERS_LOCK} shared: another batch holds it")


def marked_processes(exp_dir: Path) -> list[int]:
    """Pids of the processes whose environment carries the experiment's mark (the kernels of its
    workers and whatever they started), except this process; empty without /proc."""
    mark = f"{ENV_MARK}={Path(exp_dir).resolve()}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.name.isdigit() and int(proc.name) != os.getpid() and \
                    mark in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def _end_leftovers(exp_dir: Path) -> None:
    """End what an earlier, killed batch left running: with both locks held, no worker of it is alive,
    so a process with the experiment's mark is an orphan (a kernel whose parent poller missed its
    worker's death, e.g. one that was starting when the worker died, under a subreaper)."""
    pids = marked_processes(exp_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if pids:
        log.warning("ended %d processes left by an earlier batch of %s: %s", len(pids), exp_dir, pids)


def run_batch(experiment: Experiment, workers: int = 1, only: str | None = None, progress: bool = False,
              root="runs/batch", executor: str = "local", address: str | None = None,
              retries: int = RETRIES) -> tuple[list[Run], list[dict]]:
    """Execute every selected run that is not done; returns (selected runs, statuses of the
    runs executed now). Writes ``index.csv`` at the start and after every finished run.
    ``executor="ray"``: the runs are Ray tasks on the cluster at ``address``, at most ``workers``
    at once (:mod:`cflkit.study.executors`); their directories land here as local ones do."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    check_executor(executor, address, retries)
    runs = plan(experiment)
    chosen = select(runs, only)
    exp_dir = batch_dir(experiment, root)
    with _Lock(exp_dir):
        _end_leftovers(exp_dir)
        interrupted = [r.label for r in chosen if run_status(r, exp_dir) == "interrupted"]
        if interrupted:
            log.info("%d runs were interrupted by an earlier batch; running them again", len(interrupted))
        shutil.rmtree(_inside(exp_dir / ".tmp", exp_dir), ignore_errors=True)  # what an interrupted batch left
        todo = [r for r in chosen if run_status(r, exp_dir) != "done"]
        ver = versions()
        # each run executes a copy of the notebook taken now, so that what runs is what its key names
        # even when the notebook is edited while the batch runs (the next batch sees the new key)
        sources = {path: path.read_text() for path in {r.notebook for r in todo}}
        home = exp_dir.resolve()
        specs = [{"entry": r.entry, "label": r.label, "key": r.key, "notebook": str(r.notebook),
                  "source": sources[r.notebook],
                  "parameters": r.parameters, "figures": list(r.figures), "tables": list(r.tables),
                  "timeout": r.timeout, "versions": ver, "exp_dir": str(home),
                  # a name of its own: a kernel orphaned by a killed batch (it exits within a
                  # second, ipykernel's parent poller) can never write into a later attempt
                  "tmp": str(home / ".tmp" / f"{r.dirname}.{uuid.uuid4().hex[:8]}"),
                  "final": str(home / r.dirname), "failed": str(home / "failed" / r.dirname)} for r in todo]
        log.info("%d of %d runs to do (%d done)", len(todo), len(chosen), len(chosen) - len(todo))
        statuses = []
        write_index(runs, exp_dir)
        if specs:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(specs), desc=experiment.name, unit="run", disable=not progress)
            try:
                done = (_execute_ray(specs, workers, address, retries) if executor == "ray"
                        else _execute_all(specs, workers, home))
                for status in done:
                    statuses.append(status)
                    write_index(runs, exp_dir)
                    bar.set_postfix_str(f"{status['label']}: {status['status']}")
                    bar.update()
            finally:
                bar.close()
        write_index(runs, exp_dir)
    return chosen, statuses


def _execute_all(specs: list[dict], workers: int, exp_dir: Path):
    """Yield each run's status as it finishes, from a pool of spawned worker processes that die
    with this one (even for one worker: its stderr, and so its kernels', goes to the run's log);
    each kernel's TensorFlow gets its share of the cores (:func:`kernel_threads`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    n = min(workers, len(specs))
    with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(os.getpid(), str(exp_dir), kernel_threads(n))) as pool:
        futures = {pool.submit(execute, {**spec, "stderr_to_log": True}): spec for spec in specs}
        for future in as_completed(futures):
            spec = futures[future]
            try:
                yield future.result()
            except Exception as e:  # the worker process itself died
                yield {"status": "failed", "label": spec["label"], "error": f"worker died: {e}",
                       "path": spec["tmp"]}


def _execute_ray(specs: list[dict], limit: int, address, retries: int):
    """Yield each run's status as it finishes, from Ray tasks (:func:`cflkit.study.executors.ray_run`):
    each returns its run's files, which are moved into place here as a local run's are. A run
    whose worker died ``retries + 1`` times is recorded as failed, with Ray's error."""
    from .executors import error_line, ray_run, ray_tasks, write_tree

    for index, value in ray_tasks(ray_run, [(spec,) for spec in specs], address, retries, limit):
        spec = specs[index]
        tmp, final, failed = _run_places(spec)
        _make_tmp(tmp)
        if isinstance(value, BaseException):
            status = {**_new_status(spec, error_line(value)), "wall_seconds": None}
            status["finished"] = status["started"]
        else:
            status, files = value
            write_tree(tmp, files)
        status["path"] = str(_move_into_place(tmp, status, final, failed))
        yield status


# ---------------------------------------------------------------- command line
