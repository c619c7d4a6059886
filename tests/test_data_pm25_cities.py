"""The five-city PM2.5 federation (``pm25_cities``, ``pm25_cities_city``): checksums, sites,
cleaning, the time split, per-client standardisation, the groupings and a short run. Offline:
the files come from ``$CFLKIT_OFFLINE_DIRS`` (defaulted to the shared offline copies), as in
``tests/test_data.py``; the tests that need them skip when that copy is absent."""
import hashlib
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import offline_copy, offline_root, offline_sums

from cflkit import make_federation
from cflkit.core.scenarios import make_natural_federation
from cflkit.data import cache, pm25_cities
from cflkit.data.cache import ChecksumError

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "pm25_five_chinese_cities"


_offline_root = offline_root


@pytest.fixture
def _pm25_copy():
    offline_copy(FOLDER)  # skips, or fails under CFLKIT_REQUIRE_DATA=1 (CI)


needs_pm25 = pytest.mark.usefixtures("_pm25_copy")


_sums = offline_sums


@pytest.fixture(scope="module")
def raw(offline_env):
    """The five raw city tables, parsed once for the module."""
    offline_copy(FOLDER)
    return pm25_cities.read_raw()


@pytest.fixture(scope="module")
def tables(raw):
    return pm25_cities.prepare(raw)


@pytest.fixture(scope="module")
def ds(tables):
    return pm25_cities.build(tables, "site")


@pytest.fixture(scope="module")
def fed(ds):
    return make_federation(ds, "natural", test_fraction=0.25)


# -- files ----------------------------------------------------------------------------------
@needs_pm25
def test_checksums_are_the_published_ones(raw):
    sums = _sums(FOLDER)
    assert sorted(sums) == sorted(f.name for f in pm25_cities.SOURCE.files)
    for f in pm25_cities.SOURCE.files:
        assert f.sha256 == sums[f.name]
        path, where = cache.locate(pm25_cities.SOURCE, f)
        assert where == "offline" and cache.file_hash(path) == f.sha256 and path.stat().st_size == f.size
        assert f.member == f"FiveCitiePMData.rar!{f.name}" and not f.url
    assert pm25_cities.SOURCE.archive.startswith("https://archive.ics.uci.edu/static/public/394/")
    assert pm25_cities.SOURCE.licence == "CC BY 4.0"
    assert all(len(t) == 52584 for t in raw.values())


@needs_pm25
def test_a_corrupted_copy_names_the_file_and_both_checksums(offline_env, monkeypatch, tmp_path):
    folder = tmp_path / "offline" / FOLDER
    folder.mkdir(parents=True)
    for f in pm25_cities.SOURCE.files:
        shutil.copy(cache.locate(pm25_cities.SOURCE, f)[0], folder / f.name)
    name = pm25_cities.file_name("Guangzhou")
    data = bytearray((folder / name).read_bytes())
    data[200] = ord("9") if data[200] != ord("9") else ord("8")
    (folder / name).write_bytes(bytes(data))
    monkeypatch.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    expected = pm25_cities.SHA256["Guangzhou"]
    with pytest.raises(ChecksumError, match=rf"{name}.*expected SHA256 {expected}, got {actual}"):
        pm25_cities.load_pm25_cities()


