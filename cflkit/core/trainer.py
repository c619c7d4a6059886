"""Local training of many clients at once — the hot path of every method.

Client weights are stacked along a leading *client axis*; one compiled TensorFlow
function runs ``local_epochs`` of minibatch SGD for every client of a round. The forward
pass is Keras 3 ``model.stateless_call`` inside ``tf.vectorized_map`` (``tf.map_fn`` for a
model with convolutions, whose per-client kernels vectorised_map can only loop over, more
slowly: ``bench/cnn_conv.py``); because the clients' losses are independent, the gradient
of their *sum* with respect to the stacked weights is every client's own gradient, so one
tape serves all clients.

Clients of unequal size are handled by masking: a client with ``n`` samples takes
``ceil(n / batch_size)`` steps per epoch, exactly as it would alone, and is idle for the
remaining steps of the round: its weights *and* its optimizer state stay untouched (a
masked step changes nothing, whatever the optimizer).

The client optimizer (``optimizer``) is plain SGD, SGD with momentum or Adam, with Keras 3's
update rules (``keras.optimizers.SGD`` / ``Adam``: same formulas, same defaults but the
momentum, 0.9 here as in Sattler et al.'s recipe). Its state (velocities, moments, step
count) is stacked along the client axis like the weights and reset at the start of every
round: the usual convention of FL simulations (FedAvg's clients are stateless; Reddi et
al. 2021, Alg. 2, restart the client optimizer from the received model each round), so a
round depends only on the model a client receives. The order of its
minibatches comes from :func:`batch_plan`, which a per-client reference loop can replay to
check equivalence (see ``bench/reference.py`` and ``tests/test_trainer.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ._tf import keras, tf

Weights = list  # list[np.ndarray], each of shape (n_models, *layer_shape)

LOSSES = ("classification", "regression", "survival")  # survival: the Cox loss (cflkit.core.survival)
OPTIMIZERS = {
    "sgd": "plain minibatch SGD: w -= lr g",
    "momentum": "SGD with momentum (Keras's rule: v = momentum v - lr g; w += v)",
    "adam": "Adam (Kingma & Ba 2015, Keras's rule with bias correction; beta1, beta2, epsilon)",
}


CLIENT_MAPS = {
    "auto": "map_fn for a model with a convolution, vmap otherwise",
    "vmap": "tf.vectorized_map: one batched op per layer (Dense layers become batched matmuls)",
    "map_fn": "tf.map_fn: a loop over clients inside the compiled function (a client's own convolution kernel "
              "has no vectorised rule, and vmap's fallback is slower: bench/cnn_conv.py)",
}


def batch_plan(sizes: Sequence[int], batch_size: int, epochs: int, rng: np.random.Generator,
               local_steps: int = 0):
    """Minibatch order for every client: ``(index, mask)`` of shape (clients, steps, batch).

    ``index[c, t]`` holds positions into client ``c``'s own samples, ``mask`` marks the real
    ones. Client ``c`` is active for its first ``epochs * ceil(n_c / batch_size)`` steps, a
    fresh permutation per epoch, the last batch of an epoch possibly short, as in a
    per-client ``for epoch: for batch in shuffled(data)`` loop.

    ``local_steps`` > 0 replaces the epochs: every client takes exactly that many minibatches,
    epoch after epoch of fresh permutations (a data loader restarted when exhausted, as
    FLamby's local training does), so small and large clients make the same number of steps.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if epochs < 1:
        raise ValueError(f"local_epochs must be >= 1, got {epochs}")
    if local_steps < 0:
        raise ValueError(f"local_steps must be >= 0 (0: use local_epochs), got {local_steps}")
    if sizes.size == 0 or sizes.min() < 1:
        raise ValueError(f"every client needs at least one training sample, got sizes {sizes.tolist()}")
    steps = np.ceil(sizes / batch_size).astype(np.int64)
    total = int(local_steps) if local_steps else int(epochs * steps.max())
    index = np.zeros((len(sizes), total, batch_size), dtype=np.int32)
    mask = np.zeros((len(sizes), total, batch_size), dtype=np.float32)
    for c, n in enumerate(sizes):
        passes = -(-total // int(steps[c])) if local_steps else epochs
        order = np.concatenate([_padded(rng.permutation(n), batch_size) for _ in range(passes)])
        order = order.reshape(-1, batch_size)[:total]
        k = len(order)
        index[c, :k] = np.maximum(order, 0)
        mask[c, :k] = order >= 0
    return index, mask


def _padded(perm: np.ndarray, batch_size: int) -> np.ndarray:
    pad = (-perm.size) % batch_size
    return np.concatenate([perm, -np.ones(pad, dtype=perm.dtype)])


def per_sample_loss(loss: str):
    """Per-sample loss on logits: softmax cross-entropy or squared error. The Cox loss of a
    survival task has none: a row's term depends on its risk set, the other rows of its batch
    (:func:`cflkit.core.survival.cox_batch_loss`, a per-client batch loss)."""
    tf_ = tf()
    if loss == "survival":
        raise ValueError("task 'survival' has no per-sample loss: the Cox loss is a per-client batch loss "
                         "(cflkit.core.survival.cox_batch_loss)")
    if loss == "classification":
        return lambda y, out: tf_.nn.sparse_softmax_cross_entropy_with_logits(tf_.cast(y, tf_.int32), out)
    if loss == "regression":
        def squared_error(y, out):
            y = tf_.cast(y, out.dtype)
            if y.shape.rank == out.shape.rank - 1:
                y = y[..., None]
            return tf_.reduce_mean(tf_.square(out - y), axis=-1)
        return squared_error
    raise ValueError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)}")


