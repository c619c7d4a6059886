"""cflkit — evaluate, compare and explain Clustered Federated Learning methods.

Importing the package is cheap: TensorFlow is imported only when a model is trained.
"""
from __future__ import annotations

from .core.config import Config, params_for
from .core.datasets import DATASETS, Dataset, load_dataset
from .core.experiment import federation_from, run
from .core.federation import Federation
from .core.loop import DivergenceError
from .core.results import Result, load_run, save_run
from .core.scenarios import SCENARIOS, make_federation

__version__ = "0.1.0"

__all__ = ["Config", "DATASETS", "Dataset", "DivergenceError", "Federation", "Result", "SCENARIOS",
           "federation_from", "load_dataset", "load_run", "make_federation", "params_for", "run", "save_run"]
