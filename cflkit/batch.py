"""``cflkit batch``: run the numbered notebooks over parameter grids with papermill.

An experiment file (``experiments/*.yaml``) names notebooks and parameter grids::

    name: paper                     # runs go to runs/batch/paper/
    timeout: 1800                   # seconds a notebook cell may run (papermill's execution_timeout)
    parameters: {workers: 1}        # defaults for every entry's notebook parameters
    paper: {dir: paper}             # after the runs, aggregate them into the article (cflkit.paper)
    runs:
      - name: benchmark
        notebook: notebooks/08_benchmark_of_clustering.ipynb
        parameters: {seeds: [0, 1]} # fixed values, passed as they are (a list stays a list)
        grid: {dataset: [digits, fashion_mnist]}   # every combination is one run
        overrides:                  # per grid point: where `when` matches, `set` these
          - {when: {dataset: fashion_mnist}, set: {rounds: 20}}
        figures: [ari_heatmap]      # <name>.pdf the run must write into its out_dir
        tables: [results.csv]       # files the run must write into its out_dir

Each grid point is one *run*, keyed by the notebook's bytes and its parameters (canonical
JSON): a run whose directory ``runs/batch/<name>/<entry>-<key>/`` exists is done and never
run twice; a changed notebook or parameter is a new key. A run executes in a temporary
directory (``.tmp/``) with ``cwd`` there and ``out_dir = "out"``, and is renamed into place
only when the notebook finished and wrote every declared figure and table; a failed run
goes to ``failed/<entry>-<key>/`` (its executed notebook kept for reading) and is retried on
the next batch; an interrupted run leaves only ``.tmp/``, which the next batch clears. One
batch at a time per experiment (a lock file). ``index.csv`` lists every planned run with
its status, parameters, seed, versions and wall time; it is rewritten atomically from the
run directories, so it never disagrees with them.

The environment is passed through to the kernels (``CFLKIT_OFFLINE_DIRS`` for the real
datasets). Workers are processes (spawn); each papermill run starts its own ``python3``
kernel, so notebooks that have their own ``workers`` parameter should get 1 here.
"""
from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .results import write_text_atomic

HELP = "run notebooks over parameter grids with papermill (experiments/*.yaml), resumably; then the paper's figures"
log = logging.getLogger("cflkit.batch")

ENTRY_KEYS = ("name", "notebook", "parameters", "grid", "overrides", "figures", "tables", "timeout")
FILE_KEYS = ("name", "timeout", "parameters", "paper", "runs")
SET_BY_BATCH = ("out_dir",)  # parameters batch sets itself, not part of a run's key
DEFAULT_TIMEOUT = 1800
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


