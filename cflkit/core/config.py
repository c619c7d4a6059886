"""One frozen experiment configuration: the shared fields (data, scenario, model, local
training, seed) are the CLI options and the notebook parameters; ``params`` holds the chosen
method's own parameters (:class:`cflkit.methods.params.Params`, declared in the method's
file). ``config.json`` of a run holds all of it and re-runs it; the flat files written
before methods owned their parameters still load (:meth:`Config.from_dict`)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any

# What the config fields of the release before method-owned parameters meant when left at
# their placeholders: loading such a file maps these to the methods' real defaults.
LEGACY_PARAMETERS = ("mu", "clusters", "representation", "clusterer", "trigger", "metric", "linkage",
                     "distance_threshold", "warmup_rounds", "min_cluster_size", "subspace_dim", "probe_size", "eps1",
                     "eps2", "restarts", "metadata_key")
LEGACY_PLACEHOLDERS = {"clusters": (0, "groups"), "warmup_rounds": (-1, None), "representation": ("", None),
                       "clusterer": ("", None), "trigger": ("", None), "metric": ("", None), "linkage": ("", None),
                       "distance_threshold": (0.0, "none"), "metadata_key": ("", "none")}  # old -> new (None: default)


@dataclass(frozen=True, init=False)
class Config:
    """Everything that determines a run's numbers. Same config, same results.

    ``Config(method="ifca", restarts=5)``: keywords that are not shared fields are the
    method's parameters; one the method does not take is an error naming those it does.
    """

    # data and scenario
    dataset: str = "digits"  # a name from `cflkit list`
    scenario: str = "rotation"  # scenario parts joined by '+', e.g. rotation+quantity_skew
    clients: int = 16  # clients in the federation
    groups: int = 4  # planted ground-truth groups
    test_fraction: float = 0.25  # share of each client's samples held out for its test set
    split: str = "default"  # 'flamby' (natural heart_disease): FLamby's features, split and per-centre normalisation
    samples_per_client: int = 0  # 0: split the dataset disjointly; >0: draw this many per client
    alpha: float = 0.5  # dirichlet: concentration of each group's class proportions
    classes_per_client: int = 2  # shards: classes seen by each group
    removed_classes: int = 0  # label_skew: classes missing per group (0: classes // groups)
    skew: str = ""  # feature_skew: comma list of per-group transforms ('' = default cycle)
    noise: float = 0.5  # feature_skew: strength of noise / scale / offset
    rotation_angle: float = 0.0  # rotation (images): degrees between consecutive groups (0: 360/groups, 90 for 4)
    swapped_labels: int = 0  # label_swap: labels each group's permutation moves (0: all; k >= 2: a k-cycle)
    quantity_exponent: float = 1.5  # quantity_skew: Pareto tail exponent of client sizes
    quantity_ratios: tuple = ()  # quantity_skew: explicit size ratios, cycled over clients
    drift_round: int = 0  # drift: from this round on drift_fraction of the clients hold another group's data (0: none)
    drift_fraction: float = 0.25  # drift: share of the clients that switch group at drift_round, in (0, 1]
    # model and local training
    model: str = "mlp"  # logreg, mlp, cnn, or your own as package.module:function (a callable from Python)
    hidden: tuple = (64, 64)  # hidden layer sizes
    rounds: int = 20  # communication rounds
    evaluate_every: int = 1  # test metrics after every this many rounds and the last (clusters: every round)
    local_epochs: int = 5  # local epochs per round (E = 5 as in McMahan et al. 2017)
    local_steps: int = 0  # local minibatch steps per round instead of epochs (FLamby's protocol; 0: use local_epochs)
    batch_size: int = 10  # local minibatch size (B = 10 as in McMahan et al. 2017)
    learning_rate: float = 0.05  # local SGD step size
    optimizer: str = "sgd"  # client optimizer: sgd, momentum, adam (Keras's rules; state reset every round)
    momentum: float = 0.9  # optimizer 'momentum': velocity decay (Sattler et al.'s 0.9; Keras's SGD default is 0)
    beta1: float = 0.9  # optimizer 'adam': first-moment decay (Keras's default)
    beta2: float = 0.999  # optimizer 'adam': second-moment decay (Keras's default)
    epsilon: float = 1e-7  # optimizer 'adam': added to the root of the second moment (Keras's default)
    server_optimizer: str = "none"  # per cluster model: none (plain averaging), fedavgm, fedadam, fedyogi, fedadagrad
    server_learning_rate: float = 0.0  # server step size (0: 1 for none/fedavgm, 0.01 for the adaptive rules)
    server_momentum: float = 0.9  # fedavgm: server momentum (Hsu et al. 2019)
    server_beta1: float = 0.9  # fedadam/fedyogi/fedadagrad: first-moment decay (Reddi et al. 2021)
    server_beta2: float = 0.99  # fedadam/fedyogi: second-moment decay (Reddi et al. 2021)
    server_tau: float = 1e-3  # adaptive rules: adaptivity, added to the root of v; v starts at tau^2 (Reddi et al.)
    jit_compile: bool = False  # XLA-compile the trainer (MLP rounds 1.1-1.7x faster here, CNNs much slower: bench/)
    shards: int = 1  # train the round's clients in this many concurrent groups (2 cores: 1.1-1.2x; same up to rounding)
    # who takes part in a round
    participation: float = 1.0  # share of the clients sampled to train each round, in (0, 1]
    min_participants: int = 1  # at least this many clients are sampled each round
    dropout: float = 0.0  # probability that a sampled client's update does not arrive, in [0, 1)
    holdout_clients: int = 0  # clients that never train, assigned by the method's newcomer rule at the end
    arrival_round: int = 0  # late clients: arrival_fraction of the clients join only at this round (0: none)
    arrival_fraction: float = 0.25  # late clients: share of the clients absent before arrival_round, in (0, 1]
    # method
    method: str = "fedavg"  # a name from `cflkit list`
    params: Any = None  # the method's own parameters (`cflkit list METHOD`); None: its defaults
    seed: int = 0  # seeds the federation, the model initialisation and the batch order

    def __init__(self, **values):
        params = values.pop("params", None)
        method_params = {k: values.pop(k) for k in list(values) if k not in FIELDS}
        for name, f in FIELDS.items():
            object.__setattr__(self, name, coerce(name, values[name]) if name in values else f.default)
        object.__setattr__(self, "params", make_params(self.method, params, method_params))
        self._check()

    def _check(self):
        for f in shared_fields():  # every number finite: NaN or infinity means nothing here
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise ValueError(f"{f.name} must be a finite number, got {value}")
        for name, low in INT_MINIMUM.items():
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}{INT_MEANING.get(name, '')}, got {getattr(self, name)}")
        for name, (low, high) in OPEN_RANGES.items():
            if not low < getattr(self, name) < high:
                raise ValueError(f"{name} must be in ({low:g}, {high:g}), got {getattr(self, name)}")
        for name in ("learning_rate", "alpha", "quantity_exponent"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("noise", "rotation_angle"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.participation <= 1:
            raise ValueError(f"participation must be in (0, 1] (the share of clients sampled each round), "
                             f"got {self.participation}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1) (the probability that an update is lost), got {self.dropout}")
        if self.holdout_clients >= self.clients:
            raise ValueError(f"holdout_clients must be in 0..clients-1={self.clients - 1} (at least one client "
                             f"trains), got {self.holdout_clients}")
        if self.drift_round > self.rounds:
            raise ValueError(f"drift_round must be in 0..rounds={self.rounds} (0: no drift), got {self.drift_round}")
        if not 0 < self.drift_fraction <= 1:
            raise ValueError(f"drift_fraction must be in (0, 1] (the share of clients that switch group), "
                             f"got {self.drift_fraction}")
        if self.arrival_round > self.rounds:
            raise ValueError(f"arrival_round must be in 0..rounds={self.rounds} (0: every client from the start), "
                             f"got {self.arrival_round}")
        if self.arrival_round and self.clients - self.holdout_clients < 2:
            raise ValueError(f"arrival_round={self.arrival_round} needs at least 2 training clients (one there from "
                             f"the start), got clients={self.clients}, holdout_clients={self.holdout_clients}")
        if not 0 < self.arrival_fraction <= 1:
            raise ValueError(f"arrival_fraction must be in (0, 1] (the share of clients that join late), "
                             f"got {self.arrival_fraction}")
        if self.min_participants > self.clients:
            raise ValueError(f"min_participants must be in 1..clients={self.clients}, got {self.min_participants}")
        from .trainer import OPTIMIZERS

        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        for name in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")
        from .server_opt import SERVER_OPTIMIZERS

        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(f"unknown server_optimizer {self.server_optimizer!r}; choose one of: "
                             f"{', '.join(SERVER_OPTIMIZERS)}")
        if not (self.server_learning_rate >= 0 and math.isfinite(self.server_learning_rate)):
            raise ValueError(f"server_learning_rate must be >= 0 (0: the server optimizer's default), "
                             f"got {self.server_learning_rate}")
        for name in ("server_momentum", "server_beta1", "server_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.server_tau <= 0:
            raise ValueError(f"server_tau must be > 0, got {self.server_tau}")
        if any(r <= 0 for r in self.quantity_ratios):
            raise ValueError(f"quantity_ratios must all be > 0, got {list(self.quantity_ratios)}")
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {list(self.hidden)}")

    def replace(self, **changes) -> "Config":
        """A copy with ``changes`` applied (values may be strings, as from the CLI). Shared
        fields and the method's parameters mix; a new ``method`` starts from its own
        defaults (parameters are not carried from one method to another)."""
        values = {name: getattr(self, name) for name in FIELDS}
        method = coerce("method", changes["method"]) if "method" in changes else self.method
        if "params" not in changes and method == self.method:
            values["params"] = self.params
        return Config(**{**values, **changes})

    def to_dict(self) -> dict:
        out = {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in FIELDS}
        out["params"] = self.params.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """The config a ``config.json`` holds: this release's (method parameters under
        ``params``) or the flat one of the release before, whose placeholders (``clusters=0``,
        ``warmup_rounds=-1``, ``''`` for a method's own part) mean the methods' defaults and
        whose fields for other methods' parameters are left out."""
        if not isinstance(d, dict):
            raise ValueError(f"a config is an object of fields, got {type(d).__name__}")
        d = dict(d)
        if "params" in d:
            params = d.pop("params")
            if params is not None and not isinstance(params, dict):
                raise ValueError(f"params must be an object of the method's parameters, got {params!r}")
            return cls(**d, params=params)
        if all(k in d for k in LEGACY_PARAMETERS):
            method = coerce("method", d.get("method", "fedavg"))
            own = method_class(method).Params.names()
            for key in LEGACY_PARAMETERS:
                value = d.pop(key)
                old, new = LEGACY_PLACEHOLDERS.get(key, (object(), None))
                if key in own and value != old:
                    d[key] = value
                elif key in own and new is not None:
                    d[key] = new
        return cls(**d)


def shared_fields() -> list:
    """The config's fields but ``params``: data, scenario, model, training, method, seed."""
    return [f for f in fields(Config) if f.name != "params"]


def method_class(method: str):
    """The class of method ``method``; ``ValueError`` naming the methods."""
    from ..methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[method]


def make_params(method: str, params=None, changes: dict | None = None):
    """The parameters of ``method``: ``params`` (its dataclass, a dict, or None for its
    defaults) with ``changes``; errors name the method and the parameters it takes."""
    cls = method_class(method).Params
    if params is None:
        params = {}
    if isinstance(params, dict):
        changes = {**params, **(changes or {})}
        params = None
    elif type(params) is not cls:
        raise ValueError(f"params of method {method!r} must be {cls.__name__}, got {type(params).__name__}")
    changes = changes or {}
    for key in changes:
        if key not in cls.names():
            raise ValueError(_unknown_parameter(method, key, cls))
    try:
        return dataclasses.replace(params, **changes) if params is not None else cls(**changes)
    except TypeError as e:  # a value the dataclass cannot take at all
        raise ValueError(f"method {method!r}: {e}") from None


def _unknown_parameter(method: str, key: str, cls) -> str:
    from ..methods import METHODS

    if not any(key in m.Params.names() for m in METHODS.values()):
        return (f"unknown option {key!r}; choose one of: {', '.join(FIELDS)}, or a parameter of the method "
                f"(`cflkit list {method}`)")
    takes = f"its parameters: {', '.join(cls.names())}" if cls.names() else "it takes no parameters"
    return f"method {method!r} has no parameter {key!r}; {takes} (`cflkit list {method}`)"


def params_for(method: str, **settings) -> dict:
    """The ``settings`` that ``method`` takes as parameters (the others are left out), e.g.
    ``Config(method=m, **params_for(m, clusters=2, restarts=5))`` for any ``m``; a name that
    is no method's parameter raises ``ValueError``."""
    known = parameter_names()
    for key in settings:
        if key not in known and key not in FIELDS:
            raise ValueError(_unknown_parameter(method, key, method_class(method).Params))
    own = method_class(method).Params.names()
    return {k: v for k, v in settings.items() if k in own}


def parameter_names() -> dict:
    """Every method parameter's name -> the methods that take it."""
    from ..methods import METHODS

    names: dict = {}
    for m in METHODS.values():
        for n in m.Params.names():
            names.setdefault(n, []).append(m.name)
    return names


FIELDS = {f.name: f for f in fields(Config) if f.name != "params"}
# the smallest value of every integer field (and what a special value means)
INT_MINIMUM = {"clients": 1, "groups": 1, "samples_per_client": 0, "classes_per_client": 1, "removed_classes": 0,
               "rounds": 0, "local_epochs": 1, "local_steps": 0, "batch_size": 1, "min_participants": 1,
               "holdout_clients": 0, "shards": 1, "swapped_labels": 0, "evaluate_every": 1,
               "drift_round": 0, "arrival_round": 0, "seed": 0}
INT_MEANING = {"samples_per_client": " (0: split the dataset)", "local_steps": " (0: use local_epochs)",
               "removed_classes": " (0: classes // groups)",
               "drift_round": " (0: no drift)", "arrival_round": " (0: every client from the start)"}
OPEN_RANGES = {"test_fraction": (0.0, 1.0)}
assert set(INT_MINIMUM) == {n for n, f in FIELDS.items() if type(f.default) is int}, "every int field has a minimum"


def coerce(name: str, value: Any):
    """Convert ``value`` (possibly a CLI string) to the type of field ``name``."""
    if name not in FIELDS:
        raise ValueError(f"unknown option {name!r}; choose one of: {', '.join(FIELDS)}")
    default = FIELDS[name].default
    if name == "model" and callable(value):
        from .models import model_name

        return model_name(value)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            if value not in (True, False):  # 0 and 1 count, other numbers do not
                raise ValueError
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            kind = int if name == "hidden" else float
            return tuple(_number(kind, v) for v in items if str(v).strip() != "")
        if isinstance(default, (int, float)):
            return _number(type(default), value)
        if not isinstance(value, str):  # e.g. a number in a config.json where a name belongs
            raise ValueError
        return value
    except (TypeError, ValueError, OverflowError):
        kind = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                "tuple": "a comma list of numbers"}[type(default).__name__]
        raise ValueError(f"option {name!r} expects {kind}, got {value!r}") from None


def _number(kind, value):
    """``value`` as an ``int`` or ``float``; booleans are not numbers, an int must be whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError
    if isinstance(value, str):
        value = value.strip()
        return int(value) if kind is int else float(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    return float(value)


def help_text(name: str) -> str:
    """The comment after a field in this file: the option's one-line help."""
    import inspect

    for line in inspect.getsource(Config).splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return ""
