"""The server side: a cflkit method, unchanged, driving Flower client nodes.

:func:`run_on_grid` is :func:`cflkit.core.experiment.run` with one difference: the method's
``ctx.trainer`` is a :class:`FlowerTrainer`, whose calls go out as Flower messages (through
a ``Grid``) to the node holding each client and come back as the same arrays the
in-process trainer returns. The method cannot tell the difference, so FedAvg and every CFL
method (IFCA's K models and client-side choice included) run on Flower as they are.

Dropouts. A client whose node has gone, or does not answer a call within ``timeout``
seconds, is *dropped* for the rest of that round; the round completes with the others
(Flower's semantics: replies that arrive in time are used). What the method sees for a
dropped client, so that it needs no special case:

- local training: the size-weighted mean of the trained models of the responding clients
  that started from the same model (its cluster), or its starting model if none did — every
  size-weighted cluster average then equals the average over the responders alone, i.e.
  the client is **excluded from aggregation** that round (:func:`~cflkit.flower.protocol.imputed_update`);
- loss evaluation (IFCA-style cluster choice): loss 0 for the model the client holds
  (its current cluster model) and +inf for the others, so it **keeps its cluster**;
- gradients: the mean of the responders' gradients at the same model (as for training);
- test metrics (the history): NaN — not measured, never made up.

The history gets a ``dropped`` column, and ``flower_events.csv`` in the run directory lists
every dropout and every (re)joined node. A node that comes back — a restarted SuperNode,
with a new node id, the same ``partition-id`` — is found at the next call and takes part again.
A dropout while a method initialises (round 0) is an error: there is no model to keep yet.

Client sampling, simulated dropouts and late clients (``participation``, ``dropout``,
``arrival_round``) are drawn by the round loop from the run's own stream, exactly as in
process: the method sends messages to the sampled clients' nodes only, and ignores the
updates the draw loses. So a grid run gives the in-process history for the same seed; a
real dropout (a node that does not answer) comes on top and is recorded in ``dropped``.

What the server holds. The ServerApp builds the federation from the config, as the nodes do:
it needs the clients' row structure (sizes, which rows a call refers to) and the
ground-truth groups for the scores. Training data never travel in messages — only models,
row positions, batch orders and results. Two server-side representations read raw data
from that copy rather than asking the clients: ``subspace`` (PACFL) and ``descriptors``;
in a deployment where the server has no copy they would have to be computed by the
clients (one upload each), which this adapter does not do yet. ``centralized`` (pooled
training) is refused.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np

from ..core.loop import Hooks
from ..core.trainer import _check_stacked, metric_names
from .protocol import MESSAGE_TYPE, draw_permutations, imputed_update, pack, unpack

log = logging.getLogger("cflkit.flower")
CLIENT_FAULTS = (1, 2)  # flwr ErrorCode LOAD_CLIENT_APP_EXCEPTION, CLIENT_APP_RAISED_EXCEPTION
DEFAULT_TIMEOUT = 120.0  # seconds a call waits for replies before the missing clients count as dropped


class FlowerTrainer:
    """The trainer interface of :class:`cflkit.core.trainer.Trainer`, answered by Flower nodes.

    ``local`` is a trainer over the server's own copy of the pooled arrays: it keeps the
    model definition (e.g. IFCA clones it) and answers ``predict`` on rows no single client
    owns — the shared probe set of the ``outputs`` representation, which stands in for a
    public dataset the server holds. Training or gradients on rows of several clients
    (``centralized``) are refused: that method is not federated.
    """

    def __init__(self, local, federation, config, grid, timeout: float = DEFAULT_TIMEOUT):
        self.local = local
        self.federation = federation
        self.config_json = config.to_json()
        self.grid = grid
        self.timeout = float(timeout)
        n = len(local.x)
        self._owner = np.full(n, -1, dtype=np.int64)
        self._position = np.zeros(n, dtype=np.int64)
        for c in range(federation.n_clients):
            own = np.concatenate([federation.train_index[c], federation.test_index[c]]).astype(np.int64)
            self._owner[own] = c
            self._position[own] = np.arange(own.size)
        self.nodes: dict[int, int] = {}  # client -> node id
        self._dead: set[int] = set()  # node ids that stopped answering
        self._queried: set[int] = set()
        self.round = 0
        self.dropped: set[int] = set()  # clients dropped in the current round
        self.current: list | None = None  # each client's model at the start of the round
        self.events: list[dict] = []
        self.calls = 0

    # trainer attributes the methods read
    def __getattr__(self, name):
        if name in ("model", "x", "y", "loss", "learning_rate", "batch_size", "local_epochs", "jit_compile"):
            return getattr(self.local, name)
        raise AttributeError(name)

    # -- nodes ------------------------------------------------------------------------------
    def _event(self, kind: str, client: int, node: int, **more):
        self.events.append({"round": self.round, "event": kind, "client": int(client), "node": int(node),
                            "time": time.time(), **more})

    def discover(self):
        """Map new nodes to clients (ask each its ``partition-id``); later nodes of a client win."""
        from flwr.app import ConfigRecord, Message, RecordDict

        new = [n for n in self.grid.get_node_ids() if n not in self._queried and n not in self._dead]
        if not new:
            return
        msgs = [Message(RecordDict({"task": ConfigRecord({"op": "partition"})}), dst_node_id=n,
                        message_type="query") for n in new]
        replies = list(self.grid.send_and_receive(msgs, timeout=self.timeout))
        for r in replies:
            node = r.metadata.src_node_id
            self._queried.add(node)
            if r.has_error():
                continue
            client = int(r.content["task"]["partition"])
            if not 0 <= client < self.federation.n_clients:
                log.warning("node %s says partition-id %s: not a client of this federation (0..%d); ignored",
                            node, client, self.federation.n_clients - 1)
                continue
            old = self.nodes.get(client)
            self.nodes[client] = node
            self._event("rejoined" if old is not None else "joined", client, node)
            if old is not None:
                self._dead.add(old)
                log.warning("client %d rejoined as node %s", client, node)
        for n in set(new) - {r.metadata.src_node_id for r in replies}:
            self._dead.add(n)

    def wait_for_clients(self, min_available: int, timeout: float):
        """Block until ``min_available`` clients have a node (Flower's min-available clients)."""
        deadline = time.monotonic() + timeout
        while True:
            self.discover()
            if len(self.nodes) >= min_available:
                return
            if time.monotonic() > deadline:
                missing = sorted(set(range(self.federation.n_clients)) - set(self.nodes))
                raise RuntimeError(f"only {len(self.nodes)} of {min_available} required clients connected within "
                                   f"{timeout:.0f} s; missing partition-ids {missing[:10]}")
            time.sleep(0.5)

    def begin_round(self, r: int, current: list):
        self.round = r
        self.dropped = set()
        self.current = current

    def _drop(self, client: int, why: str):
        if client not in self.dropped:
            self.dropped.add(client)
            node = self.nodes.get(client, -1)
            self._event("dropped", client, node, why=why)
            log.warning("round %d: client %d dropped (%s)", self.round, client, why)

    # -- routing and exchange -------------------------------------------------------------------
    def _route(self, index_sets, op: str) -> np.ndarray:
        """The client owning each index set, or -1 for rows of no single client."""
        out = np.full(len(index_sets), -1, dtype=np.int64)
        for i, rows in enumerate(index_sets):
            owners = np.unique(self._owner[np.asarray(rows, dtype=np.int64)])
            if owners.size == 1 and owners[0] >= 0:
                out[i] = owners[0]
            elif op in ("train", "gradients"):
                method = json.loads(self.config_json)['method']
                raise ValueError(f"{op} on rows of {owners.size} clients: method {method!r} "
                                 f"pools clients' data, which a federation cannot do; choose a federated method")
        return out

    def _exchange(self, op: str, payloads: dict, extra: dict | None = None) -> dict:
        """Send one message per client in ``payloads`` (client -> dict of array lists);
        return client -> reply arrays for those that answered in time."""
        from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

        self.calls += 1
        self.discover()
        msgs, sent = [], {}
        for client, arrays in payloads.items():
            node = self.nodes.get(client)
            if client in self.dropped or node is None or node in self._dead:
                self._drop(client, "no node connected")
                continue
            task = ConfigRecord({"op": op, "config": self.config_json, **(extra or {})})
            content = RecordDict({"task": task, **{k: ArrayRecord([np.ascontiguousarray(a) for a in v])
                                                   for k, v in arrays.items()}})
            msgs.append(Message(content, dst_node_id=node, message_type=MESSAGE_TYPE[op]))
            sent[node] = client
        replies = {}
        for r in self.grid.send_and_receive(msgs, timeout=self.timeout) if msgs else []:
            node = r.metadata.src_node_id
            client = sent.get(node)
            if client is None:
                continue
            if r.has_error():
                if r.error.code in CLIENT_FAULTS:  # the ClientApp raised: a bug to show, not a dropout
                    raise RuntimeError(f"client {client} (node {node}) failed on {op!r}: {r.error.reason}")
                self._drop(client, f"error {r.error.code}: {r.error.reason}")
                continue
            replies[client] = r.content["result"].to_numpy_ndarrays()
        for node, client in sent.items():
            if client not in replies and client not in self.dropped:
                self._dead.add(node)
                self._drop(client, f"no reply within {self.timeout:.0f} s")
        return replies

    @staticmethod
    def _group(route) -> dict:
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(route):
            groups.setdefault(int(c), []).append(i)
        return groups

    def _payload(self, weights, index_sets, entries) -> dict:
        positions = [self._position[np.asarray(index_sets[i], dtype=np.int64)] for i in entries]
        return {"weights": [w[entries] for w in weights], "rows": list(pack(positions))}

    # -- the trainer interface -----------------------------------------------------------------
    def train(self, weights, index_sets, rng, mu: float = 0.0, anchor=None):
        """Local SGD of every entry on its client's node; same draws from ``rng`` as in-process."""
        _check_stacked(weights, len(index_sets))
        sizes = [len(s) for s in index_sets]
        if min(sizes, default=1) < 1:
            raise ValueError(f"every client needs at least one training sample, got sizes {sizes}")
        perms = draw_permutations(sizes, self.local.local_epochs, rng)
        route = self._route(index_sets, "train")
        groups = self._group(route)
        payloads = {}
        for client, entries in groups.items():
            p = self._payload(weights, index_sets, entries)
            p["perms"] = list(pack([q for i in entries for q in perms[i]]))
            if anchor is not None:
                p["anchor"] = [a[entries] for a in anchor]
            payloads[client] = p
        replies = self._exchange("train", payloads, {"mu": float(mu)})
        out = [np.array(w, dtype=np.float32, copy=True) for w in weights]
        answered = [i for c, e in groups.items() if c in replies for i in e]
        for client, entries in groups.items():
            if client in replies:
                for o, got in zip(out, replies[client]):
                    o[entries] = got
        for client, entries in groups.items():
            if client not in replies:
                for i in entries:
                    for o, v in zip(out, imputed_update(weights, out, sizes, answered, i)):
                        o[i] = v
        return out

    def metrics(self, weights, index_sets) -> dict:
        """Per-entry metrics from the nodes (NaN for a dropped client: not measured)."""
        return self._metrics(weights, index_sets, impute=False)

    def evaluate(self, weights, index_sets):
        """Mean loss and score per entry; a dropped client keeps its current model (see module)."""
        m = self._metrics(weights, index_sets, impute=True)
        return m["loss"], m["accuracy" if self.local.loss == "classification" else "r2"]

    def _metrics(self, weights, index_sets, impute: bool) -> dict:
        _check_stacked(weights, len(index_sets))
        names = sorted(metric_names(self.local.loss, self.local.n_classes))  # as a node's trainer.metrics
        out = {k: np.full(len(index_sets), np.nan) for k in names}
        route = self._route(index_sets, "metrics")
        groups = self._group(route)
        if -1 in groups:  # rows of no single client: the server's own data
            e = groups.pop(-1)
            m = self.local.metrics([w[e] for w in weights], [index_sets[i] for i in e])
            for k in names:
                out[k][e] = m[k]
        replies = self._exchange("metrics", {c: self._payload(weights, index_sets, e) for c, e in groups.items()})
        for client, entries in groups.items():
            if client in replies:
                for k, v in zip(names, replies[client]):
                    out[k][entries] = v
            elif impute and self.current is not None:
                held = [w[client] for w in self.current]
                for i in entries:
                    same = all(np.array_equal(w[i], h) for w, h in zip(weights, held))
                    out["loss"][i] = 0.0 if same else np.inf
        return out

    def gradients(self, weights, index_sets):
        _check_stacked(weights, len(index_sets))
        route = self._route(index_sets, "gradients")
        groups = self._group(route)
        replies = self._exchange("gradients", {c: self._payload(weights, index_sets, e) for c, e in groups.items()})
        out = [np.zeros(w.shape, dtype=np.float32) for w in weights]
        answered = [i for c, e in groups.items() if c in replies for i in e]
        for client, entries in groups.items():
            if client in replies:
                for o, got in zip(out, replies[client]):
                    o[entries] = got
        ones = np.ones(len(index_sets))
        for client, entries in groups.items():
            if client not in replies:
                for i in entries:
                    # the responders' mean gradient at the same model (zero update if none)
                    got = imputed_update(weights, out, ones, answered, i)
                    same = any(all(np.array_equal(w[r], w[i]) for w in weights) for r in answered)
                    for o, v, w in zip(out, got, weights):
                        o[i] = v if same else np.zeros_like(w[i])
        return out

    def predict(self, weights, index_sets, chunk: int = 2_000_000):
        _check_stacked(weights, len(index_sets))
        route = self._route(index_sets, "predict")
        groups = self._group(route)
        results: list = [None] * len(index_sets)
        if -1 in groups:
            e = groups.pop(-1)
            for i, o in zip(e, self.local.predict([w[e] for w in weights], [index_sets[i] for i in e])):
                results[i] = o
        replies = self._exchange("predict", {c: self._payload(weights, index_sets, e) for c, e in groups.items()})
        width = self.federation.n_outputs
        for client, entries in groups.items():
            if client in replies:
                flat, offsets = replies[client]
                for i, o in zip(entries, unpack(np.arange(len(flat)), offsets)):
                    results[i] = flat[o]
            else:
                for i in entries:
                    results[i] = np.full((len(index_sets[i]), width), np.nan, dtype=np.float32)
        return results


# -- the run ------------------------------------------------------------------------------------
def run_on_grid(grid, config, out=None, timeout: float = DEFAULT_TIMEOUT, min_available: int | None = None,
                wait: float = 120.0, evaluate_every: int = 1, progress: bool = False, status_file=None):
    """Run ``config`` with its client work done by Flower nodes reached through ``grid``.

    The loop, records and summary are those of :func:`cflkit.core.experiment.run`; the model
    state, assignments and (up to float rounding) metrics equal an in-process run with
    the same config. ``min_available`` clients (default: all) must be connected before
    round 1 (waiting at most ``wait`` s). Test metrics are taken every ``evaluate_every``
    rounds and at the last round (each evaluation is one message per client). Returns the
    :class:`~cflkit.core.results.Result`; writes it (and ``flower_events.csv``) to ``out`` if given.
    ``status_file`` (JSON: round, connected and dropped clients, finished) is rewritten as
    the run advances, for whoever watches it.
    """
    import pandas as pd

    from ..core.experiment import build_context, federation_from, summarize, validate
    from ..core.loop import run_rounds
    from ..core.results import Result, save_run
    from ..methods import make_method

    validate(config)  # methods that do not handle absent clients refuse sampling, dropouts and late clients
    if config.drift_round:  # a node's data is its own: the server cannot redraw it
        raise ValueError(f"on Flower each node keeps its own data: drift_round must be 0 (got {config.drift_round}); "
                         f"run drift in process")
    if config.holdout_clients:  # every node of the grid is a training client
        raise ValueError(f"on Flower every connected node trains: holdout_clients must be 0 (got "
                         f"{config.holdout_clients}); run held-out clients in process")
    if evaluate_every < 1:
        raise ValueError(f"evaluate_every must be >= 1, got {evaluate_every}")
    if out is not None:
        from ..core.outputs import check_output

        check_output(out, "run", option="out")
    fed = federation_from(config)
    method = make_method(config)
    ctx = build_context(config, fed)
    trainer = FlowerTrainer(ctx.trainer, fed, config, grid, timeout=timeout)
    ctx.trainer = trainer
    need = fed.n_clients if min_available is None else int(min_available)
    if not 1 <= need <= fed.n_clients:
        raise ValueError(f"min_available must be in 1..{fed.n_clients}, got {need}")
    status = _status_writer(status_file, trainer)
    status(0)
    trainer.wait_for_clients(need, wait)
    log.info("flower run %s on %s: %d clients connected", config.method, fed.description, len(trainer.nodes))

    hooks = FlowerHooks(trainer, status, evaluate_every, config.rounds)
    done = run_rounds(method, ctx, config.rounds, progress=progress, hooks=hooks, label=f"{config.method} (flower)")
    state, rows, diagnostics, wall = done.state, done.rows, done.diagnostics, done.wall_seconds
    history = pd.DataFrame(rows)
    summary = summarize(history, fed, config, wall)
    summary["dropouts"] = int(history["dropped"].sum())
    summary["messages"] = trainer.calls
    result = Result(config, history, summary, federation=fed, state=state, diagnostics=diagnostics)
    result.events = pd.DataFrame(trainer.events, columns=["round", "event", "client", "node", "time", "why"])
    if out is not None:
        save_run(result, out, extra={"flower_events.csv": result.events.to_csv(index=False).encode()})
    status(config.rounds, done=True, finished=True)
    return result


def _status_writer(path, trainer):
    """A function writing the run's progress to ``path`` (no-op without a path)."""
    from ..core.results import write_text_atomic

    def write(r, done=False, finished=False):
        if path:
            write_text_atomic(path, json.dumps({
                "round": r, "round_done": done, "finished": finished, "connected": sorted(trainer.nodes),
                "dropped": sorted(trainer.dropped), "time": time.time(),
                "dropouts": [[e["round"], e["client"]] for e in trainer.events if e["event"] == "dropped"],
                "rejoins": [[e["round"], e["client"]] for e in trainer.events if e["event"] == "rejoined"]}))
    return write


class FlowerHooks(Hooks):
    """What a Flower run adds to the round loop: each round starts on the trainer (its
    dropouts are per round), progress goes to the status file, test metrics are taken every
    ``evaluate_every`` rounds and at the last, and dropped clients are not measured (NaN,
    column ``dropped``)."""

    def __init__(self, trainer, status, evaluate_every: int, rounds: int):
        self.trainer, self.status, self.every, self.rounds = trainer, status, evaluate_every, rounds

    def begin_round(self, r: int, state) -> None:
        self.trainer.begin_round(r, None if state is None else state.client_models())
        if r > 0:
            self.status(r)

    def end_round(self, r: int, state) -> None:
        self.status(r, done=True)

    def evaluates(self, r: int) -> bool:
        return r % self.every == 0 or r == self.rounds

    def unmeasured(self) -> set:
        return set(self.trainer.dropped)

    def columns(self, r: int, n_clients: int) -> dict:
        return {"dropped": [c in self.trainer.dropped for c in range(n_clients)]}


def make_server_app(config=None, out=None, timeout: float = DEFAULT_TIMEOUT, min_available: int | None = None,
                    evaluate_every: int = 1, results: list | None = None):
    """A ``ServerApp`` running ``config`` (or, if ``None``, the config named by the run
    config key ``config-file``, as ``flwr run`` passes it). The :class:`Result` is
    appended to ``results`` when given (simulation keeps the ServerApp in this process)."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context):
        from ..core.config import Config

        rc = dict(context.run_config)
        cfg = config
        if cfg is None:
            from pathlib import Path
            cfg = Config.from_dict(json.loads(Path(str(rc["config-file"])).read_text()))
        result = run_on_grid(grid, cfg, out=out if out is not None else (str(rc.get("out", "")) or None),
                             timeout=float(rc.get("round-timeout", timeout)),
                             min_available=(int(rc["min-available"]) if int(rc.get("min-available", 0))
                                            else min_available),
                             evaluate_every=int(rc.get("evaluate-every", evaluate_every)),
                             status_file=str(rc.get("status-file", "")) or None)
        if results is not None:
            results.append(result)

    return app


def simulate(config, out=None, evaluate_every: int = 1, cpus_per_client: float = 1.0, timeout: float = DEFAULT_TIMEOUT,
             verbose: bool = False):
    """Run ``config`` through Flower's simulation engine (Ray): one virtual SuperNode per
    client, the same ServerApp and ClientApp as a real deployment. Returns the Result."""
    from ..core.experiment import federation_from
    from . import require_flwr

    require_flwr()
    from flwr.simulation import run_simulation

    from ..core.experiment import validate
    from ..core.outputs import check_output
    from .client import make_client_app

    validate(config)
    if out is not None:
        check_output(out, "run", option="--out")  # before Ray starts, not after the run
    n = federation_from(config).n_clients
    results: list = []
    server = make_server_app(config, out=out, timeout=timeout, evaluate_every=evaluate_every, results=results)
    run_simulation(server_app=server, client_app=make_client_app(), num_supernodes=n,
                   backend_config={"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0}},
                   verbose_logging=verbose)
    if not results:
        raise RuntimeError("the Flower simulation ended without a result; rerun with verbose=True to see its log")
    return results[0]