def parse_experiment(data: dict, path: Path = Path("experiment.yaml")) -> Experiment:
    """An :class:`Experiment` from the parsed YAML ``data``; ``ValueError`` on anything malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"{path}: an experiment file is a mapping with keys {', '.join(FILE_KEYS)}")
    _check_keys(str(path), data, FILE_KEYS)
    name = str(data.get("name") or path.stem)
    defaults = _mapping(f"{path}: parameters", data.get("parameters"))
    timeout = data.get("timeout", DEFAULT_TIMEOUT)
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
        ename = str(raw["name"])
        if not ename.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{what}: entry name {ename!r} may hold only letters, digits, '-' and '_'")
        if ename in seen:
            raise ValueError(f"{what}: entry name {ename!r} is used twice; names must be unique")
        seen.add(ename)
        grid = _mapping(f"{what}.grid", raw.get("grid"))
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{what}.grid.{key} must be a non-empty list of values, got {values!r}")
        overrides = raw.get("overrides") or []
        if not isinstance(overrides, list):
            raise ValueError(f"{what}.overrides must be a list of {{when: {{...}}, set: {{...}}}}")
        for j, o in enumerate(overrides):
            o = _mapping(f"{what}.overrides[{j}]", o)
            _check_keys(f"{what}.overrides[{j}]", o, ("when", "set"))
            _mapping(f"{what}.overrides[{j}].when", o.get("when"))
            _mapping(f"{what}.overrides[{j}].set", o.get("set"))
        params = {**defaults, **_mapping(f"{what}.parameters", raw.get("parameters"))}
        for reserved in SET_BY_BATCH:
            if reserved in params or reserved in grid:
                raise ValueError(f"{what}: {reserved!r} is set by the batch runner (each run's out/); remove it")
        entries.append(Entry(
            name=ename, notebook=Path(raw["notebook"]), parameters=params, grid=grid,
            overrides=tuple(overrides), figures=tuple(map(str, raw.get("figures") or ())),
            tables=tuple(map(str, raw.get("tables") or ())), timeout=int(raw.get("timeout", timeout))))
    return Experiment(name=name, path=path, entries=tuple(entries), paper=_mapping(f"{path}: paper", data.get("paper")))


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


def expand(entry: Entry) -> list[dict]:
    """Every grid point's parameters: the product of ``grid`` over the fixed ``parameters``,
    then each matching override applied in order (grid order: first key varies slowest)."""
    keys = list(entry.grid)
    points = []
    for values in itertools.product(*(entry.grid[k] for k in keys)):
        params = {**entry.parameters, **dict(zip(keys, values))}
        for o in entry.overrides:
            when = o.get("when") or {}
            if all(params.get(k) == v for k, v in when.items()):
                params.update(o.get("set") or {})
        points.append(params)
    return points


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


def plan(experiment: Experiment) -> list[Run]:
    """Every run of the experiment, in file order; errors if a notebook is missing or two
    grid points are the same run."""
    runs, keys = [], {}
    for entry in experiment.entries:
        if not entry.notebook.is_file():
            raise ValueError(f"entry {entry.name!r}: notebook {str(entry.notebook)!r} does not exist")
        nb_bytes = entry.notebook.read_bytes()
        for params in expand(entry):
            key = run_key(nb_bytes, params)
            label = _label(entry, params)
            if (entry.name, key) in keys:
                raise ValueError(f"entry {entry.name!r}: grid points {keys[(entry.name, key)]} and {label} are the "
                                 f"same run (same parameters after overrides)")
            keys[(entry.name, key)] = label
            runs.append(Run(entry.name, entry.notebook, params, key, label, entry.figures, entry.tables, entry.timeout))
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
    return Path(root) / experiment.name


def run_status(run: Run, exp_dir: Path) -> str:
    """``done`` (its directory exists: only complete runs are renamed there), ``failed``, or ``todo``."""
    if (exp_dir / run.dirname / "status.json").is_file():
        return "done"
    if (exp_dir / "failed" / run.dirname / "status.json").is_file():
        return "failed"
    return "todo"


def run_path(run: Run, exp_dir: Path) -> Path:
    """Where the run's directory is: its done place, else its failed place."""
    done = exp_dir / run.dirname
    return done if done.is_dir() else exp_dir / "failed" / run.dirname


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


def execute(spec: dict) -> dict:
    """Execute one run (in a worker process): papermill into ``spec['tmp']``, then move it to
    ``spec['final']`` when complete or to ``spec['failed']`` when not. Returns its status."""
    import papermill

    tmp, final, failed = Path(spec["tmp"]), Path(spec["final"]), Path(spec["failed"])
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "out").mkdir(parents=True)
    params = spec["parameters"]
    source = tmp / Path(spec["notebook"]).name
    source.write_text(spec["source"])
    write_text_atomic(tmp / "params.json", json.dumps(params, indent=2) + "\n")
    status = {"status": "failed", "entry": spec["entry"], "label": spec["label"], "key": spec["key"],
              "notebook": spec["notebook"], "seed": _seed(params), "versions": spec["versions"],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "error": ""}
    saved_stderr = None
    if spec.get("stderr_to_log"):  # the kernel inherits fd 2: its warnings go to the run's log
        sys.stderr.flush()
        saved_stderr = os.dup(2)
        log_fd = os.open(tmp / "run.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 2)
        os.close(log_fd)
    handler = logging.FileHandler(tmp / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    pm_log = logging.getLogger("papermill")
    pm_log.addHandler(handler)
    pm_log.setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(tmp / "executed.ipynb"),
                                   parameters={**params, "out_dir": "out"}, kernel_name="python3", cwd=str(tmp),
                                   execution_timeout=spec["timeout"], progress_bar=False, log_output=True)
        missing = [f"{f}.pdf" for f in spec["figures"] if not (tmp / "out" / f"{f}.pdf").is_file()]
        missing += [t for t in spec["tables"] if not (tmp / "out" / t).is_file()]
        if missing:
            raise RuntimeError(f"the notebook finished but did not write {', '.join(missing)} into out_dir")
        status["status"] = "done"
    except BaseException as e:  # noqa: BLE001 - every failure is recorded; KeyboardInterrupt re-raised below
        status["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:500]
        if not isinstance(e, Exception):
            raise
    finally:
        pm_log.removeHandler(handler)
        handler.close()
        if saved_stderr is not None:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
    status["wall_seconds"] = round(time.perf_counter() - start, 2)
    status["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_text_atomic(tmp / "status.json", json.dumps(status, indent=2) + "\n")
    target = final if status["status"] == "done" else failed
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, target)  # the run appears complete, at once, or not at all
    if status["status"] == "done":
        shutil.rmtree(failed, ignore_errors=True)  # an earlier failure of this run is now superseded
    status["path"] = str(target)
    return status


def index_table(runs: list[Run], exp_dir: Path):
    """One row per planned run, read from the run directories (the single source of truth)."""
    import pandas as pd

    rows = []
    for r in runs:
        state = run_status(r, exp_dir)
        path = run_path(r, exp_dir)
        status = json.loads((path / "status.json").read_text()) if state != "todo" else {}
        rows.append({"entry": r.entry, "label": r.label, "key": r.key, "status": state, "seed": _seed(r.parameters),
                     "wall_seconds": status.get("wall_seconds"), "started": status.get("started", ""),
                     "notebook": str(r.notebook), "path": str(path) if state != "todo" else "",
                     "executed": str(path / "executed.ipynb") if state != "todo" else "",
                     "error": status.get("error", ""), "parameters": canonical(r.parameters),
                     "versions": canonical(status.get("versions", {})) if status else ""})
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))