def test_the_rar_inside_the_official_zip_is_a_clear_error_not_a_half_written_cache(monkeypatch, tmp_path):
    """The official zip holds FiveCitiePMData.rar, which the cache cannot open: the error names
    the files, the archive and where to put them; nothing is left in the cache."""
    import zipfile

    def download(url, path, progress=False):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("FiveCitiePMData.rar", b"Rar!\x1a\x07\x00" + b"\0" * 64)
        return path

    monkeypatch.setenv(cache.OFFLINE_ENV, str(tmp_path / "nothing"))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(cache.NO_DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(cache, "download", download)
    with pytest.raises(cache.DataError) as e:
        pm25_cities.load_pm25_cities()
    text = str(e.value)
    assert "BeijingPM20100101_20151231.csv" in text and pm25_cities.ARCHIVE in text and "download failed" in text
    assert str(tmp_path / "cache" / FOLDER) in text
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


# -- sites and groupings ----------------------------------------------------------------------
@needs_pm25
def test_sites_per_city_and_sixteen_in_all(raw, ds):
    per_city = {c: sorted(col[3:] for col in t if col.startswith("PM_")) for c, t in raw.items()}
    assert {c: len(s) for c, s in per_city.items()} == {"Beijing": 4, "Chengdu": 3, "Guangzhou": 3,
                                                         "Shanghai": 3, "Shenyang": 3}
    assert per_city == {c: sorted(s) for c, (_, s) in pm25_cities.CITIES.items()}
    assert ds.meta["sites"] == pm25_cities.site_names() and len(ds.meta["sites"]) == 16
    counts = np.bincount(ds.meta["site"], minlength=16)
    assert len(counts) == 16 and counts.sum() == len(ds) and counts.min() >= 800
    assert ds.meta["site_meta"]["monitor"].count("US post") == 5  # one US diplomatic post per city


@needs_pm25
def test_city_and_region_groupings(fed, ds):
    assert fed.n_clients == 16 and fed.task == "regression" and ds.meta["group_by"] == "city"
    assert fed.group_names == ("Beijing", "Chengdu", "Guangzhou", "Shanghai", "Shenyang") and fed.n_groups == 5
    assert [fed.group_names[g] for g in fed.groups] == fed.client_meta["city"]
    assert [s.split(" ", 1)[0] for s in fed.client_meta["site"]] == fed.client_meta["city"]
    north = {s for s, r in zip(fed.client_meta["site"], fed.client_meta["region"]) if r == "north"}
    assert north == {"Beijing Dongsi", "Beijing Dongsihuan", "Beijing Nongzhanguan", "Beijing US Post",
                     "Shenyang Taiyuanjie", "Shenyang US Post", "Shenyang Xiaoheyan"}
    by_region = make_natural_federation(ds, group_by="region")  # the coarser reference grouping
    assert by_region.group_names == ("north", "south") and np.bincount(by_region.groups).tolist() == [7, 9]


@needs_pm25
def test_one_client_per_city_holds_its_sites_days(tables, ds):
    cities = pm25_cities.build(tables, "city", "pm25_cities_city")
    assert cities.meta["sites"] == tuple(pm25_cities.CITIES) and cities.meta["group_by"] == "region"
    assert len(cities) == len(ds)
    np.testing.assert_array_equal(cities.meta["raw_x"], ds.meta["raw_x"])
    city_of_site = np.array([s.split(" ", 1)[0] for s in ds.meta["sites"]])
    expected = [list(pm25_cities.CITIES).index(c) for c in city_of_site[ds.meta["site"]]]
    np.testing.assert_array_equal(cities.meta["site"], expected)
    fed = make_federation(cities, "natural")
    assert fed.n_clients == 5 and fed.group_names == ("north", "south")
    assert fed.client_meta["region"] == ["north", "south", "south", "south", "north"]
    with pytest.raises(ValueError, match="clients must be 'site' or 'city', got 'station'"):
        pm25_cities.build(tables, "station")


# -- cleaning ---------------------------------------------------------------------------------
@needs_pm25
def test_sentinels_and_na_are_not_in_the_features(raw, ds):
    x = ds.meta["raw_x"]
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(ds.x)) and np.all(np.isfinite(ds.y))
    assert x.min() > -100 and x.max() < 2000  # no -9999, no 999990 (Iws alone reaches ~1110)
    names = list(ds.feature_names)
    for column, (low, high) in pm25_cities.VALID.items():
        values = x[:, names.index(column)]
        assert low <= values.min() and values.max() <= high, column
    # the published sentinels are there in the raw files, and gone after cleaning
    g, b, s = raw["Guangzhou"], raw["Beijing"], raw["Shenyang"]
    assert (g["DEWP"] == -9999).sum() == 4 and (g["HUMI"] == -9999).sum() == 4
    assert (b["precipitation"] == 999990).sum() == 1 and (s["DEWP"] < -60).sum() == 1
    for frame in (g, b, s):
        cleaned = pm25_cities.clean_weather(frame)
        assert not (cleaned[list(pm25_cities.WEATHER)] <= -9999).any().any()
        assert not (cleaned[list(pm25_cities.WEATHER)] >= 999990).any().any()
    assert "PM_US Post" not in ds.feature_names and "season" not in ds.feature_names
    np.testing.assert_allclose(ds.y * pm25_cities.TARGET_UNIT, ds.meta["pm25"], rtol=1e-6)


