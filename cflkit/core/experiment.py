"""One experiment: dataset → scenario → federation → method rounds (:mod:`cflkit.core.loop`) →
history → summary → run directory."""
from __future__ import annotations

import logging

import numpy as np

from .config import Config
from .datasets import DATASETS, load_dataset
from .loop import DivergenceError, run_rounds  # noqa: F401 (DivergenceError: raised by run)
from .metrics import (
    accuracy_summary,
    binary_summary,
    clustering_scores,
    group_summary,
    regression_summary,
    survival_summary,
)
from .models import MODELS
from .results import Result, save_run
from .scenarios import make_federation, parse_scenario

log = logging.getLogger("cflkit")
METHOD_STREAM = 1  # RNG stream of methods and batch order, apart from the federation's


def method_rng(seed: int) -> np.random.Generator:
    """The random stream of a run's method and minibatch order.

    It must differ from the federation's stream (same seed): a random assignment drawn
    like the planted groups would otherwise silently equal them.
    """
    return np.random.default_rng([int(seed), METHOD_STREAM])


def validate(config: Config, method: bool = True):
    """Check names before any heavy work, so that bad input fails at once (``method``: also
    whether the method accepts its parameters together)."""
    from ..methods import METHODS

    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of: {', '.join(METHODS)}")
    if config.model not in MODELS:
        from .models import resolve

        resolve(config.model)  # a user's module:function: importable and callable
    parts = parse_scenario(config.scenario)
    _check_split(config)
    _check_participation(config, METHODS)
    from .server_opt import learning_rate

    if not METHODS[config.method].aggregates and (config.server_optimizer != "none"
                                                 or learning_rate("none", config.server_learning_rate) != 1.0):
        able = [name for name, m in METHODS.items() if m.aggregates]
        raise ValueError(f"method {config.method!r} averages no updates, so it has no server optimizer "
                         f"(server_optimizer={config.server_optimizer!r}, server_learning_rate="
                         f"{config.server_learning_rate:g}); leave them at none and 0, or use one of: "
                         f"{', '.join(able)}")
    if config.drift_round:
        from .drift import check_drift_scenario

        check_drift_scenario(config, parts)
    if config.holdout_clients and not METHODS[config.method].newcomer:
        able = [name for name, m in METHODS.items() if m.newcomer]
        raise ValueError(f"method {config.method!r} has no rule for a client that never trained (holdout_clients="
                         f"{config.holdout_clients}); use holdout_clients=0, or one of: {', '.join(able)}")
    if method:
        from ..methods import make_method

        make_method(config)  # a method refuses parts that cannot work together, cheaply (no TensorFlow)


SPLITS = ("default", "flamby")


def _check_split(config: Config) -> None:
    """``split=flamby`` is FLamby's Fed-Heart-Disease: the natural heart_disease federation only."""
    if config.split not in SPLITS:
        raise ValueError(f"unknown split {config.split!r}; choose one of: {', '.join(SPLITS)}")
    if config.split == "flamby" and (config.dataset, config.scenario) != ("heart_disease", "natural"):
        raise ValueError(f"split 'flamby' is FLamby's Fed-Heart-Disease: it needs --dataset heart_disease "
                         f"--scenario natural, got dataset {config.dataset!r}, scenario {config.scenario!r}")
    if config.split == "flamby":
        defaults = Config()
        for name, fixed in (("clients", 4), ("groups", 1), ("test_fraction", None)):
            value = getattr(config, name)
            if value != getattr(defaults, name) and value != fixed:
                raise ValueError(f"split 'flamby' fixes {name} (4 centres, one group, FLamby's 34 % test share); "
                                 f"leave {name} at its default, got {value}")