def write_index(runs: list[Run], exp_dir: Path) -> Path:
    path = exp_dir / "index.csv"
    write_text_atomic(path, index_table(runs, exp_dir).to_csv(index=False))
    return path


class _Lock:
    """An exclusive lock on the experiment's directory: one batch at a time."""

    def __init__(self, exp_dir: Path):
        self.path = exp_dir / ".lock"

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RuntimeError(f"another batch is running on {self.path.parent} (lock {self.path})") from None
        return self

    def __exit__(self, *exc):
        self.file.close()


def run_batch(experiment: Experiment, workers: int = 1, only: str | None = None, progress: bool = False,
              root="runs/batch") -> tuple[list[Run], list[dict]]:
    """Execute every selected run that is not done; returns (selected runs, statuses of the
    runs executed now). Writes ``index.csv`` after every finished run."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    runs = plan(experiment)
    chosen = select(runs, only)
    exp_dir = batch_dir(experiment, root)
    with _Lock(exp_dir):
        shutil.rmtree(exp_dir / ".tmp", ignore_errors=True)  # what an interrupted batch left
        todo = [r for r in chosen if run_status(r, exp_dir) != "done"]
        ver = versions()
        # each run executes a copy of the notebook taken now, so that what runs is what its key names
        # even when the notebook is edited while the batch runs (the next batch sees the new key)
        sources = {path: path.read_text() for path in {r.notebook for r in todo}}
        specs = [{"entry": r.entry, "label": r.label, "key": r.key, "notebook": str(r.notebook),
                  "source": sources[r.notebook],
                  "parameters": r.parameters, "figures": list(r.figures), "tables": list(r.tables),
                  "timeout": r.timeout, "versions": ver,
                  # a name of its own: a kernel orphaned by a killed batch (it exits within a
                  # second, ipykernel's parent poller) can never write into a later attempt
                  "tmp": str((exp_dir / ".tmp" / f"{r.dirname}.{uuid.uuid4().hex[:8]}").resolve()),
                  "final": str((exp_dir / r.dirname).resolve()),
                  "failed": str((exp_dir / "failed" / r.dirname).resolve())} for r in todo]
        log.info("%d of %d runs to do (%d done)", len(todo), len(chosen), len(chosen) - len(todo))
        statuses = []
        write_index(runs, exp_dir)
        if specs:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(specs), desc=experiment.name, unit="run", disable=not progress)
            try:
                for status in _execute_all(specs, workers):
                    statuses.append(status)
                    write_index(runs, exp_dir)
                    bar.set_postfix_str(f"{status['label']}: {status['status']}")
                    bar.update()
            finally:
                bar.close()
        write_index(runs, exp_dir)
    return chosen, statuses


def _execute_all(specs: list[dict], workers: int):
    """Yield each run's status as it finishes, from a pool of spawned worker processes
    (even for one worker: its stderr, and so its kernels', goes to the run's log)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(specs)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute, {**spec, "stderr_to_log": True}): spec for spec in specs}
        for future in as_completed(futures):
            spec = futures[future]
            try:
                yield future.result()
            except Exception as e:  # the worker process itself died
                yield {"status": "failed", "label": spec["label"], "error": f"worker died: {e}",
                       "path": spec["tmp"]}