@needs_pm25
def test_a_site_day_without_pm25_is_dropped_not_imputed(raw, tables):
    t = raw["Beijing"].assign(time=pd.to_datetime(raw["Beijing"][["year", "month", "day", "hour"]]))
    valid = t["PM_Dongsihuan"].notna().groupby(t["time"].dt.floor("D")).sum()
    days = set(tables["Beijing Dongsihuan"]["time"])
    assert days <= set(valid[valid >= 12].index)  # every kept day had >= 12 hours with PM2.5
    assert min(days) == pd.Timestamp("2013-03-05")  # the site starts then: nothing before is made up


def test_wind_encoding_daily_means_and_min_hours():
    """cbwd -> unit vector of its quadrant (cv: zero vector, calm = 1); days need min_hours valid hours."""
    hours = 48
    frame = pd.DataFrame({"No": range(hours), "year": 2014, "month": 1, "day": [1] * 24 + [2] * 24,
                          "hour": list(range(24)) * 2, "season": 4,
                          "PM_Dongsi": [100.0] * 12 + [200.0] * 12 + [50.0] * 11 + [np.nan] * 13,
                          "PM_Dongsihuan": 1.0, "PM_Nongzhanguan": 1.0, "PM_US Post": 1.0,
                          "DEWP": -10.0, "HUMI": 50.0, "PRES": 1020.0, "TEMP": 0.0,
                          "cbwd": ["NE"] * 6 + ["cv"] * 6 + ["SW"] * 6 + ["NW"] * 6 + ["SE"] * 24,
                          "Iws": 2.0, "precipitation": 0.0, "Iprec": 0.0})
    frame.loc[3, "DEWP"] = -9999.0  # a sentinel: the hour is dropped, not averaged in
    with pytest.raises(ValueError, match="min_days must be an integer >= 2"):
        pm25_cities.prepare({"Beijing": frame}, min_days=1)
    out = pm25_cities.prepare({"Beijing": frame}, min_days=2)  # Dongsi: day 2 has 11 PM2.5 hours < 12
    assert set(out) == {"Beijing Dongsihuan", "Beijing Nongzhanguan", "Beijing US Post"}
    day = out["Beijing US Post"]
    assert day["time"].tolist() == [pd.Timestamp("2014-01-01"), pd.Timestamp("2014-01-02")]
    first = day.iloc[0]  # hours: NE x5 (one dropped), cv x6, SW x6, NW x6 -> 23 valid hours
    r = np.sqrt(0.5)
    np.testing.assert_allclose(first["wd_sin"], (5 * r - 6 * r - 6 * r) / 23)
    np.testing.assert_allclose(first["wd_cos"], (5 * r - 6 * r + 6 * r) / 23)
    np.testing.assert_allclose(first["calm"], 6 / 23)
    np.testing.assert_allclose(first["DEWP"], -10.0)
    np.testing.assert_allclose(day.iloc[1][["wd_sin", "wd_cos", "calm"]].to_numpy(float), [r, -r, 0])
    np.testing.assert_allclose(first[["month_sin", "month_cos"]].to_numpy(float), [0, 1], atol=1e-12)
    dongsi = pm25_cities.prepare({"Beijing": frame}, min_days=2, min_hours=11)["Beijing Dongsi"]
    np.testing.assert_allclose(dongsi["pm25"], [(100 * 11 + 200 * 12) / 23, 50])  # the mean of valid hours
    bad = frame.assign(cbwd=["NNE"] + ["NE"] * 47)
    with pytest.raises(ValueError, match=r"unknown combined wind directions \['NNE'\]; expected NE, SE, SW, NW, cv"):
        pm25_cities.prepare({"Beijing": bad})


