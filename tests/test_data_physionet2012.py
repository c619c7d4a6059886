"""PhysioNet/CinC Challenge 2012 (in-hospital mortality, 4 ICU types): files and checksums,
the feature table, the federation and its fixed split, the SAPS-I baseline. Offline, from
the shared copy (``$CFLKIT_OFFLINE_DIRS``, else ../shared/data); skips without it (fails
under ``CFLKIT_REQUIRE_DATA=1``); downloads are simulated."""
import hashlib
import io
import json
import math
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import offline_copy

from cflkit import Config, make_federation
from cflkit.data import cache
from cflkit.data import physionet2012 as p12
from cflkit.data.cache import ChecksumError, DataError

ROOT = Path(__file__).resolve().parents[1]
FOLDER = "physionet_challenge_2012"
SET_A_SIZES = {1: 577, 2: 874, 3: 1481, 4: 1068}  # the shared copy's README


def _offline_root() -> str:
    return os.environ.get(cache.OFFLINE_ENV, "") or str(ROOT.parent / "shared" / "data")


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The shared copy's folder, with the offline directories set, a throw-away cache and no downloads."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.OFFLINE_ENV, _offline_root())
        folder = offline_copy(FOLDER)
        mp.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        mp.setenv(cache.NO_DOWNLOAD_ENV, "1")
        yield folder


@pytest.fixture(scope="module")
def table(copy):
    return p12.read_table()


@pytest.fixture(scope="module")
def ds(table):
    return p12.build(table)