@dataclass
class Trainer:
    """Trains and evaluates stacked client models on a federation's pooled arrays.

    ``x`` and ``y`` hold every sample the trainer may see; a client is a set of row
    indices into them (see ``Federation.train_index``), so the pooled data is stored once
    whatever the clients' sizes.
    """

    model: object = field(repr=False)  # a built keras.Model without non-trainable state
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    loss: str = "classification"
    learning_rate: float = 0.05
    batch_size: int = 32
    local_epochs: int = 1
    jit_compile: bool = False
    optimizer: str = "sgd"  # client optimizer: sgd, momentum, adam (state reset every round)
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    local_steps: int = 0  # > 0: this many minibatch steps per client and round instead of local_epochs
    client_map: str = "auto"  # how the clients' forward passes are mapped: vmap, map_fn, auto (see CLIENT_MAPS)
    shards: int = 1  # > 1: the round's clients split into this many groups trained at once from as many threads
    n_classes: int = 0  # classification: 2 adds the binary metrics (BINARY_METRICS); 0: the model's output width

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if int(self.shards) < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")
        if self.client_map not in CLIENT_MAPS:
            raise ValueError(f"unknown client_map {self.client_map!r}; choose one of: {', '.join(CLIENT_MAPS)}")
        if self.loss == "classification" and not self.n_classes:
            self.n_classes = _output_width(self.model)
        if self.model.non_trainable_variables:
            raise ValueError(
                "models with non-trainable state (e.g. BatchNormalization) are not supported: "
                "per-client statistics would have to be stacked too")
        tf_ = self._tf = tf()
        self._map = self.client_map if self.client_map != "auto" else (
            "map_fn" if any("Conv" in type(layer).__name__ for layer in self.model.layers) else "vmap")
        self._x = tf_.constant(self.x, dtype=tf_.float32)
        y_dtype = tf_.int32 if self.loss == "classification" else tf_.float32
        self._y = tf_.constant(self.y, dtype=y_dtype)
        self._compiled = compiled_functions(self)
        self._train_fn = self._compiled.get_or_build("train", self._build_train)
        self._predict_fn = self._compiled.get_or_build("predict", self._build_predict)

    @classmethod
    def for_config(cls, model, federation, config) -> "Trainer":
        """The trainer of a run: ``config``'s local training settings on ``federation``'s rows."""
        return cls(model, federation.x, federation.y, loss=federation.task, learning_rate=config.learning_rate,
                   batch_size=config.batch_size, local_epochs=config.local_epochs, jit_compile=config.jit_compile,
                   optimizer=config.optimizer, momentum=config.momentum, beta1=config.beta1, beta2=config.beta2,
                   epsilon=config.epsilon, local_steps=config.local_steps, n_classes=federation.n_classes,
                   shards=config.shards)

    # -- compiled functions -------------------------------------------------------------
    def _batch_loss(self):
        """``f(y, out, mask) -> (clients,)``: each client's loss on its batch, masked rows out:
        the masked mean of the per-sample loss, or the Cox loss of the batch (survival)."""
        tf_ = tf()
        if self.loss == "survival":
            from .survival import cox_batch_loss

            return cox_batch_loss
        sample_loss = per_sample_loss(self.loss)
        return lambda y, out, mask: (tf_.reduce_sum(sample_loss(y, out) * mask, axis=1)
                                     / tf_.maximum(tf_.reduce_sum(mask, axis=1), 1.0))

    def _build_train(self):
        tf_ = tf()
        batch_loss = self._batch_loss()
        optimizer = self.optimizer
        momentum, beta1, beta2 = float(self.momentum), float(self.beta1), float(self.beta2)
        epsilon = float(self.epsilon)

        forward = client_forward(self.model, self._map)  # not self: a shared trace keeps no trainer alive

        def train(x, y, weights, anchor, index, mask, lr, mu, prox):
            weights = list(weights)
            steps = tf_.shape(index)[1]
            # the optimizer state, zero at the start of every round (unused by plain SGD)
            slow = [tf_.zeros_like(w) for w in weights] if optimizer != "sgd" else []
            fast = [tf_.zeros_like(w) for w in weights] if optimizer == "adam" else []
            taken = tf_.zeros(tf_.shape(index)[:1], tf_.float32)  # Adam: active steps per client
            for t in tf_.range(steps):
                xb = tf_.gather(x, index[:, t])
                yb = tf_.gather(y, index[:, t])
                mb = mask[:, t]
                count = tf_.reduce_sum(mb, axis=1)
                active = count > 0  # the clients that take this step
                with tf_.GradientTape() as tape:
                    tape.watch(weights)
                    total = tf_.reduce_sum(batch_loss(yb, forward(weights, xb), mb))
                grads = tape.gradient(total, weights)
                if prox:  # FedProx: the gradient of mu/2 ||w - anchor||^2, for active clients only
                    grads = [g + mu * _per_client(tf_.cast(active, tf_.float32), w) * (w - a)
                             for g, w, a in zip(grads, weights, anchor)]
                if optimizer == "sgd":  # an idle client's gradient is zero: no update
                    weights = [w - lr * g for w, g in zip(weights, grads)]
                else:  # the moments need dense gradients (one client alone may get IndexedSlices)
                    grads = [tf_.convert_to_tensor(g) for g in grads]
                if optimizer == "momentum":  # keras.optimizers.SGD(momentum=...)
                    slow = [_where(active, momentum * v - lr * g, v) for v, g in zip(slow, grads)]
                    weights = [_where(active, w + v, w) for w, v in zip(weights, slow)]
                elif optimizer == "adam":  # keras.optimizers.Adam
                    taken = taken + tf_.cast(active, tf_.float32)
                    k = tf_.maximum(taken, 1.0)
                    alpha = lr * tf_.sqrt(1.0 - tf_.pow(beta2, k)) / (1.0 - tf_.pow(beta1, k))  # per client
                    slow = [_where(active, m + (g - m) * (1.0 - beta1), m) for m, g in zip(slow, grads)]
                    fast = [_where(active, v + (g * g - v) * (1.0 - beta2), v) for v, g in zip(fast, grads)]
                    weights = [_where(active, w - _per_client(alpha, w) * m / (tf_.sqrt(v) + epsilon), w)
                               for w, m, v in zip(weights, slow, fast)]
            return weights

        return tf_.function(train, jit_compile=self.jit_compile, reduce_retracing=True)

    def _build_gradients(self):
        tf_ = tf()
        batch_loss = self._batch_loss()

        forward = client_forward(self.model, self._map)

        def gradients(x, y, weights, index, mask):
            weights = list(weights)
            with tf_.GradientTape() as tape:
                tape.watch(weights)
                out = forward(weights, tf_.gather(x, index))
                total = tf_.reduce_sum(batch_loss(tf_.gather(y, index), out, mask))  # each client's whole set
            return tape.gradient(total, weights)

        return tf_.function(gradients, reduce_retracing=True)

    def _build_predict(self):
        tf_ = tf()
        return tf_.function(client_forward(self.model, self._map), reduce_retracing=True)

    # -- public API -----------------------------------------------------------------------
    def train(self, weights: Weights, index_sets: Sequence[np.ndarray], rng: np.random.Generator,
              mu: float = 0.0, anchor: Weights | None = None) -> Weights:
        """Run local SGD for clients whose starting weights are stacked in ``weights``.

        ``index_sets[c]`` are client ``c``'s rows of ``x``/``y``; ``mu > 0`` adds FedProx's
        proximal term ``mu/2 ||w - anchor||^2`` (anchor defaults to the starting weights).
        Returns the trained weights, stacked in the same order.
        """
        tf_ = tf()
        n = len(index_sets)
        _check_stacked(weights, n)
        sizes = [len(s) for s in index_sets]
        local, mask = batch_plan(sizes, self.batch_size, self.local_epochs, rng, self.local_steps)
        index = _to_global(local, index_sets)
        lr, mu_ = tf_.constant(self.learning_rate, tf_.float32), tf_.constant(mu, tf_.float32)

        def part(lo: int, hi: int) -> list:
            w = [tf_.constant(a[lo:hi], dtype=tf_.float32) for a in weights]
            a = w if anchor is None else [tf_.constant(v[lo:hi], dtype=tf_.float32) for v in anchor]
            # `prox` is a Python flag: without FedProx the proximal term is not even traced.
            return [o.numpy() for o in self._train_fn(self._x, self._y, w, a, tf_.constant(index[lo:hi]),
                                                      tf_.constant(mask[lo:hi]), lr, mu_, mu > 0)]

        shards = min(int(self.shards), n)
        if shards <= 1:
            return part(0, n)
        # independent groups of clients, trained concurrently (TF releases the GIL while it runs);
        # the batch plan was drawn for all clients at once, so the result is the unsharded one
        from concurrent.futures import ThreadPoolExecutor

        bounds = np.linspace(0, n, shards + 1).astype(int)
        with ThreadPoolExecutor(shards) as pool:
            parts = list(pool.map(lambda i: part(bounds[i], bounds[i + 1]), range(shards)))
        return [np.concatenate([p[j] for p in parts]) for j in range(len(weights))]

    def gradients(self, weights: Weights, index_sets: Sequence[np.ndarray]) -> Weights:
        """Full-batch gradient of each client's mean loss at its weights, stacked."""
        tf_ = tf()
        _check_stacked(weights, len(index_sets))
        gradients_fn = self._compiled.get_or_build("gradients", self._build_gradients)
        longest = max(len(s) for s in index_sets)
        index = np.zeros((len(index_sets), longest), dtype=np.int32)
        mask = np.zeros((len(index_sets), longest), dtype=np.float32)
        for i, s in enumerate(index_sets):
            index[i, :len(s)] = s
            mask[i, :len(s)] = 1.0
        out = gradients_fn(self._x, self._y, [tf_.constant(a, tf_.float32) for a in weights], tf_.constant(index),
                           tf_.constant(mask))
        # for one client TensorFlow may hand back a sparse IndexedSlices (the gather): make it dense
        return [tf_.convert_to_tensor(g).numpy() for g in out]

    def predict(self, weights: Weights, index_sets: Sequence[np.ndarray], chunk: int = 2_000_000):
        """Outputs of model ``c`` on the rows ``index_sets[c]``: a list of arrays."""
        tf_ = tf()
        n = len(index_sets)
        _check_stacked(weights, n)
        longest = max(max((len(s) for s in index_sets), default=1), 1)
        per_row = int(np.prod(self.x.shape[1:])) or 1
        block = max(1, chunk // (longest * per_row))
        results = []
        for start in range(0, n, block):
            sets = index_sets[start:start + block]
            index = np.zeros((len(sets), longest), dtype=np.int32)
            for i, s in enumerate(sets):
                index[i, :len(s)] = s
            w = [tf_.constant(a[start:start + block], dtype=tf_.float32) for a in weights]
            out = self._predict_fn(w, tf_.gather(self._x, index)).numpy()
            results.extend(out[i, :len(s)] for i, s in enumerate(sets))
        return results

    def evaluate(self, weights: Weights, index_sets: Sequence[np.ndarray]):
        """Mean loss and score of model ``c`` on rows ``index_sets[c]``.

        The score is accuracy for classification, R² for regression and the C-index for
        survival (the loss: the Cox loss, :mod:`cflkit.core.survival`). Returns two arrays of
        shape (clients,); a client with no rows gets NaN.
        """
        m = self.metrics(weights, index_sets)
        return m["loss"], m[SCORES[self.loss]]

    @property
    def metric_names(self) -> tuple:
        """The names :meth:`metrics` returns (:func:`metric_names` of this trainer's task)."""
        return metric_names(self.loss, self.n_classes)

    def metrics(self, weights: Weights, index_sets: Sequence[np.ndarray]) -> dict:
        """Every per-client metric of the task, as arrays of shape (clients,):
        ``loss`` and ``accuracy`` (classification; two classes add ``auroc``, ``auprc`` and
        ``balanced_accuracy``, :func:`binary_metrics`) or ``loss`` (MSE), ``rmse``, ``mae``
        and ``r2`` (regression), or ``loss`` (Cox) and ``c_index`` (survival,
        :func:`cflkit.core.survival.survival_metrics`). A client with no rows gets NaN."""
        names = self.metric_names
        binary = len(names) > len(METRICS[self.loss])
        out = {k: np.full(len(index_sets), np.nan) for k in names}
        for c, (pred, rows) in enumerate(zip(self.predict(weights, index_sets), index_sets)):
            if len(rows):
                for k, v in _metrics(self.loss, pred, self.y[rows]).items():
                    out[k][c] = v
                if binary:
                    for k, v in binary_metrics(pred, self.y[rows]).items():
                        out[k][c] = v
        return out


def client_forward(model, client_map: str):
    """``f(weights, xb)``: every client's outputs on its own batch, (clients, batch, outputs),
    ``model`` run with each client's stacked weights (``client_map``: map_fn or vmap)."""
    tf_ = tf()

    def one(args):
        w, xc = args
        return model.stateless_call(list(w), [], xc, training=True)[0]

    def forward(weights, xb):
        if client_map == "map_fn":
            return tf_.map_fn(one, (tuple(weights), xb), fn_output_signature=tf_.float32)
        return tf_.vectorized_map(one, (tuple(weights), xb))

    return forward


class _Compiled(dict):
    """A trainer's compiled functions by name, each built on first use (:meth:`get_or_build`)."""

    def get_or_build(self, name: str, build):
        if name not in self:
            self[name] = build()
        return self[name]


_COMPILED: dict = {}  # compiled functions shared by trainers with the same architecture and settings
COMPILED_MAX = 32  # architectures x settings kept per process (oldest dropped first)


def compiled_functions(trainer: "Trainer") -> _Compiled:
    """The compiled functions of ``trainer``, shared with every earlier trainer of this process
    with the same model architecture (layers, their settings and wiring; not their names or
    weights), loss, client optimizer, XLA setting and client map. A function takes the weights
    and the data as arguments, so a trace made for one run serves the next run of a grid with
    the same shapes (TensorFlow traces again only for new shapes): a worker of ``compare``
    traces once per architecture, not once per cell."""
    key = _architecture(trainer.model)
    if key is None:  # a model whose config cannot be read: its own functions
        return _Compiled()
    key = (key, trainer.loss, trainer.optimizer, float(trainer.momentum), float(trainer.beta1),
           float(trainer.beta2), float(trainer.epsilon), bool(trainer.jit_compile), trainer._map)
    if key not in _COMPILED:
        while len(_COMPILED) >= COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = _Compiled()
    return _COMPILED[key]


def _architecture(model) -> str | None:
    """The model's config as text with its layer and model names replaced by their order of
    appearance (Keras numbers names per session: ``dense_7``), or None if it cannot be read."""
    import json
    import re

    try:
        text = json.dumps({"class": f"{type(model).__module__}.{type(model).__qualname__}",
                           "config": model.get_config(),
                           "layers": [f"{type(layer).__module__}.{type(layer).__qualname__}" for layer in model.layers],
                           "weights": [list(w.shape) for w in model.trainable_variables]},
                          sort_keys=True, default=repr)
    except Exception:  # noqa: BLE001 - a custom model without a config: no sharing
        return None
    if " at 0x" in text:  # an object's repr: not a stable description
        return None
    names = dict.fromkeys(re.findall(r'"name": "([^"]*)"', text))
    for i, name in enumerate(names):
        text = text.replace(f'"{name}"', f'"#{i}"')
    return text


METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "rmse", "mae", "r2"),
           "survival": ("loss", "c_index")}
