"""UCI Parkinsons Telemonitoring offline: the published file, 42 patients as clients, the time
split, per-client standardisation, the metadata groupings and a short federated run."""
import hashlib
import shutil
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from conftest import offline_copy

from cflkit import Config, load_dataset, make_federation, run
from cflkit.core.scenarios import make_natural_federation
from cflkit.data import cache, parkinsons
from cflkit.data.cache import ChecksumError

FOLDER = "parkinsons_telemonitoring"


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """The shared offline copy (skips, or fails under CFLKIT_REQUIRE_DATA=1), a throw-away
    cache, and no real downloads."""
    folder = offline_copy(FOLDER)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.OFFLINE_ENV, str(folder.parent))
        mp.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        mp.setenv(cache.NO_DOWNLOAD_ENV, "1")
        yield folder


@pytest.fixture(scope="module")
def ds(offline_env):
    return load_dataset("parkinsons")


@pytest.fixture(scope="module")
def fed(ds):
    return make_federation(ds, "natural", seed=0)


def test_the_offline_file_has_the_published_checksum(offline_env):
    sums = dict(reversed(line.split()) for line in (offline_env / "SHA256SUMS").read_text().splitlines() if line)
    (f,) = parkinsons.SOURCE.files
    assert f.name == "parkinsons_updrs.data" and f.sha256 == sums[f.name] == parkinsons.SHA256
    path, where = cache.locate(parkinsons.SOURCE, f)
    assert where == "offline" and cache.file_hash(path) == f.sha256 and path.stat().st_size == f.size
    assert parkinsons.SOURCE.archive.endswith("/189/parkinsons+telemonitoring.zip") and f.member == f.name
    assert parkinsons.SOURCE.licence == "CC BY 4.0"


def test_42_patients_with_101_to_168_recordings_and_the_voice_measures_as_features(ds):
    counts = np.bincount(ds.meta["site"])
    assert len(counts) == 42 and counts.sum() == len(ds) == 5875
    assert counts.min() == 101 and counts.max() == 168
    assert ds.meta["sites"][:2] == ("patient 1", "patient 2") and len(ds.meta["sites"]) == 42
    assert ds.task == "regression" and ds.kind == "tabular" and ds.x.shape == (5875, 16)
    assert ds.feature_names == parkinsons.VOICE
    assert not {"age", "sex", "test_time", "motor_UPDRS", "total_UPDRS"} & set(ds.feature_names)
    assert np.all(np.isfinite(ds.x)) and np.all(np.isfinite(ds.y))
    np.testing.assert_allclose(ds.y * parkinsons.TARGET_UNIT, ds.meta["updrs"], rtol=1e-6)
    assert 7.0 <= ds.meta["updrs"].min() and ds.meta["updrs"].max() <= 55.0  # total UPDRS, in points
    motor = load_dataset("parkinsons_motor")
    assert motor.name == "parkinsons_motor" and motor.meta["target"] == "motor_UPDRS"
    np.testing.assert_array_equal(motor.x, ds.x)
    assert np.all(motor.meta["updrs"] < ds.meta["updrs"])  # motor UPDRS is part of total UPDRS


def test_every_patients_test_recordings_are_later_than_its_training_recordings(ds, fed):
    assert fed.n_clients == 42 and fed.task == "regression" and fed.params["split"] == "time"
    time = ds.meta["time"][fed.source_rows]
    for c in range(42):
        tr, te = fed.train_index[c], fed.test_index[c]
        assert time[tr].max() < time[te].min()
        assert np.all(ds.meta["site"][fed.source_rows[np.concatenate([tr, te])]] == c)
        n = len(tr) + len(te)
        assert round(0.25 * n) <= len(te) < 0.4 * n  # recordings of the same day at the cut go to test
    assert fed.sizes.sum() + fed.test_sizes.sum() == 5875


