"""UCI Beijing Multi-Site Air Quality: twelve monitoring stations, one client each.

Zhang, Guo, Dong, He, Xu & Chen (2017), "Cautionary tales on air-quality improvement
in Beijing", Proc. R. Soc. A 473: 20170457, DOI 10.1098/rspa.2017.0457; data:
UCI Machine Learning Repository, DOI 10.24432/C5RK5G, CC BY 4.0.

Two tasks on the same rows: ``air_quality`` regresses PM2.5 (in units of
:data:`TARGET_UNIT` µg/m³, a fixed constant so that no data statistic leaks into the
target and SGD at the default learning rate stays stable) and ``air_quality_bands``
classifies it into China's six PM2.5 bands of the 24-hour AQI (HJ 633-2012:
0-35, 35-75, 75-115, 115-150, 150-250, >250 µg/m³).

Preprocessing (choices, all documented in ``data/README.md``):

- features: the co-pollutants PM10, SO2, NO2, CO, O3 and the meteorology TEMP, PRES,
  DEWP, RAIN, WSPM; the wind direction ``wd`` (16 compass points) as the sine and cosine
  of its angle; the month (and, for hourly rows, the hour) as sine and cosine;
- ``NA``: hourly rows with a missing value in any used column are dropped (no
  imputation: an imputed PM2.5 target would be made up);
- subsampling, default ``resample="daily"``: daily means of the remaining hours (wind as
  the mean of its unit vectors), keeping days with at least ``min_hours`` (12) valid
  hours — about 1,400 rows per station, ~17,000 in all, and exactly the averaging period
  of the 24-hour AQI bands. ``resample="hourly"`` keeps hours, every ``every``-th one;
- order and split: rows are kept in time order with their timestamp in ``meta["time"]``;
  the ``natural`` scenario puts the last ``test_fraction`` of each station's time series
  into its test set (no future in the training set);
- standardisation: as for heart disease, ``Dataset.x`` is pooled-standardised for the
  planted scenarios; the natural scenario standardises each station's continuous
  features with its own training rows only (``meta["raw_x"]``).

Urban core vs suburban (``meta["site_meta"]["area"]``): the Beijing Municipal Ecological
and Environmental Monitoring Center classifies its stations as urban assessment stations
(Aotizhongxin, Dongsi, Guanyuan, Gucheng, Nongzhanguan, Tiantan, Wanliu, Wanshouxigong —
all in the six central districts Dongcheng, Xicheng, Chaoyang, Haidian, Shijingshan),
suburban assessment stations (Changping, Huairou, Shunyi — district towns outside the
centre) and a regional background ("control") station (Dingling, by the Ming tombs in
rural Changping district). ``area`` merges background into suburban; ``station_type``
keeps the three classes. Zhang et al. (2017, Fig. 1) map the same stations.
"""
from __future__ import annotations

import numpy as np

from .cache import RemoteFile, Source, fetch

