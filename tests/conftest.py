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
