"""Command line: ``cflkit run``, ``cflkit list``, ``cflkit demo``."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields

from .config import FIELDS, Config, coerce, help_text

USAGE_ERROR = 2
FAILURE = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2, as for every usage error
        self.exit(USAGE_ERROR, f"cflkit: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cflkit", description="Evaluate and compare clustered federated learning methods.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run one method on one federation and write a run directory")
    defaults = Config()
    for f in fields(Config):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        r.add_argument(f"--{f.name}", dest=f.name, default=None, metavar=type(default).__name__.upper(),
                       help=f"{help_text(f.name)} (default: {shown})")
    r.add_argument("--config", default=None, metavar="CONFIG_JSON",
                   help="start from a run's config.json (re-run it); other options override it")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config field, e.g. --set groups=4 --set alpha=0.3 (repeatable)")
    r.add_argument("--out", default=None, help="run directory to write (default: runs/<method>-<scenario>-s<seed>)")
    _add_progress(r)

    sub.add_parser("list", help="list datasets, scenarios, models and methods")

    d = sub.add_parser("demo", help="FedAvg vs oracle vs local on rotated digits: the built-in default job")
    d.add_argument("--out", default="runs/demo", help="directory for the runs and the comparison table")
    d.add_argument("--rounds", type=int, default=20, help="communication rounds (default: 20)")
    d.add_argument("--scenario", default="rotation", help="planted scenario (default: rotation)")
    d.add_argument("--seed", type=int, default=0)
    _add_progress(d)
    return p


def _add_progress(p):
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def config_from_args(args) -> Config:
    """The config that ``cflkit run`` options describe (options first, then --set)."""
    changes = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        changes[key.strip()] = value
    base = Config()
    if args.config:
        import json
        from pathlib import Path

        try:
            base = Config.from_dict(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read --config {args.config!r}: {e}") from None
    return base.replace(**{k: coerce(k, v) for k, v in changes.items()})


def cmd_list() -> int:
    from .datasets import DATASETS
    from .methods import METHODS
    from .models import MODELS
    from .scenarios import PARTITIONS, SIZINGS, TRANSFORMS

    def section(title, items):
        print(title)
        width = max(len(k) for k in items)
        for k, text in items.items():
            print(f"  {k:<{width}}  {text}")

    section("datasets:", {k: v[1] for k, v in DATASETS.items()})
    section("scenarios (combine with '+', e.g. rotation+quantity_skew):", {**PARTITIONS, **TRANSFORMS, **SIZINGS})
    section("models:", MODELS)
    section("methods:", {k: m.summary for k, m in METHODS.items()})
    return 0


def summary_table(summaries: list[dict]) -> str:
    """A plain-text table of run summaries."""
    cols = [("method", "method", "{}"), ("acc mean", "accuracy_mean", "{:.3f}"),
            ("acc weighted", "accuracy_weighted", "{:.3f}"), ("acc worst10%", "accuracy_worst10", "{:.3f}"),
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
    from .experiment import run, validate

    config = config_from_args(args)
    validate(config)
    out = args.out or f"runs/{config.method}-{config.scenario}-s{config.seed}"
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = run(config, progress=progress, out=out)
    print(result.federation.description)
    print(summary_table([result.summary]))
    print(f"wrote {out}/ (config.json, history.csv, summary.json)")
    return 0


def cmd_demo(args) -> int:
    import json
    from pathlib import Path

    from .experiment import federation_from, run
    from .results import write_text_atomic

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    base = Config(scenario=args.scenario, rounds=args.rounds, seed=args.seed)
    base.replace()  # validates
    fed = federation_from(base)
    print(fed.description)
    summaries = []
    for method in ("fedavg", "oracle", "local"):
        config = base.replace(method=method)
        result = run(config, progress=progress, federation=fed, out=Path(args.out) / method)
        summaries.append(result.summary)
    table = summary_table(summaries)
    print(table)
    write_text_atomic(Path(args.out) / "comparison.txt", fed.description + "\n" + table + "\n")
    write_text_atomic(Path(args.out) / "comparison.json", json.dumps(summaries, indent=2) + "\n")
    print(f"wrote {args.out}/ (one run directory per method, comparison.txt, comparison.json)")
    return 0


def main(argv=None) -> int:
    from .experiment import DivergenceError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "run":
            return cmd_run(args)
        return cmd_demo(args)
    except ValueError as e:
        print(f"cflkit: error: {e}", file=sys.stderr)
        return USAGE_ERROR
    except DivergenceError as e:
        print(f"cflkit: error: {e}", file=sys.stderr)
        return FAILURE


if __name__ == "__main__":
    sys.exit(main())