SCORES = {"classification": "accuracy", "regression": "r2", "survival": "c_index"}  # evaluate()'s score
BINARY_METRICS = ("auroc", "auprc", "balanced_accuracy")  # two-class classification only, after the task's own


def metric_names(task: str, n_classes: int = 0) -> tuple:
    """The per-client metrics of a task: :data:`METRICS`, plus :data:`BINARY_METRICS` for a
    classification task with two classes."""
    return METRICS[task] + (BINARY_METRICS if task == "classification" and n_classes == 2 else ())


def binary_metrics(out: np.ndarray, y: np.ndarray) -> dict:
    """AUROC, AUPRC (average precision) and balanced accuracy of two-class logits ``out``
    (rows, 2) against labels ``y``: scikit-learn's definitions (``roc_auc_score``,
    ``average_precision_score``, ``balanced_accuracy_score``; ``tests/test_metrics_binary.py``
    checks them against it, ties included), in numpy, because every client is scored after
    every round and scikit-learn's per-call overhead (~3 ms a client) would dominate a round.

    The score of a row is its logit difference ``out[:, 1] - out[:, 0]``, the log-odds of
    class 1 (the same ranking as its softmax probability); the balanced accuracy uses the
    argmax prediction, as ``accuracy`` does. A test set with one class only has no AUROC
    nor AUPRC: both are NaN (summaries leave them out); its balanced accuracy is the recall
    of that one class (scikit-learn's value).
    """
    y = np.asarray(y).astype(np.int64).reshape(-1)
    out = np.asarray(out, dtype=np.float64)
    score = out[:, 1] - out[:, 0]
    pred = out.argmax(axis=1)
    recalls = [float(np.mean(pred[y == k] == k)) for k in (0, 1) if np.any(y == k)]
    result = {"auroc": float("nan"), "auprc": float("nan"), "balanced_accuracy": float(np.mean(recalls))}
    positives = int(y.sum())
    if 0 < positives < len(y):
        from scipy.stats import rankdata

        ranks = rankdata(score)  # ties share their mean rank: the Mann-Whitney form of the AUROC
        negatives = len(y) - positives
        result["auroc"] = float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))
        order = np.argsort(-score, kind="mergesort")
        s, hit = score[order], y[order]
        last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the end of each group of tied scores
        tp = np.cumsum(hit)[last]
        precision, recall = tp / (last + 1), tp / positives
        result["auprc"] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))  # sum_n (R_n - R_n-1) P_n
    return result


