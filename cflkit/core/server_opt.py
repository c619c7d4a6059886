"""Server optimizers: what the server does with each cluster's averaged update.

Plain averaging sets a cluster's model to the mean of its clients' models, ``x + Δ`` with
``Δ`` the size-weighted mean of the clients' updates (their trained model minus the model
they started from). FedOpt (Reddi et al., "Adaptive Federated Optimization", ICLR 2021,
Algorithm 2) treats ``-Δ`` as a pseudo-gradient and steps with a server optimizer instead;
FedAvgM (Hsu et al., "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", 2019) adds server momentum.

Each cluster model has its own optimizer state, kept across rounds and following the
cluster's id. A cluster that first appears in a round (a split, a clustering) starts from
the state of its *parent*: the cluster most of its members were in before the round (a
split's child inherits the moments of the cluster it split from). A cluster that got no
update this round (all its members absent) keeps its model and its state.

The optimizer acts on the models a method's round produced (:func:`cflkit.core.loop.run_rounds`),
with ``Δ_k`` = the round's new model of cluster ``k`` minus the model of its parent before the
round. Where every member started from its cluster's model (FedAvg, the one-shot and
Sattler's clusterings, IFCA, FedGroup), that is exactly the mean client update of Reddi et
al.; where members started from different models (CORNFLQS's server-side clustering,
k-means re-clustered every round) it is the change the method made to model ``k``.
"""
from __future__ import annotations

import numpy as np

SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
ADAPTIVE = ("fedadam", "fedyogi", "fedadagrad")
# server_learning_rate = 0 means these: plain averaging and FedAvgM step the whole update
# (Hsu et al.'s server learning rate 1); FedAdam and FedYogi take 0.01, the server step size
# of FLamby's (flamby/strategies/fed_opt.py, and its heart-disease benchmark), inside Reddi et al.'s grid.
# FedAdagrad takes 0.1: its v sums the squared updates where Adam's starts at (1 - β2) Δ², so
# 0.1 gives its first step the size of FedAdam's at 0.01 (FLamby tuned it higher still, 0.32).
DEFAULT_LEARNING_RATE = {"none": 1.0, "fedavgm": 1.0, "fedadam": 0.01, "fedyogi": 0.01, "fedadagrad": 0.1}


def learning_rate(rule: str, server_learning_rate: float) -> float:
    """The server step size: the given one, or the rule's default when it is 0."""
    return float(server_learning_rate) or DEFAULT_LEARNING_RATE[rule]


