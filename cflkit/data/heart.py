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


# -- FLamby's Fed-Heart-Disease, exactly (``--set split=flamby``) ----------------------------
FLAMBY_TRAIN_FRACTION = 0.66  # flamby/datasets/fed_heart_disease/dataset.py: train_fraction
FLAMBY_SPLIT_SEED = 43  # its train_test_split(random_state=43): the split is fixed, whatever the run's seed
FLAMBY_FEATURES = ("age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
                   "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2")


def flamby_rows(progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLamby's 13 raw features, binary target and centre of the 740 rows: ``slope``, ``ca``,
    ``thal`` dropped, rows with a missing value dropped, ``cp`` and ``restecg`` one-hot with
    the first level dropped (its ``pd.get_dummies(..., drop_first=True)`` over all centres)."""
    x, y, site = [], [], []
    for i, df in enumerate(read_raw(progress)):
        df = df.drop(columns=list(DROPPED)).dropna()
        cols = [df[n].to_numpy(np.float64) for n in FLAMBY_FEATURES[:8]]
        cols += [(df["cp"] == v).to_numpy(np.float64) for v in (2, 3, 4)]
        cols += [(df["restecg"] == v).to_numpy(np.float64) for v in (1, 2)]
        x.append(np.column_stack(cols))
        y.append((df["num"] > 0).to_numpy(np.int64))
        site.append(np.full(len(df), i, dtype=np.int64))
    return np.concatenate(x), np.concatenate(y), np.concatenate(site)


def flamby_split(y_centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's train / test positions of one centre: ``train_test_split`` with 66 % train,
    ``random_state=43``, shuffled, stratified by the target when both classes have more
    than two rows (Switzerland, 45 of 46 positive, is not stratified)."""
    from sklearn.model_selection import train_test_split

    levels, counts = np.unique(y_centre, return_counts=True)
    stratify = y_centre if len(levels) > 1 and (counts > 2).all() else None
    train, test = train_test_split(np.arange(len(y_centre)), test_size=1.0 - FLAMBY_TRAIN_FRACTION,
                                   train_size=FLAMBY_TRAIN_FRACTION, random_state=FLAMBY_SPLIT_SEED, shuffle=True,
                                   stratify=stratify)
    return np.sort(train), np.sort(test)


def flamby_normalize(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """FLamby's per-centre normalisation: every feature (binary ones too) minus the mean of
    the centre's training rows, over their standard deviation (n - 1) plus 1e-9."""
    mean, std = x[train].mean(axis=0), x[train].std(axis=0, ddof=1)
    return (x - mean) / (std + 1e-9)


def flamby_federation(pooled: bool = False, progress: bool = False):
    """FLamby's Fed-Heart-Disease as a natural federation: four centres, its 13 features, its
    fixed stratified split (486 training / 254 test rows) and per-centre normalisation
    (Ogier du Terrail et al., NeurIPS 2022 Datasets and Benchmarks; ``owkin/FLamby``,
    ``flamby/datasets/fed_heart_disease/dataset.py``). One group: nothing is planted.

    ``pooled``: FLamby's pooled dataset (``FedHeartDisease(pooled=True)``), the same rows and
    split normalised with the statistics of *all* training rows, what a pooled analysis
    would do; the ``centralized`` method runs on it, the federated ones on the per-centre one."""
    from ..core.federation import Federation

    x_all, y_all, site = flamby_rows(progress)
    xs, ys, train_index, test_index, offset = [], [], [], [], 0
    for c in range(len(CENTRES)):
        rows = np.flatnonzero(site == c)
        train, test = flamby_split(y_all[rows])
        xs.append(flamby_normalize(x_all[rows], train))
        ys.append(y_all[rows])
        train_index.append(offset + train)
        test_index.append(offset + test)
        offset += len(rows)
    x = np.concatenate(xs)
    if pooled:  # the rows are in centre order in both arrays
        x = flamby_normalize(x_all, np.concatenate(train_index))
    client_meta = {"country": [c[2] for c in CENTRES], "centre": [c[1] for c in CENTRES],
                   "city": [c[3] for c in CENTRES], "site": list(SITES)}
    fed = Federation(x.astype(np.float32), np.concatenate(ys), train_index, test_index,
                     np.zeros(len(CENTRES), dtype=np.int64), 2, "classification", "tabular", "heart_disease",
                     "natural", ("one group (no ground truth)",),
                     params=dict(clients=len(CENTRES), groups=1, split="flamby-pooled" if pooled else "flamby",
                                 group_by=""),
                     client_meta=client_meta)
    fed.source_rows = np.arange(len(y_all))
    sizes = fed.sizes
    fed.description = (f"heart_disease · natural · FLamby Fed-Heart-Disease split"
                       f"{' (pooled normalisation)' if pooled else ''} · 4 clients (one per centre) · "
                       f"{sizes.min()}–{sizes.max()} training samples per client")
    return fed


# FLamby's published Fed-Heart-Disease accuracies on the pooled test set (254 rows), mean of its
# five seeds 42-46: owkin/FLamby, flamby/results/results_benchmark_fed_heart_disease/heart_seed{42..46}.csv
# (the runs behind the paper's Fig. 3). Pooled and local training: Adam, lr 1e-3, batch 4, 50 epochs;
# FedAvg: SGD, lr 1e-3 (its tuned value), batch 4, 15 rounds of 100 local steps.
FLAMBY_PUBLISHED = {
    "Pooled Training": (0.7913, 0.7953, 0.7953, 0.7992, 0.7953),
    "FedAvg100": (0.7756, 0.7717, 0.7795, 0.7008, 0.7598),
    "FedAdam100": (0.8031, 0.7835, 0.8071, 0.8031, 0.7677),
    "FedYogi100": (0.8071, 0.7913, 0.8071, 0.7992, 0.7598),
}
# Local i on its own centre's test set (client_test_i), same files and seeds
FLAMBY_PUBLISHED_LOCAL = {
    "Cleveland": (0.7500, 0.7500, 0.7500, 0.7500, 0.7692),
    "Hungarian": (0.7528, 0.7640, 0.7640, 0.7416, 0.7416),
    "Switzerland": (0.8125, 0.9375, 0.9375, 0.8125, 0.5625),
    "VA Long Beach": (0.7556, 0.7778, 0.7333, 0.6444, 0.7556),
}
# the protocol, as --set options of `cflkit run` (model, batch size and rounds of each line)
FLAMBY_PROTOCOL = {
    "centralized": dict(method="centralized", rounds=50, local_epochs=1, optimizer="adam", learning_rate=0.001),
    "fedavg": dict(method="fedavg", rounds=15, local_steps=100, optimizer="sgd", learning_rate=0.001),
    "local": dict(method="local", rounds=50, local_epochs=1, optimizer="adam", learning_rate=0.001),
    # FedAdam100 / FedYogi100 of the result files: client SGD, server Adam / Yogi at 0.01, tau 1e-8, betas 0.9/0.999
    "fedadam": dict(method="fedavg", rounds=15, local_steps=100, optimizer="sgd", learning_rate=0.01,
                    server_optimizer="fedadam", server_learning_rate=0.01, server_tau=1e-8, server_beta2=0.999),
    "fedyogi": dict(method="fedavg", rounds=15, local_steps=100, optimizer="sgd", learning_rate=0.003162,
                    server_optimizer="fedyogi", server_learning_rate=0.01, server_tau=1e-8, server_beta2=0.999),
}
FLAMBY_COMMON = dict(dataset="heart_disease", scenario="natural", split="flamby", model="logreg", batch_size=4)
