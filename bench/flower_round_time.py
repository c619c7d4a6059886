"""Seconds per round: cflkit's in-process vectorised trainer vs the same method through
Flower's simulation engine (Ray), in one run.

Both sides run the *same* method code (``cflkit.methods``) on the same federation with the
same seed; only the trainer differs:

* ``in_process`` — ``cflkit.run``: all clients trained at once by ``cflkit.core.trainer.Trainer``
                   (one compiled function, client weights stacked);
* ``flower_sim`` — ``cflkit.flower.simulate``: ``flwr.simulation.run_simulation`` with one
                   virtual SuperNode per client; every trainer call of the method becomes
                   one Flower message per client, answered by a ClientApp (cflkit's
                   ``Trainer`` on that client alone) in a Ray actor (``--cpus-per-client``
                   CPUs each, so ``cores / cpus_per_client`` actors run at once).

A round is the method's ``round`` (FedAvg: broadcast, local training, aggregation), timed
by the run loop (``seconds`` in the history); test metrics are taken only after the last
round on both sides and are not part of the round time. Round 1 of the simulation
includes each actor's start-up (TensorFlow import, tracing) and is reported separately;
``s_per_round`` is the median of rounds 2..R. The two runs' final accuracies are compared
(they must agree: same seed, same minibatches).

Workload: FedAvg, scikit-learn digits (64 features, 10 classes), IID clients of
``--samples`` rows each (drawn with replacement across clients), MLP 64-64, ``--epochs``
local epoch(s), batch 10.

Examples::

    python bench/flower_round_time.py                       # 50 and 200 clients, 3 rounds
    python bench/flower_round_time.py --clients 50 --rounds 4 --json
    python bench/flower_round_time.py --out runs/bench/flower_round_time.csv
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[50, 200], help="client counts (default: 50 200)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per run, >= 2 (default: 3)")
    p.add_argument("--samples", type=int, default=40, help="samples per client (default: 40)")
    p.add_argument("--epochs", type=int, default=1, help="local epochs (default: 1)")
    p.add_argument("--cpus-per-client", type=float, default=1.0, help="Ray CPUs per virtual client (default: 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object per client count")
    p.add_argument("--out", default=None, help="also write the rows to this CSV")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error(f"--rounds must be >= 2 (round 1 of the simulation is warm-up), got {args.rounds}")
    return args


def measure(n_clients: int, args) -> dict:
    import numpy as np

    from cflkit import Config, run
    from cflkit.flower import simulate

    config = Config(dataset="digits", scenario="iid", clients=n_clients, groups=1, samples_per_client=args.samples,
                    rounds=args.rounds, local_epochs=args.epochs, method="fedavg", seed=0)

    def per_round(history):
        s = history.groupby("round")["seconds"].first()
        return [float(s[r]) for r in range(1, args.rounds + 1)]

    t = time.perf_counter()
    local = run(config)
    local_total = time.perf_counter() - t
    t = time.perf_counter()
    flower = simulate(config, evaluate_every=args.rounds, cpus_per_client=args.cpus_per_client)
    flower_total = time.perf_counter() - t
    lr, fr = per_round(local.history), per_round(flower.history)
    local_s, flower_s = statistics.median(lr[1:]), statistics.median(fr[1:])
    last = lambda h: h[h["round"] == args.rounds]["accuracy"].to_numpy()  # noqa: E731
    return {"clients": n_clients, "rounds": args.rounds, "samples": args.samples, "epochs": args.epochs,
            "in_process_s_per_round": round(local_s, 4), "flower_sim_s_per_round": round(flower_s, 4),
            "ratio": round(flower_s / local_s, 1), "flower_sim_round1_s": round(fr[0], 2),
            "in_process_total_s": round(local_total, 1), "flower_sim_total_s": round(flower_total, 1),
            "max_accuracy_gap": float(np.max(np.abs(last(local.history) - last(flower.history)))),
            "cpus_per_client": args.cpus_per_client, "cores": os.cpu_count(), "python": platform.python_version()}


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for n in args.clients:
        row = measure(n, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{n:>5} clients: in-process {row['in_process_s_per_round']:.3f} s/round, Flower simulation "
                  f"{row['flower_sim_s_per_round']:.2f} s/round ({row['ratio']}x; its round 1: "
                  f"{row['flower_sim_round1_s']:.1f} s), accuracy gap {row['max_accuracy_gap']:.1e}", flush=True)
    if args.out:
        import pandas as pd

        from cflkit.core.results import atomic_file

        with atomic_file(args.out) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    return rows


if __name__ == "__main__":
    main()
