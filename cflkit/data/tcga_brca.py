"""FLamby Fed-TCGA-BRCA: breast-cancer survival from clinical data, one client per region.

Ogier du Terrail et al. (2022), "FLamby: Datasets and Benchmarks for Cross-Silo Federated
Learning in Realistic Healthcare Settings", NeurIPS Datasets and Benchmarks; the table is
FLamby's ``flamby/datasets/fed_tcga_brca/brca.csv`` (owkin/FLamby, MIT), the preprocessing of
Andreux et al. (2020, arXiv:2006.08997) of the TCGA Pan-Cancer Clinical Data Resource (Liu et
al., Cell 2018). The data is TCGA open-access data, subject to the GDC data-use policies
(https://gdc.cancer.gov/access-data/data-access-processes-and-tools): in particular, do not
attempt to identify the participants.

What FLamby does, and so this module (read in FLamby at :data:`COMMIT`):

- rows: the 1088 patients of ``train_test_split.csv`` (``brca.csv`` holds 1096: the 8 others,
  from tissue-source sites of region "Other", are in no FLamby split and are left out here);
- features: the 39 columns after ``pid``, as they are in ``brca.csv``: ``age_at_index`` in
  years (26..90, *not* normalised) and 38 one-hot 0/1 columns. FLamby feeds them to its model
  as they are, and so does this loader (``meta["standardize"]`` is all False);
- labels: ``y = (E, T)``, float32, of shape (N, 2): E = 1 for an observed death, 0 for a
  censored patient; T the time (days) to the event or the censoring;
- clients: the region of the patient's tissue-source site, the second field of the TCGA
  barcode (``TCGA-<TSS>-<participant>``) looked up in ``centers.csv``; FLamby's centre ``k``
  (``fold2 = train_k / test_k``) is :data:`REGIONS` ``[k]`` (the loader checks that both
  agree, row by row);
- split: fixed, FLamby's ``fold`` column (866 train / 222 test, stratified by region):
  ``meta["test"]``; the ``natural`` scenario keeps it (as PhysioNet 2012's set B).
"""
from __future__ import annotations

import numpy as np

from .cache import DataError, RemoteFile, Source, fetch

COMMIT = "edacf54d5211520583b0133d55ac39b6fda8324b"  # owkin/FLamby, the files and the code read
BASE = f"https://raw.githubusercontent.com/owkin/FLamby/{COMMIT}/flamby/datasets/fed_tcga_brca/"
FILES = {  # name: (path under BASE, sha256, bytes)
    "brca.csv": ("brca.csv", "07cb53423f7d579d33cfdbf2cba57b2aee75318b85866c68ce39a75b1f1ba020", 113184),
    "centers.csv": ("centers.csv", "d610df2dae0203ea229c9579747ed3eb8d28e137c5378f55acc6fe6b4632bb1d", 4274),
    "train_test_split.csv": ("dataset_creation_scripts/train_test_split.csv",
                             "1249c6543a4060ff0fdaf8510fc37017755836db6c9fc5e6af96057c36510990", 28946),
}
REGIONS = ("Northeast", "South", "West", "Midwest", "Europe", "Canada")  # FLamby's centres 0..5
COUNTRY = {"Northeast": "USA", "South": "USA", "West": "USA", "Midwest": "USA", "Europe": "Europe",
           "Canada": "Canada"}
N_FEATURES = 39
LICENCE = ("MIT (FLamby's preprocessed table, owkin/FLamby); TCGA open-access data under the GDC data-use "
           "policies (https://gdc.cancer.gov/access-data/data-access-processes-and-tools)")
CITATION = ("Ogier du Terrail et al. (2022), FLamby: Datasets and Benchmarks for Cross-Silo Federated Learning in "
            "Realistic Healthcare Settings, NeurIPS Datasets and Benchmarks (Fed-TCGA-BRCA); Liu et al. (2018), An "
            "Integrated TCGA Pan-Cancer Clinical Data Resource, Cell 173(2):400-416; Andreux et al. (2020), Federated "
            "Survival Analysis with Discrete-Time Cox Models, arXiv:2006.08997")

SOURCE = Source(
    name="fed_tcga_brca",
    files=tuple(RemoteFile(name, BASE + path, sha256=sha, size=size) for name, (path, sha, size) in FILES.items()),
    licence=LICENCE,
    citation=CITATION,
    homepage="https://github.com/owkin/FLamby/tree/main/flamby/datasets/fed_tcga_brca",
    datasets=("tcga_brca",),
)


def read_tables(progress: bool = False) -> tuple:
    """``(brca, centers, split)``: the three tables (pandas), checksums verified."""
    import pandas as pd

    paths = fetch(SOURCE, progress=progress)
    return tuple(pd.read_csv(paths[name]) for name in FILES)


