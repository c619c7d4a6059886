"""Per-client reference loops: the slow paths the vectorised trainer replaces.

Used only by ``tests/test_trainer.py`` (equivalence) and ``bench/round_time.py`` (speed).
Both replay the minibatch order of :func:`cflkit.core.trainer.batch_plan`.
"""
from __future__ import annotations

import numpy as np

from cflkit.core._tf import keras, tf
from cflkit.core.trainer import batch_plan


def _keras_loss(loss: str):
    """Keras's own per-sample loss on logits, not cflkit's: a bug in the library's loss must
    show up as a difference in the equivalence test, not cancel out."""
    k = keras()
    if loss == "classification":
        return lambda y, out: k.losses.sparse_categorical_crossentropy(y, out, from_logits=True)
    if loss == "regression":
        return lambda y, out: k.losses.mean_squared_error(y[..., None], out)
    raise ValueError(f"unknown loss {loss!r}; choose one of: classification, regression")


class CompiledLoop:
    """One client at a time, each through the same compiled single-model SGD function."""

    def __init__(self, model, x, y, loss="classification", learning_rate=0.05):
        tf_ = tf()
        self.model, self.lr = model, learning_rate
        self.x = tf_.constant(x, tf_.float32)
        self.y = tf_.constant(y, tf_.int32 if loss == "classification" else tf_.float32)
        sample_loss = _keras_loss(loss)

        def train(weights, anchor, index, mask, lr, mu):
            weights = list(weights)
            for t in tf_.range(tf_.shape(index)[0]):
                xb = tf_.gather(self.x, index[t])[None]
                yb = tf_.gather(self.y, index[t])[None]
                mb = mask[t][None]
                count = tf_.reduce_sum(mb)
                with tf_.GradientTape() as tape:
                    tape.watch(weights)
                    out = model.stateless_call(weights, [], xb[0], training=True)[0][None]
                    loss_value = tf_.reduce_sum(sample_loss(yb, out) * mb) / tf_.maximum(count, 1.0)
                    prox = tf_.add_n([tf_.reduce_sum(tf_.square(w - a)) for w, a in zip(weights, anchor)])
                    loss_value += 0.5 * mu * prox * tf_.cast(count > 0, tf_.float32)
                grads = tape.gradient(loss_value, weights)
                weights = [w - lr * g for w, g in zip(weights, grads)]
            return weights

        self._train = tf_.function(train, reduce_retracing=True)

    def train(self, weights, index_sets, rng, batch_size, epochs, mu=0.0):
        """Same contract as ``Trainer.train``: stacked weights in, stacked weights out."""
        tf_ = tf()
        local, mask = batch_plan([len(s) for s in index_sets], batch_size, epochs, rng)
        out = []
        for c, rows in enumerate(index_sets):
            rows = np.asarray(rows, dtype=np.int32)
            w = [tf_.constant(a[c], tf_.float32) for a in weights]
            res = self._train(w, w, tf_.constant(rows[local[c]]), tf_.constant(mask[c]),
                              tf_.constant(self.lr, tf_.float32), tf_.constant(mu, tf_.float32))
            out.append([r.numpy() for r in res])
        return [np.stack([o[i] for o in out]) for i in range(len(weights))]


def fit_per_client(model, weights, x, y, index_sets, batch_size, epochs, learning_rate, seed=0):
    """The slowest path: ``model.fit`` once per client (Keras shuffles batches itself)."""

    k = keras()
    model.compile(optimizer=k.optimizers.SGD(learning_rate),
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    out = []
    for c, rows in enumerate(index_sets):
        model.set_weights([w[c] for w in weights])
        model.fit(x[rows], y[rows], batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
        out.append([np.asarray(v) for v in model.trainable_variables])
    return [np.stack([o[i] for o in out]) for i in range(len(weights))]


def keras_optimizer(name: str, learning_rate: float, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-7):
    """Keras's own optimizer for a cflkit optimizer name (the reference the trainer must match)."""
    k = keras()
    if name == "sgd":
        return k.optimizers.SGD(learning_rate)
    if name == "momentum":
        return k.optimizers.SGD(learning_rate, momentum=momentum)
    if name == "adam":
        return k.optimizers.Adam(learning_rate, beta_1=beta1, beta_2=beta2, epsilon=epsilon)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: sgd, momentum, adam")


def train_with_keras_optimizer(model, weights, x, y, index_sets, rng, batch_size, epochs, optimizer, learning_rate,
                               loss="classification", **settings):
    """One client at a time, eagerly, with a fresh Keras optimizer per client (the state is
    reset every round) applied to the client's real minibatches in the order of
    :func:`batch_plan`; idle steps are simply not taken, as a client alone would not."""
    tf_ = tf()
    sample_loss = _keras_loss(loss)
    local, mask = batch_plan([len(s) for s in index_sets], batch_size, epochs, rng)
    out = []
    for c, rows in enumerate(index_sets):
        rows = np.asarray(rows)
        for v, w in zip(model.trainable_variables, weights):
            v.assign(w[c])
        opt = keras_optimizer(optimizer, learning_rate, **settings)
        for t in range(local.shape[1]):
            real = local[c, t][mask[c, t] > 0]
            if not real.size:
                continue
            xb, yb = x[rows[real]], y[rows[real]]
            with tf_.GradientTape() as tape:
                value = tf_.reduce_mean(sample_loss(yb, model(xb, training=True)))
            opt.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
        out.append([np.asarray(v) for v in model.trainable_variables])
    return [np.stack([o[i] for o in out]) for i in range(len(weights))]
