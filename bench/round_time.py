"""Seconds per round of FedAvg local training: cflkit's vectorised trainer vs per-client loops.

One *round* is what a FedAvg server does between two global models: broadcast the global
model to every client (``stack``), run local training on every client, and aggregate the
clients' models (``weighted_average``). The three implementations compared in the same
process, on the same data and the same starting weights:

* ``cflkit``         — ``cflkit.core.trainer.Trainer.train``: one compiled TF function trains all
                       clients at once (client weights stacked along a leading axis);
* ``reference_loop`` — ``bench.reference.CompiledLoop``: one client at a time through one
                       compiled single-model SGD function;
* ``model_fit``      — ``bench.reference.fit_per_client``: ``model.fit`` once per client.

Workload: MLP 64-64-10 (``cflkit.core.models.build_model("mlp", (64,), 10)``) on scikit-learn
digits (8x8 images flattened to 64 features, scaled to [0, 1]); each client draws
``--samples`` rows without replacement from the 1797 images (rows are reused across
clients), plain SGD, ``--batch-size`` 32, ``--epochs`` 1.

Timing: the first call of each implementation (tracing / compilation) is a warm-up and is
not timed; then ``--repeats`` rounds are timed with ``time.perf_counter`` and the median is
reported. The slow references can be timed on the first ``--max-loop-clients`` /
``--max-fit-clients`` clients only; their per-client time is then extrapolated linearly to
all clients and the result carries ``extrapolated_from_clients``.

Examples::

    python bench/round_time.py --clients 200 --json
    python bench/round_time.py --clients 10 50 200 1000
    python bench/round_time.py --clients 200 --jit          # also time Trainer(jit_compile=True)
    python bench/round_time.py --clients 200 --optimizers   # momentum and Adam rounds vs the SGD round
    python bench/round_time.py --clients 200 --intra-threads 1 --inter-threads 1
    python bench/round_time.py --clients 10 50 --repeats 5 --ref-repeats 2 --out runs/bench/round_time.csv

Threads: TensorFlow's thread pools can only be sized before TF initialises, so
``--intra-threads`` / ``--inter-threads`` are passed through the ``TF_NUM_INTRAOP_THREADS`` /
``TF_NUM_INTEROP_THREADS`` environment variables, set before TF is imported (0 = TF's
default: one thread per core).
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
if str(ROOT) not in sys.path:  # `python bench/round_time.py` puts bench/ first, not the repo root
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, nargs="+", default=[200],
                   help="number of clients; several values run a sweep (default: 200)")
    p.add_argument("--samples", type=int, default=200, help="training samples per client (default: 200)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1, help="local epochs per round (default: 1)")
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=15,
                   help="timed cflkit rounds; the median is reported (default: 15)")
    p.add_argument("--max-loop-clients", type=int, default=200,
                   help="time the compiled per-client loop on at most this many clients, extrapolate the rest")
    p.add_argument("--max-fit-clients", type=int, default=50,
                   help="time per-client model.fit on at most this many clients, extrapolate the rest")
    p.add_argument("--ref-repeats", type=int, default=5,
                   help="timed rounds for the two references (default: 5)")
    p.add_argument("--skip-loop", action="store_true", help="do not time the compiled per-client loop")
    p.add_argument("--skip-fit", action="store_true", help="do not time per-client model.fit")
    p.add_argument("--jit", action="store_true",
                   help="also time cflkit with XLA (Trainer(jit_compile=True)) and report whether it helps")
    p.add_argument("--optimizers", action="store_true",
                   help="also time cflkit's momentum and Adam client optimizers, as ratios to the SGD round")
    p.add_argument("--shards", type=int, default=1,
                   help="also time Trainer(shards=N): the clients in N groups trained concurrently (default: off)")
    p.add_argument("--intra-threads", type=int, default=0, help="TF intra-op threads (0 = TF default)")
    p.add_argument("--inter-threads", type=int, default=0, help="TF inter-op threads (0 = TF default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true",
                   help="print JSON: one object for one --clients value, one object per line for a sweep")
    p.add_argument("--out", default=None, metavar="FILE.csv",
                   help="also write one row per --clients value (seconds per round, speed-ups) to this CSV, "
                        "atomically (the paper's performance table reads it)")
    args = p.parse_args(argv)
    if min(args.clients) < 1 or args.samples < 1 or args.repeats < 1 or args.ref_repeats < 1:
        p.error("--clients, --samples, --repeats and --ref-repeats must be >= 1")
    if args.max_loop_clients < 1 or args.max_fit_clients < 1:
        p.error("--max-loop-clients and --max-fit-clients must be >= 1")
    return args


def _set_threads(intra: int, inter: int):
    """Size TF's thread pools; only effective before TensorFlow is first imported."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("thread counts must be set before TensorFlow is imported")
    if intra:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(intra)
    if inter:
        os.environ["TF_NUM_INTEROP_THREADS"] = str(inter)


