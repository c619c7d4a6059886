"""Datasets: arrays plus what a scenario needs to know about them.

Built in and offline: scikit-learn's ``digits`` (8×8 images, 10 classes) and
``breast_cancer`` (30 tabular features, benign / malignant). Real, downloaded once into
the cache (or read from an offline directory, see :mod:`cflkit.data`): UCI Heart Disease
(4 hospitals), UCI Beijing Multi-Site Air Quality (12 stations; PM2.5 regression and AQI
bands), PM2.5 of five Chinese cities (16 sites), UCI Parkinsons Telemonitoring (42
patients), PhysioNet 2012 (4 ICU types), MedMNIST files, MNIST and Fashion-MNIST. Datasets with sites carry per-row
``meta["site"]`` and per-site ``meta["site_meta"]``, which the ``natural`` scenario uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Samples ``x`` (images ``(N, H, W, 1)`` in [0, 1] or tabular ``(N, F)``) and labels ``y``."""

    name: str
    x: np.ndarray
    y: np.ndarray
    kind: str  # "image" or "tabular"
    task: str = "classification"
    n_classes: int = 0
    feature_names: tuple = ()
    citation: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"dataset {self.name!r}: {len(self.x)} samples but {len(self.y)} labels")
        if self.kind not in ("image", "tabular"):
            raise ValueError(f"dataset kind must be 'image' or 'tabular', got {self.kind!r}")

    def __len__(self) -> int:
        return len(self.y)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return Dataset("digits", x, d.target.astype(np.int64), "image", n_classes=10,
                   feature_names=tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
                   citation="Alpaydin & Kaynak (1998), UCI Optical Recognition of Handwritten Digits")


def _breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    # Standardised with pooled statistics: a simulation convenience (the real federations
    # of the data issue standardise per client without leaking across clients).
    x = d.data.astype(np.float64)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    return Dataset("breast_cancer", x, d.target.astype(np.int64), "tabular", n_classes=2,
                   feature_names=tuple(str(n) for n in d.feature_names),
                   citation="Wolberg, Street & Mangasarian (1995), UCI Breast Cancer Wisconsin (Diagnostic)")


def _lazy(module: str, function: str, *args) -> Callable[[], Dataset]:
    """A loader that imports ``cflkit.data.<module>`` only when the dataset is loaded."""
    def load() -> Dataset:
        import importlib

        return getattr(importlib.import_module(f"cflkit.data.{module}"), function)(*args)
    return load


DATASETS: dict[str, tuple[Callable[[], Dataset], str]] = {
    "digits": (_digits, "8x8 handwritten digits, 1797 images, 10 classes (scikit-learn, offline)"),
    "breast_cancer": (_breast_cancer,
                      "Wisconsin breast cancer, 569 patients, 30 features, 2 classes (scikit-learn, offline)"),
    "heart_disease": (_lazy("heart", "load_heart_disease"),
                      "UCI Heart Disease, 4 hospitals (natural), 740 patients, 15 features, 2 classes "
                      "(download, CC BY 4.0)"),
    "air_quality": (_lazy("air_quality", "load_air_quality", "regression"),
                    "Beijing air quality, 12 stations (natural), ~16,600 station-days, PM2.5 regression "
                    "(download, CC BY 4.0)"),
    "air_quality_bands": (_lazy("air_quality", "load_air_quality", "bands"),
                          "Beijing air quality, 12 stations (natural), ~16,600 station-days, 6 AQI PM2.5 bands "
                          "(download, CC BY 4.0)"),
    "physionet2012": (_lazy("physionet2012", "load_physionet2012"),
                      "PhysioNet 2012 ICU mortality, 4 ICU types (natural), 8000 stays (set-a train, set-b test), "
                      "226 features, 2 classes (download, ODC-By 1.0)"),
    "physionet2012_subsites": (_lazy("physionet2012", "load_physionet2012", 4),
                               "PhysioNet 2012 ICU mortality, 16 seeded sub-sites (natural, grouped by ICU type), "
                               "same stays and split (download, ODC-By 1.0)"),
    "tcga_brca": (_lazy("tcga_brca", "load_tcga_brca"),
                  "FLamby Fed-TCGA-BRCA, 6 regions (natural), 1088 patients (FLamby's 866 / 222 split), "
                  "39 clinical features, survival (event, time) (download, MIT / GDC data-use policies)"),
    "pm25_cities": (_lazy("pm25_cities", "load_pm25_cities", "site"),
                    "PM2.5 of five Chinese cities, 16 sites (natural, grouped by city), 18,224 site-days, "
                    "PM2.5 regression from weather (download, CC BY 4.0)"),
    "pm25_cities_city": (_lazy("pm25_cities", "load_pm25_cities", "city"),
                         "PM2.5 of five Chinese cities, 5 cities (natural, grouped north / south), same rows "
                         "(download, CC BY 4.0)"),
    "parkinsons": (_lazy("parkinsons", "load_parkinsons", "total"),
                   "UCI Parkinsons telemonitoring, 42 patients (natural), 5875 recordings, 16 voice features, "
                   "total UPDRS regression (download, CC BY 4.0)"),
    "parkinsons_motor": (_lazy("parkinsons", "load_parkinsons", "motor"),
                         "UCI Parkinsons telemonitoring, 42 patients (natural), 5875 recordings, 16 voice features, "
                         "motor UPDRS regression (download, CC BY 4.0)"),
    "pneumoniamnist": (_lazy("medmnist", "load_medmnist", "pneumoniamnist"),
                       "MedMNIST chest X-rays 28x28, 5856 images, 2 classes (download, CC BY 4.0)"),
    "breastmnist": (_lazy("medmnist", "load_medmnist", "breastmnist"),
                    "MedMNIST breast ultrasound 28x28, 780 images, 2 classes (download, CC BY 4.0)"),
    "retinamnist": (_lazy("medmnist", "load_medmnist", "retinamnist"),
                    "MedMNIST retinal fundus 28x28 RGB, 1600 images, 5 grades (download, CC BY 4.0)"),
    "bloodmnist": (_lazy("medmnist", "load_medmnist", "bloodmnist"),
                   "MedMNIST blood cells 28x28 RGB, 17092 images, 8 classes (download, CC BY 4.0)"),
    "organamnist": (_lazy("medmnist", "load_medmnist", "organamnist"),
                    "MedMNIST abdominal CT 28x28, 58830 images, 11 classes (download, CC BY 4.0)"),
    "mnist": (_lazy("mnist", "load_mnist"),
              "MNIST handwritten digits 28x28, 70000 images, 10 classes (download via Keras, CC BY-SA 3.0)"),
    "fashion_mnist": (_lazy("mnist", "load_fashion_mnist"),
                      "Fashion-MNIST 28x28, 70000 images, 10 classes (download via Keras, MIT)"),
}


def natural_datasets() -> list[str]:
    """The datasets with sites, for ``--scenario natural``: those whose description says
    "(natural" (the convention of :data:`DATASETS`)."""
    return [name for name, (_, text) in DATASETS.items() if "(natural" in text]


def load_dataset(name: str) -> Dataset:
    """Load a registered dataset by name."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name][0]()
