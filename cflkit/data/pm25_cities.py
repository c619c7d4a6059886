"""UCI PM2.5 Data of Five Chinese Cities: 16 monitoring sites in 5 cities, one client each.

Liang, Zou, Guo, Li, Zhang, Zhang, Huang & Chen (2015), "Assessing Beijing's PM2.5
pollution: severity, weather impact, APEC and winter heating", Proc. R. Soc. A 471:
20150257, DOI 10.1098/rspa.2015.0257, and Liang, Li, Zhang, Huang & Chen (2016), "PM2.5
data reliability, consistency, and air quality assessment in five Chinese cities",
J. Geophys. Res. Atmos. 121: 10220-10236, DOI 10.1002/2016JD024877; data: UCI Machine
Learning Repository, id 394, DOI 10.24432/C52K58, CC BY 4.0.

One CSV per city (Beijing, Chengdu, Guangzhou, Shanghai, Shenyang), 52,584 hourly rows
(2010-01-01 to 2015-12-31). Each holds the PM2.5 of 3-4 monitoring sites (``PM_<site>``:
the US embassy / consulate's ``US Post`` and 2-3 stations of China's Ministry of
Environmental Protection, MEP) and one weather record per hour shared by the city's sites.
``pm25_cities`` regresses each site's daily PM2.5 (in units of :data:`TARGET_UNIT` µg/m³,
a fixed constant as for ``air_quality``) from the weather; there are no co-pollutants.

Preprocessing (choices, all documented in ``data/README.md``):

- features: DEWP, HUMI, PRES, TEMP, Iws (cumulated wind speed), precipitation (hourly),
  Iprec (cumulated precipitation); ``cbwd`` (combined wind direction: NE, SE, SW, NW or
  ``cv``, calm and variable) as the unit vector of its quadrant's middle angle
  (``wd_sin`` east, ``wd_cos`` north; NE = 45°, ...) with ``cv`` as the zero vector, plus
  ``calm``, 1 for ``cv``, 0 otherwise — so a daily mean keeps the prevailing direction, its
  steadiness and the share of calm hours apart; the month as sine and cosine. ``season``
  (redundant with the month) and ``No`` are not used;
- missing: ``NA``; the sentinels -9999 (Guangzhou DEWP and HUMI, 4 hours) and 999990
  (Beijing precipitation and Iprec, 1 hour); values outside :data:`VALID` (Shenyang, one
  hour with DEWP -97 °C and HUMI 0 %). A site-hour is kept only when the site's PM2.5, all
  seven weather values and ``cbwd`` are present (no imputation: an imputed target would
  be made up);
- daily means of a site's kept hours (wind as the mean of its vectors), keeping days with
  at least ``min_hours`` (12) kept hours: 863-2,091 days per site, 18,224 site-days;
  a site left with fewer than ``min_days`` (100) days would be dropped with a warning —
  none is with the defaults;
- order and split: rows in time order, timestamps in ``meta["time"]``; the ``natural``
  scenario tests on the last ``test_fraction`` of each client's days;
- standardisation: the seven weather columns per client with its own training rows
  (``meta["raw_x"]``, ``meta["standardize"]``); ``Dataset.x`` is pooled-standardised for
  the planted scenarios only.

Clients: ``clients="site"`` (default, ``pm25_cities``): the 16 sites, reference grouping
``group_by="city"`` (5 groups; ``region``, north = Beijing and Shenyang vs south, is the
coarser one). ``clients="city"`` (``pm25_cities_city``): the 5 cities, each holding all the
site-days of its sites (the same weather row appears once per site with that site's PM2.5),
grouped by ``region``.

Files: the official zip holds one RAR archive, ``FiveCitiePMData.rar``, with the five CSVs
at its top level (layout taken from public code that reads the official zip, not checked
offline here). :mod:`~cflkit.data.cache` extracts from zip archives only, so a download
fails with a :class:`~cflkit.data.cache.DataError` naming the archive and where to put
the CSVs, extracted by hand (``unrar e`` / ``bsdtar -xf``); found there, they are verified.

Known defect of the published files: in Guangzhou, ``PM_City Station`` equals
``PM_US Post`` in all 32,352 hours where either is present (the same series twice). Both
are kept, as published, so the two clients are identical.
"""
from __future__ import annotations

import logging

import numpy as np

from .cache import RemoteFile, Source, fetch

log = logging.getLogger("cflkit")

