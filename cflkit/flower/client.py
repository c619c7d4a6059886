"""The node side: a Flower ``ClientApp`` that hands each message to :func:`cflkit.flower.node.answer`
(cflkit's own :class:`~cflkit.core.trainer.Trainer` on one client's rows).

A node is one cflkit client: its node config names it (``partition-id``, as in Flower's own
examples). Every message carries the run's config, so the app needs no set-up: the node
builds the federation the config describes, keeps its client's train and test rows, and
answers the server's trainer calls on them (local training with the minibatch order the
server sends, metrics, gradients, predictions). Built objects are cached per process, so a
long-lived node (the simulation engine's actors) builds them once; on a deployed node,
where Flower starts a process per message, node config ``warm-worker=1`` keeps them in a
helper process (:mod:`cflkit.flower.worker`).
"""
from __future__ import annotations

import logging

import numpy as np

from .node import answer

log = logging.getLogger("cflkit.flower")


def make_client_app():
    """The ``ClientApp``: ``train`` / ``evaluate`` / ``query`` messages → :func:`answer`."""
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def handle(msg, context):
        client = int(context.node_config["partition-id"])
        task = msg.content["task"]
        op = str(task["op"])
        content = {"task": ConfigRecord({"partition": client, "op": op})}
        if op != "partition":
            arrays = {k: msg.content[k].to_numpy_ndarrays() for k in ("weights", "rows", "perms", "anchor")
                      if k in msg.content.array_records}
            args = (op, str(task["config"]), client, arrays, float(task.get("mu", 0.0)))
            if str(context.node_config.get("warm-worker", "0")) in ("1", "true", "True"):
                from .worker import call
                out = call(*args)
            else:
                out = answer(*args)
            content["result"] = ArrayRecord([np.ascontiguousarray(a) for a in out])
        return Message(RecordDict(content), reply_to=msg)

    app.train()(handle)
    app.evaluate()(handle)
    app.query()(handle)
    return app
