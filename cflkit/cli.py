"""Command line: ``cflkit run``, ``list``, ``demo``, ``data``, ``compare`` and the subcommands of
:data:`EXTENSIONS`."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from .core.config import FIELDS, Config, help_text, parameter_names
from .study import executors

USAGE_ERROR = 2
FAILURE = 1

# Subcommands that live in their own module: name -> module. Each module defines ``HELP``
# (one line), ``add_arguments(parser)`` and ``main(args) -> int``, and imports nothing heavy
# (TensorFlow, papermill, flwr) at module level, so `cflkit --help` stays fast.
EXTENSIONS = {
    "batch": "cflkit.study.batch_cli",
    "explain": "cflkit.explain.cli",
    "flower": "cflkit.flower.cli",
    "tune": "cflkit.study.tune_cli",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, as for every usage error
        self.exit(USAGE_ERROR, f"cflkit: error: {message}\n")


def _method_in(argv) -> str | None:
    """The value of ``--method`` in ``cflkit run``'s arguments, if given."""
    argv = list(argv or [])
    if not argv or argv[0] != "run":
        return None
    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    return None


def _parser(argv=None) -> argparse.ArgumentParser:
    """The ``cflkit`` parser: one sub-command each, then the extensions' (``EXTENSIONS``)."""
    p = _Parser(prog="cflkit", description="Evaluate and compare clustered federated learning methods.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_command(sub, argv)
    _add_list_command(sub)
    _add_demo_command(sub)
    _add_data_command(sub)
    _add_compare_command(sub)
    for name, module in EXTENSIONS.items():
        ext = importlib.import_module(module)
        ext.add_arguments(sub.add_parser(name, help=ext.HELP, description=ext.HELP))
    return p


def _add_run_command(sub, argv) -> None:
    """``cflkit run``: every config field as an option, and the chosen method's parameters."""
    r = sub.add_parser("run", help="run one method on one federation and write a run directory",
                       epilog="Each method has parameters of its own: `cflkit list METHOD` lists them, and "
                              "`cflkit run --method METHOD --help` shows them as options.")
    defaults = Config()
    for name in FIELDS:
        default = getattr(defaults, name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        r.add_argument(f"--{name}", dest=name, default=None, metavar=type(default).__name__.upper(),
                       help=f"{help_text(name)} (default: {shown})")
    _add_method_options(r, _method_in(argv))
    r.add_argument("--config", default=None, metavar="CONFIG_JSON",
                   help="start from a run's config.json (re-run it); other options override it")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a config field or a parameter of the method, e.g. --set groups=4 --set restarts=5 "
                        "(repeatable)")
    r.add_argument("--out", default=None, help="run directory to write (default: runs/<method>-<scenario>-s<seed>); "
                                                "an earlier run there is replaced, anything else is refused")
    _add_force(r, "run")
    _add_progress(r)


def _add_list_command(sub) -> None:
    """``cflkit list [METHOD]``."""
    ls = sub.add_parser("list", help="list datasets, scenarios, models and methods; with METHOD, its parameters")
    ls.add_argument("method", nargs="?", default=None, metavar="METHOD",
                    help="a method: its parameters, their defaults and what each does")


def _add_demo_command(sub) -> None:
    """``cflkit demo``: the built-in default job."""
    d = sub.add_parser("demo", help="FedAvg vs oracle vs local on rotated digits: the built-in default job")
    d.add_argument("--out", default="runs/demo", help="directory for the runs and the comparison table")
    d.add_argument("--rounds", type=count(0), default=20, help="communication rounds (default: 20)")
    d.add_argument("--scenario", default="rotation", help="planted scenario (default: rotation)")
    d.add_argument("--seed", type=count(0), default=0, help="seed (default: 0)")
    _add_force(d, "run")
    _add_progress(d)


def _add_data_command(sub) -> None:
    """``cflkit data list`` and ``cflkit data fetch NAME...``."""
    dd = sub.add_parser("data", help="the real datasets: list what is available, fetch (download and verify)")
    dsub = dd.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dsub.add_parser("list", help="every downloadable source: offline / cached / missing, size, licence")
    df = dsub.add_parser("fetch", help="download a source (or the source of a dataset) into the cache and verify "
                                       "its checksums; reports files that are already available")
    df.add_argument("names", nargs="+", metavar="NAME", help="a dataset (e.g. heart_disease) or source name "
                                                              "(see `cflkit data list`)")
    _add_progress(df)


def _add_compare_command(sub) -> None:
    """``cflkit compare``: the benchmark grid."""
    c = sub.add_parser("compare", help="the clustering benchmark: run a grid of methods x scenarios x seeds "
                                       "(x parts) and tabulate accuracy and ARI")
    c.add_argument("--methods", required=True, metavar="M1,M2", help="comma list of methods (see `cflkit list`)")
    c.add_argument("--scenarios", default=None, metavar="S1,S2",
                   help="comma list of scenarios (default: the config's, rotation)")
    c.add_argument("--seeds", default=None, metavar="0,1,2", help="comma list of seeds (default: 0)")
    c.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="vary any config field, e.g. --grid representation=update,weights (repeatable; "
                        "for tuple fields separate values by '/': --grid hidden=64,64/32). Parts only vary "
                        "methods built on 'clustered'; other methods get one cell")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config field for every cell, e.g. --set rounds=10 (repeatable)")
    c.add_argument("--tuned", default=None, metavar="TUNED.json",
                   help="each method's own parameters from `cflkit tune` (its tuned.json); the tables gain a "
                        "'tuning' column")
    c.add_argument("--out", default="runs/compare",
                   help="directory for cells/, results.csv, ari_per_round.csv, table.md (default: runs/compare)")
    c.add_argument("--workers", type=count(1), default=None,
                   help="worker processes (default: cores, at most one per cell; 1: run in this process); "
                        "with --executor ray: at most this many cells at once (default: as many as the cluster's CPUs)")
    executors.add_arguments(c)
    _add_progress(c)


