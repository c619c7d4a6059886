"""What a node computes: cflkit's own :class:`~cflkit.core.trainer.Trainer` on one client's rows.

Every message carries the run's config, so a node needs no set-up: it builds the federation
the config describes, keeps its client's train and test rows, and answers the server's
trainer calls on them (local training with the minibatch order the server sends, metrics,
gradients, predictions). Built objects are cached per process. Both the ``ClientApp``
(:mod:`cflkit.flower.client`) and the warm worker (:mod:`cflkit.flower.worker`) call
:func:`answer`; neither imports the other.
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from .protocol import Replay, pack, unpack


@lru_cache(maxsize=4)
def _trainer(config_json: str):
    """The federation and trainer of a config (one per process and config)."""
    from ..core.config import Config
    from ..core.experiment import federation_from
    from ..core.models import build_model
    from ..core.trainer import Trainer, seed_keras

    config = Config.from_dict(json.loads(config_json))
    fed = federation_from(config)
    seed_keras(config.seed)
    model = build_model(config.model, fed.input_shape, fed.n_outputs, config.hidden)
    trainer = Trainer.for_config(model, fed, config)
    return fed, trainer


def own_rows(fed, client: int) -> np.ndarray:
    """A client's rows in the pooled arrays, train then test: the positions a message uses."""
    return np.concatenate([fed.train_index[client], fed.test_index[client]]).astype(np.int64)


def answer(op: str, config_json: str, client: int, arrays: dict, mu: float = 0.0) -> list[np.ndarray]:
    """Carry out one trainer call for ``client``: the flat arrays of the reply.

    ``arrays`` holds ``weights`` (stacked per entry), ``rows`` (packed positions into the
    client's own rows), and for ``train`` ``perms`` (packed permutations, epochs per entry)
    and optionally ``anchor``.
    """
    fed, trainer = _trainer(config_json)
    if not 0 <= client < fed.n_clients:
        raise ValueError(f"partition-id {client} is not a client of this federation; choose 0..{fed.n_clients - 1}")
    own = own_rows(fed, client)
    positions = unpack(*arrays["rows"])
    if any(p.size and (p.min() < 0 or p.max() >= own.size) for p in positions):
        raise ValueError(f"the server asked for rows outside client {client}'s {own.size} rows")
    sets = [own[p] for p in positions]
    weights = arrays["weights"]
    if op == "train":
        replay = Replay(unpack(*arrays["perms"]))
        return trainer.train(weights, sets, replay, mu=mu, anchor=arrays.get("anchor"))
    if op == "metrics":
        m = trainer.metrics(weights, sets)
        return [np.asarray(m[k], dtype=np.float64) for k in sorted(m)]
    if op == "gradients":
        return trainer.gradients(weights, sets)
    if op == "predict":
        out = trainer.predict(weights, sets)
        return [np.concatenate(out).astype(np.float32), pack([np.arange(len(o)) for o in out])[1]]
    raise ValueError(f"unknown operation {op!r}; choose one of: train, metrics, gradients, predict")