def _output_width(model) -> int:
    """Outputs per sample of a Keras model (0 when it cannot say)."""
    try:
        return int(model.output_shape[-1])
    except (AttributeError, TypeError, ValueError, IndexError):
        return 0


def _metrics(loss: str, out: np.ndarray, y: np.ndarray) -> dict:
    if loss == "survival":
        from .survival import survival_metrics

        return survival_metrics(out, y)
    if loss == "classification":
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        ce = -logp[np.arange(len(y)), y.astype(int)].mean()
        return {"loss": float(ce), "accuracy": float((out.argmax(axis=1) == y).mean())}
    err = out.reshape(y.shape) - y
    mse = float(np.mean(err ** 2))
    var = float(np.var(y))
    y64 = np.asarray(y, dtype=np.float64)  # a constant target (to float32 rounding) has no R²: NaN, not 1 - mse/1e-15
    constant = float(np.var(y64)) <= 1e-10 * max(float(np.mean(y64 ** 2)), 1e-30)
    return {"loss": mse, "rmse": float(np.sqrt(mse)), "mae": float(np.mean(np.abs(err))),
            "r2": float("nan") if constant else 1.0 - mse / var}


def _per_client(values, like):
    """A per-client vector shaped to broadcast against stacked weights ``like``."""
    return tf().reshape(values, [-1] + [1] * (len(like.shape) - 1))


