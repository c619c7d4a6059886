"""The real datasets: cache and offline directories, checksums, loaders, the natural
scenario and ``cflkit data``. Offline: the files come from ``$CFLKIT_OFFLINE_DIRS`` (set by
.ci/run; here defaulted to the shared offline copies), downloads are simulated with
``file://`` URLs or made to fail."""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import offline_copy, offline_root, offline_sums

from cflkit import load_dataset, make_federation
from cflkit.data import air_quality, cache, heart, medmnist, mnist
from cflkit.data.cache import ChecksumError, DataError, RemoteFile, Source

ROOT = Path(__file__).resolve().parents[1]


_offline_root = offline_root


def _has(folder: str) -> bool:
    return any((Path(d) / folder).is_dir() for d in _offline_root().split(os.pathsep) if d)


@pytest.fixture
def _heart_copy():
    offline_copy("heart_disease_uci")  # skips, or fails under CFLKIT_REQUIRE_DATA=1 (CI)


@pytest.fixture
def _air_copy():
    offline_copy("beijing_multisite_air_quality")


needs_heart = pytest.mark.usefixtures("_heart_copy")
needs_air = pytest.mark.usefixtures("_air_copy")


_sums = offline_sums


@pytest.fixture
def env(offline_env, monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return monkeypatch


@pytest.fixture(scope="module")
def heart_ds(offline_env):
    offline_copy("heart_disease_uci")
    return heart.load_heart_disease()


@pytest.fixture(scope="module")
def air_raw(offline_env):
    """The 12 raw station tables, parsed once for the module."""
    offline_copy("beijing_multisite_air_quality")
    return air_quality.read_raw()


@pytest.fixture(scope="module")
def air_ds(air_raw):
    return air_quality.build(air_quality.prepare(air_raw), "regression")


# -- cache and offline directories ----------------------------------------------------------
def test_cache_dir_and_offline_dirs_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert cache.cache_dir() == ROOT / "data" / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    assert cache.cache_dir() == tmp_path
    monkeypatch.setenv(cache.OFFLINE_ENV, os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert cache.offline_dirs() == [tmp_path / "a", tmp_path / "b"]


def _source(tmp_path, data: bytes, name="f.csv", sha=None, archive=""):
    src_file = tmp_path / "remote" / name
    src_file.parent.mkdir(parents=True, exist_ok=True)
    src_file.write_bytes(data)
    sha = sha or hashlib.sha256(data).hexdigest()
    url = "" if archive else src_file.as_uri()
    member = f"inner.zip!dir/{name}" if archive else ""
    return Source("toy", (RemoteFile(name, url, sha256=sha, member=member),), "CC0", "nobody", archive=archive)


def test_a_file_directly_in_an_offline_dir_or_in_its_subfolder_is_found(monkeypatch, tmp_path):
    src = _source(tmp_path, b"a,b\n1,2\n")
    for folder in (tmp_path / "off1", tmp_path / "off2" / "toy"):
        folder.mkdir(parents=True)
        shutil.copy(tmp_path / "remote" / "f.csv", folder / "f.csv")
    monkeypatch.setenv(cache.OFFLINE_ENV, str(tmp_path / "off2"))
    assert cache.fetch(src, download=False)["f.csv"] == tmp_path / "off2" / "toy" / "f.csv"
    monkeypatch.setenv(cache.OFFLINE_ENV, os.pathsep.join([str(tmp_path / "off1"), str(tmp_path / "off2")]))
    assert cache.fetch(src, download=False)["f.csv"] == tmp_path / "off1" / "f.csv"
    assert cache.status(src)[0] == "offline"


def test_download_goes_into_the_cache_verified_and_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.OFFLINE_ENV, "")
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    src = _source(tmp_path, b"x" * 1000)
    path = cache.fetch(src, download=True)["f.csv"]
    assert path == tmp_path / "cache" / "toy" / "f.csv" and path.read_bytes() == b"x" * 1000
    assert cache.status(src)[0] == "cache"
    bad = _source(tmp_path, b"y" * 10, name="g.csv", sha="0" * 64)
    actual = hashlib.sha256(b"y" * 10).hexdigest()
    with pytest.raises(ChecksumError, match=f"g.csv.*expected SHA256 0{{64}}, got {actual}"):
        cache.fetch(bad, download=True)
    assert sorted(p.name for p in (tmp_path / "cache" / "toy").iterdir()) == ["f.csv"]  # nothing half-written


def test_files_are_extracted_from_a_nested_archive(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.OFFLINE_ENV, "")
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    data = b"No,year\n1,2013\n"
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("dir/s.csv", data)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as z:
        z.writestr("inner.zip", inner.getvalue())
    src = _source(tmp_path, data, name="s.csv", archive=outer.as_uri())
    assert cache.fetch(src)["s.csv"].read_bytes() == data


# -- heart disease --------------------------------------------------------------------------
@needs_heart
def test_heart_checksums_are_the_published_ones(heart_ds):
    sums = _sums("heart_disease_uci")
    for f in heart.SOURCE.files:
        assert f.sha256 == sums[f.name]
        path, where = cache.locate(heart.SOURCE, f)
        assert where == "offline" and cache.file_hash(path) == f.sha256


@needs_heart
def test_heart_flamby_rows_per_hospital(heart_ds):
    site = heart_ds.meta["site"]
    assert np.bincount(site).tolist() == [303, 261, 46, 130] and len(heart_ds) == 740
    assert heart_ds.x.shape == (740, 15) and heart_ds.n_classes == 2
    rates = [heart_ds.y[site == i].mean() for i in range(4)]
    np.testing.assert_allclose(rates, [0.46, 0.38, 0.98, 0.78], atol=0.01)
    assert heart_ds.meta["sites"] == ("Cleveland", "Hungarian", "Switzerland", "VA Long Beach")
    assert heart_ds.meta["site_meta"]["country"] == ["USA", "Hungary", "Switzerland", "USA"]
    cp = [heart_ds.feature_names.index(f"cp_{v}") for v in (1, 2, 3, 4)]
    assert np.all(heart_ds.x[:, cp].sum(axis=1) == 1)  # one-hot


@needs_heart
def test_heart_natural_federation(heart_ds):
    fed = make_federation(heart_ds, "natural", seed=3)
    assert fed.n_clients == 4 and fed.n_groups == 1 and fed.task == "classification"
    assert (fed.sizes + fed.test_sizes).tolist() == [303, 261, 46, 130]
    assert fed.client_meta["site"] == ["Cleveland", "Hungarian", "Switzerland", "VA Long Beach"]
    assert fed.client_meta["country"] == ["USA", "Hungary", "Switzerland", "USA"]
    assert list(fed.client_meta)[0] == "country"  # the metadata method's default attribute
    for c in range(4):
        assert not set(fed.train_index[c]) & set(fed.test_index[c])
        assert np.all(heart_ds.meta["site"][fed.source_rows[fed.train_index[c]]] == c)
    again = make_federation(heart_ds, "natural", seed=3)
    np.testing.assert_array_equal(fed.x, again.x)


@needs_heart
def test_heart_standardisation_uses_only_each_clients_training_rows(heart_ds):
    """Choice: each hospital is standardised with its own training statistics."""
    fed = make_federation(heart_ds, "natural", seed=0)
    scale = heart_ds.meta["standardize"]
    raw = heart_ds.meta["raw_x"]
    assert [heart_ds.feature_names[i] for i in np.flatnonzero(scale)] == list(heart.CONTINUOUS)
    for c in range(4):
        tr, te = fed.train_index[c], fed.test_index[c]
        r = raw[fed.source_rows][:, scale]
        mean, std = r[tr].mean(0), r[tr].std(0)
        expected = (r[np.concatenate([tr, te])] - mean) / np.where(std > 0, std, 1)
        np.testing.assert_allclose(fed.x[np.concatenate([tr, te])][:, scale], expected, rtol=1e-5, atol=1e-5)
    # Switzerland records chol = 0 for everyone: a constant column becomes 0, not NaN
    assert np.all(fed.x[fed.train_index[2]][:, heart_ds.feature_names.index("chol")] == 0)
    # changing other hospitals' rows and this hospital's test rows leaves its training features as they are
    raw2 = raw.copy()
    raw2[heart_ds.meta["site"] != 0] *= 7.0
    raw2[fed.source_rows[fed.test_index[0]]] += 100.0
    from dataclasses import replace

    fed2 = make_federation(replace(heart_ds, meta={**heart_ds.meta, "raw_x": raw2}), "natural", seed=0)
    np.testing.assert_allclose(fed2.x[fed2.train_index[0]], fed.x[fed.train_index[0]], atol=1e-6)


@needs_heart
def test_a_corrupted_copy_names_the_file_and_both_checksums(env, tmp_path):
    folder = tmp_path / "offline" / "heart_disease_uci"
    folder.mkdir(parents=True)
    for f in heart.SOURCE.files:
        shutil.copy(cache.locate(heart.SOURCE, f)[0], folder / f.name)
    data = bytearray((folder / "processed.va.data").read_bytes())
    data[10] = ord("9") if data[10] != ord("9") else ord("8")
    (folder / "processed.va.data").write_bytes(bytes(data))
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    expected = heart.SHA256["va"]
    with pytest.raises(ChecksumError, match=rf"processed\.va\.data.*expected SHA256 {expected}, got {actual}"):
        heart.load_heart_disease()


@needs_heart
def test_a_missing_file_offline_names_file_url_and_where_to_put_it(env, tmp_path):
    folder = tmp_path / "offline"
    folder.mkdir()
    for f in heart.SOURCE.files[:3]:  # directly in the offline dir, without the va file
        shutil.copy(cache.locate(heart.SOURCE, f)[0], folder / f.name)
    env.setenv(cache.OFFLINE_ENV, str(folder))
    env.delenv(cache.NO_DOWNLOAD_ENV)

    def offline(url, path, progress=False):
        raise OSError("network unreachable (test)")

    env.setattr(cache, "download", offline)
    with pytest.raises(DataError) as e:
        heart.load_heart_disease()
    text = str(e.value)
    assert "processed.va.data" in text and "processed.cleveland.data" not in text
    assert heart.BASE + "processed.va.data" in text and "network unreachable" in text
    assert str(tmp_path / "cache" / "heart_disease_uci") in text and cache.OFFLINE_ENV in text


# -- air quality ----------------------------------------------------------------------------
@needs_air
def test_air_quality_raw_rows_and_checksums(air_raw):
    assert list(air_raw) == list(air_quality.STATIONS)
    assert all(len(t) == 35064 for t in air_raw.values())
    sums = _sums("beijing_multisite_air_quality")
    for f in air_quality.SOURCE.files:
        assert f.sha256 == sums[f.name]


@needs_air
def test_air_quality_daily_default(air_ds):
    assert air_ds.task == "regression" and air_ds.kind == "tabular"
    counts = np.bincount(air_ds.meta["site"])
    assert len(counts) == 12 and counts.sum() == len(air_ds) and np.all((1200 < counts) & (counts <= 1461))
    assert np.all(np.isfinite(air_ds.x)) and np.all(np.isfinite(air_ds.y))
    np.testing.assert_allclose(air_ds.y * air_quality.TARGET_UNIT, air_ds.meta["pm25"], rtol=1e-6)
    assert "PM2.5" not in air_ds.feature_names and {"wd_sin", "month_cos", "PM10"} <= set(air_ds.feature_names)


@needs_air
def test_air_quality_hourly_subsampling_and_bands(air_raw):
    tables = air_quality.prepare({k: air_raw[k] for k in ("Dongsi", "Dingling")}, resample="hourly", every=5)
    for t in tables.values():
        assert len(t) <= 35064 // 5 + 1 and t["time"].is_monotonic_increasing and not t.isna().any().any()
        assert set(t["time"].dt.hour) == set(range(24))  # a stride of 5 visits every hour
    ds = air_quality.build(tables, "bands", "air_quality_bands")
    assert ds.n_classes == 6 and "hour_sin" in ds.feature_names
    np.testing.assert_array_equal(air_quality.band([0, 35, 35.1, 75, 115.5, 150, 250, 251]), [0, 0, 1, 1, 3, 3, 4, 5])


@needs_air
def test_air_quality_natural_federation_splits_by_time(air_ds):
    fed = make_federation(air_ds, "natural", test_fraction=0.25)
    assert fed.n_clients == 12 and fed.task == "regression"
    assert fed.client_meta["site"] == list(air_quality.STATIONS)
    suburban = {s for s, a in zip(fed.client_meta["site"], fed.client_meta["area"]) if a == "suburban"}
    assert suburban == {"Changping", "Dingling", "Huairou", "Shunyi"}
    assert fed.group_names == ("suburban", "urban") and fed.n_groups == 2
    assert [fed.group_names[g] for g in fed.groups] == fed.client_meta["area"]
    time = air_ds.meta["time"][fed.source_rows]
    for c in range(12):
        assert time[fed.train_index[c]].max() < time[fed.test_index[c]].min()
        n = len(fed.train_index[c]) + len(fed.test_index[c])
        assert abs(len(fed.test_index[c]) - 0.25 * n) <= 1
    scale = air_ds.meta["standardize"]
    x_train = fed.x[fed.train_index[5]][:, scale]
    np.testing.assert_allclose(x_train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x_train.std(0), 1, atol=1e-3)


def test_natural_scenario_refuses_what_it_cannot_do(heart_ds):
    with pytest.raises(ValueError, match="has 4 sites.*not clients=5.*set it to 4"):
        make_federation(heart_ds, "natural", clients=5)
    with pytest.raises(ValueError, match="not groups=2"):
        make_federation(heart_ds, "natural", groups=2)
    assert make_federation(heart_ds, "natural", clients=4, groups=1).n_clients == 4
    with pytest.raises(ValueError, match="cannot be combined"):
        make_federation(heart_ds, "natural+rotation")
    with pytest.raises(ValueError, match="needs a dataset with sites"):
        make_federation(load_dataset("digits"), "natural")


@needs_heart
def test_planted_scenarios_pool_a_real_datasets_rows(heart_ds):
    fed = make_federation(heart_ds, "rotation", clients=8, groups=2, seed=0)
    assert fed.n_clients == 8 and fed.n_groups == 2 and fed.x.shape[1] == 15


# -- MedMNIST and MNIST ---------------------------------------------------------------------
def _tiny_medmnist(path, channels=1, n=(24, 8, 8), k=2, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in zip(("train", "val", "test"), n):
        shape = (m, 28, 28) if channels == 1 else (m, 28, 28, channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, k, size=(m, 1)).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


def test_medmnist_loader_and_md5_on_a_tiny_file(env, tmp_path):
    folder = tmp_path / "offline" / "medmnist"
    folder.mkdir(parents=True)
    arrays = _tiny_medmnist(folder / "pneumoniamnist.npz")
    md5 = hashlib.md5((folder / "pneumoniamnist.npz").read_bytes()).hexdigest()
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    env.setitem(medmnist.FILES, "pneumoniamnist", (md5, *medmnist.FILES["pneumoniamnist"][1:]))
    ds = medmnist.load_medmnist("pneumoniamnist")
    assert ds.x.shape == (40, 28, 28, 1) and ds.x.dtype == np.float32 and 0 <= ds.x.min() and ds.x.max() <= 1
    np.testing.assert_array_equal(ds.y[:24], arrays["train_labels"][:, 0])
    assert ds.n_classes == 2 and list(np.unique(ds.meta["split"])) == ["test", "train", "val"]
    fed = make_federation(ds, "rotation", clients=4, groups=2, seed=0)  # simulated clients
    assert fed.n_clients == 4
    env.setitem(medmnist.FILES, "pneumoniamnist", ("0" * 32, *medmnist.FILES["pneumoniamnist"][1:]))
    with pytest.raises(ChecksumError, match=f"pneumoniamnist.npz.*expected MD5 0{{32}}, got {md5}"):
        medmnist.load_medmnist("pneumoniamnist")


def test_medmnist_rgb_and_bad_files(tmp_path):
    _tiny_medmnist(tmp_path / "blood.npz", channels=3, k=8)
    ds = medmnist.read_npz(tmp_path / "blood.npz", "bloodmnist")
    assert ds.x.shape == (40, 28, 28, 3) and ds.n_classes == 8
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="not a MedMNIST file.*train_labels"):
        medmnist.read_npz(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="unknown MedMNIST file 'chest'; choose one of: pneumoniamnist"):
        medmnist.load_medmnist("chest")


def test_mnist_not_cached_offline_is_a_clear_error(env, tmp_path):
    env.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DataError, match=r"mnist\.npz.*storage\.googleapis\.com/tensorflow/tf-keras-datasets/mnist\.npz"
                                        r".*" + str(tmp_path / "cache" / "mnist")):
        mnist.load_mnist()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        mnist.load_fashion_mnist()