def _interleaved(fns: dict) -> dict:
    """Wall times of ``{name: (fn, repeats)}``, warm-up excluded.

    Each ``fn`` is called once untimed (tracing, compilation, first-call allocations), then
    the timed calls are taken in turns — every turn runs each implementation its share of
    its repeats — so that all implementations see the same background load on a shared
    machine, and their ratio is measured under the same conditions.
    """
    for fn, _ in fns.values():
        fn()
    turns = max(1, min(reps for _, reps in fns.values()))
    times = {name: [] for name in fns}
    for turn in range(turns):
        for name, (fn, reps) in fns.items():
            share = reps // turns + (1 if turn < reps % turns else 0)
            for _ in range(share):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def load_data():
    """scikit-learn digits as 64 float features in [0, 1] and int labels."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def matmul_floor(n_clients: int, steps: int, batch: int):
    """A callable doing only the batched matmuls of a round of the 64-64-10 MLP: per step the
    3 forward products and the 5 backward ones (no input gradient), on random data, in one
    compiled loop: the arithmetic floor that the trainer's round is measured against."""
    import numpy as np

    from cflkit.core._tf import tf

    tf_ = tf()
    rng = np.random.default_rng(0)

    def t(*shape):
        return tf_.constant(rng.normal(size=(n_clients, *shape)).astype(np.float32))

    x, w1, w2, w3 = t(batch, 64), t(64, 64), t(64, 64), t(64, 10)

    @tf_.function
    def run(x, w1, w2, w3):
        acc = tf_.zeros([], tf_.float32)
        for _ in tf_.range(steps):
            h1 = tf_.matmul(x, w1)
            h2 = tf_.matmul(h1, w2)
            z3 = tf_.matmul(h2, w3)
            d2 = tf_.matmul(z3, w3, transpose_b=True)
            g3 = tf_.matmul(h2, z3, transpose_a=True)
            d1 = tf_.matmul(d2, w2, transpose_b=True)
            g2 = tf_.matmul(h1, d2, transpose_a=True)
            g1 = tf_.matmul(x, d1, transpose_a=True)
            acc += g1[0, 0, 0] + g2[0, 0, 0] + g3[0, 0, 0]
        return acc

    # per step and client: 2 B (5 products of 64x64 weights + 3 of 64x10) multiply-adds, as 2 flops each
    flops = 2 * steps * n_clients * batch * (5 * 64 * 64 + 3 * 64 * 10)
    return (lambda: run(x, w1, w2, w3).numpy()), flops


