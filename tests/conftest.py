import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the per-client reference loop lives in bench/


@pytest.fixture
def id_dataset():
    """A tabular dataset whose first feature is the row id: sampling is checkable exactly."""
    from cflkit.core.datasets import Dataset

    n, k = 2000, 10
    rng = np.random.default_rng(123)
    y = np.repeat(np.arange(k), n // k)
    x = np.column_stack([np.arange(n), rng.normal(size=(n, 3))]).astype(np.float32)
    return Dataset("ids", x, y, "tabular", n_classes=k)


def row_ids(fed, rows):
    return fed.x[rows, 0].astype(int)


def offline_copy(folder: str) -> Path:
    """The shared offline copy ``folder`` of a real dataset (``CFLKIT_OFFLINE_DIRS``, else
    ../shared/data). Without it a test skips — or fails under ``CFLKIT_REQUIRE_DATA=1``,
    set by ``.ci/run``, so that CI never reports a data test it did not run as passing."""
    import os

    dirs = os.environ.get("CFLKIT_OFFLINE_DIRS", "") or str(ROOT.parent / "shared" / "data")
    for d in dirs.split(os.pathsep):
        if d and (Path(d) / folder).is_dir():
            return Path(d) / folder
    message = f"no offline copy of {folder} in {dirs}"
    if os.environ.get("CFLKIT_REQUIRE_DATA") == "1":
        pytest.fail(message + " (CFLKIT_REQUIRE_DATA=1)")
    pytest.skip(message)


def offline_root() -> str:
    """The offline directories the data tests read (``CFLKIT_OFFLINE_DIRS``, else ../shared/data)."""
    import os

    return os.environ.get("CFLKIT_OFFLINE_DIRS", "") or str(ROOT.parent / "shared" / "data")


def offline_sums(folder: str) -> dict:
    """File name -> SHA-256 of the ``SHA256SUMS`` beside an offline copy (empty without one)."""
    import os

    for d in offline_root().split(os.pathsep):
        path = Path(d) / folder / "SHA256SUMS"
        if path.is_file():
            return {line.split()[1]: line.split()[0] for line in path.read_text().splitlines() if line.strip()}
    return {}


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory):
    """The offline directories, a throw-away cache, and no real downloads (for a module)."""
    from cflkit.data import cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.OFFLINE_ENV, offline_root())
        mp.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        mp.setenv(cache.NO_DOWNLOAD_ENV, "1")
        yield


def use_offline_copy(monkeypatch, tmp_path, folder: str) -> Path:
    """Point the loaders at the offline copy ``folder`` (see :func:`offline_copy`), with a
    throw-away cache and no real downloads, for one test; returns the copy's path."""
    from cflkit.data import cache

    path = offline_copy(folder)
    monkeypatch.setenv(cache.OFFLINE_ENV, str(path.parent))
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(cache.NO_DOWNLOAD_ENV, "1")
    return path