def test_mnist_reads_the_keras_file_from_keras_cache(env, tmp_path):
    keras_datasets = tmp_path / "keras" / "datasets"
    keras_datasets.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(keras_datasets / "mnist.npz", x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
             y_train=np.arange(6, dtype=np.uint8), x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.ones(2, np.uint8))
    env.setenv("KERAS_HOME", str(tmp_path / "keras"))
    sha = cache.file_hash(keras_datasets / "mnist.npz")
    env.setattr(mnist, "MNIST", Source("mnist", (RemoteFile("mnist.npz", "https://x/mnist.npz", sha256=sha),),
                                       "CC BY-SA 3.0", ""))
    ds = mnist.load_mnist()
    assert ds.x.shape == (8, 28, 28, 1) and ds.y.tolist() == [0, 1, 2, 3, 4, 5, 1, 1]


def test_fashion_mnist_reads_idx_files(env, tmp_path):
    folder = tmp_path / "offline" / "fashion-mnist"
    folder.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28)
    files = {"train-images-idx3-ubyte.gz": b"\0" * 16 + images.tobytes(),
             "train-labels-idx1-ubyte.gz": b"\0" * 8 + bytes([1, 2, 3]),
             "t10k-images-idx3-ubyte.gz": b"\0" * 16 + images[:1].tobytes(),
             "t10k-labels-idx1-ubyte.gz": b"\0" * 8 + bytes([9])}
    remote = []
    for name, data in files.items():
        (folder / name).write_bytes(gzip.compress(data))
        remote.append(RemoteFile(name, "https://x/" + name, md5=hashlib.md5((folder / name).read_bytes()).hexdigest()))
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    env.setattr(mnist, "FASHION", Source("fashion-mnist", tuple(remote), "MIT", ""))
    ds = mnist.load_fashion_mnist()
    assert ds.x.shape == (4, 28, 28, 1) and ds.y.tolist() == [1, 2, 3, 9]


