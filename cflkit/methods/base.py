"""The method interface: every federated algorithm advances its server state one round at a
time through the one round loop (:func:`cflkit.core.loop.run_rounds`), which hands it the
round number. A method declares its own parameters (``Params``, a dataclass of
:class:`~cflkit.methods.params.Params`) and, when it holds more than models and an
assignment, its own typed state (a subclass of :class:`ServerState`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..core.aggregate import update_clusters
from ..core.participation import Participants
from ..core.trainer import n_params, take
from .params import AUTO, GROUPS, Params

BYTES_PER_PARAM = 4  # float32 on the wire


@dataclass
class ServerState:
    """What the server holds: one model per cluster (stacked) and each client's cluster."""

    models: list  # arrays of shape (n_clusters, *layer_shape)
    assignment: np.ndarray  # (n_clients,) cluster id of every client, 0..n_clusters-1

    @property
    def n_clusters(self) -> int:
        return int(self.models[0].shape[0])

    def client_models(self) -> list:
        """Each client's current model: its cluster's model, stacked per client."""
        return take(self.models, self.assignment)

    def server_models(self) -> tuple[list, np.ndarray]:
        """The models the server optimizer steps (:mod:`cflkit.core.server_opt`), stacked by
        a stable cluster id, and every client's id among them."""
        return self.models, self.assignment

    def with_server_models(self, models: list) -> "ServerState":
        """This state with the models of :meth:`server_models` replaced."""
        return dataclasses.replace(self, models=models)


@dataclass
class RoundInfo:
    """Per-client communication of one round, in bytes, and what the method wants to show.

    ``diagnostics`` holds the method's per-round quantities for notebooks and figures
    (e.g. update norms, a similarity matrix); the run collects them in
    ``Result.diagnostics`` and writes the scalar ones to ``diagnostics.csv``.
    """

    bytes_up: np.ndarray
    bytes_down: np.ndarray
    diagnostics: dict = field(default_factory=dict)


@dataclass
class Context:
    """What a method may use: the federation, the trainer, the config, a seeded RNG and the
    round's participants (set by the round loop; everybody unless the config samples clients)."""

    federation: object
    trainer: object
    config: object
    rng: np.random.Generator
    initial_weights: list  # one model's weights, unstacked
    participants: Participants | None = None
    joined_ids: np.ndarray | None = None  # set by the loop while late clients have not joined (``arrival_round``)

    @property
    def joined(self) -> np.ndarray:
        """The clients that have joined the federation by this round (ids, increasing): all,
        unless some join late; the sample of a round is drawn among them."""
        return np.arange(self.federation.n_clients) if self.joined_ids is None else self.joined_ids

    @property
    def sampled(self) -> np.ndarray:
        """The clients sampled to train this round (ids, increasing)."""
        return np.arange(self.federation.n_clients) if self.participants is None else self.participants.sampled

    @property
    def returned(self) -> np.ndarray:
        """The sampled clients whose update reached the server this round."""
        return np.arange(self.federation.n_clients) if self.participants is None else self.participants.returned

    def arrived(self, per_sampled):
        """Of values stacked per sampled client (an array, or a list of them such as trained
        weights), the rows of the clients whose update reached the server."""
        keep = np.isin(self.sampled, self.returned)
        return [w[keep] for w in per_sampled] if isinstance(per_sampled, list) else per_sampled[keep]

    def train(self, start: list, clients=None, mu: float = 0.0) -> list:
        """Local training of ``clients`` (default: all) from stacked ``start`` weights."""
        fed = self.federation
        clients = np.arange(fed.n_clients) if clients is None else np.asarray(clients)
        return self.trainer.train(start, [fed.train_index[c] for c in clients], self.rng, mu=mu)

    def model_bytes(self, n_models: int = 1) -> int:
        return n_models * BYTES_PER_PARAM * n_params([w[None] for w in self.initial_weights])

    def traffic(self, up_models=1, down_models=1, **diagnostics) -> RoundInfo:
        """Each sampled client receives ``down_models`` models and each whose update
        arrived sends ``up_models``; the others send and receive nothing."""
        n = self.federation.n_clients
        up, down = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        down[self.sampled] = self.model_bytes(down_models)
        up[self.returned] = self.model_bytes(up_models)
        return RoundInfo(up, down, diagnostics)