def region_of(pids, centers) -> np.ndarray:
    """The region of each TCGA barcode ``pid``: its tissue-source-site code looked up in ``centers``."""
    table = dict(zip(centers["TSS Code"].astype(str), centers["Region"].astype(str)))
    tss = [str(p).split("-")[1] for p in pids]
    unknown = sorted({t for t in tss if t not in table})
    if unknown:
        raise DataError(f"tissue-source sites {unknown} are not in centers.csv")
    return np.array([table[t] for t in tss], dtype=object)


def load_tcga_brca(progress: bool = False):
    """FLamby's Fed-TCGA-BRCA: 1088 patients, 39 clinical features, (event, time) labels,
    six regions, FLamby's fixed split (see the module docstring)."""
    from ..core.datasets import Dataset

    brca, centers, split = read_tables(progress)
    rows = brca.set_index("pid").loc[split["pid"].to_numpy()]  # FLamby's patients, in its split's order
    features = tuple(str(c) for c in brca.columns[1:1 + N_FEATURES])
    if len(features) != N_FEATURES or tuple(brca.columns[1 + N_FEATURES:]) != ("E", "T"):
        raise DataError(f"brca.csv: expected pid, {N_FEATURES} features, E, T; got columns {list(brca.columns)}")
    region = region_of(split["pid"], centers)
    centre = split["fold2"].str.rsplit("_", n=1).str[1].astype(int).to_numpy()
    disagree = np.flatnonzero(np.array([REGIONS[k] for k in centre], dtype=object) != region)
    if disagree.size:
        raise DataError(f"train_test_split.csv: {disagree.size} patients' centre disagrees with their region "
                        f"(first: {split['pid'].iloc[disagree[0]]})")
    x = rows[list(features)].to_numpy(np.float32)
    y = rows[["E", "T"]].to_numpy(np.float32)
    test = (split["fold"] == "test").to_numpy()
    site_meta = {"region": list(REGIONS), "country": [COUNTRY[r] for r in REGIONS]}
    meta = {"site": centre.astype(np.int64), "sites": REGIONS, "site_meta": site_meta, "group_by": "",
            "test": test, "test_name": "FLamby's test fold (train_test_split.csv)", "licence": SOURCE.licence,
            "pid": split["pid"].to_numpy(), "standardize": np.zeros(N_FEATURES, dtype=bool)}
    return Dataset("tcga_brca", x, y, "tabular", task="survival", feature_names=features, citation=CITATION,
                   meta=meta)


# FLamby's published C-index on the pooled test set (222 patients), its five seeds 42..46:
# owkin/FLamby @ edacf54d5211520583b0133d55ac39b6fda8324b,
# flamby/results/results_benchmark_fed_tcga_brca/tcga_seed{42..46}.csv, rows "Pooled Test".
FLAMBY_PUBLISHED = {
    "Pooled Training": (0.7963, 0.7799, 0.6095, 0.7824, 0.5524),  # mean 0.7041
    "FedAvg100": (0.8026, 0.4227, 0.8081, 0.8289, 0.8143),  # mean 0.7353
    "FedAdam100": (0.8381, 0.8209, 0.8560, 0.8619, 0.8337),  # mean 0.8421
}
# The protocol (flamby/datasets/fed_tcga_brca/common.py, flamby/config_tcga_brca.json at that commit): Baseline
# = torch.nn.Linear(39, 1); batch 8; pooled training Adam lr 0.1 for 30 epochs; FedAvg client SGD lr 0.1,
# 100 local steps, get_nb_max_rounds(100) = (866 // 6 // 8) * 30 // 100 = 5 rounds.
FLAMBY_PROTOCOL = {
    "centralized": dict(method="centralized", rounds=30, local_epochs=1, optimizer="adam", learning_rate=0.1),
    "fedavg": dict(method="fedavg", rounds=5, local_steps=100, optimizer="sgd", learning_rate=0.1),
}
FLAMBY_COMMON = dict(dataset="tcga_brca", scenario="natural", model="logreg", batch_size=8)


def pooled_test_c_index(result) -> float:
    """FLamby's headline number of a run on ``tcga_brca``: the C-index of each test patient's
    own client model over all test patients at once ("Pooled Test" in FLamby's result files;
    the per-client mean, ``c_index_mean``, is a different number)."""
    from ..core.experiment import build_context
    from ..core.survival import concordance_index

    fed = result.federation
    trainer = build_context(result.config, fed).trainer
    scores = trainer.predict(result.state.client_models(), fed.test_index)
    rows = np.concatenate(fed.test_index)
    score = np.concatenate([s.reshape(len(s), -1)[:, 0] for s in scores])
    return concordance_index(fed.y[rows, 1], fed.y[rows, 0], score)