def test_importing_the_data_modules_does_not_import_tensorflow():
    code = ("import sys, cflkit.data, cflkit.core.datasets, cflkit.core.scenarios; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- command line ---------------------------------------------------------------------------
def test_cli_data_list(env, capsys):
    from cflkit.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("heart_disease_uci", "beijing_multisite_air_quality", "pneumoniamnist", "mnist", "fashion_mnist"):
        assert name in lines
    expected = "offline" if _has("medmnist") else "missing"  # the shared copies hold MedMNIST now
    assert expected in lines["pneumoniamnist"] and "CC BY 4.0" in lines["pneumoniamnist"]
    if _has("heart_disease_uci"):
        assert "offline" in lines["heart_disease_uci"] and "heart_disease" in lines["heart_disease_uci"]
    assert "offline dirs:" in out and "cache:" in out


def test_cli_data_fetch_offline(env, capsys, tmp_path):
    from cflkit.cli import main

    env.delenv(cache.NO_DOWNLOAD_ENV)

    def offline(url, path, progress=False):
        raise OSError("no route to host (test)")

    env.setattr(cache, "download", offline)
    assert main(["data", "fetch", "bloodmnist", "--no-progress"]) == 1  # not among the shared offline copies
    err = capsys.readouterr().err
    assert "bloodmnist.npz" in err and "zenodo.org/records/10519652" in err
    assert str(tmp_path / "cache" / "medmnist") in err
    if _has("heart_disease_uci"):
        assert main(["data", "fetch", "heart_disease"]) == 0
        assert "already available (offline), 4 file(s) verified" in capsys.readouterr().out
    assert main(["data", "fetch", "nope"]) == 2
    assert "unknown dataset or source 'nope'; choose one of:" in capsys.readouterr().err


@needs_heart
def test_cli_run_heart_disease_natural_fedavg(env, tmp_path, capsys):
    from cflkit.cli import main

    out = tmp_path / "run"
    assert main(["run", "--dataset", "heart_disease", "--scenario", "natural", "--method", "fedavg",
                 "--rounds", "2", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clients"] == 4 and summary["rounds"] == 2 and 0 <= summary["accuracy_mean"] <= 1
    assert "natural · 4 clients" in capsys.readouterr().out
    assert main(["run", "--dataset", "heart_disease", "--scenario", "natural", "--clients", "7",
                 "--rounds", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "has 4 sites" in capsys.readouterr().err