def bench_one(n_clients: int, args, x, y) -> dict:
    import numpy as np

    from bench.reference import CompiledLoop, fit_per_client
    from cflkit.core._tf import keras
    from cflkit.core.aggregate import weighted_average
    from cflkit.core.models import build_model
    from cflkit.core.trainer import Trainer, initial_weights, stack, steps_per_round

    rng = np.random.default_rng(args.seed)
    if args.samples > len(x):
        raise SystemExit(f"--samples {args.samples} exceeds the {len(x)} digits images")
    index_sets = [np.sort(rng.choice(len(x), args.samples, replace=False)) for _ in range(n_clients)]
    sizes = np.array([len(s) for s in index_sets])

    keras().utils.set_random_seed(args.seed)
    model = build_model("mlp", (64,), 10)
    global_weights = initial_weights(lambda: model)

    local_times = {}  # name -> durations of the local-training call alone (warm-up first)

    def fedavg_round(name, local_train, k):
        """broadcast -> local training of the first k clients -> aggregation."""
        stacked = stack(global_weights, k)
        start = time.perf_counter()
        trained = local_train(stacked, index_sets[:k])
        local_times.setdefault(name, []).append(time.perf_counter() - start)
        return weighted_average(trained, sizes[:k])

    result = {
        "clients": n_clients,
        "samples_per_client": args.samples,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "steps_per_round": steps_per_round(sizes, args.batch_size, args.epochs),
        "model": "mlp 64-64-10",
        "repeats": args.repeats,
        "reference_repeats": args.ref_repeats,
        "timed": "stack(global) + local training of every client + weighted_average; median, warm-up excluded",
        "load_average_1min_at_start": os.getloadavg()[0],
    }

    # One callable per implementation: a full round over its first k clients.
    impls = {}  # name -> (round function, k clients timed, repeats)
    floor_fn, floor_flops = matmul_floor(n_clients, result["steps_per_round"], args.batch_size)
    impls["matmul_floor"] = (floor_fn, n_clients, args.repeats)
    for jit in ([False, True] if args.jit else [False]):
        trainer = Trainer(model, x, y, learning_rate=args.learning_rate, batch_size=args.batch_size,
                          local_epochs=args.epochs, jit_compile=jit)
        train_rng = np.random.default_rng(args.seed + 1)
        name = "xla" if jit else "cflkit"
        if not jit:
            trainer_plain = trainer
        impls[name] = (
            lambda t=trainer, r=train_rng, n=name: fedavg_round(n, lambda w, s: t.train(w, s, r), n_clients),
            n_clients, args.repeats)
    if args.shards > 1:  # the same trainer, its clients split into groups trained from as many threads
        t = Trainer(model, x, y, learning_rate=args.learning_rate, batch_size=args.batch_size,
                    local_epochs=args.epochs, shards=args.shards)
        r = np.random.default_rng(args.seed + 1)
        impls["sharded"] = (lambda t=t, r=r: fedavg_round("sharded", lambda w, s: t.train(w, s, r), n_clients),
                            n_clients, args.repeats)
    for optimizer in (("momentum", "adam") if args.optimizers else ()):
        t = Trainer(model, x, y, learning_rate=args.learning_rate, batch_size=args.batch_size,
                    local_epochs=args.epochs, optimizer=optimizer)
        r = np.random.default_rng(args.seed + 1)
        impls[optimizer] = (lambda t=t, r=r, n=optimizer: fedavg_round(n, lambda w, s: t.train(w, s, r), n_clients),
                            n_clients, args.repeats)
    if not args.skip_loop:
        k = min(n_clients, args.max_loop_clients)
        loop = CompiledLoop(model, x, y, learning_rate=args.learning_rate)
        # Same work? Both replay batch_plan, so equal seeds must give the same weights.
        n_check = min(k, 5)
        check_w = stack(global_weights, n_check)
        a = trainer_plain.train(check_w, index_sets[:n_check], np.random.default_rng(123))
        b = loop.train(check_w, index_sets[:n_check], np.random.default_rng(123), args.batch_size, args.epochs)
        result["check_max_abs_diff_vs_reference_loop"] = float(max(np.abs(u - v).max() for u, v in zip(a, b)))
        loop_rng = np.random.default_rng(args.seed + 2)
        impls["reference_loop"] = (
            lambda: fedavg_round("reference_loop",
                                 lambda w, s: loop.train(w, s, loop_rng, args.batch_size, args.epochs), k),
            k, args.ref_repeats)
    if not args.skip_fit:
        k_fit = min(n_clients, args.max_fit_clients)
        fit_model = build_model("mlp", (64,), 10)  # its own model: fit_per_client compiles it
        impls["model_fit"] = (
            lambda: fedavg_round("model_fit", lambda w, s: fit_per_client(
                fit_model, w, x, y, s, args.batch_size, args.epochs, args.learning_rate, seed=args.seed), k_fit),
            k_fit, args.ref_repeats)

    times = _interleaved({name: (fn, reps) for name, (fn, _, reps) in impls.items()})
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    # the process's peak resident memory so far (Linux: kB): run one --clients value per process to read it per size
    import resource

    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    base, base_min = statistics.median(times["cflkit"]), min(times["cflkit"])
    result["seconds_per_round"] = base
    result["seconds_per_round_min"] = base_min
    result["seconds_per_round_all"] = times["cflkit"]
    # Trainer.train alone (batch plan, host<->TF copies and the compiled function), same rounds
    result["trainer_train_seconds"] = statistics.median(local_times["cflkit"][1:])
    if args.jit:
        result["xla_seconds_per_round"] = statistics.median(times["xla"])
        result["xla_seconds_per_round_min"] = min(times["xla"])
        result["xla_seconds_per_round_all"] = times["xla"]
        result["xla_trainer_train_seconds"] = statistics.median(local_times["xla"][1:])
        result["xla_speedup"] = base / result["xla_seconds_per_round"]  # > 1: XLA helps
        result["xla_speedup_min"] = base_min / result["xla_seconds_per_round_min"]
    floor = statistics.median(times["matmul_floor"])
    result["matmul_floor_seconds"] = floor  # the round's batched matmuls alone, full batches, same run
    result["matmul_floor_gflops"] = floor_flops / floor / 1e9
    result["fraction_of_matmul_floor"] = floor / result["trainer_train_seconds"]  # 1: training is only matmuls
    if "sharded" in impls:  # > 1: the sharded round is faster than the plain one, same run
        result["shards"] = args.shards
        result["sharded_seconds_per_round"] = statistics.median(times["sharded"])
        result["sharded_speedup"] = base / result["sharded_seconds_per_round"]
        result["sharded_speedup_min"] = base_min / min(times["sharded"])
    for name in ("momentum", "adam"):
        if name in impls:  # > 1: the optimizer's round is slower than plain SGD's, same run
            result[f"{name}_seconds_per_round"] = statistics.median(times[name])
            result[f"{name}_vs_sgd"] = result[f"{name}_seconds_per_round"] / base
            result[f"{name}_vs_sgd_min"] = min(times[name]) / base_min
    for name in ("reference_loop", "model_fit"):
        if name not in impls:
            continue
        _, k, _ = impls[name]
        scale = n_clients / k  # linear extrapolation per client when only k clients were timed
        result[f"{name}_seconds_per_round"] = statistics.median(times[name]) * scale
        result[f"{name}_seconds_per_round_min"] = min(times[name]) * scale
        if k < n_clients:
            result[f"{name}_extrapolated_from_clients"] = k
            result[f"{name}_measured_seconds_all"] = times[name]
        result[f"speedup_vs_{name}"] = result[f"{name}_seconds_per_round"] / base
        result[f"speedup_vs_{name}_min"] = result[f"{name}_seconds_per_round_min"] / base_min

    result["extrapolated_from_clients"] = {
        name: result[f"{name}_extrapolated_from_clients"]
        for name in ("reference_loop", "model_fit") if f"{name}_extrapolated_from_clients" in result}
    result.update(environment(args))
    return result


