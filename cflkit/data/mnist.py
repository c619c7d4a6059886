"""MNIST and Fashion-MNIST through Keras's dataset files, kept in cflkit's cache.

The files are the ones ``keras.datasets.mnist.load_data`` and
``keras.datasets.fashion_mnist.load_data`` fetch (Google storage mirror); cflkit looks for
them in the offline directories, its cache and Keras's own cache (``~/.keras/datasets``
or ``$KERAS_HOME/datasets``) first, and only then lets Keras download them into
cflkit's cache (``keras.utils.get_file(..., cache_dir=...)``). TensorFlow/Keras is imported
only for that download. Train and test sets are pooled (``meta["split"]`` keeps them).

- MNIST: LeCun, Bottou, Bengio & Haffner (1998); CC BY-SA 3.0 (as Keras states).
- Fashion-MNIST: Xiao, Rasul & Vollgraf (2017), arXiv:1708.07747; MIT licence.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .cache import (
    NO_DOWNLOAD_ENV,
    DataError,
    RemoteFile,
    Source,
    cache_dir,
    downloads_allowed,
    locate,
    missing_message,
    verify,
)

KERAS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST = Source(
    name="mnist",
    files=(RemoteFile("mnist.npz", KERAS + "mnist.npz",
                      sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", size=11490434),),
    licence="CC BY-SA 3.0", citation="LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning "
                                     "applied to document recognition, Proc. IEEE 86(11)",
    homepage="http://yann.lecun.com/exdb/mnist/", datasets=("mnist",))
FASHION_FILES = {  # MD5s as published in zalandoresearch/fashion-mnist's README
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29515),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4422102),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5148),
}
FASHION = Source(
    name="fashion-mnist",
    files=tuple(RemoteFile(n, KERAS + n, md5=m, size=s) for n, (m, s) in FASHION_FILES.items()),
    licence="MIT", citation="Xiao, Rasul & Vollgraf (2017), Fashion-MNIST, arXiv:1708.07747",
    homepage="https://github.com/zalandoresearch/fashion-mnist", datasets=("fashion_mnist",))


def keras_cache() -> Path:
    """Keras's own download cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def paths(source: Source, progress: bool = False) -> dict[str, Path]:
    found, missing = {}, []
    for f in source.files:
        path, _ = locate(source, f)
        if path is None:  # Keras keeps mnist.npz at datasets/, Fashion-MNIST in datasets/fashion-mnist/
            for p in (keras_cache() / f.name, keras_cache() / source.name / f.name):
                if p.is_file():
                    path = p
                    break
        if path is None:
            missing.append(f)
        else:
            found[f.name] = verify(path, f)
    if missing:
        if not downloads_allowed():
            raise DataError(missing_message(source, missing, f"downloads are off: ${NO_DOWNLOAD_ENV} is set"))
        found.update(_keras_download(source, missing, progress))
    return found


def _keras_download(source: Source, missing: list, progress: bool) -> dict[str, Path]:
    """Let Keras download ``missing`` into cflkit's cache, then verify them."""
    from ..core._tf import keras as _keras

    keras = _keras()  # imported here only: a quiet TensorFlow start-up, as elsewhere in cflkit

    out = {}
    for f in missing:
        algo, expected = f.checksum
        try:
            path = keras.utils.get_file(f.name, origin=f.url, file_hash=expected, hash_algorithm=algo,
                                        cache_dir=str(cache_dir()), cache_subdir=source.name)
        except Exception as e:  # Keras wraps network errors in plain Exceptions
            raise DataError(missing_message(source, missing, f"download failed: {e}")) from None
        out[f.name] = verify(path, f)
    return out


def load_mnist(progress: bool = False):
    from ..core.datasets import Dataset

    path = paths(MNIST, progress)["mnist.npz"]
    with np.load(path, allow_pickle=False) as d:
        xs, ys = (d["x_train"], d["x_test"]), (d["y_train"], d["y_test"])
    return _dataset("mnist", xs, ys, MNIST, Dataset)


def load_fashion_mnist(progress: bool = False):
    from ..core.datasets import Dataset

    p = paths(FASHION, progress)

    def read(name, offset):
        with gzip.open(p[name], "rb") as fh:
            return np.frombuffer(fh.read(), np.uint8, offset=offset)

    ys = (read("train-labels-idx1-ubyte.gz", 8), read("t10k-labels-idx1-ubyte.gz", 8))
    xs = (read("train-images-idx3-ubyte.gz", 16).reshape(len(ys[0]), 28, 28),
          read("t10k-images-idx3-ubyte.gz", 16).reshape(len(ys[1]), 28, 28))
    return _dataset("fashion_mnist", xs, ys, FASHION, Dataset)


def _dataset(name, xs, ys, source, Dataset):
    x = (np.concatenate(xs).astype(np.float32) / 255.0)[..., None]
    y = np.concatenate(ys).astype(np.int64)
    split = np.concatenate([np.full(len(ys[0]), "train"), np.full(len(ys[1]), "test")])
    return Dataset(name, x, y, "image", n_classes=10, citation=source.citation,
                   meta={"split": split, "licence": source.licence})