# ---------------------------------------------------------------- command line

def add_arguments(p) -> None:
    p.add_argument("experiment", metavar="FILE", help="experiment file, e.g. experiments/paper.yaml")
    p.add_argument("--workers", type=int, default=1, help="runs executed at once, each in its own process "
                                                          "and kernel (default: 1)")
    p.add_argument("--only", default=None, metavar="PATTERN",
                   help="only runs whose entry name or label matches this shell pattern, e.g. 'bench*'")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    p.add_argument("--runs", default="runs/batch", metavar="DIR",
                   help="where run directories go: DIR/<experiment name>/ (default: runs/batch)")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; build the paper's figures, tables and macros from the finished runs")
    p.add_argument("--no-aggregate", action="store_true", help="run, but do not build the paper's files")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def dry_run(experiment: Experiment, only: str | None, root) -> int:
    runs = select(plan(experiment), only)
    exp_dir = batch_dir(experiment, root)
    rows = [("status", "run", "key", "notebook")]
    rows += [(run_status(r, exp_dir), r.label, r.key, str(r.notebook)) for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    counts = {s: sum(run_status(r, exp_dir) == s for r in runs) for s in ("done", "failed", "todo")}
    print(f"{len(runs)} runs: {counts['done']} done, {counts['failed']} failed, {counts['todo']} to do "
          f"(run directories in {exp_dir}/)")
    if experiment.paper:
        from .paper import round_time_args, round_time_csv

        csv = round_time_csv(experiment, root)
        if csv is not None:
            state = "done" if csv.is_file() else "todo"
            print(f"bench: {state}  bench/round_time.py {' '.join(round_time_args(experiment))} -> {csv}")
        print(f"paper: aggregated into {experiment.paper.get('dir', 'paper')}/ once every run is done")
    return 0


def main(args) -> int:
    experiment = load_experiment(args.experiment)
    if args.dry_run:
        return dry_run(experiment, args.only, args.runs)
    failed = []
    if not args.aggregate_only:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        start = time.perf_counter()
        try:
            chosen, statuses = run_batch(experiment, args.workers, args.only, progress, args.runs)
        except RuntimeError as e:
            print(f"cflkit: error: {e}", file=sys.stderr)
            return 1
        exp_dir = batch_dir(experiment, args.runs)
        states = [run_status(r, exp_dir) for r in chosen]
        print(f"{experiment.name}: {states.count('done')} of {len(chosen)} runs done "
              f"({len(statuses)} run now, {time.perf_counter() - start:.0f} s); index: {exp_dir / 'index.csv'}")
        failed = [r for r, s in zip(chosen, states) if s != "done"]
        for r in failed:
            path = run_path(r, exp_dir)
            error = json.loads((path / "status.json").read_text())["error"] if (path / "status.json").is_file() \
                else "not run"
            print(f"FAILED {r.label}: {error}\n  executed notebook: {path / 'executed.ipynb'}\n"
                  f"  log: {path / 'run.log'}", file=sys.stderr)
    if experiment.paper and not args.no_aggregate and not args.only:
        from .paper import measure_round_time

        if not args.aggregate_only:
            try:
                measure_round_time(experiment, args.runs)
            except RuntimeError as e:
                print(f"cflkit: error: {e}", file=sys.stderr)
                return 1
        if failed:
            print("paper: not aggregated, because runs failed (fix them and run the batch again)", file=sys.stderr)
        else:
            from .paper import aggregate

            written = aggregate(experiment, root=args.runs)
            where = experiment.paper.get("dir", "paper")
            print(f"paper: wrote {len(written)} files into {where}/ (figures/, tables/, macros.tex)" if written
                  else f"paper: {where}/ is up to date")
    return 1 if failed else 0
