"""The clients of one simulated (or real) federation."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Federation:
    """Clients with their own train / test rows and a ground-truth group each.

    All samples live once in the pooled arrays ``x`` / ``y``; client ``c`` owns rows
    ``train_index[c]`` and ``test_index[c]`` (disjoint, drawn from its own distribution).
    ``groups[c]`` is what a perfect clustering would recover; ``group_names`` says what
    each group is (e.g. ``"rotated 90°"``).
    """

    x: np.ndarray
    y: np.ndarray
    train_index: list
    test_index: list
    groups: np.ndarray
    n_classes: int
    task: str
    kind: str
    dataset: str
    scenario: str
    group_names: tuple = ()
    description: str = ""
    params: dict = field(default_factory=dict)
    client_meta: dict = field(default_factory=dict)  # attribute name -> one value per client

    def __post_init__(self):
        n = len(self.train_index)
        if len(self.test_index) != n or len(self.groups) != n:
            raise ValueError("train_index, test_index and groups must have one entry per client")
        self.groups = np.asarray(self.groups, dtype=np.int64)

    @property
    def n_clients(self) -> int:
        return len(self.train_index)

    @property
    def n_groups(self) -> int:
        return int(len(np.unique(self.groups)))

    @property
    def sizes(self) -> np.ndarray:
        """Training samples per client (the FedAvg weights)."""
        return np.array([len(i) for i in self.train_index], dtype=np.int64)

    @property
    def test_sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.test_index], dtype=np.int64)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    @property
    def n_outputs(self) -> int:
        return self.n_classes if self.task == "classification" else 1

    def subset(self, clients) -> "Federation":
        """The federation of ``clients`` only (renumbered 0..len-1, in the order given), sharing
        the pooled rows: what a method sees when some clients never train."""
        import dataclasses

        clients = [int(c) for c in clients]
        return dataclasses.replace(
            self, train_index=[self.train_index[c] for c in clients], test_index=[self.test_index[c] for c in clients],
            groups=self.groups[clients],
            client_meta={k: [v[c] for c in clients] for k, v in self.client_meta.items()})

    def client(self, c: int):
        """``(x_train, y_train, x_test, y_test)`` of client ``c``."""
        tr, te = self.train_index[c], self.test_index[c]
        return self.x[tr], self.y[tr], self.x[te], self.y[te]

    def label_histogram(self, c: int) -> np.ndarray:
        """Class counts of client ``c``'s training data."""
        return np.bincount(self.y[self.train_index[c]].astype(int), minlength=self.n_classes)

    def __repr__(self) -> str:
        return f"Federation({self.description})"
