"""Cells per minute of a benchmark grid, before and after the throughput work, and where a
cell's time goes.

Every variant runs the same ``compare`` grid as ``cflkit batch --workers P`` runs notebook 08:
``--parallel P`` processes side by side (default 2, as ``make paper`` does), one seed each, each
running its cells in-process with one worker. Process start and TensorFlow import are included.
The default grid is the benchmark entry of ``experiments/paper-full.yaml`` on digits: 12 methods
x 3 scenarios, K unknown and K given for every method that takes K, 32 clients x 200 rows,
20 rounds, E = 5.

Variants (run one after the other, in the same call, so they see the same machine):

* ``before``: ``--before DIR``, a copy of cflkit from before this work, e.g.
  ``git archive 9e1f3d2 cflkit | tar -x -C /tmp/before``. TensorFlow's default thread pools in
  every process, as the batch's kernels had them; evaluated every round; one trace per cell.
* ``threads``: this tree, each process's TensorFlow sized to its share of the cores
  (``TF_NUM_INTRAOP_THREADS`` / ``TF_NUM_INTEROP_THREADS``, what ``cflkit batch`` now sets in
  its kernels), traces shared within a process (``cflkit.core.trainer.compiled_functions``).
* ``threads+evaluate-N``: the same with ``evaluate_every=N`` (``--evaluate-every``, default:
  the rounds, i.e. round 0 and the last only). The summary and the ARI are the same; only the
  test metrics of the rounds in between are not measured.

``--profile`` runs each variant once more under cProfile and splits its time. The buckets are
entered from outside: tracing is counted inside training and evaluation too.

    python bench/cell_throughput.py --before /tmp/before --json runs/bench/cells.json
    python bench/cell_throughput.py --methods fedavg,ifca --profile
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = "fedavg,ifca,flhc,kmeans,fedclust,ocfl,fedgroup,pacfl,cornflqs,flux,srfca,oracle"
SCENARIOS = "label_swap,shards,rotation+quantity_skew"

CHILD = r'''
import cProfile, json, sys, tempfile, time
t0 = time.perf_counter()
from cflkit.core._tf import keras, tf
tf(threads=0)
keras()
tf_import = time.perf_counter() - t0
import cflkit
from cflkit import Config
from cflkit.study.compare import compare
spec = json.loads(sys.argv[1])
profile = cProfile.Profile() if spec["profile"] else None
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as out:
    if profile:
        profile.enable()
    results = compare(spec["grid"], out, workers=1, progress=False, base=Config(**spec["base"]))
    if profile:
        profile.disable()
        profile.dump_stats(spec["profile"])
cells = time.perf_counter() - t1
print(json.dumps({"tf_import_seconds": tf_import, "cells_seconds": cells, "cells": len(results),
                  "failed": int((results["error"] != "").sum()), "ari_mean": float(results["ari"].mean()),
                  "package": cflkit.__file__}))
'''

# bucket -> predicate on a pstats function key (file, line, name); time entered from outside it
BUCKETS = {
    "tracing": lambda f: f[2] == "trace_function" and "tracing_compilation" in f[0],
    "local training (Trainer.train)": lambda f: f[0].endswith("cflkit/core/trainer.py") and f[2] == "train",
    "test evaluation (loop.record)": lambda f: f[0].endswith("cflkit/core/loop.py") and f[2] == "record",
    "every model evaluation (Trainer.predict)": lambda f: f[0].endswith("cflkit/core/trainer.py") and f[2] == "predict",
    "clustering (scikit-learn, SciPy)": lambda f: "/sklearn/" in f[0] or "/scipy/cluster/" in f[0],
    "federation": lambda f: f[0].endswith("cflkit/core/experiment.py") and f[2] == "federation_from",
    "writing runs and tables": lambda f: (f[0].endswith("cflkit/core/results.py") and f[2] == "save_run")
    or (f[0].endswith("cflkit/study/compare.py") and f[2] == "_write_tables"),
}


def entered_from_outside(stats: dict, inside) -> float:
    """Seconds spent in the functions matching ``inside``, counted where a function outside calls them."""
    total = 0.0
    for func, (_, _, _, _, callers) in stats.items():
        if inside(func):
            total += sum(c[3] for caller, c in callers.items() if not inside(caller))
    return total


def breakdown(path: str) -> dict:
    import pstats

    stats = pstats.Stats(path).stats
    return {name: round(entered_from_outside(stats, inside), 2) for name, inside in BUCKETS.items()}


THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def run_variant(name: str, package_dir: Path, grid: dict, base: dict, profile: bool, parallel: int,
                threads: int) -> dict:
    """``parallel`` processes side by side, process i running ``grid`` with seed ``grid seed + i``;
    ``threads``: TensorFlow's pools in each (0: its default)."""
    env = {k: v for k, v in os.environ.items() if k not in THREADS}
    env.update(PYTHONPATH=str(package_dir) + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    if threads:
        env.update({k: str(threads) for k in THREADS})
    with tempfile.TemporaryDirectory() as tmp:
        profiles = [str(Path(tmp) / f"profile{i}.out") if profile else "" for i in range(parallel)]
        start = time.perf_counter()
        children = [subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps({"grid": {**grid, "seed": [grid["seed"][0] + i]}, "base": base,
                                                      "profile": profiles[i]})],
            env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(parallel)]
        outputs = [child.communicate() for child in children]
        wall = time.perf_counter() - start
        parts = []
        for child, (out, err) in zip(children, outputs):
            if child.returncode:
                raise SystemExit(f"variant {name} failed:\n{err[-3000:]}")
            parts.append(json.loads(out.strip().splitlines()[-1]))
            if not parts[-1]["package"].startswith(str(package_dir)):
                raise SystemExit(f"variant {name} imported cflkit from {parts[-1]['package']}, not {package_dir}")
        cells = sum(part["cells"] for part in parts)
        row = {"variant": name, "parallel": parallel, "threads": threads, "cells": cells,
               "failed": sum(part["failed"] for part in parts),
               "ari_mean": round(sum(part["ari_mean"] * part["cells"] for part in parts) / cells, 4),
               "tf_import_seconds": round(max(part["tf_import_seconds"] for part in parts), 2),
               "seconds": round(wall, 2), "cells_per_minute": round(60 * cells / wall, 2), "profiled": profile,
               "package": parts[0]["package"]}
        if profile:
            per = [breakdown(path) for path in profiles]
            row["profile"] = {k: round(sum(b[k] for b in per), 2) for k in per[0]}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, default=None, metavar="DIR",
                   help="a copy of cflkit before the throughput work (the directory holding cflkit/)")
    p.add_argument("--methods", default=METHODS)
    p.add_argument("--scenarios", default=SCENARIOS)
    p.add_argument("--seed", type=int, default=0, help="process i runs seed SEED + i")
    p.add_argument("--parallel", type=int, default=2, help="processes side by side, as `cflkit batch --workers P`")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--samples", type=int, default=200, help="rows per client")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--evaluate-every", type=int, default=0, help="the evaluate-N variant (default: --rounds)")
    p.add_argument("--profile", action="store_true", help="run each variant again under cProfile and split its time")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this file (refuses to overwrite)")
    args = p.parse_args(argv)
    if args.before is not None and not (args.before / "cflkit" / "__init__.py").is_file():
        p.error(f"--before {args.before}: no cflkit/ package there")
    if args.json is not None and args.json.exists():
        p.error(f"--json {args.json} exists; give a new path")
    every = args.evaluate_every or args.rounds
    if not 1 <= every <= args.rounds:
        p.error(f"--evaluate-every must be in 1..{args.rounds}, got {every}")
    grid = {"method": args.methods.split(","), "scenario": args.scenarios.split(","), "seed": [args.seed],
            "clusters": ["auto", "groups"]}
    base = {"dataset": "digits", "clients": args.clients, "groups": 4, "samples_per_client": args.samples,
            "rounds": args.rounds, "local_epochs": 5}
    if args.parallel < 1:
        p.error(f"--parallel must be >= 1, got {args.parallel}")
    cores = len(os.sched_getaffinity(0))
    share = max(1, cores // args.parallel)
    variants = ([("before", args.before, base, 0)] if args.before else []) + [
        ("threads", ROOT, base, share), (f"threads+evaluate-{every}", ROOT, {**base, "evaluate_every": every}, share)]
    rows = []
    for name, where, config, threads in variants:
        for profile in (False, True) if args.profile else (False,):
            row = run_variant(name, where.resolve(), grid, config, profile, args.parallel, threads)
            row["cores"] = cores
            rows.append(row)
            print(json.dumps(row), flush=True)
    timed = {r["variant"]: r for r in rows if not r["profiled"]}
    first = timed[variants[0][0]]
    print(f"\n{'variant':<22} {'cells':>5} {'seconds':>8} {'cells/min':>9} {'speed-up':>8}  "
          f"({args.parallel} processes side by side on {cores} cores)")
    for r in timed.values():
        print(f"{r['variant']:<22} {r['cells']:>5} {r['seconds']:>8.1f} {r['cells_per_minute']:>9.1f} "
              f"{r['cells_per_minute'] / first['cells_per_minute']:>7.2f}x")
    for r in rows:
        if r["profiled"]:
            print(f"\nprofile of {r['variant']} ({r['seconds']:.1f} s under cProfile, summed over processes): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in r["profile"].items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