class Method:
    """A federated algorithm: ``init`` builds the server state, ``round`` advances it.

    Subclasses set ``name``, a one-line ``summary`` and, if they have parameters, ``Params``
    (their paper's defaults); ``self.params`` is the run's instance of it.
    """

    name = ""
    summary = ""
    Params = Params  # no parameters
    partial_participation = False  # whether it runs with client sampling and dropouts (its docstring says how)
    newcomer = ""  # how a client that never trained joins a cluster (empty: it cannot; holdout_clients is refused)
    newcomer_uploads = 0  # models a newcomer sends to be assigned (its update, for server-side rules)
    aggregates = True  # whether the server averages updates (a server optimizer needs it)
    tuning: dict = {}  # `cflkit tune`: parameter -> values tried (the first: the paper's default); empty: none

    @classmethod
    def handles_absent(cls, params) -> bool:
        """Whether the method runs, with these parameters, with client sampling, dropouts and
        late clients (``participation`` < 1, ``dropout`` > 0, ``arrival_round`` > 0)."""
        return cls.partial_participation

    def __init__(self, config):
        self.config = config
        self.params = config.params
        if type(self.params) is not self.Params:
            raise ValueError(f"method {self.name!r} takes {self.Params.__name__}, got {type(self.params).__name__}")

    def init(self, ctx: Context) -> ServerState:
        raise NotImplementedError

    def round(self, state: ServerState, ctx: Context, r: int) -> tuple[ServerState, RoundInfo]:
        """Round ``r`` (1, 2, ...): the new state and what was sent."""
        raise NotImplementedError

    def assign_newcomers(self, state: ServerState, ctx: Context, members, newcomers) -> np.ndarray:
        """The cluster (0..``state.n_clusters``-1) of each of ``newcomers``: clients of
        ``ctx.federation`` that never trained, after the last round. ``state.assignment``
        lists the clusters of ``members`` (ids in ``ctx.federation``), in that order."""
        raise NotImplementedError(f"method {self.name!r} has no newcomer rule")

    def n_clusters(self, ctx: Context) -> int:
        """K for methods that need one: ``clusters``, or the planted groups for 'groups'."""
        if self.params.clusters == AUTO:
            raise ValueError(f"method {self.name!r} was asked for a fixed K with clusters='auto'")  # a bug, not input
        k = ctx.federation.n_groups if self.params.clusters == GROUPS else int(self.params.clusters)
        if k > ctx.federation.n_clients:
            raise ValueError(f"clusters={k} exceeds the {ctx.federation.n_clients} clients")
        return k


class ClusteredFedAvg(Method):
    """FedAvg within fixed clusters: the shared round of oracle, random and FedAvg itself.

    Each client starts from its cluster's model, trains locally, and each cluster's model
    becomes the size-weighted mean of its clients' models (McMahan et al. 2017).

    Absent clients (FedAvg's client fraction C): only the sampled clients train, each
    cluster's model is the mean of the updates that arrived, and a cluster that got none
    keeps its model; the assignment is fixed, so an absent client keeps its cluster.
    """

    mu = 0.0
    partial_participation = True
    newcomer = "the global model"

    def assign_newcomers(self, state, ctx, members, newcomers):
        return np.zeros(len(newcomers), dtype=np.int64)

    def assignment(self, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def init(self, ctx: Context) -> ServerState:
        assignment = np.asarray(self.assignment(ctx), dtype=np.int64)
        k = int(assignment.max()) + 1
        return ServerState([np.repeat(w[None], k, axis=0) for w in ctx.initial_weights], assignment)

    def round(self, state: ServerState, ctx: Context, r: int):
        sampled, returned = ctx.sampled, ctx.returned
        trained = ctx.train(take(state.models, state.assignment[sampled]), clients=sampled, mu=self.mu)
        models = update_clusters(state.models, ctx.arrived(trained), ctx.federation.sizes[returned],
                                 state.assignment[returned])
        return ServerState(models, state.assignment), ctx.traffic()


def lowest_loss(state: ServerState, ctx: Context, clients) -> np.ndarray:
    """IFCA's cluster estimate for ``clients``: the cluster model of lowest loss on each
    one's training data (Ghosh et al. 2020)."""
    from .ifca import assign_by_loss, loss_matrix

    return assign_by_loss(loss_matrix(ctx, state.models, clients))


def same_value_cluster(state: ServerState, ctx: Context, member_values, new_values, newcomers) -> np.ndarray:
    """Each newcomer joins the cluster holding most members with its value (a group, an
    attribute); a value no member has falls back to :func:`lowest_loss`."""
    member_values, assignment = np.asarray(member_values).astype(str), np.asarray(state.assignment)
    out = np.full(len(newcomers), -1, dtype=np.int64)
    for i, v in enumerate(np.asarray(new_values).astype(str)):
        here = assignment[member_values == v]
        if here.size:
            out[i] = np.bincount(here).argmax()
    unknown = np.flatnonzero(out < 0)
    if unknown.size:
        out[unknown] = lowest_loss(state, ctx, np.asarray(newcomers)[unknown])
    return out