def initial_state(rule: str, x: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """``(m, v)`` before the first step: m = 0 and, for the adaptive rules, v = τ²
    (Reddi et al., Algorithm 2: v_{-1} ≥ τ²)."""
    m = np.zeros(x.shape, dtype=np.float64)
    v = np.full(x.shape, tau * tau if rule in ADAPTIVE else 0.0, dtype=np.float64)
    return m, v


def server_step(rule: str, x, delta, m, v, lr: float, momentum: float = 0.9, beta1: float = 0.9,
                beta2: float = 0.99, tau: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One server step of ``rule`` on model ``x`` with averaged update ``delta``: the new
    ``(x, m, v)``. In float64; ``x`` keeps its dtype.

    - ``none``: x + η Δ (plain averaging when η = 1);
    - ``fedavgm``: m ← β m + Δ, x + η m (Hsu et al. 2019, with Δ = -pseudo-gradient);
    - ``fedadagrad`` / ``fedadam`` / ``fedyogi``: m ← β1 m + (1-β1) Δ, then
      v ← v + Δ², v ← β2 v + (1-β2) Δ², or v ← v - (1-β2) Δ² sign(v - Δ²), and
      x + η m / (√v + τ) (Reddi et al. 2021, Algorithm 2; no bias correction, as there).

    >>> x, m, v = server_step("fedavgm", np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1), lr=1.0)
    >>> x, m, v = server_step("fedavgm", x, np.ones(1), m, v, lr=1.0)
    >>> x.tolist(), m.tolist()
    ([2.9], [1.9])
    """
    x64, d = np.asarray(x, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    m, v = np.asarray(m, dtype=np.float64), np.asarray(v, dtype=np.float64)
    if rule == "none":
        new = x64 + lr * d
    elif rule == "fedavgm":
        m = momentum * m + d
        new = x64 + lr * m
    elif rule in ADAPTIVE:
        m = beta1 * m + (1 - beta1) * d
        sq = d * d
        if rule == "fedadagrad":
            v = v + sq
        elif rule == "fedadam":
            v = beta2 * v + (1 - beta2) * sq
        else:
            v = v - (1 - beta2) * sq * np.sign(v - sq)
        new = x64 + lr * m / (np.sqrt(v) + tau)
    else:
        raise ValueError(f"unknown server_optimizer {rule!r}; choose one of: {', '.join(SERVER_OPTIMIZERS)}")
    return new.astype(np.asarray(x).dtype), m, v


def lineage(k_before: int, before, after) -> np.ndarray:
    """Each cluster's parent after a round: a cluster id that existed before keeps its id;
    a new one (id >= ``k_before``) descends from the cluster most of its members were in
    (``before``/``after``: every client's cluster before and after the round; ties: the
    lowest id).

    >>> lineage(2, [0, 0, 0, 1], [0, 2, 2, 1]).tolist()  # cluster 0 split: 2 descends from 0
    [0, 1, 0]
    """
    before, after = np.asarray(before, dtype=np.int64), np.asarray(after, dtype=np.int64)
    k_after = int(after.max()) + 1 if after.size else 0
    parents = np.arange(k_after, dtype=np.int64)
    for k in range(k_before, k_after):
        members = before[after == k]
        parents[k] = np.bincount(members, minlength=k_before).argmax() if members.size else 0
    return parents


class ServerOptimizer:
    """The server optimizer of a run: its rule, hyper-parameters and per-cluster state."""

    def __init__(self, rule: str, lr: float, momentum: float = 0.9, beta1: float = 0.9, beta2: float = 0.99,
                 tau: float = 1e-3):
        if rule not in SERVER_OPTIMIZERS:
            raise ValueError(f"unknown server_optimizer {rule!r}; choose one of: {', '.join(SERVER_OPTIMIZERS)}")
        self.rule, self.lr = rule, float(lr)
        self.momentum, self.beta1, self.beta2, self.tau = momentum, beta1, beta2, tau
        self.m: list | None = None  # per layer, (K, ...) float64
        self.v: list | None = None

    @classmethod
    def for_config(cls, config) -> "ServerOptimizer | None":
        """The config's server optimizer; None for plain averaging (``none`` with step 1)."""
        lr = learning_rate(config.server_optimizer, config.server_learning_rate)
        if config.server_optimizer == "none" and lr == 1.0:
            return None
        return cls(config.server_optimizer, lr, config.server_momentum, config.server_beta1,
                   config.server_beta2, config.server_tau)

    def step(self, before: list, after: list, assign_before, assign_after, updated) -> list:
        """The cluster models after the server step: ``before`` (K_before, ...) the models at
        the start of the round, ``after`` (K_after, ...) those the method's averaging made,
        the clients' clusters before and after, and ``updated[k]``: whether cluster ``k``
        got an update this round (a cluster that got none is returned unchanged)."""
        k_before = int(before[0].shape[0])
        if self.m is None:
            states = [initial_state(self.rule, w, self.tau) for w in before]
            self.m, self.v = [s[0] for s in states], [s[1] for s in states]
        parents = lineage(k_before, assign_before, assign_after)
        k_after = int(after[0].shape[0])
        if len(parents) < k_after:  # clusters nobody is in: their own id, or cluster 0
            parents = np.concatenate([parents, np.minimum(np.arange(len(parents), k_after), k_before - 1)])
        parents = np.minimum(parents[:k_after], k_before - 1)
        out, m_new, v_new = [], [], []
        for x_after, x_before, m, v in zip(after, before, self.m, self.v):
            x, m, v = x_after.copy(), m[parents].copy(), v[parents].copy()
            for k in np.flatnonzero(np.asarray(updated, dtype=bool)[:k_after]):
                delta = x_after[k].astype(np.float64) - x_before[parents[k]]
                x[k], m[k], v[k] = server_step(self.rule, x_before[parents[k]], delta, m[k], v[k], self.lr,
                                               self.momentum, self.beta1, self.beta2, self.tau)
            out.append(x)
            m_new.append(m)
            v_new.append(v)
        self.m, self.v = m_new, v_new
        return out
