"""What travels in a cflkit Flower message: pure packing of index sets, permutations and
stacked weights into flat arrays (numpy only, no flwr)."""
from __future__ import annotations

import numpy as np

OPS = ("train", "metrics", "gradients", "predict")
MESSAGE_TYPE = {"train": "train", "metrics": "evaluate", "gradients": "query", "predict": "query"}


def pack(arrays) -> tuple[np.ndarray, np.ndarray]:
    """A list of 1-d integer arrays as ``(concatenated, offsets)``; ``offsets`` has one
    more entry than the list.

    >>> flat, off = pack([np.array([3, 1]), np.array([], int), np.array([7])])
    >>> flat.tolist(), off.tolist()
    ([3, 1, 7], [0, 2, 2, 3])
    """
    arrays = [np.asarray(a, dtype=np.int64).ravel() for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([a.size for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return flat.astype(np.int64), offsets


def unpack(flat, offsets) -> list[np.ndarray]:
    """Inverse of :func:`pack`.

    >>> [a.tolist() for a in unpack(*pack([[3, 1], [], [7]]))]
    [[3, 1], [], [7]]
    """
    flat, offsets = np.asarray(flat), np.asarray(offsets)
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def draw_permutations(sizes, epochs: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    """The per-epoch permutations :func:`cflkit.core.trainer.batch_plan` would draw from ``rng``
    for clients of ``sizes``, in its order (client by client, epoch by epoch), so that a node
    replaying them trains on exactly the minibatches of the in-process run."""
    return [[rng.permutation(int(n)) for _ in range(epochs)] for n in sizes]


class Replay:
    """A stand-in for ``np.random.Generator`` in :func:`~cflkit.core.trainer.batch_plan` that
    hands out recorded permutations in order (and checks that each has the asked size)."""

    def __init__(self, permutations):
        self._queue = [np.asarray(p) for p in permutations]
        self._next = 0

    def permutation(self, n: int) -> np.ndarray:
        if self._next >= len(self._queue):
            raise ValueError(f"the server sent {len(self._queue)} permutations; the trainer asked for more")
        p = self._queue[self._next]
        self._next += 1
        if p.size != n:
            raise ValueError(f"replayed permutation has {p.size} entries, the trainer asked for {n}")
        return p


def imputed_update(start: list, trained: list, sizes, responded, dropped: int) -> list:
    """The model to report for a client that dropped out of local training.

    It is the size-weighted mean of the trained models of the clients that *responded* and
    started from the same weights as the dropped one (its cluster this round), so every
    size-weighted average the method then takes over that cluster equals the average over
    the responders alone: the dropped client is excluded from aggregation without the
    method knowing. With no such responder it keeps its starting weights (no update).
    ``start``/``trained`` are stacked (entries, ...) weights; returns one entry, unstacked.
    """
    same = [r for r in responded if all(np.array_equal(s[r], s[dropped]) for s in start)]
    if not same:
        return [s[dropped].copy() for s in start]
    w = np.asarray(sizes, dtype=np.float64)[same]
    w = w / w.sum()
    return [np.tensordot(w, t[same], axes=1).astype(t.dtype) for t in trained]
