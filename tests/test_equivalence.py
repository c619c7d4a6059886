"""The reshaped core gives the numbers of the release before it: every config of
``tests/golden/make.py`` (every method, planted and real federations), loaded from the
``config.json`` that release wrote (its flat format), runs to the same history,
diagnostics and summary (``tests/golden/README.md``)."""
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from cflkit.core.experiment import run
from cflkit.core.metrics import BINARY_SUMMARY
from cflkit.core.results import read_config
from cflkit.core.trainer import BINARY_METRICS

GOLDEN = Path(__file__).parent / "golden" / "runs"
# the fixtures are committed; without them the suite must fail, not pass with no case
NAMES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) if GOLDEN.is_dir() else ["<missing>"]
REAL = ("heart", "air")  # need the offline copies of the real datasets
TIMING = {"seconds", "wall_seconds"}
PARTICIPATION = ("participated", "returned")  # history columns added since (client sampling, issue 13)
ADDED = (*PARTICIPATION, "joined", "holdout",  # ... whether a client has joined (late clients), held out of training
         *BINARY_METRICS)  # ... and AUROC, AUPRC, balanced accuracy of two-class tasks (issue 15)


def _offline(dataset_word: str) -> bool:
    folder = {"heart": "heart_disease_uci", "air": "beijing_multisite_air_quality"}[dataset_word]
    return any((Path(d) / folder).is_dir() for d in os.environ.get("CFLKIT_OFFLINE_DIRS", "").split(os.pathsep) if d)


# Floating point is compared to RTOL, not bit for bit: the golden runs were written on another
# CPU, and TensorFlow's kernels (oneDNN, with or without AVX-512) round sums in a different order
# there, which moves a loss in its 7th digit. Integers (assignments, clusters, bytes) stay exact.
RTOL = 1e-5


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_config_of_the_release_before_runs_to_the_same_numbers(name, tmp_path):
    assert GOLDEN.is_dir() and len(NAMES) == 26, f"the golden runs are missing from {GOLDEN} (tests/golden/README.md)"
    word = next((w for w in REAL if name.endswith(f"_{w}")), None)
    if word and not _offline(word):
        if os.environ.get("CFLKIT_STRICT") == "1":
            pytest.fail(f"{name} needs the offline copy of its dataset (CFLKIT_OFFLINE_DIRS)")
        pytest.skip(f"{name} needs the offline copy of its dataset (CFLKIT_OFFLINE_DIRS)")
    golden = GOLDEN / name
    config = read_config(golden / "config.json")
    run(config, out=tmp_path / "run")
    expected = pd.read_csv(golden / "history.csv")
    got = pd.read_csv(tmp_path / "run" / "history.csv")
    columns = [c for c in expected.columns if c not in TIMING]
    assert [c for c in got.columns if c not in ADDED] == list(expected.columns)
    assert (got["holdout"] == 0).all() and (got["joined"] == 1).all()
    # everybody takes part (participation 1, no dropout): every client trained and returned in every round
    assert (got.loc[got["round"] > 0, list(PARTICIPATION)] == 1).all().all()
    assert (got.loc[got["round"] == 0, list(PARTICIPATION)] == 0).all().all()
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_exact=False, rtol=RTOL, atol=1e-9)
    if (golden / "diagnostics.csv").is_file():
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run" / "diagnostics.csv"),
                                      pd.read_csv(golden / "diagnostics.csv"), check_exact=False, rtol=RTOL, atol=1e-9)
    else:
        assert not (tmp_path / "run" / "diagnostics.csv").exists()
    want = json.loads((golden / "summary.json").read_text())
    have = json.loads((tmp_path / "run" / "summary.json").read_text())
    fairness = {k for k in have if k.endswith(('_per_group', '_group_best', '_group_worst', '_group_gap'))}
    assert set(have) - set(BINARY_SUMMARY) - fairness == set(want)
    assert all(_same(have[k], want[k]) for k in want if k not in TIMING), \
        {k: (have[k], want[k]) for k in want if k not in TIMING and not _same(have[k], want[k])}