ARCHIVE = "https://archive.ics.uci.edu/static/public/394/pm2+5+data+of+five+chinese+cities.zip"
INNER = "FiveCitiePMData.rar"  # the zip holds one RAR archive with the five CSVs at its top level
CITIES = {  # city: (region, its PM_<site> columns in file order)
    "Beijing": ("north", ("Dongsi", "Dongsihuan", "Nongzhanguan", "US Post")),
    "Chengdu": ("south", ("Caotangsi", "Shahepu", "US Post")),
    "Guangzhou": ("south", ("City Station", "5th Middle School", "US Post")),
    "Shanghai": ("south", ("Jingan", "US Post", "Xuhui")),
    "Shenyang": ("north", ("Taiyuanjie", "US Post", "Xiaoheyan")),
}
SHA256 = {
    "Beijing": "12bc0dc800e02a2c11b79c29a246c3a55d8b9516145cd870b3c33b48521f2523",
    "Chengdu": "bcba1c9e513a2f0fa89101822a5a565a7640a4a221ec62c089173237f5d72a9e",
    "Guangzhou": "e5c2122a71baff910d3fecc702ed35442a99282f2113090d1c56af09e9952a89",
    "Shanghai": "49258afcca08ca1a5c76379c31a439cc0179f53371842f14fd6ee6127ebffc14",
    "Shenyang": "3d5a694492b22e4c2405230c1e5dff8d55726a468396b02990302f8312e42046",
}
SIZES = {"Beijing": 3173618, "Chengdu": 3005479, "Guangzhou": 3351418, "Shanghai": 3044776, "Shenyang": 3040703}
WEATHER = ("DEWP", "HUMI", "PRES", "TEMP", "Iws", "precipitation", "Iprec")
VALID = {  # inclusive plausible range; outside it (sentinels -9999 / 999990 included) a value is missing
    "DEWP": (-60.0, 40.0), "HUMI": (0.5, 100.0), "PRES": (900.0, 1100.0), "TEMP": (-50.0, 50.0),
    "Iws": (0.0, 5000.0), "precipitation": (0.0, 500.0), "Iprec": (0.0, 5000.0),
}
WIND = {"NE": np.pi / 4, "SE": 3 * np.pi / 4, "SW": 5 * np.pi / 4, "NW": 7 * np.pi / 4}  # from north, clockwise
CALM = "cv"  # calm and variable: no direction
TARGET_UNIT = 100.0  # regression target: PM2.5 / 100 µg/m³
FEATURES = (*WEATHER, "wd_sin", "wd_cos", "calm", "month_sin", "month_cos")
CITATION = ("Liang, Li, Zhang, Huang & Chen (2016), PM2.5 data reliability, consistency, and air quality "
            "assessment in five Chinese cities, J. Geophys. Res. Atmos. 121:10220; Liang et al. (2015), "
            "Proc. R. Soc. A 471:20150257; UCI PM2.5 Data of Five Chinese Cities, DOI 10.24432/C52K58")


def file_name(city: str) -> str:
    return f"{city}PM20100101_20151231.csv"


def site_names() -> tuple:
    """The 16 sites as ``'<City> <site>'`` (``US Post`` is in every city), in file order."""
    return tuple(f"{city} {s}" for city, (_, sites) in CITIES.items() for s in sites)


SOURCE = Source(
    name="pm25_five_chinese_cities",
    files=tuple(RemoteFile(file_name(c), sha256=SHA256[c], size=SIZES[c], member=f"{INNER}!{file_name(c)}")
                for c in CITIES),
    licence="CC BY 4.0",
    citation=CITATION,
    homepage="https://archive.ics.uci.edu/dataset/394/pm2+5+data+of+five+chinese+cities",
    archive=ARCHIVE,
    datasets=("pm25_cities", "pm25_cities_city"),
)


def read_raw(progress: bool = False) -> dict:
    """City name -> its raw hourly table (52,584 rows each), checksums verified."""
    import pandas as pd

    paths = fetch(SOURCE, progress=progress)
    return {c: pd.read_csv(paths[file_name(c)]) for c in CITIES}


def clean_weather(raw):
    """The weather columns of a raw city table with ``NA``, sentinels and values outside
    :data:`VALID` as NaN, and ``cbwd`` checked (NaN where missing)."""
    df = raw[list(WEATHER)].astype(np.float64)
    for column, (low, high) in VALID.items():
        df[column] = df[column].where(df[column].between(low, high))
    unknown = set(raw["cbwd"].dropna()) - set(WIND) - {CALM}
    if unknown:
        raise ValueError(f"unknown combined wind directions {sorted(unknown)}; expected {', '.join([*WIND, CALM])}")
    df["cbwd"] = raw["cbwd"]
    return df


