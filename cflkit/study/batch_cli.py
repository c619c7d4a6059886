"""``cflkit batch FILE``: run an experiment file's notebooks (:mod:`cflkit.study.batch`), then,
when the file has a ``paper:`` section, build the article's figures, tables and macros from
the finished runs (:mod:`cflkit.article.builder`). The runner itself knows nothing of the
article; this command joins the two."""
from __future__ import annotations

import sys
import time

from . import executors
from .batch import (
    Experiment,
    batch_dir,
    load_experiment,
    plan,
    read_status,
    run_batch,
    run_path,
    run_status,
    select,
    write_index,
)

HELP = "run notebooks over parameter grids with papermill (experiments/*.yaml), resumably; then the paper's figures"


def add_arguments(p) -> None:
    p.add_argument("experiment", metavar="FILE", help="experiment file, e.g. experiments/paper.yaml")
    p.add_argument("--workers", type=int, default=1, help="runs executed at once, each in its own process "
                                                          "and kernel (default: 1; with --executor ray: at most "
                                                          "this many runs at once on the cluster)")
    executors.add_arguments(p)
    p.add_argument("--only", default=None, metavar="PATTERN",
                   help="only runs whose entry name or label matches this shell pattern, e.g. 'bench*'")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status (and rewrite "
                                                          "index.csv from the run directories); run nothing")
    p.add_argument("--runs", default="runs/batch", metavar="DIR",
                   help="where run directories go: DIR/<experiment name>/ (default: runs/batch)")
    p.add_argument("--aggregate-only", action="store_true",
                   help="run nothing; build the paper's figures, tables and macros from the finished runs")
    p.add_argument("--no-aggregate", action="store_true", help="run, but do not build the paper's files")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


STATES = ("done", "failed", "todo", "running", "interrupted")


def dry_run(experiment: Experiment, only: str | None, root) -> int:
    """List the runs and their status; rewrite ``index.csv`` where the experiment's directory exists
    (so that it never stays stale after a killed batch)."""
    from ..article.builder import paper_dir

    planned = plan(experiment)
    runs = select(planned, only)
    exp_dir = batch_dir(experiment, root)
    states = [run_status(r, exp_dir) for r in runs]
    rows = [("status", "run", "key", "notebook")]
    rows += [(state, r.label, r.key, str(r.notebook)) for r, state in zip(runs, states)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    counts = {s: states.count(s) for s in STATES}
    extra = "".join(f", {counts[s]} {s}" for s in ("running", "interrupted") if counts[s])
    print(f"{len(runs)} runs: {counts['done']} done, {counts['failed']} failed, {counts['todo']} to do{extra} "
          f"(run directories in {exp_dir}/)")
    if exp_dir.is_dir():
        write_index(planned, exp_dir)
    if experiment.paper:
        from ..article.builder import round_time_args, round_time_csv

        csv = round_time_csv(experiment, root)
        if csv is not None:
            state = "done" if csv.is_file() else "todo"
            print(f"bench: {state}  bench/round_time.py {' '.join(round_time_args(experiment))} -> {csv}")
        print(f"paper: aggregated into {paper_dir(experiment)}/ once every run is done")
    return 0


def main(args) -> int:
    from ..article.builder import check_paper

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    executors.check_executor(args.executor, args.address, args.retries)  # before any work, dry run included
    experiment = check_paper(load_experiment(args.experiment))
    if args.dry_run:
        return dry_run(experiment, args.only, args.runs)
    failed = []
    if not args.aggregate_only:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        start = time.perf_counter()
        try:
            chosen, statuses = run_batch(experiment, args.workers, args.only, progress, args.runs,
                                         executor=args.executor, address=args.address, retries=args.retries)
        except RuntimeError as e:
            print(f"cflkit: error: {e}", file=sys.stderr)
            return 1
        exp_dir = batch_dir(experiment, args.runs)
        states = [run_status(r, exp_dir) for r in chosen]
        print(f"{experiment.name}: {states.count('done')} of {len(chosen)} runs done "
              f"({len(statuses)} run now, {time.perf_counter() - start:.0f} s); index: {exp_dir / 'index.csv'}")
        failed = [(r, s) for r, s in zip(chosen, states) if s != "done"]
        for r, state in failed:
            path = run_path(r, exp_dir)
            error = read_status(path).get("error") or f"{state} (not finished)"
            print(f"FAILED {r.label}: {error}\n  executed notebook: {path / 'executed.ipynb'}\n"
                  f"  log: {path / 'run.log'}", file=sys.stderr)
    if experiment.paper and not args.no_aggregate and not args.only:
        from ..article.builder import measure_round_time, paper_dir

        if not args.aggregate_only:
            try:
                measure_round_time(experiment, args.runs)
            except RuntimeError as e:
                print(f"cflkit: error: {e}", file=sys.stderr)
                return 1
        if failed:
            print("paper: not aggregated, because runs failed (fix them and run the batch again)", file=sys.stderr)
        else:
            from ..article.builder import aggregate

            written = aggregate(experiment, root=args.runs)
            where = paper_dir(experiment)
            print(f"paper: wrote {len(written)} files into {where}/ (figures/, tables/, macros.tex)" if written
                  else f"paper: {where}/ is up to date")
    return 1 if failed else 0