@pytest.fixture
def env(copy, monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    return monkeypatch


def _raw_stays(copy: Path, set_name: str) -> dict:
    """RecordID -> (ICUType, lines) read plainly from the files, for the checks below."""
    out = {}
    for path in sorted((copy / set_name).glob("*.txt")):
        lines = [line.split(",") for line in path.read_text().splitlines()[1:] if line]
        icu = next(int(float(v)) for _, k, v in lines if k == "ICUType")
        out[int(path.stem)] = (icu, lines)
    return out


@pytest.fixture(scope="module")
def raw_b(copy):
    return _raw_stays(copy, "set-b")


def _link_copy(copy: Path, to: Path, sums: bool = True, real: tuple = ()) -> Path:
    """A copy of the offline folder made of symbolic links (``real``: names copied as files)."""
    folder = to / FOLDER
    for set_name in p12.SETS:
        (folder / set_name).mkdir(parents=True)
        for f in (copy / set_name).iterdir():
            name = f"{set_name}/{f.name}"
            if name in real:
                shutil.copy(f, folder / name)
            else:
                (folder / name).symlink_to(f)
    for name in p12.OUTCOMES:
        (folder / name).symlink_to(copy / name)
    if sums:
        shutil.copy(copy / p12.SUMS, folder / p12.SUMS)
    return folder


# -- the files ----------------------------------------------------------------------------------
def test_the_pinned_checksums_are_those_of_the_shared_copy(copy):
    text = (copy / p12.SUMS).read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == p12.SUMS_SHA256 and len(text.splitlines()) == 8002
    sums = p12.read_sums(copy / p12.SUMS)
    for s in p12.SETS:
        lines = {n: h for n, h in sums.items() if n.startswith(s + "/")}
        assert len(lines) == 4000 and p12.manifest_digest(lines) == p12.MANIFEST_SHA256[s]
    assert {n: sums[n] for n in p12.OUTCOMES} == p12.OUTCOMES
    assert [f.url for f in p12.SOURCE.files] == [
        "https://physionet.org/files/challenge-2012/1.0.0/Outcomes-a.txt",
        "https://physionet.org/files/challenge-2012/1.0.0/Outcomes-b.txt",
        "https://physionet.org/files/challenge-2012/1.0.0/set-a.tar.gz",
        "https://physionet.org/files/challenge-2012/1.0.0/set-b.tar.gz"]


def test_fetch_verifies_every_stay_of_the_offline_copy(copy):
    paths = p12.fetch_files()
    assert len(paths) == 8003 and paths[p12.SUMS] == copy / p12.SUMS
    assert paths["set-b/152864.txt"] == copy / "set-b" / "152864.txt"
    assert p12.status() == ("offline", p12.SET_BYTES + sum(p12.OUTCOME_SIZES.values()))


def test_a_corrupted_stay_names_the_file_both_checksums_and_the_tarball(env, copy, tmp_path):
    folder = _link_copy(copy, tmp_path / "offline", real=("set-a/140501.txt",))
    bad = folder / "set-a" / "140501.txt"
    data = bad.read_bytes().replace(b"ICUType,", b"ICUType,9", 1)
    bad.write_bytes(data)
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    expected = p12.read_sums(copy / p12.SUMS)["set-a/140501.txt"]
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(ChecksumError, match=rf"140501\.txt.*expected SHA256 {expected}, got {actual}.*set-a\.tar\.gz"):
        p12.load_physionet2012()


def test_a_missing_stay_names_the_file_its_url_and_where_to_put_it(env, copy, tmp_path):
    folder = _link_copy(copy, tmp_path / "offline")
    (folder / "set-b" / "150649.txt").unlink()
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    with pytest.raises(DataError) as e:
        p12.fetch_files()
    text = str(e.value)
    assert "set-b/150649.txt" in text and "1 of the 4000 stay files" in text and "set-a/" not in text
    assert p12.BASE + "set-b.tar.gz" in text
    assert str(tmp_path / "cache" / FOLDER) in text and cache.OFFLINE_ENV in text


def test_a_corrupted_sha256sums_is_refused_by_its_own_checksum(env, copy, tmp_path):
    folder = _link_copy(copy, tmp_path / "offline")
    sums = folder / p12.SUMS
    sums.write_text(sums.read_text().replace("set-a/132539", "set-a/132538", 1))
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    with pytest.raises(ChecksumError, match=rf"SHA256SUMS.*expected SHA256 {p12.SUMS_SHA256}, got [0-9a-f]{{64}}"):
        p12.fetch_files()


def test_sets_without_sha256sums_are_checked_against_the_manifests(env, copy, tmp_path):
    folder = _link_copy(copy, tmp_path / "offline", sums=False, real=("set-b/142731.txt",))
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "offline"))
    assert len(p12.fetch_files()) == 8002  # no SHA256SUMS: the two manifests matched
    (folder / "set-b" / "142731.txt").write_text("Time,Parameter,Value\n")
    with pytest.raises(ChecksumError, match=rf"set-b'.*expected manifest SHA256 {p12.MANIFEST_SHA256['set-b']}"):
        p12.fetch_files()