def _where(active, new, old):
    """``new`` for the clients of the step (``active``, one flag per client), ``old`` for idle ones."""
    return tf().where(_per_client(active, new), new, old)


def _to_global(local: np.ndarray, index_sets: Sequence[np.ndarray]) -> np.ndarray:
    glob = np.empty_like(local)
    for c, rows in enumerate(index_sets):
        glob[c] = np.asarray(rows, dtype=np.int32)[local[c]]
    return glob


def _check_stacked(weights: Weights, n: int):
    for w in weights:
        if w.shape[0] != n:
            raise ValueError(f"weights are stacked for {w.shape[0]} clients but {n} index sets were given")


def stack(weights: Sequence[np.ndarray], n: int) -> Weights:
    """Repeat one model's weights ``n`` times along a new leading axis."""
    return [np.repeat(np.asarray(w)[None], n, axis=0) for w in weights]


def take(weights: Weights, rows) -> Weights:
    """Select models ``rows`` (e.g. each client's cluster) from stacked weights."""
    rows = np.asarray(rows, dtype=np.int64)
    return [w[rows] for w in weights]


def n_params(weights: Weights) -> int:
    """Parameters of one model in stacked weights."""
    return int(sum(np.prod(w.shape[1:]) for w in weights))


def initial_weights(build: Callable[[], object]) -> list[np.ndarray]:
    """Weights of a freshly built model (seed Keras first for reproducibility)."""
    return [np.asarray(v) for v in build().trainable_variables]


def steps_per_round(sizes: Sequence[int], batch_size: int, epochs: int) -> int:
    """Compiled-loop length of one round: the largest client's step count."""
    return epochs * max(math.ceil(s / batch_size) for s in sizes)


def seed_keras(seed: int):
    """Seed Python, NumPy and TensorFlow through Keras."""
    keras().utils.set_random_seed(int(seed))