def prepare(frames: dict, min_hours: int = 12, min_days: int = 100) -> dict:
    """One cleaned daily table per site ``'<City> <site>'`` (time order): the feature columns,
    ``pm25`` (µg/m³), ``time`` (the day) and ``city``."""
    import pandas as pd

    if not 1 <= min_hours <= 24:
        raise ValueError(f"min_hours must be between 1 and 24, got {min_hours}")
    if int(min_days) != min_days or min_days < 2:
        raise ValueError(f"min_days must be an integer >= 2 (a client needs a training and a test day), "
                         f"got {min_days}")
    unknown = set(frames) - set(CITIES)
    if unknown:
        raise ValueError(f"unknown cities {sorted(unknown)}; choose from: {', '.join(CITIES)}")
    out = {}
    for city, raw in frames.items():
        weather = clean_weather(raw)
        a = weather["cbwd"].map(WIND).to_numpy(float)  # NaN for cv and for missing
        calm = (weather["cbwd"] == CALM).to_numpy()
        hourly = weather.drop(columns="cbwd").assign(
            wd_sin=np.where(calm, 0.0, np.sin(a)), wd_cos=np.where(calm, 0.0, np.cos(a)),
            calm=np.where(weather["cbwd"].isna(), np.nan, calm.astype(float)),
            time=pd.to_datetime(raw[["year", "month", "day", "hour"]]))
        cols = [*WEATHER, "wd_sin", "wd_cos", "calm", "pm25"]
        for s in CITIES[city][1]:
            df = hourly.assign(pm25=pd.to_numeric(raw[f"PM_{s}"], errors="coerce")).dropna(subset=cols)
            grouped = df.groupby(df["time"].dt.floor("D"))[cols]
            df = grouped.mean()[grouped.size() >= min_hours].reset_index()
            month = df["time"].dt.month.to_numpy() - 1
            df = df.assign(month_sin=np.sin(2 * np.pi * month / 12), month_cos=np.cos(2 * np.pi * month / 12),
                           city=city)
            name = f"{city} {s}"
            if len(df) < min_days:
                log.warning("pm25_cities: site %s has %d day(s) after cleaning (< min_days=%d): dropped",
                            name, len(df), min_days)
                continue
            out[name] = df.sort_values("time").reset_index(drop=True)
    return out


def build(tables: dict, clients: str = "site", name: str = "pm25_cities"):
    """A :class:`~cflkit.core.datasets.Dataset` from :func:`prepare`'s tables: one client per
    site (``clients="site"``, grouped by city) or per city (``"city"``, grouped by region)."""
    import pandas as pd

    from ..core.datasets import Dataset
    from .heart import pooled_standardize

    if clients not in ("site", "city"):
        raise ValueError(f"clients must be 'site' or 'city', got {clients!r}")
    stations = tuple(tables)
    df = pd.concat([t.assign(station=i) for i, t in enumerate(tables.values())], ignore_index=True)
    if clients == "site":
        sites = stations
        site_meta = {"city": [tables[s]["city"].iloc[0] for s in stations]}
        site_meta["region"] = [CITIES[c][0] for c in site_meta["city"]]
        site_meta["monitor"] = ["US post" if s.endswith(" US Post") else "MEP" for s in stations]
        site = df["station"].to_numpy(np.int64)
        group_by = "city"
    else:
        sites = tuple(c for c in CITIES if c in set(df["city"]))
        site_meta = {"region": [CITIES[c][0] for c in sites]}
        site = df["city"].map({c: i for i, c in enumerate(sites)}).to_numpy(np.int64)
        group_by = "region"
    raw = df[list(FEATURES)].to_numpy(np.float64)
    scale = np.array([n in WEATHER for n in FEATURES])
    pm25 = df["pm25"].to_numpy(np.float64)
    meta = {"site": site, "sites": sites, "site_meta": site_meta, "group_by": group_by,
            "time": df["time"].to_numpy("datetime64[ns]"), "raw_x": raw, "standardize": scale, "pm25": pm25,
            "station": df["station"].to_numpy(np.int64), "stations": stations,
            "target_unit": f"{TARGET_UNIT:g} µg/m³", "licence": SOURCE.licence}
    return Dataset(name, pooled_standardize(raw, scale), (pm25 / TARGET_UNIT).astype(np.float32), "tabular",
                   task="regression", feature_names=FEATURES, citation=CITATION, meta=meta)


def load_pm25_cities(clients: str = "site", min_hours: int = 12, min_days: int = 100, progress: bool = False):
    """The five-city PM2.5 dataset, one client per site (16) or per city (5); see the module docstring."""
    name = "pm25_cities" if clients == "site" else "pm25_cities_city"
    if clients not in ("site", "city"):
        raise ValueError(f"clients must be 'site' or 'city', got {clients!r}")
    return build(prepare(read_raw(progress), min_hours, min_days), clients, name)
