"""``cflkit tune``: each method's own parameters chosen on validation rows of tuning seeds
(:mod:`cflkit.study.tune`); writes ``tuning.csv`` and ``tuned.json``."""
from __future__ import annotations

HELP = "choose each method's parameters on validation rows of tuning seeds (never the test rows or ARI)"


def add_arguments(p) -> None:
    p.add_argument("--methods", required=True, metavar="M1,M2", help="comma list of methods (see `cflkit list`)")
    p.add_argument("--seeds", default="100,101", metavar="100,101", help="tuning seeds (default: 100,101)")
    p.add_argument("--report-seeds", default="0,1", metavar="0,1",
                   help="the seeds the benchmark reports: refused as tuning seeds (default: 0,1)")
    p.add_argument("--fraction", type=float, default=0.2,
                   help="share of each client's training rows held out for validation (default: 0.2)")
    p.add_argument("--metric", default="accuracy_mean", help="validation score to maximise (rmse/mae/loss: "
                                                             "minimise; default: accuracy_mean)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config field (--set scenario=label_swap) or a method parameter for every method that "
                        "takes it (--set clusters=auto); repeatable")
    p.add_argument("--out", default="runs/tune", help="directory for tuning.csv and tuned.json (default: runs/tune)")


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} expects a comma list of integers, got {text!r}") from None


def main(args) -> int:
    from pathlib import Path

    from ..core.config import FIELDS, Config, parameter_names
    from .tune import check_seeds, method_grid, tune, write_tuning

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds, report = _ints(args.seeds, "--seeds"), _ints(args.report_seeds, "--report-seeds")
    check_seeds(seeds, report)
    for m in methods:
        method_grid(m)
    changes, settings = {}, {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in FIELDS:
            changes[key] = value
        elif key in parameter_names():
            settings[key] = value
        else:
            raise ValueError(f"unknown config field or method parameter {key!r} in --set; choose one of: "
                             f"{', '.join(FIELDS)}, or a method's parameter (`cflkit list METHOD`)")
    out = Path(args.out)
    if (out / "tuned.json").exists():
        raise ValueError(f"{out / 'tuned.json'} exists; choose another --out (the tuner never overwrites a result)")
    base = Config().replace(**changes)
    table, chosen = tune(methods, base, seeds=seeds, report_seeds=report, fraction=args.fraction,
                         metric=args.metric, settings=settings)
    protocol = {"base": base.to_dict(), "settings": settings, "tuning_seeds": seeds, "report_seeds": report,
                "validation_fraction": args.fraction, "metric": args.metric}
    path = write_tuning(out, table, chosen, protocol)
    means = table.groupby(["method", "params"], sort=False)["validation"].mean().reset_index()
    width = max(len(m) for m in means["method"])
    for row in means.itertuples():
        mark = "*" if row.params == _dumps(chosen[row.method]) else " "
        print(f"{mark} {row.method:<{width}}  {args.metric} {row.validation:.4f}  {row.params}")
    print(f"chosen (*): wrote {path} and {out / 'tuning.csv'}")
    return 0


def _dumps(point: dict) -> str:
    import json

    return json.dumps(point, sort_keys=True)
