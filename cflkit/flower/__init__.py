"""cflkit on Flower (``flwr``): every cflkit method as a Flower app, simulated or deployed.

A cflkit method does all client work through ``ctx.trainer`` (train, evaluate, gradients,
predict). On Flower the method runs *unchanged* inside a ``ServerApp``; its trainer is a
:class:`~cflkit.flower.server.FlowerTrainer` whose calls become Flower messages to the
client nodes, one node per cflkit client (node config ``partition-id``). Each node's
``ClientApp`` runs the same :class:`cflkit.core.trainer.Trainer` on its own client's rows, with
the minibatch order the server drew from the run's seeded stream — so a Flower run
reproduces ``cflkit.run`` with the same config (up to float rounding).

- :func:`simulate` — Flower's simulation engine (Ray), many virtual nodes in one machine;
- :class:`~cflkit.flower.deploy.LocalFederation` — a real deployment on localhost: one
  SuperLink, one SuperNode process per client, the run submitted with ``flwr run``;
  ``cflkit flower demo`` runs it on the four Heart Disease hospitals.

Flower is an optional dependency: ``pip install cflkit[flower]`` (or
``pip install -r requirements-flower.txt``). Nothing here imports ``flwr`` at module level.
"""
from __future__ import annotations

INSTALL_HINT = "pip install 'cflkit[flower]'  (or: pip install -r requirements-flower.txt)"


def require_flwr():
    """Import and return ``flwr``, or fail with a message that says how to install it."""
    try:
        import flwr
    except ImportError as e:
        raise ImportError(f"cflkit.flower needs Flower (flwr), which is not installed: {INSTALL_HINT}") from e
    return flwr


def __getattr__(name):  # lazy public API: importing cflkit.flower stays cheap
    if name in ("simulate", "run_on_grid", "FlowerTrainer", "make_server_app"):
        from . import server
        return getattr(server, name)
    if name in ("LocalFederation", "write_app"):
        from . import deploy
        return getattr(deploy, name)
    raise AttributeError(f"module 'cflkit.flower' has no attribute {name!r}")


__all__ = ["INSTALL_HINT", "FlowerTrainer", "LocalFederation", "make_server_app", "require_flwr", "run_on_grid",
           "simulate", "write_app"]
