"""One flat, frozen experiment configuration: its fields are the CLI options and the
notebook parameters, and ``config.json`` of a run holds all of them."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Config:
    """Everything that determines a run's numbers. Same config, same results."""

    # data and scenario
    dataset: str = "digits"  # a name from `cflkit list`
    scenario: str = "rotation"  # scenario parts joined by '+', e.g. rotation+quantity_skew
    clients: int = 16  # clients in the federation
    groups: int = 4  # planted ground-truth groups
    test_fraction: float = 0.25  # share of each client's samples held out for its test set
    samples_per_client: int = 0  # 0: split the dataset disjointly; >0: draw this many per client
    alpha: float = 0.5  # dirichlet: concentration of each group's class proportions
    classes_per_client: int = 2  # shards: classes seen by each group
    removed_classes: int = 0  # label_skew: classes missing per group (0: classes // groups)
    skew: str = ""  # feature_skew: comma list of per-group transforms ('' = default cycle)
    noise: float = 0.5  # feature_skew: strength of noise / scale / offset
    quantity_exponent: float = 1.5  # quantity_skew: Pareto tail exponent of client sizes
    quantity_ratios: tuple = ()  # quantity_skew: explicit size ratios, cycled over clients
    # model and local training
    model: str = "mlp"  # mlp or cnn
    hidden: tuple = (64, 64)  # hidden layer sizes
    rounds: int = 20  # communication rounds
    local_epochs: int = 5  # local epochs per round (E = 5 as in McMahan et al. 2017)
    batch_size: int = 10  # local minibatch size (B = 10 as in McMahan et al. 2017)
    learning_rate: float = 0.05  # local SGD step size
    jit_compile: bool = False  # XLA-compile the trainer (measured: no gain on small MLPs here)
    # method
    method: str = "fedavg"  # a name from `cflkit list`
    mu: float = 0.01  # fedprox: proximal term weight
    clusters: int = 0  # K for methods that need one (0: as many as planted groups)
    representation: str = ""  # clustered methods: what the server compares ('' = the method's own)
    clusterer: str = ""  # clustered methods: how clients are clustered ('' = the method's own)
    trigger: str = ""  # clustered methods: when: init, once, every, temperature ('' = the method's own)
    metric: str = ""  # distance between representations: euclidean, cosine, principal_angle ('' = own)
    linkage: str = ""  # agglomerative linkage: ward, complete, average, single ('' = the method's own)
    distance_threshold: float = 0.0  # agglomerative / DBSCAN threshold (0: use K, or the method's own)
    warmup_rounds: int = -1  # FedAvg rounds before clustering (-1: the method's own)
    min_cluster_size: int = 2  # HDBSCAN / DBSCAN: smallest cluster
    subspace_dim: int = 3  # pacfl: p, singular vectors per client data subspace
    probe_size: int = 100  # outputs representation: samples in the shared probe set
    eps1: float = 0.4  # sattler: split when the norm of the mean update falls below eps1 ...
    eps2: float = 1.6  # sattler: ... and the largest client update norm exceeds eps2
    restarts: int = 1  # ifca: random restarts of the K initial models
    metadata_key: str = ""  # metadata: client attribute to group by ('' = the federation's first)
    seed: int = 0  # seeds the federation, the model initialisation and the batch order

    def __post_init__(self):
        for f in fields(self):  # every number finite: NaN or infinity means nothing here
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
        for name in ("noise", "mu", "distance_threshold", "eps1", "eps2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(r <= 0 for r in self.quantity_ratios):
            raise ValueError(f"quantity_ratios must all be > 0, got {list(self.quantity_ratios)}")
        if any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {list(self.hidden)}")

    def replace(self, **changes) -> "Config":
        """A copy with ``changes`` applied (values may be strings, as from the CLI)."""
        return dataclasses.replace(self, **{k: coerce(k, v) for k, v in changes.items()})

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return cls().replace(**d)


FIELDS = {f.name: f for f in fields(Config)}
# the smallest value of every integer field (and what a special value means)
INT_MINIMUM = {"clients": 1, "groups": 1, "samples_per_client": 0, "classes_per_client": 1, "removed_classes": 0,
               "rounds": 0, "local_epochs": 1, "batch_size": 1, "clusters": 0, "warmup_rounds": -1,
               "min_cluster_size": 1, "subspace_dim": 1, "probe_size": 1, "restarts": 1, "seed": 0}
INT_MEANING = {"clusters": " (0: as many as the planted groups)", "warmup_rounds": " (-1: the method's own)",
               "samples_per_client": " (0: split the dataset)", "removed_classes": " (0: classes // groups)"}
OPEN_RANGES = {"test_fraction": (0.0, 1.0)}
assert set(INT_MINIMUM) == {f.name for f in fields(Config) if type(f.default) is int}, "every int field has a minimum"


def coerce(name: str, value: Any):
    """Convert ``value`` (possibly a CLI string) to the type of field ``name``."""
    if name not in FIELDS:
        raise ValueError(f"unknown option {name!r}; choose one of: {', '.join(FIELDS)}")
    default = FIELDS[name].default
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