def _check_participation(config: Config, methods: dict) -> None:
    """Refuse client sampling or dropouts for a method that does not handle absent clients."""
    from .participation import is_partial

    if is_partial(config) and not methods[config.method].handles_absent(config.params):
        able = [name for name, m in methods.items() if m.handles_absent(m.Params())]
        late = f", arrival_round={config.arrival_round}" if config.arrival_round else ""
        raise ValueError(f"method {config.method!r} does not handle absent clients yet (participation="
                         f"{config.participation:g}, dropout={config.dropout:g}{late}); use participation=1 and "
                         f"dropout=0{' and arrival_round=0' if late else ''}, or one of: {', '.join(able)}")


def federation_from(config: Config):
    """The federation a config describes (same config, same federation)."""
    if config.split == "flamby":
        from ..data.heart import flamby_federation

        return flamby_federation(pooled=config.method == "centralized")  # FLamby's pooled dataset
    return make_federation(
        load_dataset(config.dataset), config.scenario, clients=config.clients, groups=config.groups,
        seed=config.seed, test_fraction=config.test_fraction, samples_per_client=config.samples_per_client,
        alpha=config.alpha, classes_per_client=config.classes_per_client, removed_classes=config.removed_classes,
        skew=config.skew, noise=config.noise, rotation_angle=config.rotation_angle,
        swapped_labels=config.swapped_labels, quantity_exponent=config.quantity_exponent,
        quantity_ratios=config.quantity_ratios)


def build_context(config: Config, federation):
    """What a method sees in a run of ``config`` on ``federation``: the seeded model, the
    trainer, the method's random stream — built exactly as :func:`run` builds it, so a
    notebook can step a method by hand and get the same numbers."""
    from ..methods import Context
    from .models import build_model
    from .trainer import Trainer, initial_weights, seed_keras

    seed_keras(config.seed)
    model = build_model(config.model, federation.input_shape, federation.n_outputs, config.hidden)
    trainer = Trainer.for_config(model, federation, config)
    return Context(federation, trainer, config, method_rng(config.seed), initial_weights(lambda: model))


def run(config: Config, progress: bool = False, federation=None, out=None, force: bool = False) -> Result:
    """Run ``config`` and return its :class:`~cflkit.core.results.Result`; write it to ``out`` if given.

    Round 0 records the untrained starting point; rounds 1..R follow the method.
    Raises ``ValueError`` for bad input, an ``out`` that may not be written (see
    :mod:`cflkit.core.outputs`; ``force`` keeps entries a run did not write) included, before
    training starts, and :class:`DivergenceError` if a loss becomes non-finite.
    """
    import pandas as pd

    from ..methods import make_method

    validate(config)
    if out is not None:
        from .outputs import check_output

        check_output(out, "run", force=force, option="out")
    from .drift import check_drift, drift
    from .holdout import add_newcomers, check_holdout, split_holdout

    fed = federation if federation is not None else federation_from(config)
    check_holdout(config, fed)
    check_drift(config, fed)
    after = None
    if config.drift_round:  # one pooled array for before and after: one trainer
        fed, after, switched = drift(fed, config.drift_fraction, config.seed)
        fed.description = after.description = (f"{fed.description} · drift at round {config.drift_round}: "
                                               f"{len(switched)} clients switch group")
    train_ids, new_ids = split_holdout(fed.n_clients, config.holdout_clients, config.seed)
    trains = fed.subset(train_ids) if len(new_ids) else fed  # the clients the method sees
    method = make_method(config)
    check_fits(method, config, trains)  # drifted clients keep their sizes: the same check holds after
    ctx = build_context(config, trains)
    log.info("run %s on %s", config.method, fed.description)
    later = None if after is None else (config.drift_round, after.subset(train_ids) if len(new_ids) else after)
    done = run_rounds(method, ctx, config.rounds, progress=progress, drift=later)
    state, rows, diagnostics, wall = done.state, done.rows, done.diagnostics, done.wall_seconds
    fed = fed if after is None else after  # the federation as it ends
    if len(new_ids):
        rows, state = add_newcomers(method, done, ctx, fed, train_ids, new_ids)

    history = pd.DataFrame(rows)
    summary = summarize(history, fed, config, wall)
    result = Result(config, history, summary, federation=fed, state=state, diagnostics=diagnostics)
    if out is not None:
        save_run(result, out, force=force)
    return result