def environment(args) -> dict:
    import numpy as np

    from cflkit.core._tf import keras, tf

    tf_ = tf()
    gpus = tf_.config.list_logical_devices("GPU")
    gpu = {}
    if gpus:  # the first GPU's name and its peak memory in this process (TF's allocator)
        gpu = {"gpu_name": tf_.config.experimental.get_device_details(tf_.config.list_physical_devices("GPU")[0])
               .get("device_name", gpus[0].name),
               "gpu_peak_memory_bytes": tf_.config.experimental.get_memory_info("GPU:0")["peak"]}
    return {
        **gpu,
        "tf_version": tf_.__version__,
        "keras_version": keras().__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": "GPU" if tf_.config.list_physical_devices("GPU") else "CPU",
        # as TF saw them at start-up (TF_NUM_*_THREADS); 0 = TF's default (about one per core)
        "intra_op_threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS", 0)),
        "inter_op_threads": int(os.environ.get("TF_NUM_INTEROP_THREADS", 0)),
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (oneDNN on)"),
    }


def _fmt(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def print_table(results: list[dict], args):
    env = results[0]
    print(f"FedAvg round time — MLP 64-64-10, {args.samples} samples/client, batch {args.batch_size}, "
          f"{args.epochs} local epoch(s), plain SGD; median of {args.repeats} (cflkit) / "
          f"{args.ref_repeats} (references) rounds, warm-up excluded")
    print(f"TF {env['tf_version']}, Keras {env['keras_version']}, {env['device']}, {env['cpu_count']} cores, "
          f"intra-op threads {env['intra_op_threads'] or 'default'}, "
          f"inter-op threads {env['inter_op_threads'] or 'default'}")
    cols = ["clients", "cflkit"]
    if args.jit:
        cols += ["cflkit XLA", "XLA speedup"]
    cols += ["compiled loop", "model.fit", "vs loop", "vs fit", "matmul floor", "of floor"]
    if args.shards > 1:
        cols += [f"{args.shards} shards", "shard speedup"]
    rows = []
    for r in results:
        row = [str(r["clients"]), _fmt(r["seconds_per_round"])]
        if args.jit:
            row += [_fmt(r["xla_seconds_per_round"]), f"{r['xla_speedup']:.2f}x"]
        for name in ("reference_loop", "model_fit"):
            value = r.get(f"{name}_seconds_per_round")
            mark = f" *{r[name + '_extrapolated_from_clients']}" if f"{name}_extrapolated_from_clients" in r else ""
            row.append(_fmt(value) + mark)
        for name in ("reference_loop", "model_fit"):
            value = r.get(f"speedup_vs_{name}")
            row.append("-" if value is None else f"{value:.1f}x")
        row += [_fmt(r["matmul_floor_seconds"]), f"{r['fraction_of_matmul_floor']:.0%}"]
        if args.shards > 1:
            row += [_fmt(r["sharded_seconds_per_round"]), f"{r['sharded_speedup']:.2f}x"]
        rows.append(row)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    if any(r["extrapolated_from_clients"] for r in results):
        print("*n: timed on the first n clients and extrapolated linearly per client")
    print("ratios: reference median / cflkit median, measured in this run (interleaved rounds); "
          "best-of-repeats ratios (min / min): " + ", ".join(
              f"{r['clients']}: " + " / ".join(f"{r[k]:.1f}x" for k in ("speedup_vs_reference_loop_min",
                                                                        "speedup_vs_model_fit_min") if k in r)
              for r in results))
    diffs = [r["check_max_abs_diff_vs_reference_loop"] for r in results if "check_max_abs_diff_vs_reference_loop" in r]
    if diffs:
        print(f"same work: cflkit vs compiled loop on up to 5 clients, same batch plan: "
              f"max |weight diff| {max(diffs):.1e}")


CSV_COLUMNS = ("clients", "samples_per_client", "batch_size", "epochs", "model", "seconds_per_round",
               "trainer_train_seconds", "matmul_floor_seconds", "fraction_of_matmul_floor",
               "reference_loop_seconds_per_round", "model_fit_seconds_per_round", "speedup_vs_reference_loop",
               "speedup_vs_model_fit", "reference_loop_extrapolated_from_clients",
               "model_fit_extrapolated_from_clients", "repeats", "reference_repeats", "device", "cpu_count",
               "tf_version", "keras_version")


def write_csv(results: list[dict], path):
    """One row per client count with :data:`CSV_COLUMNS` (empty where not measured), atomically."""
    import csv
    import io

    from cflkit.core.results import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in results:
        writer.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


def main(argv=None):
    args = parse_args(argv)
    _set_threads(args.intra_threads, args.inter_threads)
    x, y = load_data()
    results = []
    for n in args.clients:
        results.append(bench_one(n, args, x, y))
        if sys.stderr.isatty():
            print(f"  done: {n} clients", file=sys.stderr, flush=True)
    if args.json:
        if len(results) == 1:
            print(json.dumps(results[0], indent=2))
        else:
            for r in results:
                print(json.dumps(r))
    else:
        print_table(results, args)
    if args.out:
        write_csv(results, args.out)


if __name__ == "__main__":
    main()
