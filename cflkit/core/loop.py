"""The one round loop: in-process runs (:func:`cflkit.core.experiment.run`) and Flower runs
(:func:`cflkit.flower.server.run_on_grid`) both go through :func:`run_rounds`.

The loop owns the round counter (it hands ``r`` to the method's ``round``), the draw of
each round's participants (:mod:`cflkit.core.participation`, put in ``ctx.participants``),
the evaluation of every client with its cluster's model after every round (participant or
not), the divergence check, the progress bar, the history rows and the per-round wall
time. A deployment supplies only what differs, through :class:`Hooks`: its trainer (in
``ctx``), what happens around a round (Flower: the round's start, the progress file) and
which clients were not measured (Flower: the dropped ones).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

HISTORY_COLUMNS = ("round", "client", "group", "cluster", "loss", "accuracy", "train_size", "test_size", "bytes_up",
                   "bytes_down", "participated", "returned", "joined", "holdout",
                   "seconds")  # and the task's other metrics after accuracy (trainer.metric_names: binary
# classification adds auroc, auprc, balanced_accuracy; regression rmse, mae, r2)


SHOWN = {"classification": ("accuracy", "acc"), "regression": ("rmse", "rmse"),
         "survival": ("c_index", "c_index")}  # per task: the score record() returns, its progress-bar label


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss."""


class Hooks:
    """What a deployment adds to the loop; the in-process run uses these no-ops."""

    def begin_round(self, r: int, state) -> None:
        """Before round ``r`` (0: before ``init``) is computed."""

    def end_round(self, r: int, state) -> None:
        """After round ``r`` is recorded."""

    def evaluates(self, r: int) -> bool:
        """Whether the clients' test metrics are measured after round ``r``."""
        return True

    def unmeasured(self) -> set:
        """Clients whose metrics could not be measured this round (NaN in the history)."""
        return set()

    def columns(self, r: int, n_clients: int) -> dict:
        """Extra history columns of round ``r``, one value per client."""
        return {}


@dataclass
class Rounds:
    """What the loop produced: the final state, the history rows, the method's per-round
    diagnostics and the wall time from ``init`` to the last round."""

    state: object
    rows: list
    diagnostics: list
    wall_seconds: float


def run_rounds(method, ctx, rounds: int, progress: bool = False, hooks: Hooks | None = None,
               label: str | None = None, drift: tuple | None = None) -> Rounds:
    """``method.init``, then ``method.round(state, ctx, r)`` for r = 1..``rounds``; after each
    (and after ``init``, as round 0) every client is evaluated with its cluster's model.
    ``drift = (d, after)``: from round d on the method sees federation ``after``
    (:mod:`cflkit.core.drift`; same clients and pooled rows as ``ctx.federation``).
    Raises :class:`DivergenceError` when a measured loss is not finite."""
    from .participation import draw_participants, is_partial, late_clients, participation_rng

    hooks = hooks or Hooks()
    fed, config = ctx.federation, ctx.config
    partial, stream = is_partial(config), participation_rng(config.seed)
    arrival = config.arrival_round
    if arrival:  # the late clients are not there before their round (cflkit.core.participation)
        ctx.joined_ids = np.setdiff1d(np.arange(fed.n_clients),
                                      late_clients(fed.n_clients, config.arrival_fraction, config.seed))
    from .server_opt import ServerOptimizer

    server = ServerOptimizer.for_config(config) if method.aggregates else None  # validate() refuses the others
    start = time.perf_counter()
    hooks.begin_round(0, None)
    state = method.init(ctx)
    rows, diagnostics = [], []
    zeros = np.zeros(fed.n_clients, dtype=np.int64)
    record(rows, 0, state, ctx, zeros, zeros, time.perf_counter() - start, hooks)  # round 0: nobody trained
    bar = progress_bar(rounds, progress, label or config.method)
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        hooks.begin_round(r, state)
        if drift is not None and r == drift[0]:
            ctx.federation = drift[1]
        if arrival and r == arrival:
            ctx.joined_ids = None  # everybody is there from now on
        if partial:
            ctx.participants = draw_participants(fed.n_clients, config.participation, config.dropout, stream,
                                                 config.min_participants, pool=ctx.joined_ids)
        before = state
        state, info = method.round(state, ctx, r)
        if server is not None:
            state = server_step(server, before, state, ctx)
        diagnostics.append({"round": r, **info.diagnostics})
        loss, score = record(rows, r, state, ctx, info.bytes_up, info.bytes_down, time.perf_counter() - t0, hooks)
        if loss is not None:
            check_finite(loss, r, config, skip=hooks.unmeasured() | set(absent(ctx).tolist()))
        hooks.end_round(r, state)
        if bar is not None:
            shown = {} if score is None else {SHOWN[fed.task][1]: f"{np.nanmean(score):.3f}"}
            bar.set_postfix(loss="" if loss is None else f"{np.nanmean(loss):.3f}", **shown, clusters=state.n_clusters)
            bar.update(1)
    if bar is not None:
        bar.close()
    return Rounds(state, rows, diagnostics, time.perf_counter() - start)


