"""Is an unrolled step loop faster than the trainer's ``tf.range`` loop? (bench/README.md)

    python bench/unroll_steps.py 50 200 1000      # clients; MLP 64-64-10, 200 digits each, batch 32

The unrolled variant is the trainer's own ``_build_train`` with its ``for t in
tf_.range(steps)`` replaced by a Python loop over the static step count (so the function is
traced per plan shape, ``reduce_retracing=False``): the same ops, one copy per step. Both
are timed interleaved, median of 9 calls; they must give the same weights.
"""
from __future__ import annotations

import inspect
import statistics
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def unrolled_trainer_class():
    import cflkit.core.trainer as trainer

    src = textwrap.dedent(inspect.getsource(trainer.Trainer._build_train))
    for old, new in (("for t in tf_.range(steps):", "for t in range(index.shape[1]):"),
                     ("reduce_retracing=True", "reduce_retracing=False")):
        if old not in src:
            raise SystemExit(f"the trainer's step loop changed: {old!r} not found in _build_train")
        src = src.replace(old, new)
    namespace = dict(vars(trainer))
    exec(src, namespace)  # noqa: S102 (the trainer's own source, one loop changed)
    return type("Unrolled", (trainer.Trainer,), {"_build_train": namespace["_build_train"]})


def main(argv=None):
    import numpy as np
    from sklearn.datasets import load_digits

    from cflkit.core.models import build_model
    from cflkit.core.trainer import Trainer, initial_weights, seed_keras, stack

    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    seed_keras(0)
    model = build_model("mlp", (64,), 10)
    start = initial_weights(lambda: model)
    unrolled = unrolled_trainer_class()
    for n in [int(a) for a in (argv or sys.argv[1:] or ["200"])]:
        rng = np.random.default_rng(0)
        index = [np.sort(rng.choice(len(x), 200, replace=False)) for _ in range(n)]
        trainers = {"loop": Trainer(model, x, y, batch_size=32), "unrolled": unrolled(model, x, y, batch_size=32)}
        out = {k: t.train(stack(start, n), index, np.random.default_rng(1)) for k, t in trainers.items()}  # warm-up
        times = {k: [] for k in trainers}
        for _ in range(9):
            for k, t in trainers.items():
                t0 = time.perf_counter()
                t.train(stack(start, n), index, np.random.default_rng(1))
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        diff = max(float(np.abs(a - b).max()) for a, b in zip(out["loop"], out["unrolled"]))
        print(f"{n} clients: loop {1000 * med['loop']:.1f} ms, unrolled {1000 * med['unrolled']:.1f} ms, "
              f"speed-up {med['loop'] / med['unrolled']:.2f}x, max |weight diff| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