def test_standardisation_uses_only_each_clients_training_rows(ds, fed):
    """Choice: each patient's voice measures are standardised with its own training statistics."""
    scale, raw = ds.meta["standardize"], ds.meta["raw_x"]
    assert scale.all() and len(scale) == 16
    r = raw[fed.source_rows]
    for c in (0, 17, 41):
        tr, te = fed.train_index[c], fed.test_index[c]
        mean, std = r[tr].mean(0), r[tr].std(0)
        rows = np.concatenate([tr, te])
        np.testing.assert_allclose(fed.x[rows], (r[rows] - mean) / np.where(std > 0, std, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fed.x[tr].mean(0), 0, atol=1e-4)
    # other patients' rows and this patient's test rows do not change its training features
    raw2 = raw.copy()
    raw2[ds.meta["site"] != 0] *= 7.0
    raw2[fed.source_rows[fed.test_index[0]]] += 100.0
    fed2 = make_federation(replace(ds, meta={**ds.meta, "raw_x": raw2}), "natural", seed=0)
    np.testing.assert_allclose(fed2.x[fed2.train_index[0]], fed.x[fed.train_index[0]], atol=1e-6)
    assert not np.allclose(fed2.x[fed2.test_index[0]], fed.x[fed.test_index[0]])


def test_metadata_groupings_have_the_documented_counts(ds, fed):
    meta = ds.meta["site_meta"]
    assert Counter(meta["sex"]) == {"male": 28, "female": 14}
    assert Counter(meta["age_band"]) == {"<60": 14, "60-69": 15, ">=70": 13}
    ages = ds.meta["patient_age"]
    assert len(ages) == 42 and ages.min() == 36 and ages.max() == 85
    assert list(parkinsons.age_band([36, 59, 60, 69, 70, 85])) == ["<60", "<60", "60-69", "60-69", ">=70", ">=70"]
    assert meta["age_band"] == list(parkinsons.age_band(ages))
    # default reference grouping: the age band (first client attribute: the metadata method's default)
    assert ds.meta["group_by"] == "age_band" and list(fed.client_meta)[:2] == ["age_band", "sex"]
    assert fed.group_names == ("60-69", "<60", ">=70") and np.bincount(fed.groups).tolist() == [15, 14, 13]
    assert [fed.group_names[g] for g in fed.groups] == fed.client_meta["age_band"]
    by_sex = make_natural_federation(ds, group_by="sex")
    assert by_sex.group_names == ("female", "male") and np.bincount(by_sex.groups).tolist() == [14, 28]


def test_fedavg_on_the_natural_federation_finishes_with_a_finite_rmse(offline_env):
    result = run(Config(dataset="parkinsons", scenario="natural", method="fedavg", rounds=2, local_epochs=1))
    assert result.federation.n_clients == 42
    rmse = result.summary["rmse_mean"]
    assert np.isfinite(rmse) and 0 < rmse < 3.0  # in units of 10 UPDRS points


def test_a_corrupted_copy_names_the_file_and_both_checksums(offline_env, monkeypatch, tmp_path):
    folder = tmp_path / "offline" / FOLDER
    folder.mkdir(parents=True)
    shutil.copy(offline_env / parkinsons.FILE, folder / parkinsons.FILE)
    data = bytearray((folder / parkinsons.FILE).read_bytes())
    data[500] = ord("9") if data[500] != ord("9") else ord("8")
    (folder / parkinsons.FILE).write_bytes(bytes(data))
    monkeypatch.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumError,
                       match=rf"parkinsons_updrs\.data.*expected SHA256 {parkinsons.SHA256}, got {actual}"):
        parkinsons.load_parkinsons()


def test_bad_target_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="target must be one of 'total', 'motor', got 'updrs'"):
        parkinsons.build(None, target="updrs")


def test_cli_data_list_shows_the_source_with_licence_and_presence(offline_env, capsys):
    from cflkit.cli import main

    assert main(["data", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    line = lines["parkinsons_telemonitoring"]
    assert "parkinsons,parkinsons_motor" in line and "offline" in line and "CC BY 4.0" in line