ARCHIVE = "https://archive.ics.uci.edu/static/public/501/beijing+multi+site+air+quality+data.zip"
INNER = "PRSA2017_Data_20130301-20170228.zip"
STATIONS = {  # name: (district, BJMEMC station type, area)
    "Aotizhongxin": ("Chaoyang", "urban", "urban"),
    "Changping": ("Changping", "suburban", "suburban"),
    "Dingling": ("Changping", "background", "suburban"),
    "Dongsi": ("Dongcheng", "urban", "urban"),
    "Guanyuan": ("Xicheng", "urban", "urban"),
    "Gucheng": ("Shijingshan", "urban", "urban"),
    "Huairou": ("Huairou", "suburban", "suburban"),
    "Nongzhanguan": ("Chaoyang", "urban", "urban"),
    "Shunyi": ("Shunyi", "suburban", "suburban"),
    "Tiantan": ("Dongcheng", "urban", "urban"),
    "Wanliu": ("Haidian", "urban", "urban"),
    "Wanshouxigong": ("Xicheng", "urban", "urban"),
}
SHA256 = {
    "Aotizhongxin": "a94fbcfc71708b6ffdc033360163d91efb7f675e496f6b5860929aa96b96351b",
    "Changping": "a2e21402a6d95fb7043f87959e6e3dcbecb957aac356a6f8028a85b047c772e7",
    "Dingling": "3d8dff81f18a80d9f455876a785642bffe1e9b9924ec1e6b7ce8cca790432eeb",
    "Dongsi": "9c0020214425e5ee2a64d42f97a1f632e1d8f6b53ad50edd85a686cc7999f27e",
    "Guanyuan": "59390fee3b032597b387491f5230e7edb90a8558e30217ebd6d9befbe669fbf9",
    "Gucheng": "10ae48801ea55869fee56a48b885fb1127859c130551888d71673f34216ba951",
    "Huairou": "812dcbe848b3ba2c2d25731064797bff803c46eb0c602156a1fa044df136dc26",
    "Nongzhanguan": "572cf87b65ef543cd55d3a711b28474def224a46b0ec3fc8add8aaf13b67a487",
    "Shunyi": "520b59e4ead3b0cfe7f1ed673e30275de8441e999db6f413d5172d2277b8c15a",
    "Tiantan": "0743e34799cf1ee36195b73321b91baa5625276532e7263c588f68cdef3b4daa",
    "Wanliu": "0b1a6d754a07f0def2f55434ddfa3870dcd0063b7f766a6f66b6c11bb05a377a",
    "Wanshouxigong": "ab1d6a356d6997a45f6d657ad47de1e05a4a08d4a7015b38a329a90665ab74d0",
}
SIZES = {"Aotizhongxin": 2835916, "Changping": 2722295, "Dingling": 2675856, "Dongsi": 2636684,
         "Guanyuan": 2695860, "Gucheng": 2654625, "Huairou": 2641027, "Nongzhanguan": 2839705,
         "Shunyi": 2620654, "Tiantan": 2655061, "Wanliu": 2659544, "Wanshouxigong": 2871076}
POLLUTANTS = ("PM10", "SO2", "NO2", "CO", "O3")
WEATHER = ("TEMP", "PRES", "DEWP", "RAIN", "WSPM")
TARGET = "PM2.5"
TARGET_UNIT = 100.0  # regression target: PM2.5 / 100 µg/m³
BANDS = (35.0, 75.0, 115.0, 150.0, 250.0)  # HJ 633-2012, 24-hour PM2.5 (µg/m³) IAQI breakpoints
BAND_NAMES = ("excellent", "good", "lightly polluted", "moderately polluted", "heavily polluted",
              "severely polluted")
COMPASS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")
CITATION = ("Zhang, Guo, Dong, He, Xu & Chen (2017), Cautionary tales on air-quality improvement in "
            "Beijing, Proc. R. Soc. A 473:20170457; UCI Beijing Multi-Site Air Quality, DOI 10.24432/C5RK5G")


def file_name(station: str) -> str:
    return f"PRSA_Data_{station}_20130301-20170228.csv"


SOURCE = Source(
    name="beijing_multisite_air_quality",
    files=tuple(RemoteFile(file_name(s), sha256=SHA256[s], size=SIZES[s],
                           member=f"{INNER}!PRSA_Data_20130301-20170228/{file_name(s)}") for s in STATIONS),
    licence="CC BY 4.0",
    citation=CITATION,
    homepage="https://archive.ics.uci.edu/dataset/501/beijing+multi+site+air+quality+data",
    archive=ARCHIVE,
    datasets=("air_quality", "air_quality_bands"),
)


def read_raw(progress: bool = False) -> dict:
    """Station name -> its raw hourly table (35,064 rows each), checksums verified."""
    import pandas as pd

    paths = fetch(SOURCE, progress=progress)
    return {s: pd.read_csv(paths[file_name(s)]) for s in STATIONS}


