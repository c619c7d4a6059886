"""Per-client convolutions: which way of convolving every client's batch with its own kernel
is fastest for a training step (forward and backward), on the layers of the built-in CNN,
and the trainer's whole CNN round with its two client maps (``Trainer(client_map=...)``).

    python bench/cnn_conv.py --clients 10 50 200          # readable table
    python bench/cnn_conv.py --clients 200 --json          # one JSON object per line

x has shape (clients, batch, 28, 28, C) and the kernels (clients, 3, 3, C, F), SAME padding
(the two Conv2D layers of ``build_model("cnn", ...)``: C→F = 1→16 and 16→32). Timed: one
``tf.function`` computing the outputs and the gradient of their squared sum with respect to
x and the kernels, median of ``--repeats`` calls after a warm-up call. Every variant is
first checked against ``map_fn`` (one ``tf.nn.conv2d`` per client) to 1e-4.

Variants:
- ``vmap``: ``tf.vectorized_map`` of ``tf.nn.conv2d``, the trainer's path before: a kernel
  that differs per client has no vectorised rule, so pfor falls back to a loop in the graph;
- ``map_fn``: ``tf.map_fn``, an explicit loop over clients;
- ``grouped``: the client axis folded into channels, one grouped ``tf.nn.conv2d``
  (one group per client; runs on this CPU with TF 2.21);
- ``depthwise``: the client axis folded into channels, ``tf.nn.depthwise_conv2d`` with F
  multipliers, then a sum over C;
- ``shifts``: nine shifted views of the padded input, each a batched matmul with its
  kernel tap (``einsum``);
- ``*_xla``: the same under ``jit_compile=True``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def variants(tf):
    def vmap(x, k):
        return tf.vectorized_map(lambda a: tf.nn.conv2d(a[0], a[1], 1, "SAME"), (x, k))

    def map_fn(x, k):
        return tf.map_fn(lambda a: tf.nn.conv2d(a[0], a[1], 1, "SAME"), (x, k), fn_output_signature=tf.float32)

    def fold(x):  # (n, b, h, w, c) -> (b, h, w, n * c)
        n, b, h, w, c = x.shape
        return tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [b, h, w, n * c])

    def unfold(y, n):  # (b, h, w, n * f) -> (n, b, h, w, f)
        b, h, w, nf = y.shape
        return tf.transpose(tf.reshape(y, [b, h, w, n, nf // n]), [3, 0, 1, 2, 4])

    def grouped(x, k):
        n, kh, kw, c, f = k.shape
        kernel = tf.reshape(tf.transpose(k, [1, 2, 3, 0, 4]), [kh, kw, c, n * f])
        return unfold(tf.nn.conv2d(fold(x), kernel, 1, "SAME"), n)

    def depthwise(x, k):
        n, kh, kw, c, f = k.shape
        kernel = tf.reshape(tf.transpose(k, [1, 2, 0, 3, 4]), [kh, kw, n * c, f])
        y = tf.nn.depthwise_conv2d(fold(x), kernel, [1, 1, 1, 1], "SAME")  # (b, h, w, n * c * f)
        b, h, w, _ = y.shape
        y = tf.reduce_sum(tf.reshape(y, [b, h, w, n, c, f]), axis=4)
        return tf.transpose(y, [3, 0, 1, 2, 4])

    def shifts(x, k):
        n, kh, kw, c, f = k.shape
        h, w = x.shape[2], x.shape[3]
        padded = tf.pad(x, [[0, 0], [0, 0], [kh // 2, kh // 2], [kw // 2, kw // 2], [0, 0]])
        out = 0.0
        for i in range(kh):
            for j in range(kw):
                out += tf.einsum("nbhwc,ncf->nbhwf", padded[:, :, i:i + h, j:j + w, :], k[:, i, j])
        return out

    return {"vmap": vmap, "map_fn": map_fn, "grouped": grouped, "depthwise": depthwise, "shifts": shifts}


def step_fn(tf, conv, jit: bool):
    def step(x, k):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = conv(x, k)
            loss = tf.reduce_sum(y * y)
        gx, gk = tape.gradient(loss, [x, k])
        return y, gx, gk

    return tf.function(step, jit_compile=jit)


def bench(n_clients: int, c: int, f: int, args, tf) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(args.seed)
    x = tf.constant(rng.normal(size=(n_clients, args.batch_size, 28, 28, c)).astype(np.float32))
    k = tf.constant(rng.normal(scale=0.3, size=(n_clients, 3, 3, c, f)).astype(np.float32))
    convs = variants(tf)
    ref = step_fn(tf, convs["map_fn"], False)(x, k)
    rows = []
    for name, conv in convs.items():
        for jit in (False, True):
            label = name + ("_xla" if jit else "")
            if args.variants and label not in args.variants and label != "vmap":
                continue
            row = {"clients": n_clients, "layer": f"{c}->{f}", "variant": label, "batch": args.batch_size}
            try:
                fn = step_fn(tf, conv, jit)
                out = fn(x, k)  # warm-up: tracing, compiling
                err = max(float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(b)) + 1e-12))
                          for a, b in zip(out, ref))
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    res = fn(x, k)
                    _ = res[0].numpy()
                    times.append(time.perf_counter() - t0)
                row.update(seconds=statistics.median(times), seconds_min=min(times), max_rel_error=err,
                           correct=err < 1e-4)
            except Exception as e:  # a variant TF cannot run here (e.g. grouped conv on CPU without XLA)
                row.update(seconds=None, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}")
            rows.append(row)
    base = next(r["seconds"] for r in rows if r["variant"] == "vmap")
    for r in rows:
        r["speedup_vs_vmap"] = base / r["seconds"] if r.get("seconds") else None
    return rows


def bench_round(n_clients: int, args) -> dict:
    """One local-training call of the built-in CNN (40 random 28x28 images per client, batch
    10, one epoch: 4 steps) with the trainer's two client maps; same weights to 1e-5."""
    import numpy as np

    from cflkit.core.models import build_model
    from cflkit.core.trainer import Trainer, initial_weights, seed_keras, stack

    rng = np.random.default_rng(args.seed)
    x = rng.random((4000, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    seed_keras(args.seed)
    model = build_model("cnn", (28, 28, 1), 10, (64,))
    start = initial_weights(lambda: model)
    index = [rng.choice(len(x), 40, replace=False) for _ in range(n_clients)]
    row, out = {"clients": n_clients, "layer": "cnn round", "batch": args.batch_size}, {}
    for client_map in ("vmap", "map_fn"):
        trainer = Trainer(model, x, y, batch_size=args.batch_size, local_epochs=1, client_map=client_map)
        out[client_map] = trainer.train(stack(start, n_clients), index, np.random.default_rng(1))  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trainer.train(stack(start, n_clients), index, np.random.default_rng(1))
            times.append(time.perf_counter() - t0)
        row[f"{client_map}_seconds"] = statistics.median(times)
    row["speedup_map_fn_vs_vmap"] = row["vmap_seconds"] / row["map_fn_seconds"]
    row["max_abs_diff"] = float(max(np.abs(a - b).max() for a, b in zip(out["vmap"], out["map_fn"])))
    row["correct"] = row["max_abs_diff"] < 1e-5
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, nargs="+", default=[10, 50, 200])
    p.add_argument("--batch-size", type=int, default=10, help="images per client per step (cflkit's B = 10)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=None,
                   help="only these (vmap, the baseline, always runs), e.g. grouped map_fn shifts_xla")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cflkit.core._tf import tf

    tf_ = tf()
    all_rows, rounds = [], []
    for n in args.clients:
        rounds.append(bench_round(n, args))
        if args.json:
            print(json.dumps(rounds[-1]))
        for c, f in ((1, 16), (16, 32)):
            rows = bench(n, c, f, args, tf_)
            all_rows += rows
            if args.json:
                for r in rows:
                    print(json.dumps(r))
    if not args.json:
        print(f"{'clients':>7} {'CNN round, vmap':>16} {'map_fn':>9} {'speedup':>8}  correct")
        for r in rounds:
            print(f"{r['clients']:>7} {r['vmap_seconds']:>15.3f}s {r['map_fn_seconds']:>8.3f}s "
                  f"{r['speedup_map_fn_vs_vmap']:>8.2f}  {r['correct']}")
        print()
        print(f"{'clients':>7} {'layer':>6} {'variant':>14} {'ms/step':>9} {'vs vmap':>8}  correct")
        for r in all_rows:
            ms = f"{1000 * r['seconds']:9.2f}" if r.get("seconds") else "        -"
            sp = f"{r['speedup_vs_vmap']:8.2f}" if r.get("speedup_vs_vmap") else "       -"
            print(f"{r['clients']:>7} {r['layer']:>6} {r['variant']:>14} {ms} {sp}  "
                  f"{r.get('correct', r.get('error', ''))}")


if __name__ == "__main__":
    main()