def server_step(server, before, after, ctx):
    """``after`` (the state the method's round made) with the server optimizer applied to
    every cluster model that got an update this round (:mod:`cflkit.core.server_opt`)."""
    old, old_assignment = before.server_models()
    new, assignment = after.server_models()
    k = int(new[0].shape[0])
    updated = np.zeros(k, dtype=bool)
    updated[np.unique(np.asarray(assignment)[ctx.returned])] = True
    for c in np.flatnonzero(updated):  # kept bit for bit: no update reached it
        if c < old[0].shape[0] and all(np.array_equal(n[c], o[c]) for n, o in zip(new, old)):
            updated[c] = False
    return after.with_server_models(server.step(old, new, old_assignment, assignment, updated))


def record(rows: list, r: int, state, ctx, up, down, seconds: float, hooks: Hooks):
    """Append round ``r``'s history rows (one per client); return its losses and scores
    (None when the round was not evaluated)."""
    from .trainer import metric_names

    fed = ctx.federation
    evaluated = hooks.evaluates(r) and evaluation_round(r, ctx.config)
    if evaluated:
        m = ctx.trainer.metrics(state.client_models(), fed.test_index)
    else:
        m = {k: np.full(fed.n_clients, np.nan) for k in metric_names(fed.task, fed.n_classes)}
    if "accuracy" not in m:
        m = {**m, "accuracy": np.full(fed.n_clients, np.nan)}  # the column exists for every task
    joined = np.ones(fed.n_clients, dtype=np.int64)
    joined[absent(ctx)] = 0
    if not joined.all():  # a client that has not joined yet is not evaluated
        m = {k: np.where(joined == 1, v, np.nan) for k, v in m.items()}
    extra = hooks.columns(r, fed.n_clients)
    took_part = np.zeros(fed.n_clients, dtype=np.int64)
    arrived = np.zeros(fed.n_clients, dtype=np.int64)
    if r > 0:
        took_part[ctx.sampled] = 1
        arrived[ctx.returned] = 1
        arrived[list(hooks.unmeasured())] = 0  # Flower: a dropped node's update did not arrive
    for c in range(fed.n_clients):
        rows.append({"round": r, "client": c, "group": int(fed.groups[c]), "cluster": int(state.assignment[c]),
                     **{k: float(v[c]) for k, v in m.items()},
                     "train_size": int(len(fed.train_index[c])), "test_size": int(len(fed.test_index[c])),
                     "bytes_up": int(up[c]), "bytes_down": int(down[c]), "participated": int(took_part[c]),
                     "returned": int(arrived[c]), "joined": int(joined[c]), "holdout": 0, "seconds": seconds,
                     **{k: v[c] for k, v in extra.items()}})
    if not evaluated:
        return None, None
    return m["loss"], m[SHOWN[fed.task][0]]


def evaluation_round(r: int, config) -> bool:
    """Whether round ``r`` measures the clients' test metrics: every ``evaluate_every`` rounds,
    round 0 and the last always (the summary is the last round's)."""
    return r % config.evaluate_every == 0 or r >= config.rounds


def absent(ctx) -> np.ndarray:
    """The clients that have not joined the federation yet (``arrival_round``)."""
    return np.setdiff1d(np.arange(ctx.federation.n_clients), ctx.joined)


def check_finite(loss, r: int, config, skip=()):
    """Raise :class:`DivergenceError` if a client's loss (clients in ``skip`` aside) is not finite."""
    bad = np.flatnonzero(~np.isfinite(loss) & ~np.isin(np.arange(len(loss)), list(skip)))
    if bad.size:
        raise DivergenceError(f"training diverged at round {r}: non-finite loss for clients {bad[:8].tolist()}; "
                              f"lower learning_rate (now {config.learning_rate:g})")


def progress_bar(total: int, progress: bool, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="round", leave=False)
