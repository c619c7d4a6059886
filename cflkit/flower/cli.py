"""``cflkit flower``: run cflkit methods on Flower.

- ``cflkit flower demo`` — a real federation on localhost: a SuperLink and one SuperNode
  process per UCI Heart Disease hospital (4), the method run through ``flwr run``, then
  the same config in-process for comparison;
- ``cflkit flower simulate`` — any config through Flower's simulation engine;
- ``cflkit flower app DIR`` — write the Flower App directory for your own deployment.
"""
from __future__ import annotations

import argparse
import sys

HELP = "run cflkit methods on Flower: a localhost federation demo, the simulation engine, the app directory"
APP_NOTES = """\
TLS: the app directory sets none; `cflkit flower demo` runs without TLS unless --tls, on 127.0.0.1 only and with
runtime dependency installation disabled. For SuperNodes on other machines turn TLS on (and installation off):
  flower-superlink --ssl-ca-certfile CA.crt --ssl-certfile SERVER.pem --ssl-keyfile SERVER.key \\
                   --disable-runtime-dependency-installation          (no --insecure; SERVER.key mode 0600)
  flower-supernode --root-certificates CA.crt --superlink HOST:PORT --node-config 'partition-id=<client>'
  flwr: root-certificates = "CA.crt" beside address = "HOST:PORT" in the connection in ~/.flwr/config.toml"""


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser):
    from ..cli import count

    sub = p.add_subparsers(dest="flower_command", required=True, parser_class=type(p))
    d = sub.add_parser("demo", help="real localhost federation (SuperLink + one SuperNode per Heart Disease "
                                    "hospital) vs the same config in-process")
    d.add_argument("--methods", default="fedavg,ifca", metavar="M1,M2", help="comma list (default: fedavg,ifca)")
    d.add_argument("--rounds", type=count(1), default=5, help="communication rounds (default: 5)")
    d.add_argument("--local_epochs", type=count(1), default=1, help="local epochs per round (default: 1)")
    d.add_argument("--seed", type=count(0), default=2,
                   help="seed (default: 2, where IFCA uses both of its K = 2 models)")
    d.add_argument("--out", default="runs/flower-demo", help="directory for the runs (default: runs/flower-demo)")
    d.add_argument("--tls", action="store_true",
                   help="TLS for the SuperLink's APIs, used by the SuperNodes and flwr (default: off, 127.0.0.1 only; "
                        "throw-away certificates)")
    d.add_argument("--round_timeout", type=_seconds, default=120.0,
                   help="seconds a call waits before missing clients count as dropped (default: 120)")
    s = sub.add_parser("simulate", help="run one config through Flower's simulation engine (Ray)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config field (repeatable)")
    s.add_argument("--out", default=None, help="run directory to write")
    a = sub.add_parser("app", help="write the Flower App directory (pyproject.toml) for `flwr run DIR <superlink>`")
    a.add_argument("directory")


def main(args) -> int:
    from . import require_flwr

    try:
        require_flwr()
    except ImportError as e:
        print(f"cflkit: error: {e}", file=sys.stderr)
        return 1
    if args.flower_command == "app":
        from .deploy import write_app

        print(f"wrote {write_app(args.directory) / 'pyproject.toml'}; run: flwr run {args.directory} <superlink>")
        print(APP_NOTES)
        return 0
    if args.flower_command == "simulate":
        from ..cli import summary_table
        from ..core.config import Config
        from .server import simulate

        changes = dict(item.split("=", 1) for item in args.set if "=" in item)
        bad = [item for item in args.set if "=" not in item]
        if bad:
            raise ValueError(f"--set expects KEY=VALUE, got {bad[0]!r}")
        result = simulate(Config().replace(**changes), out=args.out)
        print(summary_table([result.summary]))
        return 0
    return demo(args)


def demo(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..cli import summary_table
    from ..core.config import Config
    from ..core.experiment import run
    from .deploy import LocalFederation

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from ..core.config import method_class

    base = Config(dataset="heart_disease", scenario="natural", rounds=args.rounds, local_epochs=args.local_epochs,
                  seed=args.seed)
    # two clusters for the methods that need a K (the hospitals have no planted groups)
    configs = [base.replace(method=m, **({"clusters": 2} if "clusters" in method_class(m).Params.names() else {}))
               for m in methods]  # validates the names
    from ..core.experiment import validate
    from ..core.outputs import check_output, mark

    for config in configs:
        validate(config)
    out = Path(args.out)
    check_output(out, "flower-demo")  # before any process starts
    runs = [out / f"{c.method}-{where}" for c in configs for where in ("flower", "inprocess")]
    for path in runs:
        check_output(path, "run", option="")
    out.mkdir(parents=True, exist_ok=True)
    mark(out, "flower-demo", ["flower", *(p.name for p in runs)])
    summaries = []
    with LocalFederation(4, workdir=out / "flower", tls=args.tls) as fl:
        print(f"SuperLink on 127.0.0.1:{fl.port} ({'TLS' if args.tls else 'no TLS; --tls turns it on'}), 4 SuperNodes; "
              f"logs in {fl.workdir}/")
        for config in configs:
            deployed = fl.run(config, out / f"{config.method}-flower", round_timeout=args.round_timeout,
                              timeout=max(600.0, 120.0 * config.rounds))
            local = run(config, out=out / f"{config.method}-inprocess")
            a, b = deployed.history, local.history
            same = bool(np.array_equal(a["cluster"].to_numpy(), b["cluster"].to_numpy()))
            gap = float(np.nanmax(np.abs(a["accuracy"].to_numpy() - b["accuracy"].to_numpy())))
            print(f"{config.method}: assignments {'identical' if same else 'DIFFER'}; largest accuracy gap "
                  f"{gap:.2e}; {deployed.summary['wall_seconds'] / config.rounds:.1f} s/round on Flower vs "
                  f"{local.summary['wall_seconds'] / config.rounds:.2f} s/round in-process")
            summaries += [{**deployed.summary, "method": f"{config.method} (flower)"}, local.summary]
    print(summary_table(summaries))
    print(f"wrote {out}/ (<method>-flower/, <method>-inprocess/, flower/ logs)")
    return 0
