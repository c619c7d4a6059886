"""MedMNIST v2 ``.npz`` files (28×28), read with numpy only — no ``medmnist`` package.

Yang, Shi, Wei, Liu, Zhao, Ke, Pfister & Ni (2023), "MedMNIST v2 — A large-scale
lightweight benchmark for 2D and 3D biomedical image classification", Scientific Data 10:41,
DOI 10.1038/s41597-022-01721-8. Files from Zenodo record 10519652 (DOI 10.5281/zenodo.10519652);
MD5s as published in the ``medmnist`` package's ``INFO`` (version 3.0.2).

Each file holds ``{train,val,test}_{images,labels}``; the three splits are pooled into one
dataset (the scenarios draw their own clients and splits; ``meta["split"]`` keeps the
official one). Images are scaled to [0, 1] with a channel axis: ``(N, 28, 28, 1)`` for grey
images, ``(N, 28, 28, 3)`` for RGB (retinamnist, bloodmnist). RetinaMNIST's task is ordinal
regression of the retinopathy grade in MedMNIST; here it is 5-class classification (the
ordering is not used). There are no sites: MedMNIST federations
are simulated with the planted scenarios.
"""
from __future__ import annotations

import numpy as np

from .cache import RemoteFile, Source, fetch

ZENODO = "https://zenodo.org/records/10519652/files/"
FILES = {  # name: (MD5, labels, channels, samples train/val/test, description)
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", ("normal", "pneumonia"), 1, (4708, 524, 624),
                       "paediatric chest X-rays, normal vs pneumonia"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", ("malignant", "normal or benign"), 1, (546, 78, 156),
                    "breast ultrasound, malignant vs normal or benign"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", ("grade 0", "grade 1", "grade 2", "grade 3", "grade 4"), 3,
                    (1080, 120, 400), "retinal fundus photographs (RGB), 5 grades of diabetic retinopathy "
                    "(ordinal; classified here as 5 classes)"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc",
                   ("basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
                    "monocyte", "neutrophil", "platelet"), 3, (11959, 1712, 3421),
                   "blood cell microscopy (RGB), 8 cell types"),
    "organamnist": ("68e3f8846a6bd62f0c9bf841c0d9eacc",
                    ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                     "lung-left", "lung-right", "pancreas", "spleen"), 1, (34561, 6491, 17778),
                    "abdominal CT, axial slices, 11 organs"),
}
SPLITS = ("train", "val", "test")
CITATION = ("Yang et al. (2023), MedMNIST v2, Scientific Data 10:41, DOI 10.1038/s41597-022-01721-8; "
            "Zenodo 10.5281/zenodo.10519652")


def source(name: str) -> Source:
    if name not in FILES:
        raise ValueError(f"unknown MedMNIST file {name!r}; choose one of: {', '.join(FILES)}")
    md5 = FILES[name][0]
    return Source(name="medmnist", files=(RemoteFile(f"{name}.npz", f"{ZENODO}{name}.npz?download=1", md5=md5),),
                  licence="CC BY 4.0", citation=CITATION, homepage="https://medmnist.com/", datasets=(name,))


def read_npz(path, name: str = "medmnist"):
    """A :class:`~cflkit.core.datasets.Dataset` from a MedMNIST-format ``.npz`` file."""
    from ..core.datasets import Dataset

    with np.load(path, allow_pickle=False) as f:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in f.files]
        if missing:
            raise ValueError(f"{str(path)!r} is not a MedMNIST file: it lacks {', '.join(missing)}")
        images = [f[f"{s}_images"] for s in SPLITS]
        labels = [f[f"{s}_labels"] for s in SPLITS]
    for s, lab in zip(SPLITS, labels):
        if lab.ndim == 2 and lab.shape[1] > 1:
            raise ValueError(f"{str(path)!r}: {s}_labels has {lab.shape[1]} columns (multi-label); "
                             f"only single-label MedMNIST files are supported")
    x = np.concatenate(images).astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    y = np.concatenate([lab.reshape(-1) for lab in labels]).astype(np.int64)
    split = np.concatenate([np.full(len(lab), s) for s, lab in zip(SPLITS, labels)])
    n_classes = len(FILES[name][1]) if name in FILES else int(y.max()) + 1
    meta = {"split": split, "licence": "CC BY 4.0"}
    if name in FILES:
        meta["class_names"] = FILES[name][1]
    return Dataset(name, x, y, "image", n_classes=n_classes,
                   feature_names=(), citation=CITATION, meta=meta)


def load_medmnist(name: str, progress: bool = False):
    """MedMNIST file ``name`` (e.g. ``pneumoniamnist``), downloaded once and MD5-checked."""
    src = source(name)
    path = fetch(src, progress=progress)[f"{name}.npz"]
    return read_npz(path, name)