def prepare(frames: dict, resample: str = "daily", every: int = 1, min_hours: int = 12):
    """One cleaned table per station (time order): feature columns, ``pm25`` and ``time``."""
    import pandas as pd

    if resample not in ("daily", "hourly"):
        raise ValueError(f"resample must be 'daily' or 'hourly', got {resample!r}")
    if int(every) != every or every < 1:
        raise ValueError(f"every must be a positive integer, got {every}")
    if not 1 <= min_hours <= 24:
        raise ValueError(f"min_hours must be between 1 and 24, got {min_hours}")
    angle = {d: 2 * np.pi * i / len(COMPASS) for i, d in enumerate(COMPASS)}
    out = {}
    for station, raw in frames.items():
        df = raw.copy()
        df["time"] = pd.to_datetime(df[["year", "month", "day", "hour"]])
        if resample == "hourly" and every > 1:
            df = df.iloc[::every]
        df = df.dropna(subset=[TARGET, *POLLUTANTS, *WEATHER, "wd"])
        unknown = set(df["wd"]) - set(angle)
        if unknown:
            raise ValueError(f"station {station}: unknown wind directions {sorted(unknown)}")
        a = df["wd"].map(angle).to_numpy(float)
        df = df.assign(wd_sin=np.sin(a), wd_cos=np.cos(a), pm25=df[TARGET])
        cols = [*POLLUTANTS, *WEATHER, "wd_sin", "wd_cos", "pm25"]
        if resample == "daily":
            day = df["time"].dt.floor("D")
            grouped = df.groupby(day)[cols]
            df = grouped.mean()[grouped.size() >= min_hours].reset_index().rename(columns={"index": "time"})
        month = df["time"].dt.month.to_numpy() - 1
        df = df.assign(month_sin=np.sin(2 * np.pi * month / 12), month_cos=np.cos(2 * np.pi * month / 12))
        if resample == "hourly":
            hour = df["time"].dt.hour.to_numpy()
            df = df.assign(hour_sin=np.sin(2 * np.pi * hour / 24), hour_cos=np.cos(2 * np.pi * hour / 24))
        out[station] = df.sort_values("time").reset_index(drop=True)
    return out


def band(pm25: np.ndarray) -> np.ndarray:
    """China's 24-hour PM2.5 AQI band, 0 (excellent) .. 5 (severely polluted)."""
    return np.searchsorted(np.asarray(BANDS), np.asarray(pm25), side="left").astype(np.int64)


def build(tables: dict, task: str = "regression", name: str = "air_quality"):
    """A :class:`~cflkit.core.datasets.Dataset` from :func:`prepare`'s tables."""
    import pandas as pd

    from ..core.datasets import Dataset
    from .heart import pooled_standardize

    if task not in ("regression", "bands"):
        raise ValueError(f"task must be 'regression' or 'bands', got {task!r}")
    stations = tuple(tables)
    df = pd.concat([t.assign(site=i) for i, t in enumerate(tables.values())], ignore_index=True)
    names = [*POLLUTANTS, *WEATHER, "wd_sin", "wd_cos", "month_sin", "month_cos"]
    if "hour_sin" in df:
        names += ["hour_sin", "hour_cos"]
    raw = df[names].to_numpy(np.float64)
    scale = np.array([n in POLLUTANTS or n in WEATHER for n in names])
    pm25 = df["pm25"].to_numpy(np.float64)
    site_meta = {"district": [STATIONS[s][0] for s in stations],
                 "station_type": [STATIONS[s][1] for s in stations],
                 "area": [STATIONS[s][2] for s in stations]}
    meta = {"site": df["site"].to_numpy(np.int64), "sites": stations, "site_meta": site_meta,
            "group_by": "area", "time": df["time"].to_numpy("datetime64[ns]"), "raw_x": raw,
            "standardize": scale, "pm25": pm25, "licence": SOURCE.licence}
    x = pooled_standardize(raw, scale)
    if task == "regression":
        meta["target_unit"] = f"{TARGET_UNIT:g} µg/m³"
        return Dataset(name, x, (pm25 / TARGET_UNIT).astype(np.float32), "tabular", task="regression",
                       feature_names=tuple(names), citation=CITATION, meta=meta)
    meta["class_names"] = BAND_NAMES
    return Dataset(name, x, band(pm25), "tabular", n_classes=len(BAND_NAMES), feature_names=tuple(names),
                   citation=CITATION, meta=meta)


def load_air_quality(task: str = "regression", resample: str = "daily", every: int = 1, min_hours: int = 12,
                     progress: bool = False):
    """The twelve-station Beijing dataset; see the module docstring for every choice."""
    name = "air_quality" if task == "regression" else "air_quality_bands"
    return build(prepare(read_raw(progress), resample, every, min_hours), task, name)
