"""Seconds per round under client sampling: a round of a sample costs about a round of as many clients.

Compares, in one process and on the same machine, FedAvg rounds of

* ``sampled``: ``--clients`` clients of which ``--participation`` are sampled each round, and
* ``full``: a federation of ``participation x clients`` clients, all taking part,

and reports the ratio of their seconds per round (the loop's ``seconds`` column: the
method's round, without the evaluation, which covers every client in both and is reported
apart as ``eval_seconds``). Workload:
digits, iid, MLP 64-64-10, ``--samples`` rows per client (drawn with reuse), E = 1, B = 10.
Round 1 is a warm-up (tracing) and is not timed.

    python bench/participation_time.py --clients 1000 --participation 0.1
"""
from __future__ import annotations

import argparse
import json
import time


def seconds_per_round(config) -> tuple[float, float]:
    """Median (training, evaluation) seconds of rounds 2.. of ``config``."""
    import numpy as np

    from cflkit.core.experiment import build_context, federation_from
    from cflkit.core.loop import Hooks, run_rounds
    from cflkit.methods import make_method

    fed = federation_from(config)
    ctx = build_context(config, fed)
    evals = []
    metrics = ctx.trainer.metrics

    def timed_metrics(*args, **kwargs):
        t0 = time.perf_counter()
        out = metrics(*args, **kwargs)
        evals.append(time.perf_counter() - t0)
        return out

    ctx.trainer.metrics = timed_metrics
    done = run_rounds(make_method(config), ctx, config.rounds, hooks=Hooks())
    train = [row["seconds"] for row in done.rows if row["client"] == 0 and row["round"] > 1]  # excludes evaluation
    return float(np.median(train)), float(np.median(evals[2:]))  # evals[0]: round 0, [1]: round 1 (warm-up)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--participation", type=float, default=0.1)
    p.add_argument("--samples", type=int, default=20, help="rows per client")
    p.add_argument("--rounds", type=int, default=5, help="rounds (the first is not timed)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from cflkit import Config

    base = Config(dataset="digits", scenario="iid", samples_per_client=args.samples, local_epochs=1,
                  rounds=args.rounds, method="fedavg")
    m = max(1, int(args.participation * args.clients))
    sampled = seconds_per_round(base.replace(clients=args.clients, participation=args.participation))
    full = seconds_per_round(base.replace(clients=m))
    result = {"clients": args.clients, "participation": args.participation, "participants": m,
              "sampled_train_seconds": sampled[0], "full_train_seconds": full[0],
              "ratio_train": sampled[0] / full[0], "sampled_eval_seconds": sampled[1],
              "full_eval_seconds": full[1]}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"training per round: {m} of {args.clients} clients sampled {sampled[0]:.3f} s, "
              f"a federation of {m} clients {full[0]:.3f} s: ratio {result['ratio_train']:.2f}; "
              f"evaluation of every client {sampled[1]:.3f} s vs {full[1]:.3f} s")


if __name__ == "__main__":
    main()