def test_a_site_with_too_few_days_is_dropped_with_a_warning(caplog):
    frame = pd.DataFrame({"No": range(24), "year": 2014, "month": 7, "day": 1, "hour": range(24), "season": 2,
                          "PM_Taiyuanjie": 30.0, "PM_US Post": np.nan, "PM_Xiaoheyan": 30.0,
                          "DEWP": 20.0, "HUMI": 80.0, "PRES": 1000.0, "TEMP": 25.0, "cbwd": "SW",
                          "Iws": 1.0, "precipitation": 0.0, "Iprec": 0.0})
    with caplog.at_level(logging.WARNING, logger="cflkit"):
        out = pm25_cities.prepare({"Shenyang": frame}, min_days=2)
    assert out == {}
    assert "site Shenyang Taiyuanjie has 1 day(s) after cleaning (< min_days=2): dropped" in caplog.text
    assert "Shenyang US Post has 0 day(s)" in caplog.text


# -- split and standardisation ---------------------------------------------------------------
@needs_pm25
def test_every_sites_test_days_are_later_than_its_training_days(fed, ds):
    time = ds.meta["time"][fed.source_rows]
    assert fed.params["split"] == "time"
    for c in range(16):
        tr, te = fed.train_index[c], fed.test_index[c]
        assert time[tr].max() < time[te].min()
        assert abs(len(te) - 0.25 * (len(tr) + len(te))) <= 1
        assert np.all(ds.meta["site"][fed.source_rows[np.concatenate([tr, te])]] == c)


@needs_pm25
def test_standardisation_uses_only_each_clients_training_rows(fed, ds):
    scale = ds.meta["standardize"]
    raw = ds.meta["raw_x"]
    assert [ds.feature_names[i] for i in np.flatnonzero(scale)] == list(pm25_cities.WEATHER)
    r = raw[fed.source_rows][:, scale]
    for c in range(16):
        tr, te = fed.train_index[c], fed.test_index[c]
        rows = np.concatenate([tr, te])
        mean, std = r[tr].mean(0), r[tr].std(0)
        np.testing.assert_allclose(fed.x[rows][:, scale], (r[rows] - mean) / np.where(std > 0, std, 1),
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(fed.x[rows][:, ~scale], raw[fed.source_rows[rows]][:, ~scale].astype(np.float32))
    # other sites' rows and site 0's own test rows do not move its training features
    raw2 = raw.copy()
    raw2[ds.meta["site"] != 0] *= 7.0
    raw2[fed.source_rows[fed.test_index[0]]] += 100.0
    fed2 = make_federation(replace(ds, meta={**ds.meta, "raw_x": raw2}), "natural")
    np.testing.assert_allclose(fed2.x[fed2.train_index[0]], fed.x[fed.train_index[0]], atol=1e-6)


@needs_pm25
def test_guangzhou_city_station_duplicates_the_us_post_as_published(raw, tables):
    """A defect of the published data, kept as published and documented."""
    g = raw["Guangzhou"]
    assert g["PM_City Station"].isna().equals(g["PM_US Post"].isna())
    pd.testing.assert_series_equal(g["PM_City Station"], g["PM_US Post"], check_names=False)
    pd.testing.assert_frame_equal(tables["Guangzhou City Station"], tables["Guangzhou US Post"])


# -- a run ----------------------------------------------------------------------------------
@needs_pm25
def test_fedavg_on_the_natural_federation_finishes_with_finite_rmse(offline_env):
    import cflkit
    from cflkit import Config

    result = cflkit.run(Config(dataset="pm25_cities", scenario="natural", method="fedavg", rounds=2, local_epochs=1))
    s = result.summary
    assert s["clients"] == 16 and s["groups"] == 5 and s["rounds"] == 2
    assert np.isfinite(s["rmse_mean"]) and np.isfinite(s["rmse_weighted"]) and 0 < s["rmse_mean"] < 5
