"""UCI Parkinsons Telemonitoring: 42 patients, one client each, UPDRS regression.

Tsanas, Little, McSharry & Ramig (2010), "Accurate telemonitoring of Parkinson's disease
progression by noninvasive speech tests", IEEE Trans. Biomed. Eng. 57(4):884-893,
DOI 10.1109/TBME.2009.2036000; data: UCI Machine Learning Repository (id 189),
DOI 10.24432/C5ZS3N, CC BY 4.0.

5,875 voice recordings made at home by 42 people with early-stage Parkinson's disease over
a six-month trial (101-168 recordings per patient). Two tasks on the same rows:
``parkinsons`` regresses the total UPDRS, ``parkinsons_motor`` the motor UPDRS (both
"linearly interpolated" by the authors between the clinic assessments, as the source's
``parkinsons_updrs.names`` says), each in units of :data:`TARGET_UNIT` UPDRS points: a fixed constant, so that no
data statistic leaks into the target and SGD at the default learning rate stays stable.

Preprocessing (choices, all documented in ``data/README.md``):

- features: the 16 voice measures only (:data:`VOICE`: jitter, shimmer, NHR, HNR, RPDE,
  DFA, PPE), as in the source's stated task. ``age`` and ``sex`` are constant within a
  patient, so they are *client metadata* (``meta["site_meta"]``), not features: a feature
  that never varies inside a client only tells a model which client it is on.
  ``test_time`` is not a feature either: it is the time axis of the split, and as a
  feature it would let a model extrapolate each patient's UPDRS trend instead of reading
  the voice;
- no row is dropped: the file has no missing value;
- order and split: rows are sorted by patient, then ``test_time`` (days since
  recruitment; a few are slightly negative), kept in ``meta["time"]``; the ``natural``
  scenario puts the last ``test_fraction`` of each patient's recordings into its test set
  (no future in the training set). About six recordings share each test day: recordings
  tied at the cut go to the test set, so a patient's test share can be a little above
  ``test_fraction``;
- standardisation: as for heart disease and air quality, ``Dataset.x`` is
  pooled-standardised for the planted scenarios; the natural scenario standardises each
  patient's 16 voice measures with that patient's own training rows only
  (``meta["raw_x"]``).

Client metadata (``meta["site_meta"]``): ``age_band`` (age at recruitment: "<60" /
"60-69" / ">=70": 14 / 15 / 13 patients, the decade bands closest to equal thirds of the
36-85 year range) and ``sex`` ("male" / "female": 28 / 14 patients). The default
reference grouping (``group_by``) is ``age_band``, because it is the one that shows in
the data: the patients' mean total UPDRS is 24.5 / 27.1 / 34.5 by band (motor 18.2 /
20.0 / 25.0), and one linear model per band, trained on the bands' pooled training rows,
lowers the mean per-patient test MAE of total UPDRS from 8.7 to 8.3 points, while one
per sex does not (8.8; patient means 29.4 male, 26.8 female); see ``docs/parkinsons.md``.
The band effect is a shift of the UPDRS level, not of the voice -> UPDRS slopes; ``sex``
stays available (``make_natural_federation(ds, group_by="sex")``, or the ``metadata``
method's ``metadata_key=sex``). Either is a reference to compare clusterings with, not a
known cluster structure. The exact ages are in ``meta["patient_age"]``.
"""
from __future__ import annotations

import numpy as np

from .cache import RemoteFile, Source, fetch

ARCHIVE = "https://archive.ics.uci.edu/static/public/189/parkinsons+telemonitoring.zip"
FILE = "parkinsons_updrs.data"
SHA256 = "f2c7d5025dec4e92e7feae367a5f7ccf58789a10ac6b54bdf15976c599f9dd39"
SIZE = 911261
VOICE = ("Jitter(%)", "Jitter(Abs)", "Jitter:RAP", "Jitter:PPQ5", "Jitter:DDP", "Shimmer", "Shimmer(dB)",
         "Shimmer:APQ3", "Shimmer:APQ5", "Shimmer:APQ11", "Shimmer:DDA", "NHR", "HNR", "RPDE", "DFA", "PPE")
