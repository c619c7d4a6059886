"""Who takes part in a round: client sampling and dropouts, drawn from the run's own stream.

Cross-device federations train a sample of the clients each round (FedAvg, McMahan et al.
2017: a fraction C; IFCA, Ghosh et al. 2020: 10 % of the clients in its CIFAR runs), and a
sampled client may fail to return its update (a hospital's node goes down). The sample has
``max(min_participants, floor(participation * clients))`` clients, as Flower's strategies
count it (``fraction_train``, ``min_train_nodes``), drawn without replacement; each sampled
client's update is then lost with probability ``dropout``.

The draws come from a stream of their own (:func:`participation_rng`), so that with
everybody taking part the method's stream and its numbers are those of a full run.

Late clients (``arrival_round`` = a > 0): a seeded share ``arrival_fraction`` of the
clients (:func:`late_clients`, a stream of its own) has not joined the federation before
round a: it is never sampled, never trains and is not evaluated (NaN metrics, ``joined`` =
0 in the history); from round a on it is sampled like the others, and its first
participation is the method's newcomer path (IFCA estimates its cluster by loss; the
FedAvg family gives it its fixed cluster). At least one client is there from the start.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTICIPATION_STREAM = 2  # apart from the federation's (the seed) and the method's ([seed, 1])
ARRIVAL_STREAM = 5  # holdout's is 3, drift's 4


def seeded_clients(n_clients: int, k: int, seed: int, stream: int) -> np.ndarray:
    """``k`` of ``n_clients`` clients drawn uniformly without replacement from the stream
    ``[seed, stream]`` (ids, increasing): who is held out, drifts or joins late."""
    if not k:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(stream)])
    return np.sort(rng.choice(n_clients, size=k, replace=False)).astype(np.int64)


def participation_rng(seed: int) -> np.random.Generator:
    """The stream of a run's client samples and dropouts."""
    return np.random.default_rng([int(seed), PARTICIPATION_STREAM])


def sample_size(n_clients: int, participation: float, min_participants: int = 1) -> int:
    """Clients sampled per round: ``max(min_participants, floor(participation * n))``, at most n.

    >>> sample_size(40, 0.5), sample_size(10, 0.05), sample_size(10, 0.05, 3), sample_size(7, 1.0)
    (20, 1, 3, 7)
    """
    return int(min(n_clients, max(min_participants, int(np.floor(participation * n_clients + 1e-9)))))


@dataclass(frozen=True)
class Participants:
    """One round's clients: those sampled to train and, among them, those whose update arrived."""

    sampled: np.ndarray  # client ids, increasing
    returned: np.ndarray  # the subset of ``sampled`` whose update reached the server


def draw_participants(n_clients: int, participation: float, dropout: float, rng: np.random.Generator,
                      min_participants: int = 1, pool=None) -> Participants:
    """A round's sample (uniform, without replacement) and the updates that survive ``dropout``.

    ``pool``: the clients that may be sampled (ids, increasing; default all ``n_clients``),
    the sample size counted on them. With ``participation == 1`` and ``dropout == 0``
    nothing is drawn: the whole pool takes part.
    """
    pool = np.arange(n_clients) if pool is None else np.asarray(pool, dtype=np.int64)
    m = sample_size(len(pool), participation, min_participants)
    sampled = pool if m == len(pool) else np.sort(rng.choice(pool, size=m, replace=False))
    if dropout <= 0:
        return Participants(sampled, sampled)
    kept = rng.random(len(sampled)) >= dropout
    return Participants(sampled, sampled[kept])


def is_partial(config) -> bool:
    """Whether a config samples clients, loses updates or has clients join late."""
    return config.participation < 1 or config.dropout > 0 or config.arrival_round > 0


def late_clients(n_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The clients that join at ``arrival_round``: ``round(fraction * n)`` of them, at least
    one and at most n - 1 (someone must be there from the start), a seeded uniform draw.

    >>> late_clients(40, 0.25, 0).size, late_clients(4, 1.0, 0).size, late_clients(4, 0.01, 0).size
    (10, 3, 1)
    """
    if n_clients < 2:
        raise ValueError(f"late clients need a federation of at least 2 clients (one there from the start), "
                         f"got {n_clients}")
    return seeded_clients(n_clients, min(n_clients - 1, max(1, int(round(fraction * n_clients)))), seed,
                          ARRIVAL_STREAM)
