"""UCI Heart Disease, four hospitals: the FLamby "Fed-Heart-Disease" preprocessing.

Janosi, Steinbrunn, Pfisterer & Detrano (1988), UCI Machine Learning Repository,
DOI 10.24432/C52P4X, CC BY 4.0. FLamby: Ogier du Terrail et al. (2022), "FLamby: Datasets
and Benchmarks for Cross-Silo Federated Learning in Realistic Healthcare Settings",
NeurIPS Datasets and Benchmarks.

Preprocessing (as FLamby): drop ``slope``, ``ca`` and ``thal`` (mostly missing outside
Cleveland), drop rows with any remaining missing value (740 of 920 rows stay:
303 / 261 / 46 / 130), binary target ``num > 0``. Then ``cp`` (chest-pain type 1..4) and
``restecg`` (0..2) are one-hot encoded, which gives 15 features.

Standardisation: ``Dataset.x`` has the five continuous features (age, trestbps, chol,
thalach, oldpeak) standardised with *pooled* statistics — a convenience for the planted
scenarios only. The ``natural`` scenario re-standardises each hospital with the mean and
standard deviation of *its own training rows* (from ``meta["raw_x"]``), so nothing about
another hospital, nor about its own test rows, enters a client's features. Binary and
one-hot columns stay 0/1.
"""
from __future__ import annotations

import numpy as np

from .cache import RemoteFile, Source, fetch

BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"
CENTRES = (  # file stem, centre name, country, city
    ("cleveland", "Cleveland Clinic Foundation", "USA", "Cleveland"),
    ("hungarian", "Hungarian Institute of Cardiology", "Hungary", "Budapest"),
    ("switzerland", "University Hospitals Zurich and Basel", "Switzerland", "Zurich/Basel"),
    ("va", "VA Medical Center Long Beach", "USA", "Long Beach"),
)
SITES = ("Cleveland", "Hungarian", "Switzerland", "VA Long Beach")
SHA256 = {
    "cleveland": "a74b7efa387bc9d108d7d0115d831fe9b414b29ae7124f331b622b4efa0427c8",
    "hungarian": "d1ad108f785768cd3d7e82dc522e6f5a61eea93cccfb3a46ee8076f73fc3d796",
    "switzerland": "834a405ccf5b66ab4056bb77794adc8df0b7125186454c0a1d002d33c6c3b314",
    "va": "e7c93d8d0d2acdadfa4c5e8de768e2191e7f618b952e29623f1f0d5949ff6b8f",
}
SIZES = {"cleveland": 18461, "hungarian": 10263, "switzerland": 4109, "va": 6737}
COLUMNS = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak",
           "slope", "ca", "thal", "num")
DROPPED = ("slope", "ca", "thal")
CONTINUOUS = ("age", "trestbps", "chol", "thalach", "oldpeak")
CITATION = ("Janosi, Steinbrunn, Pfisterer & Detrano (1988), UCI Heart Disease, DOI 10.24432/C52P4X; "
            "preprocessing of FLamby Fed-Heart-Disease (Ogier du Terrail et al., NeurIPS 2022)")

SOURCE = Source(
    name="heart_disease_uci",
    files=tuple(RemoteFile(f"processed.{c}.data", BASE + f"processed.{c}.data", sha256=SHA256[c], size=SIZES[c])
                for c, *_ in CENTRES),
    licence="CC BY 4.0",
    citation=CITATION,
    homepage="https://archive.ics.uci.edu/dataset/45/heart+disease",
    datasets=("heart_disease",),
)


def read_raw(progress: bool = False) -> list:
    """The four ``processed.*.data`` tables (pandas, ``?`` as NaN), checksums verified."""
    import pandas as pd

    paths = fetch(SOURCE, progress=progress)
    return [pd.read_csv(paths[f"processed.{c}.data"], header=None, names=list(COLUMNS), na_values="?")
            for c, *_ in CENTRES]


def load_heart_disease(progress: bool = False):
    """The 740-patient, four-hospital Heart Disease dataset (FLamby preprocessing)."""
    import pandas as pd

    from ..core.datasets import Dataset

    frames = []
    for i, df in enumerate(read_raw(progress)):
        df = df.drop(columns=list(DROPPED)).dropna().copy()
        df["site"] = i
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    y = (df["num"] > 0).to_numpy(np.int64)
    cols = {name: df[name].to_numpy(np.float64) for name in ("age", "sex", "trestbps", "chol", "fbs",
                                                              "thalach", "exang", "oldpeak")}
    for v in (1, 2, 3, 4):
        cols[f"cp_{v}"] = (df["cp"] == v).to_numpy(np.float64)
    for v in (0, 1, 2):
        cols[f"restecg_{v}"] = (df["restecg"] == v).to_numpy(np.float64)
    names = tuple(cols)
    raw = np.column_stack([cols[n] for n in names])
    scale = np.array([n in CONTINUOUS for n in names])
    x = pooled_standardize(raw, scale)
    site_meta = {"country": [c[2] for c in CENTRES], "centre": [c[1] for c in CENTRES],
                 "city": [c[3] for c in CENTRES]}
    meta = {"site": df["site"].to_numpy(np.int64), "sites": SITES, "site_meta": site_meta,
            "group_by": "", "raw_x": raw, "standardize": scale, "licence": SOURCE.licence}
    return Dataset("heart_disease", x, y, "tabular", n_classes=2, feature_names=names,
                   citation=CITATION, meta=meta)


def pooled_standardize(raw: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``raw`` with ``columns`` standardised over all rows (planted scenarios only)."""
    x = raw.astype(np.float64).copy()
    mean, std = x[:, columns].mean(0), x[:, columns].std(0)
    x[:, columns] = (x[:, columns] - mean) / np.where(std > 0, std, 1.0)
    return x.astype(np.float32)
