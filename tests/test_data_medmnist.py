"""MedMNIST offline: the official files (MD5 as published), and the planted scenarios with the CNN."""
import hashlib

import numpy as np
import pytest
from conftest import use_offline_copy

from cflkit import Config, run
from cflkit.data import cache, medmnist

OFFLINE = ("pneumoniamnist", "breastmnist", "retinamnist")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    return use_offline_copy(monkeypatch, tmp_path, "medmnist")


@pytest.mark.parametrize("name", OFFLINE)
def test_the_offline_file_is_the_official_one_and_loads_with_its_splits(offline, name):
    md5, classes, channels, splits, _ = medmnist.FILES[name]
    assert hashlib.md5((offline / f"{name}.npz").read_bytes()).hexdigest() == md5
    assert cache.status(medmnist.source(name))[0] == "offline"
    ds = medmnist.load_medmnist(name)
    assert ds.x.shape == (sum(splits), 28, 28, channels) and ds.x.dtype == np.float32
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    assert ds.n_classes == len(classes) and set(np.unique(ds.y)) == set(range(len(classes)))
    assert [int((ds.meta["split"] == s).sum()) for s in medmnist.SPLITS] == list(splits)


def test_retinamnist_is_rgb_and_trains_with_the_cnn_in_a_planted_scenario(offline):
    result = run(Config(dataset="retinamnist", scenario="rotation", clients=4, groups=2, model="cnn", rounds=1,
                        local_epochs=1, samples_per_client=40))
    assert result.federation.input_shape == (28, 28, 3)
    assert np.isfinite(result.summary["accuracy_mean"])


def test_a_wrong_md5_names_the_file_and_both_checksums(offline, monkeypatch):
    monkeypatch.setitem(medmnist.FILES, "breastmnist", ("0" * 32, *medmnist.FILES["breastmnist"][1:]))
    with pytest.raises(cache.ChecksumError, match="breastmnist.npz.*expected MD5 0{32}, got 750601b1"):
        medmnist.load_medmnist("breastmnist")