TARGETS = {"total": "total_UPDRS", "motor": "motor_UPDRS"}
TARGET_UNIT = 10.0  # regression target: UPDRS / 10 points (total UPDRS here 7-55, motor 5-40)
AGE_BANDS = ((60, "<60"), (70, "60-69"), (None, ">=70"))  # (upper bound, exclusive; name)
SEX = {0: "male", 1: "female"}  # the source's coding of `sex`
CITATION = ("Tsanas, Little, McSharry & Ramig (2010), Accurate telemonitoring of Parkinson's disease "
            "progression by noninvasive speech tests, IEEE Trans. Biomed. Eng. 57(4):884-893; "
            "UCI Parkinsons Telemonitoring, DOI 10.24432/C5ZS3N")

SOURCE = Source(
    name="parkinsons_telemonitoring",
    files=(RemoteFile(FILE, sha256=SHA256, size=SIZE, member=FILE),),
    licence="CC BY 4.0",
    citation=CITATION,
    homepage="https://archive.ics.uci.edu/dataset/189/parkinsons+telemonitoring",
    archive=ARCHIVE,
    datasets=("parkinsons", "parkinsons_motor"),
)


def read_raw(progress: bool = False):
    """The raw table (5,875 recordings x 22 columns, pandas), checksum verified."""
    import pandas as pd

    return pd.read_csv(fetch(SOURCE, progress=progress)[FILE])


def age_band(age) -> np.ndarray:
    """The age band name of each age (:data:`AGE_BANDS`)."""
    bounds = [b for b, _ in AGE_BANDS[:-1]]
    return np.array([name for _, name in AGE_BANDS])[np.searchsorted(bounds, np.asarray(age), side="right")]


def build(df, target: str = "total"):
    """A :class:`~cflkit.core.datasets.Dataset` from :func:`read_raw`'s table."""
    from ..core.datasets import Dataset
    from .heart import pooled_standardize

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}")
    missing = [c for c in ("subject#", "age", "sex", "test_time", *TARGETS.values(), *VOICE) if c not in df]
    if missing:
        raise ValueError(f"not the Parkinsons Telemonitoring table: no column(s) {', '.join(missing)}")
    subjects = np.unique(df["subject#"])
    if subjects.tolist() != list(range(1, len(subjects) + 1)):
        raise ValueError(f"patients must be numbered 1..n, got {subjects.tolist()}")
    df = df.sort_values(["subject#", "test_time"], kind="stable").reset_index(drop=True)
    site = df["subject#"].to_numpy(np.int64) - 1
    per_patient = df.groupby("subject#")[["age", "sex"]]
    if (per_patient.nunique() > 1).any().any():
        raise ValueError("age and sex must be constant within each patient")
    first = per_patient.first()
    ages = first["age"].to_numpy(np.int64)
    raw = df[list(VOICE)].to_numpy(np.float64)
    scale = np.ones(len(VOICE), dtype=bool)
    updrs = df[TARGETS[target]].to_numpy(np.float64)
    name = "parkinsons" if target == "total" else "parkinsons_motor"
    site_meta = {"age_band": age_band(ages).tolist(), "sex": [SEX[int(s)] for s in first["sex"]]}
    meta = {"site": site, "sites": tuple(f"patient {s}" for s in subjects), "site_meta": site_meta,
            "group_by": "age_band", "time": df["test_time"].to_numpy(np.float64), "raw_x": raw,
            "standardize": scale, "updrs": updrs, "patient_age": ages, "target": TARGETS[target],
            "target_unit": f"{TARGET_UNIT:g} UPDRS points", "licence": SOURCE.licence}
    return Dataset(name, pooled_standardize(raw, scale), (updrs / TARGET_UNIT).astype(np.float32), "tabular",
                   task="regression", feature_names=VOICE, citation=CITATION, meta=meta)


def load_parkinsons(target: str = "total", progress: bool = False):
    """The 42-patient telemonitoring dataset, total (default) or motor UPDRS; see the module docstring."""
    return build(read_raw(progress), target)
