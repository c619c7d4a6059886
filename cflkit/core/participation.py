"""Who takes part in a round: client sampling and dropouts, drawn from the run's own stream.

Cross-device federations train a sample of the clients each round (FedAvg, McMahan et al.
2017: a fraction C; IFCA, Ghosh et al. 2020: 10 % of the clients in its CIFAR runs), and a
sampled client may fail to return its update (a hospital's node goes down). The sample has
``max(min_participants, floor(participation * clients))`` clients, as Flower's strategies
count it (``fraction_train``, ``min_train_nodes``), drawn without replacement; each sampled
client's update is then lost with probability ``dropout``.

The draws come from a stream of their own (:func:`participation_rng`), so that with
everybody taking part the method's stream and its numbers are those of a full run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARTICIPATION_STREAM = 2  # apart from the federation's (the seed) and the method's ([seed, 1])


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
                      min_participants: int = 1) -> Participants:
    """A round's sample (uniform, without replacement) and the updates that survive ``dropout``.

    With ``participation == 1`` and ``dropout == 0`` nothing is drawn: everybody takes part.
    """
    m = sample_size(n_clients, participation, min_participants)
    sampled = np.arange(n_clients) if m == n_clients else np.sort(rng.choice(n_clients, size=m, replace=False))
    if dropout <= 0:
        return Participants(sampled, sampled)
    kept = rng.random(len(sampled)) >= dropout
    return Participants(sampled, sampled[kept])


def is_partial(config) -> bool:
    """Whether a config samples clients or loses updates."""
    return config.participation < 1 or config.dropout > 0