def _add_method_options(p, method: str | None):
    """``--<parameter>`` options for the parameters of ``method`` (when it names one)."""
    from .methods import METHODS

    if method not in METHODS:
        return
    params = METHODS[method].Params
    if not params.names():
        return
    group = p.add_argument_group(f"parameters of method {method!r} (also as --set name=value)")
    for name, default, text in params.describe():
        group.add_argument(f"--{name}", dest=f"param:{name}", default=None, metavar="VALUE",
                           help=f"{text} (default: {default})")


def count(low: int):
    """An argparse type: an integer >= ``low`` (the error names the option and the range)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = "int"
    return parse


def _add_force(p, what: str):
    p.add_argument("--force", action="store_true",
                   help=f"replace an earlier {what} at --out even if it holds files cflkit did not write for it "
                        f"(they are kept); never replaces anything cflkit did not write")


def _add_progress(p):
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args) -> Config:
    """The config that ``cflkit run`` options describe (options first, then --set)."""
    changes = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    changes.update({k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("param:") and v is not None})
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        changes[key.strip()] = value
    base = Config()
    if args.config:
        from .core.results import read_config

        base = read_config(args.config)  # ValueError naming the file and what is wrong with it
    return base.replace(**changes)  # shared fields and the method's parameters; errors name what is wrong


def cmd_list_method(name: str) -> int:
    """``cflkit list METHOD``: the method, its reference and its parameters with their defaults."""
    from .core.config import method_class

    cls = method_class(name)
    print(f"{name}: {cls.summary}")
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc:
        print("  " + " ".join(doc.split()))
    absent = "yes" if cls.handles_absent(cls.Params()) else "no (participation 1, dropout 0, arrival_round 0)"
    if getattr(cls, "absent_rule", "") and cls.handles_absent(cls.Params()):
        absent += f"; {cls.absent_rule}"
    print(f"client sampling, dropouts and late clients: {absent}")
    print(f"a client that never trained (holdout_clients): {cls.newcomer or 'refused, no rule'}")
    rows = cls.Params.describe()
    if not rows:
        print("parameters: none")
        return 0
    print("parameters (--set name=value, or --name value with --method " + name + "):")
    width = max(len(r[0]) for r in rows)
    shown = max(len(r[1]) for r in rows)
    for pname, default, text in rows:
        print(f"  {pname:<{width}}  {default:<{shown}}  {text}")
    return 0


def cmd_list() -> int:
    from .core.datasets import DATASETS
    from .core.models import MODELS
    from .core.scenarios import NATURAL, PARTITIONS, SIZINGS, TRANSFORMS
    from .methods import METHODS

    def section(title, items):
        print(title)
        width = max(len(k) for k in items)
        for k, text in items.items():
            print(f"  {k:<{width}}  {text}")

    section("datasets:", {k: v[1] for k, v in DATASETS.items()})
    section("scenarios (combine with '+', e.g. rotation+quantity_skew):", {**PARTITIONS, **TRANSFORMS, **SIZINGS})
    section("natural federations (real datasets with sites; not combined):", NATURAL)
    from .core.config import FIELDS, help_text

    conditions = ("participation", "min_participants", "dropout", "holdout_clients", "arrival_round",
                  "arrival_fraction", "drift_round", "drift_fraction")
    section("federation conditions (compose with the scenarios; --set name=value; default in brackets):",
            {k: f"{help_text(k)} [{FIELDS[k].default}]" for k in conditions})
    section("models:", MODELS)
    from .core.trainer import OPTIMIZERS

    section("client optimizers (--set optimizer=NAME; momentum, beta1, beta2, epsilon):", OPTIMIZERS)
    section("methods:", {k: m.summary for k, m in METHODS.items()})
    from .methods.clustered import TRIGGERS, Clustered
    from .methods.parts.clustering import CLUSTERERS, METRICS
    from .methods.parts.representations import REPRESENTATIONS

    presets = {k: ", ".join(f"{p}={getattr(m.Params(), p)}" for p in ("representation", "clusterer", "trigger",
                                                                          "metric"))
               for k, m in METHODS.items() if issubclass(m, Clustered)}
    section("clustered presets (override any part with --set part=value):", presets)
    section("representations (what the server compares):", REPRESENTATIONS)
    section("clusterers (how):", CLUSTERERS)
    section("triggers (when):", TRIGGERS)
    section("metrics:", METRICS)
    print("parameters of a method, with their defaults: cflkit list METHOD")
    return 0


def summary_table(summaries: list[dict]) -> str:
    """A plain-text table of run summaries."""
    if summaries and "rmse_mean" in summaries[0]:  # regression: errors instead of accuracy
        score = [("RMSE mean", "rmse_mean", "{:.4f}"), ("RMSE weighted", "rmse_weighted", "{:.4f}"),
                 ("RMSE worst10%", "rmse_worst10", "{:.4f}"), ("R2 mean", "r2_mean", "{:.3f}")]
    elif summaries and "c_index_mean" in summaries[0]:  # survival: the C-index
        score = [("C-index mean", "c_index_mean", "{:.3f}"), ("C-index weighted", "c_index_weighted", "{:.3f}"),
                 ("C-index worst10%", "c_index_worst10", "{:.3f}")]
    else:
        score = [("acc mean", "accuracy_mean", "{:.3f}"), ("acc weighted", "accuracy_weighted", "{:.3f}"),
                 ("acc worst10%", "accuracy_worst10", "{:.3f}")]
    cols = [("method", "method", "{}"), *score,
            ("ARI", "ari", "{:.2f}"), ("clusters", "n_clusters", "{}"), ("rounds", "rounds", "{}"),
            ("MB sent", "bytes_total", "{}"), ("seconds", "wall_seconds", "{:.1f}")]
    rows = []
    for s in summaries:
        row = []
        for _, key, fmt in cols:
            v = s[key]
            row.append(f"{v / 1e6:.2f}" if key == "bytes_total" else fmt.format(v))
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, (h, _, _) in enumerate(cols)]
    lines = ["  ".join(h.ljust(w) for (h, _, _), w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def cmd_run(args) -> int:
    from .core.experiment import run, validate
    from .core.outputs import check_output, read_manifest

    config = config_from_args(args)
    validate(config)
    out = args.out or f"runs/{config.method}-{config.scenario}-s{config.seed}"
    check_output(out, "run", force=args.force)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = run(config, progress=progress, out=out, force=args.force)
    print(result.federation.description)
    print(summary_table([result.summary]))
    written = sorted(read_manifest(out).files)
    print(f"wrote {out}/ ({', '.join(written)})")
    return 0


def cmd_demo(args) -> int:
    import json

    from .core.experiment import federation_from, run, validate
    from .core.outputs import TARGETS, check_output, mark
    from .core.results import write_text_atomic

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    base = Config(scenario=args.scenario, rounds=args.rounds, seed=args.seed)
    validate(base)
    methods = ("fedavg", "oracle", "local")
    check_output(args.out, "demo")
    for method in methods:
        check_output(Path(args.out) / method, "run", force=args.force, option="")
    fed = federation_from(base)
    print(fed.description)
    summaries = []
    Path(args.out).mkdir(parents=True, exist_ok=True)
    mark(args.out, "demo", TARGETS["demo"])
    for method in methods:
        config = base.replace(method=method)
        result = run(config, progress=progress, federation=fed, out=Path(args.out) / method, force=args.force)
        summaries.append(result.summary)
    table = summary_table(summaries)
    print(table)
    write_text_atomic(Path(args.out) / "comparison.txt", fed.description + "\n" + table + "\n")
    write_text_atomic(Path(args.out) / "comparison.json", json.dumps(summaries, indent=2) + "\n")
    print(f"wrote {args.out}/ (one run directory per method, comparison.txt, comparison.json)")
    return 0


def grid_from_args(args) -> tuple[dict, Config]:
    """The grid and the base config that ``cflkit compare`` options describe."""
    grid = {}

    def put(key, text, option):
        if key in grid:
            raise ValueError(f"field {key!r} is given twice ({option} and an earlier option); give it once")
        tuple_field = key in FIELDS and isinstance(FIELDS[key].default, tuple)
        values = [v.strip() for v in text.split("/" if tuple_field else ",")] if text.strip() else []
        if not values:
            raise ValueError(f"{option} gives no values for {key!r}; give a comma list, e.g. {key}=a,b")
        grid[key] = values

    put("method", args.methods, "--methods")
    for key, text, option in (("scenario", args.scenarios, "--scenarios"), ("seed", args.seeds, "--seeds")):
        if text is not None:
            put(key, text, option)
    for item in args.grid:
        if "=" not in item:
            raise ValueError(f"--grid expects FIELD=V1,V2, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        if key not in FIELDS and key not in parameter_names():
            raise ValueError(f"unknown config field or method parameter {key!r} in --grid; choose one of: "
                             f"{', '.join(FIELDS)}, or a method's parameter (`cflkit list METHOD`)")
        put(key, text, f"--grid {key}")
    changes = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in grid:
            raise ValueError(f"field {key!r} is both fixed by --set and varied by the grid; keep one")
        if key in FIELDS:
            changes[key] = value
        else:  # a method parameter: fixed for every method of the grid that takes it
            put(key, value, f"--set {key}")
    return grid, Config().replace(**changes)


def cmd_compare(args) -> int:
    from pathlib import Path

    from .study.compare import compare, summarize_grid, text_table

    grid, base = grid_from_args(args)
    tuned = None
    if args.tuned is not None:
        from .study.tune import read_tuned

        tuned = read_tuned(args.tuned)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    results = compare(grid, args.out, workers=args.workers, progress=progress, base=base, tuned=tuned,
                      executor=args.executor, address=args.address, retries=args.retries)
    print(text_table(summarize_grid(results)))
    failed = results[results["error"] != ""]  # listed on stderr by compare's warning
    out = Path(args.out)
    print(f"{len(results) - len(failed)} of {len(results)} cells done; wrote {out}/ "
          f"(cells/, results.csv, ari_per_round.csv, table.md)")
    return FAILURE if len(failed) else 0


def _size(n: int) -> str:
    if not n:
        return "?"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def cmd_data(args) -> int:
    """``cflkit data list`` and ``cflkit data fetch NAME...``."""
    from .data import SOURCES, DataError, cache_dir, fetch_source, find_source, offline_dirs, source_status

    if args.data_command == "list":
        rows = [("source", "datasets", "status", "size", "licence")]
        for key, src in SOURCES.items():
            where, size = source_status(key)
            rows.append((key, ",".join(src.datasets), where, _size(size), src.licence))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        dirs = [str(d) for d in offline_dirs()]
        print(f"cache: {cache_dir()} ($CFLKIT_CACHE_DIR)")
        print(f"offline dirs: {os.pathsep.join(dirs) if dirs else '(none)'} ($CFLKIT_OFFLINE_DIRS)")
        from .core.datasets import natural_datasets

        print(f"built in (no download): digits, breast_cancer; with sites for --scenario natural: "
              f"{', '.join(natural_datasets())}")
        return 0
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    failed = 0
    for name in args.names:
        key, src = find_source(name)
        before, _ = source_status(key)
        try:
            paths = fetch_source(key, progress=progress)
        except DataError as e:
            print(f"cflkit: error: {e}", file=sys.stderr)
            failed += 1
            continue
        verb = f"already available ({before})" if before != "missing" else "fetched"
        folder = sorted({str(p.parent) for p in paths.values()})
        print(f"{key}: {verb}, {len(paths)} file(s) verified in {', '.join(folder)}")
    return FAILURE if failed else 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def main(argv=None) -> int:
    from .core.loop import DivergenceError
    from .core.outputs import WriteError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = _parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    except SystemExit as e:  # a usage error (already printed, one line) or --help: its exit code
        return e.code if isinstance(e.code, int) else USAGE_ERROR
    try:
        if args.command == "list":
            return cmd_list_method(args.method) if args.method else cmd_list()
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "data":
            return cmd_data(args)
        if args.command in EXTENSIONS:
            return importlib.import_module(EXTENSIONS[args.command]).main(args)
        return cmd_demo(args)
    except ValueError as e:
        print(f"cflkit: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except (DivergenceError, WriteError) as e:
        print(f"cflkit: error: {_one_line(e)}", file=sys.stderr)
        return FAILURE
    except OSError as e:  # the file system refused (permissions changed, a device went away): no traceback
        if os.environ.get("CFLKIT_DEBUG"):
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"cflkit: error: {e.strerror or _one_line(e)}{where} (CFLKIT_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return FAILURE
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