def check_fits(method, config: Config, fed):
    """Refuse parameters that the federation's data cannot satisfy, before training."""
    if getattr(method, "representation", "") == "subspace":
        dim = int(np.prod(fed.input_shape))
        smallest = int(min(len(rows) for rows in fed.train_index))
        if method.params.subspace_dim > min(dim, smallest):
            raise ValueError(f"subspace_dim={method.params.subspace_dim} exceeds what the data allow: {dim} features "
                             f"and {smallest} training samples in the smallest client; "
                             f"choose 1..{min(dim, smallest)}")


def summarize(history, fed, config, wall_seconds: float) -> dict:
    """The ``summary.json`` of a run from its history (final round): the clients that trained,
    then apart those held out of training (:func:`~cflkit.core.holdout.unseen_summary`);
    ``bytes_total`` counts everyone's traffic."""
    from .holdout import unseen_summary

    final = history[history["round"] == history["round"].max()].sort_values("client")
    seen = history[history["holdout"] == 0] if "holdout" in history else history
    last = final[final["holdout"] == 0] if "holdout" in final else final
    summary = {"method": config.method, "dataset": config.dataset, "scenario": config.scenario,
               "clients": fed.n_clients, "groups": fed.n_groups}
    summary.update(accuracy_summary(last["accuracy"].to_numpy(), last["test_size"].to_numpy()))
    summary["loss_mean"] = float(last["loss"].mean())
    if fed.task == "regression":
        summary.update(regression_summary(last))
    if fed.task == "survival":
        summary.update(survival_summary(last))
    if "auroc" in last:  # two-class classification (trainer.BINARY_METRICS)
        summary.update(binary_summary(last))
    score = {"regression": "rmse", "survival": "c_index"}.get(fed.task, "accuracy")
    summary.update(group_summary(last, score, lower_is_better=score == "rmse"))
    summary.update(clustering_scores(last["group"].to_numpy(), last["cluster"].to_numpy()))
    summary["n_clusters"] = int(last["cluster"].nunique())
    if "holdout" in final:
        summary.update(unseen_summary(final))
    if config.arrival_round:
        summary.update(late_summary(history, last, config.arrival_round))
    if config.drift_round:
        from .drift import drift_summary

        summary.update(drift_summary(history, config.drift_round))
    summary["stable_round"] = stable_round(seen)
    summary["rounds"] = int(config.rounds)
    summary["bytes_total"] = int(history["bytes_up"].sum() + history["bytes_down"].sum())
    summary["wall_seconds"] = float(wall_seconds)
    return summary


def late_summary(history, last, arrival_round: int) -> dict:
    """The late clients (``arrival_round``) at the end: how many, their accuracy mean
    (classification) and ``late_matched``, the share of them in the cluster holding most of
    the clients there from the start of their group (:func:`~cflkit.core.holdout.matched_share`)."""
    from .holdout import matched_share

    late = set(history.loc[(history["round"] == 0) & (history["joined"] == 0), "client"].tolist())
    new, early = last[last["client"].isin(late)], last[~last["client"].isin(late)]
    out = {"arrival_round": int(arrival_round), "late_clients": len(late), "late_matched": matched_share(new, early)}
    if new["accuracy"].notna().any():
        out["accuracy_late_mean"] = float(new["accuracy"].mean())
    return out


def stable_round(history) -> int:
    """First round from which the partition of clients never changes again (ids may be
    renamed); 0 if it never changed."""
    rounds = sorted(history["round"].unique())
    parts = [history[history["round"] == r].sort_values("client")["cluster"].to_numpy() for r in rounds]
    stable = rounds[-1]
    for i in range(len(rounds) - 1, 0, -1):
        if not same_partition(parts[i - 1], parts[i]):
            break
        stable = rounds[i - 1]
    return int(stable)


def same_partition(a, b) -> bool:
    """Whether two assignments group the clients identically, whatever the ids."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))