def _tarball(copy: Path, set_name: str, path: Path, change: str = "") -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for f in sorted((copy / set_name).iterdir()):
            data = f.read_bytes() + (b"0\n" if f.name == change else b"")
            info = tarfile.TarInfo(f"{set_name}/{f.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_download_is_verified_extracted_into_the_cache_and_gets_the_same_sha256sums(env, copy, tmp_path):
    offline = tmp_path / "offline"
    offline.mkdir()
    for name in p12.OUTCOMES:  # the outcome files offline, the sets to be downloaded
        shutil.copy(copy / name, offline / name)
    env.setenv(cache.OFFLINE_ENV, str(offline))
    env.delenv(cache.NO_DOWNLOAD_ENV)
    served = tmp_path / "served"
    served.mkdir()
    _tarball(copy, "set-a", served / "set-a.tar.gz")
    _tarball(copy, "set-b", served / "set-b.tar.gz", change="152864.txt")  # a corrupt archive
    asked = []

    def fake_download(url, path, progress=False):
        asked.append(url)
        shutil.copy(served / url.rsplit("/", 1)[1], path)
        return path

    env.setattr(cache, "download", fake_download)
    target = tmp_path / "cache" / FOLDER
    manifest = p12.MANIFEST_SHA256["set-b"]
    with pytest.raises(ChecksumError, match=rf"set-b\.tar\.gz.*expected manifest SHA256 {manifest}"):
        p12.fetch_files()
    assert (target / "set-a").is_dir() and not (target / "set-b").exists() and not (target / p12.SUMS).exists()
    assert sorted(p.name for p in target.iterdir()) == ["set-a"]  # no temporary files left
    _tarball(copy, "set-b", served / "set-b.tar.gz")
    asked.clear()
    paths = p12.fetch_files()
    assert asked == [p12.BASE + "set-b.tar.gz"]  # set-a was already extracted (and is checked by its manifest)
    assert (target / p12.SUMS).read_bytes() == (copy / p12.SUMS).read_bytes()
    assert paths["set-a/132539.txt"] == target / "set-a" / "132539.txt"
    assert p12.status()[0] == "offline+cache"
    env.setenv(cache.NO_DOWNLOAD_ENV, "1")
    assert p12.fetch_files()[p12.SUMS] == target / p12.SUMS  # from now on: the cache copy, file by file


def test_downloads_off_and_nothing_found_is_a_clear_error(env, tmp_path):
    env.setenv(cache.OFFLINE_ENV, str(tmp_path / "nothing"))
    with pytest.raises(DataError) as e:
        p12.fetch_files()
    text = str(e.value)
    assert "Outcomes-a.txt" in text and "downloads are off" in text and p12.BASE + "Outcomes-a.txt" in text


# -- the feature table ----------------------------------------------------------------------
def test_stays_per_icu_type_and_the_positive_rate(table, copy, raw_b):
    assert table["features"].shape == (8000, 226) and len(p12.FEATURE_NAMES) == 226
    set_a = table["set"] == "set-a"
    counts = {c: int(np.sum(set_a & (table["icu_type"] == c))) for c in SET_A_SIZES}
    assert counts == SET_A_SIZES
    assert {c: int(np.sum(~set_a & (table["icu_type"] == c))) for c in SET_A_SIZES} == \
        {c: sum(icu == c for icu, _ in raw_b.values()) for c in SET_A_SIZES}
    outcomes = pd.read_csv(copy / "Outcomes-a.txt")
    assert table["death"][set_a].sum() == outcomes["In-hospital_death"].sum() == 554
    assert abs(table["death"].mean() - 0.14) < 0.005  # 13.85 % in set A, 14.2 % in set B


def test_features_match_a_plain_reading_of_the_files(table, raw_b):
    rows = {rid: i for i, rid in enumerate(table["record_id"])}
    names = {n: j for j, n in enumerate(p12.FEATURE_NAMES)}
    rng = np.random.default_rng(0)
    for rid in rng.choice(sorted(raw_b), 25, replace=False).tolist() + [150309]:
        icu, lines = raw_b[rid]
        got = table["features"][rows[rid]]
        weight0 = next((i for i, (t, k, _) in enumerate(lines) if k == "Weight" and t == "00:00"), None)
        for series in ("HR", "Weight", "Urine", "Lactate", "GCS"):
            values = [(t, float(v)) for i, (t, k, v) in enumerate(lines) if k == series and i != weight0]
            values = [(t, v) for t, v in values if v > 0 or (series == "Urine" and v == 0)]
            values.sort(key=lambda tv: tv[0])  # "HH:MM" sorts as time; stable for equal times
            assert got[names[f"{series}_count"]] == len(values)
            if values:
                v = [x for _, x in values]
                assert got[names[f"{series}_first"]] == v[0] and got[names[f"{series}_last"]] == v[-1]
                assert got[names[f"{series}_min"]] == min(v) and got[names[f"{series}_max"]] == max(v)
                assert got[names[f"{series}_mean"]] == pytest.approx(np.mean(v))
            else:
                assert np.isnan(got[names[f"{series}_mean"]])
        age = next(float(v) for _, k, v in lines if k == "Age")
        height = next(float(v) for _, k, v in lines if k == "Height")
        assert got[names["Age"]] == age
        assert (np.isnan(got[names["Height"]]) and height == -1) or got[names["Height"]] == height


def test_the_table_is_cached_by_checksum_and_rebuilt_when_unreadable(copy, table, monkeypatch):
    where = p12._table_path()  # the module's cache: the `table` fixture parsed the stays into it
    assert where.is_file() and where.parent == Path(os.environ[cache.CACHE_ENV]) / FOLDER

    def no_parsing(texts):
        raise AssertionError("parsed again")

    monkeypatch.setattr(p12, "parse_stays", no_parsing)
    np.testing.assert_array_equal(p12.read_table()["features"], table["features"])  # from the cache
    calls = []
    monkeypatch.setattr(p12, "parse_stays", lambda texts: calls.append(len(texts)) or
                        {k: table[k] for k in ("record_id", "icu_type", "features")})
    where.write_bytes(b"not a table")
    np.testing.assert_array_equal(p12.read_table()["features"], table["features"])
    assert calls == [8000] and not [f for f in where.parent.iterdir() if f.name.startswith(".")]  # atomic write
    monkeypatch.setattr(p12, "parse_stays", no_parsing)
    assert p12.read_table()["features"].shape == (8000, 226)


# -- the federation -----------------------------------------------------------------------------
def test_natural_federation_one_client_per_icu_type_test_rows_are_set_b(ds):
    fed = make_federation(ds, "natural")
    assert fed.n_clients == 4 and fed.n_groups == 1 and fed.params["split"] == "fixed"
    assert fed.client_meta["icu_type"] == ["coronary care", "cardiac surgery recovery", "medical", "surgical"]
    assert fed.sizes.tolist() == list(SET_A_SIZES.values())
    sets, icu = ds.meta["set"][fed.source_rows], ds.meta["icu_type"][fed.source_rows]
    for c in range(4):
        assert (sets[fed.train_index[c]] == "set-a").all() and (sets[fed.test_index[c]] == "set-b").all()
        assert (icu[np.concatenate([fed.train_index[c], fed.test_index[c]])] == c + 1).all()
    assert sum(fed.test_sizes) == 4000 and "test = set-b" in fed.description
    assert make_federation(ds, "natural", seed=5).test_index[2].tolist() == fed.test_index[2].tolist()
    with pytest.raises(ValueError, match="fixed split.*test_fraction does not apply"):
        make_federation(ds, "natural", test_fraction=0.3)
    from cflkit.core.scenarios import make_natural_federation

    assert make_natural_federation(ds, group_by="icu_type").n_groups == 4  # the ICU types as groups, on request


def test_imputation_uses_each_clients_training_rows_only(table, ds):
    raw, imputed, missing = table["features"], ds.meta["raw_x"], ds.meta["missing"]
    test, site = ds.meta["test"], ds.meta["site"]
    assert not np.isnan(imputed).any() and np.array_equal(missing, np.isnan(raw))
    j = p12.FEATURE_NAMES.index("Lactate_max")
    for c in range(4):
        fit = raw[(site == c) & ~test, j]
        holes = (site == c) & np.isnan(raw[:, j])
        assert holes[test].any() and holes[~test].any()
        assert np.all(imputed[holes, j] == np.nanmedian(fit))
    # changing every test stay changes no training row, nor any imputed value
    changed = {**table, "features": np.where(test[:, None], raw * 3.0 + 7.0, raw)}
    other = p12.build(changed)
    np.testing.assert_array_equal(other.meta["raw_x"][~test], imputed[~test])
    np.testing.assert_array_equal(other.meta["raw_x"][test & missing[:, j], j], imputed[test & missing[:, j], j])
    a, b = make_federation(ds, "natural"), make_federation(other, "natural")
    for c in range(4):
        np.testing.assert_array_equal(a.x[a.train_index[c]], b.x[b.train_index[c]])
    # a summary none of a client's training stays has is 0 there (both sets)
    block = np.array([[np.nan, 1.0], [np.nan, 2.0], [5.0, np.nan]])
    out = p12.impute_per_site(block, np.zeros(3, dtype=int), np.array([True, True, False]))
    assert out.tolist() == [[0.0, 1.0], [0.0, 2.0], [0.0, 1.5]]


def test_subsites_four_per_icu_type_grouped_by_icu_type(table):
    ds = p12.build(table, subsites=4, name="physionet2012_subsites")
    fed = make_federation(ds, "natural")
    assert fed.n_clients == 16 and fed.n_groups == 4 and fed.params["group_by"] == "icu_type"
    names = fed.group_names
    icu = ds.meta["icu_type"][fed.source_rows]
    sets = ds.meta["set"][fed.source_rows]
    for c in range(16):
        rows = np.concatenate([fed.train_index[c], fed.test_index[c]])
        assert len(np.unique(icu[rows])) == 1 and names[fed.groups[c]] == p12.ICU_TYPES[icu[rows][0] - 1][1]
        assert (sets[fed.test_index[c]] == "set-b").all() and (sets[fed.train_index[c]] == "set-a").all()
    for k in range(4):
        sizes = fed.sizes[4 * k:4 * k + 4]
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == list(SET_A_SIZES.values())[k]
    again = p12.build(table, subsites=4)
    np.testing.assert_array_equal(again.meta["site"], ds.meta["site"])  # the fixed seed: one dataset


# -- the SAPS-I baseline ------------------------------------------------------------------------
def test_saps_i_auroc_is_computed_from_the_outcome_file(ds, copy, raw_b):
    from sklearn.metrics import average_precision_score, roc_auc_score

    outcomes = pd.read_csv(copy / "Outcomes-b.txt")
    outcomes["icu"] = outcomes["RecordID"].map({rid: icu for rid, (icu, _) in raw_b.items()})
    known = outcomes[outcomes["SAPS-I"] >= 0]
    got = p12.saps_baseline(ds).set_index("icu_type")
    for code, name, _ in p12.ICU_TYPES:
        part = known[known["icu"] == code]
        assert got.loc[name, "auroc"] == pytest.approx(roc_auc_score(part["In-hospital_death"], part["SAPS-I"]))
        assert got.loc[name, "stays"] == (outcomes["icu"] == code).sum()
    assert got.loc["pooled", "auroc"] == pytest.approx(roc_auc_score(known["In-hospital_death"], known["SAPS-I"]))
    assert got.loc["pooled", "auprc"] == pytest.approx(
        average_precision_score(known["In-hospital_death"], known["SAPS-I"]))
    assert got.loc["pooled", "no_saps"] == (outcomes["SAPS-I"] < 0).sum() > 0
    assert 0.6 < got.loc["pooled", "auroc"] < 0.8  # a severity score, far from perfect


# -- end to end ---------------------------------------------------------------------------------
def test_registered_listed_and_fetched_from_the_command_line(copy, capsys):
    from cflkit.cli import main
    from cflkit.core.datasets import DATASETS
    from cflkit.data import SOURCES, find_source

    assert {"physionet2012", "physionet2012_subsites"} <= set(DATASETS)
    assert find_source("physionet2012") == (FOLDER, SOURCES[FOLDER])
    assert main(["data", "list"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(FOLDER))
    assert "offline" in line and "Open Data Commons Attribution 1.0" in line and "physionet2012" in line
    assert main(["data", "fetch", "physionet2012"]) == 0
    assert "already available (offline), 8003 file(s) verified" in capsys.readouterr().out


def test_a_fedavg_run_reports_a_finite_auroc(copy, tmp_path):
    import cflkit

    result = cflkit.run(Config(dataset="physionet2012", scenario="natural", method="fedavg", rounds=2,
                               local_epochs=1), out=tmp_path / "run")
    s = result.summary
    assert s["clients"] == 4 and math.isfinite(s["auroc_mean"]) and 0.5 < s["auroc_mean"] <= 1
    assert s["auroc_clients"] == 4 and math.isfinite(s["auprc_mean"]) and math.isfinite(s["balanced_accuracy_mean"])
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert {"auroc", "auprc", "balanced_accuracy"} <= set(history.columns)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["auroc_mean"] == pytest.approx(s["auroc_mean"])
