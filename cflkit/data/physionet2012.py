"""PhysioNet/Computing in Cardiology Challenge 2012: in-hospital mortality of ICU stays,
one client per ICU type.

Silva, Moody, Scott, Celi & Mark (2012), "Predicting in-hospital mortality of ICU patients:
the PhysioNet/Computing in Cardiology Challenge 2012", Computing in Cardiology 39:245-248;
Goldberger et al. (2000), PhysioBank, PhysioToolkit and PhysioNet, Circulation 101(23).
Data: https://physionet.org/content/challenge-2012/1.0.0/, Open Data Commons Attribution
1.0. Set A (4000 stays, outcomes published with it) is the training set, set B (4000
stays, outcomes published since) the test set; set C is not used.

Features (226 per stay), from the first 48 h of the stay:

- the descriptors ``Age``, ``Gender`` (0 female, 1 male), ``Height`` (cm), ``Weight`` (kg,
  the first ``Weight`` line at 00:00); ``-1`` marks a missing descriptor. ``ICUType`` is
  the client, not a feature; ``RecordID`` identifies the stay;
- for each of the 37 time series of :data:`SERIES` (``Weight`` after its descriptor line
  included) six summaries, :data:`SUMMARIES`: ``first`` and ``last`` (by time), ``min``,
  ``max``, ``mean`` of the stay's values and ``count``, the number of values (0 when the
  series was never measured). Cleaning, the only one: a value <= 0 is missing (the ``-1``
  placeholders, a temperature of -17.8 °C, a heart rate of 0), except ``Urine``, where 0 ml
  is a real output. ``MechVent`` is only ever recorded as 1, so only its count informs.

Missing values (a series never measured, a missing descriptor): imputed with the median
of the *client's own training stays* (set A stays of the same ICU type, or sub-site), so
nothing comes from another client or from a test stay; the ``count`` features keep the
information that a value was missing. A summary that none of a client's training stays
has is set to 0 for all of that client's stays (it carries nothing there). The imputed
raw values are ``meta["raw_x"]``; the ``natural`` scenario then standardises each client
with its training rows (all features but ``Gender``). ``Dataset.x`` itself, used by the
planted scenarios only, is imputed with pooled set-A medians and pooled-standardised.

Clients: ``physionet2012`` has one client per ICU type (1 coronary care unit, 2 cardiac
surgery recovery unit, 3 medical ICU, 4 surgical ICU; set A 577 / 874 / 1481 / 1068
stays), in one ground-truth group (as FLamby's hospitals; ``group_by="icu_type"`` gives
four). ``physionet2012_subsites`` splits each ICU type into :data:`SUBSITES` sub-sites of
(near-)equal size, separately for set A and set B, with the fixed seed
:data:`SUBSITE_SEED` (the dataset is the same in every run): 16 clients whose ground-truth
group is their ICU type. Split: fixed, ``meta["test"]`` (set B); the natural scenario keeps
it (``test_fraction`` does not apply).

Checksums (``data/README.md``): the source publishes the stays as two tarballs; verifying
8000 stay files one by one needs their 8000 checksums, which are not written here.
Instead this module pins *manifests*: for each set the SHA-256 of its ``sha256sum`` lines
(``<sha256>  set-a/<RecordID>.txt``, sorted by name), :data:`MANIFEST_SHA256`, and the
SHA-256 of the whole ``SHA256SUMS`` file of an extracted copy (the two outcome files and
the 8000 stays, sorted by name), :data:`SUMS_SHA256`. An extracted copy with a
``SHA256SUMS`` is checked in two steps: the ``SHA256SUMS`` by its own checksum, then every
stay file against its line (a corrupt or missing stay is named, with both checksums,
the tarball URL and where to put it). A set folder without ``SHA256SUMS`` beside it, or a
tarball (downloaded, or put into the cache by hand), is checked against the set's
manifest. A downloaded set is extracted into the cache and a ``SHA256SUMS`` written beside
it, byte for byte the one of the offline copy. Parsing the 8000 files (a few seconds) is
done once: the feature table is kept in the cache, keyed by the manifests' checksums.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from . import cache
from .cache import ChecksumError, DataError, RemoteFile, Source

log = logging.getLogger("cflkit")
BASE = "https://physionet.org/files/challenge-2012/1.0.0/"
HOMEPAGE = "https://physionet.org/content/challenge-2012/1.0.0/"
SETS = ("set-a", "set-b")  # training, test
TEST_SET = "set-b"
STAYS_PER_SET = 4000
ICU_TYPES = (  # ICUType code, client name, the Challenge's description
    (1, "coronary care", "Coronary Care Unit"),
    (2, "cardiac surgery recovery", "Cardiac Surgery Recovery Unit"),
    (3, "medical", "Medical ICU"),
    (4, "surgical", "Surgical ICU"),
)
SUBSITES = 4  # physionet2012_subsites: sub-sites per ICU type
SUBSITE_SEED = 2012
DESCRIPTORS = ("Age", "Gender", "Height", "Weight")
SERIES = ("Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS",
          "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP", "MechVent", "Na", "NIDiasABP", "NIMAP",
          "NISysABP", "PaCO2", "PaO2", "pH", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI",
          "TroponinT", "Urine", "WBC", "Weight")
SUMMARIES = ("first", "last", "min", "max", "mean", "count")
ZERO_IS_A_VALUE = ("Urine",)  # 0 ml of urine is an output; a 0 elsewhere is a placeholder
FEATURE_VERSION = 1  # of the cached feature table: raise when the parsing changes
OUTCOMES = {"Outcomes-a.txt": "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2",
            "Outcomes-b.txt": "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5"}
OUTCOME_SIZES = {"Outcomes-a.txt": 79219, "Outcomes-b.txt": 79149}
# sha256 of `grep ' set-a/' SHA256SUMS` (the sha256sum lines of the set's stays, sorted by name)
MANIFEST_SHA256 = {"set-a": "21f882fe44fbd2503e13a19f95da90411f343d19394314cd8b7d9811afd7c094",
                   "set-b": "c190d153585936e0233b77dcd21bea8614d4979de3a29b6bab84bba6a73302d8"}
SUMS_SHA256 = "8b8e4399e85a6483360a238dc21942f2efbfc1b11b2ed4da1f65a8fb221d9195"  # the whole SHA256SUMS, 8002 lines
SET_BYTES = 55270558  # the 8000 extracted stay files (sizes for `cflkit data list`)
SUMS = "SHA256SUMS"
STAY_NAME = re.compile(r"^(set-[ab])/(\d+)\.txt$")
CITATION = ("Silva, Moody, Scott, Celi & Mark (2012), Predicting in-hospital mortality of ICU patients: the "
            "PhysioNet/Computing in Cardiology Challenge 2012, Computing in Cardiology 39:245-248; Goldberger et al. "
            "(2000), PhysioNet, Circulation 101(23):e215-e220")


def tarball(set_name: str) -> RemoteFile:
    """The published tarball of a set (checked through its members, :data:`MANIFEST_SHA256`)."""
    return RemoteFile(f"{set_name}.tar.gz", url=f"{BASE}{set_name}.tar.gz")


SOURCE = Source(
    name="physionet_challenge_2012",
    files=(*(RemoteFile(n, url=BASE + n, sha256=h, size=OUTCOME_SIZES[n]) for n, h in OUTCOMES.items()),
           *(tarball(s) for s in SETS)),
    licence="Open Data Commons Attribution 1.0",
    citation=CITATION,
    homepage=HOMEPAGE,
    datasets=("physionet2012", "physionet2012_subsites"),
)
OUTCOME_FILES = tuple(f for f in SOURCE.files if f.sha256)


# -- files: locate, verify, download ------------------------------------------------------------
def manifest_digest(lines: dict) -> str:
    """SHA-256 of ``sha256sum`` lines ``{name: sha256}`` sorted by name (:data:`MANIFEST_SHA256`)."""
    text = "".join(f"{h}  {n}\n" for n, h in sorted(lines.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def read_sums(path) -> dict:
    """``{name: sha256}`` of a ``SHA256SUMS`` file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().lstrip("*")] = digest.lower()
    return out


def _folders(set_name: str) -> list[tuple[Path, str]]:
    """Where an extracted set may lie (offline directories, then the cache), with a label each."""
    return [(path.parent / set_name, where) for path, where in cache.candidates(SOURCE, SUMS)]


def _check_sums(path: Path) -> dict:
    """The stay lines of the ``SHA256SUMS`` at ``path``, after checking the file by its own checksum."""
    try:
        cache.verify(path, RemoteFile(SUMS, sha256=SUMS_SHA256))
    except ChecksumError as e:
        raise ChecksumError(f"{e}. (It lists the published files' checksums: it comes with an offline copy, or cflkit "
                            f"writes it beside a set it extracted; delete the copy and run `cflkit data fetch "
                            f"physionet2012` to fetch {', '.join(tarball(s).url for s in SETS)} again)") from None
    return {n: h for n, h in read_sums(path).items() if STAY_NAME.match(n)}


def _missing(names: list, reason: str) -> DataError:
    shown = [RemoteFile(n, url=tarball(n.split("/")[0]).url) for n in sorted(names)[:5]]
    more = f"; {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return DataError(cache.missing_message(SOURCE, shown, reason + more))


def _set_files(folder: Path, set_name: str, sums: dict | None, where: str) -> dict:
    """The verified stay files of an extracted set: each against its line of ``sums``, or
    (no ``SHA256SUMS`` beside the folder) all together against the set's manifest."""
    if sums is not None:
        lines = {n: h for n, h in sums.items() if n.startswith(set_name + "/")}
        paths = {n: folder.parent / n for n in lines}
        absent = [n for n, p in paths.items() if not p.is_file()]
        if absent:
            raise _missing(absent, f"{len(absent)} of the {len(lines)} stay files that {str(folder.parent / SUMS)!r} "
                                   f"lists are missing ({where} copy)")
        for n, p in paths.items():
            cache.verify(p, RemoteFile(n, url=tarball(set_name).url, sha256=lines[n]))
        return paths
    paths = {f"{set_name}/{p.name}": p for p in sorted(folder.iterdir()) if STAY_NAME.match(f"{set_name}/{p.name}")}
    lines = {n: cache.file_hash(p) for n, p in paths.items()}
    digest = manifest_digest(lines)
    if digest != MANIFEST_SHA256[set_name]:
        raise ChecksumError(
            f"checksum mismatch for the stay files in {str(folder)!r} (no {SUMS} beside it, so the set is checked as "
            f"a whole): expected manifest SHA256 {MANIFEST_SHA256[set_name]}, got {digest} ({len(paths)} stay files, "
            f"{STAYS_PER_SET} published). A file is corrupt, missing or extra; replace the folder with the members "
            f"of {tarball(set_name).url}")
    return paths


def _tar_members(path: Path, set_name: str, url: str) -> dict:
    """``{name: bytes}`` of the stay files in a set's tarball, checked against the set's manifest."""
    members = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                name = m.name[2:] if m.name.startswith("./") else m.name
                if m.isfile() and STAY_NAME.match(name) and name.startswith(set_name + "/"):
                    members[name] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ChecksumError(f"{str(path)!r} is not a readable tar.gz archive ({e}); delete it and fetch "
                            f"{url} again") from None
    digest = manifest_digest({n: hashlib.sha256(b).hexdigest() for n, b in members.items()})
    if digest != MANIFEST_SHA256[set_name]:
        raise ChecksumError(
            f"checksum mismatch for {str(path)!r}: expected manifest SHA256 {MANIFEST_SHA256[set_name]} of its "
            f"{STAYS_PER_SET} stay files, got {digest} ({len(members)} stay files). The archive is corrupt or not "
            f"the published one; delete it and fetch it again (`cflkit data fetch physionet2012`), or replace it "
            f"with a good copy from {url}")
    return members


def _extract(members: dict, set_name: str, target: Path) -> Path:
    """Write a verified set into ``target/set_name`` at once (a temporary folder renamed into place)."""
    final = target / set_name
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{set_name}-", dir=target))
    try:
        for name, data in members.items():
            (tmp / name.split("/", 1)[1]).write_bytes(data)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _fetch_set(set_name: str, progress: bool, download: bool | None) -> Path:
    """A set's tarball (found in an offline directory or the cache, else downloaded) extracted
    into the cache, verified; the folder."""
    f = tarball(set_name)
    target = cache.cache_dir() / SOURCE.name
    path, _ = cache.locate(SOURCE, f)
    if path is not None:
        return _extract(_tar_members(path, set_name, f.url), set_name, target)
    if not (cache.downloads_allowed() if download is None else download):
        raise DataError(cache.missing_message(SOURCE, [f], f"downloads are off: ${cache.NO_DOWNLOAD_ENV} is set"))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target) as tmp:
        try:
            archive = cache.download(f.url, Path(tmp) / f.name, progress)
        except OSError as e:
            raise DataError(cache.missing_message(SOURCE, [f], f"download failed: {e}")) from None
        return _extract(_tar_members(archive, set_name, f.url), set_name, target)


def _write_sums(target: Path, outcomes: dict, stays: dict) -> None:
    """The ``SHA256SUMS`` of a complete copy in the cache (the offline copy's, byte for byte)."""
    lines = {n: OUTCOMES[n] for n in outcomes}
    lines.update({n: cache.file_hash(p) for n, p in stays.items()})
    text = "".join(f"{h}  {n}\n" for n, h in sorted(lines.items()))
    if hashlib.sha256(text.encode()).hexdigest() != SUMS_SHA256:  # every part was verified: cannot differ
        raise RuntimeError(f"the {SUMS} of the verified files does not have its published checksum")
    from ..core.results import write_text_atomic

    write_text_atomic(target / SUMS, text)


def fetch_files(progress: bool = False, download: bool | None = None) -> dict:
    """Every file of the source, verified: ``{"Outcomes-a.txt": path, ..., "set-a/132539.txt":
    path, ...}`` (and ``SHA256SUMS`` when the copy has one); downloads what is missing
    unless ``download`` is False (or None and ``$CFLKIT_NO_DOWNLOAD`` is set).

    Raises :class:`~cflkit.data.cache.DataError` naming the missing files, their URL and
    where to put them; :class:`~cflkit.data.cache.ChecksumError` naming a corrupt file and
    both checksums."""
    out = cache.fetch(SOURCE, files=[f.name for f in OUTCOME_FILES], download=download, progress=progress)
    extracted = False
    for set_name in SETS:
        for folder, where in _folders(set_name):
            if folder.is_dir():
                sums_path = folder.parent / SUMS
                sums = _check_sums(sums_path) if sums_path.is_file() else None
                if sums is not None:
                    out[SUMS] = sums_path
                out.update(_set_files(folder, set_name, sums, where))
                break
        else:
            folder = _fetch_set(set_name, progress, download)
            out.update(_set_files(folder, set_name, None, "cache"))
            extracted = True
    target = cache.cache_dir() / SOURCE.name
    stays = {n: p for n, p in out.items() if STAY_NAME.match(n)}
    if extracted and all(p.parent.parent == target for p in stays.values()) and not (target / SUMS).exists():
        _write_sums(target, {n: out[n] for n in OUTCOMES}, stays)
        out[SUMS] = target / SUMS
    return out


def status() -> tuple[str, int]:
    """``('offline' | 'cache' | 'offline+cache' | 'partial' | 'missing', bytes)`` without reading
    checksums: the outcome files, and each set as an extracted folder or its tarball."""
    wheres, size = [], 0
    for f in OUTCOME_FILES:
        path, where = cache.locate(SOURCE, f)
        wheres.append(where)
        size += path.stat().st_size if path is not None else f.size
    for set_name in SETS:
        found = next((w for p, w in _folders(set_name) if p.is_dir()), None)
        if found is None:
            path, found = cache.locate(SOURCE, tarball(set_name))
        wheres.append(found)
        size += SET_BYTES // len(SETS)
    if all(w != "missing" for w in wheres):
        kinds = set(wheres)
        return (kinds.pop() if len(kinds) == 1 else "offline+cache"), size
    return ("missing" if all(w == "missing" for w in wheres) else "partial"), size


# -- parsing ------------------------------------------------------------------------------------
FEATURE_NAMES = DESCRIPTORS + tuple(f"{s}_{k}" for s in SERIES for k in SUMMARIES)


def parse_stays(texts: list) -> dict:
    """The feature table of stay files (bytes, in order): ``record_id``, ``icu_type`` and
    ``features`` (stays × :data:`FEATURE_NAMES`, NaN where missing; see the module)."""
    import pandas as pd

    pieces = []
    for i, data in enumerate(texts):
        head, _, body = data.replace(b"\r", b"").partition(b"\n")
        if head.strip() != b"Time,Parameter,Value":
            raise ValueError(f"stay {i}: the first line is {head[:40]!r}, not 'Time,Parameter,Value'")
        body = body.strip(b"\n")
        if body:
            tag = b"%d," % i
            pieces.append(tag + body.replace(b"\n", b"\n" + tag) + b"\n")
    # "HH:MM" becomes two columns: the only colon of a line is in its time
    df = pd.read_csv(io.BytesIO(b"".join(pieces).replace(b":", b",")), header=None,
                     names=["stay", "h", "m", "param", "value"],
                     dtype={"stay": np.int64, "h": np.int64, "m": np.int64, "param": str, "value": np.float64})
    n = len(texts)
    df["minute"] = df["h"] * 60 + df["m"]
    df["order"] = np.arange(len(df))
    single = {}
    for name in ("RecordID", "ICUType", "Age", "Gender", "Height"):
        part = df[df["param"] == name]
        if len(part) != n or part["stay"].nunique() != n:
            raise ValueError(f"every stay must have exactly one {name} line; {len(part)} lines in {n} stays")
        single[name] = part.set_index("stay")["value"].reindex(np.arange(n)).to_numpy()
    weights = df[(df["param"] == "Weight") & (df["minute"] == 0)].drop_duplicates("stay", keep="first")
    descriptor_weight = weights.set_index("stay")["value"].reindex(np.arange(n)).to_numpy()
    series = df[df["param"].isin(SERIES)].drop(index=weights.index)
    keep = (series["value"] > 0) | (series["param"].isin(ZERO_IS_A_VALUE) & (series["value"] == 0))
    series = series[keep].sort_values(["stay", "param", "minute", "order"], kind="stable")
    stats = series.groupby(["stay", "param"], sort=False)["value"].agg(list(SUMMARIES))
    features = np.full((n, len(FEATURE_NAMES)), np.nan)
    features[:, 0] = single["Age"]
    features[:, 1] = np.where(single["Gender"] < 0, np.nan, single["Gender"])
    features[:, 2] = np.where(single["Height"] <= 0, np.nan, single["Height"])
    features[:, 3] = np.where(descriptor_weight <= 0, np.nan, descriptor_weight)
    stay = stats.index.get_level_values(0).to_numpy()
    param = stats.index.get_level_values(1).to_numpy()
    column = {s: len(DESCRIPTORS) + i * len(SUMMARIES) for i, s in enumerate(SERIES)}
    base = np.array([column[p] for p in param], dtype=np.int64)
    for k, summary in enumerate(SUMMARIES):
        features[stay, base + k] = stats[summary].to_numpy(np.float64)
    counts = [column[s] + SUMMARIES.index("count") for s in SERIES]
    features[:, counts] = np.nan_to_num(features[:, counts], nan=0.0)  # never measured: 0 values
    return {"record_id": single["RecordID"].astype(np.int64), "icu_type": single["ICUType"].astype(np.int64),
            "features": features}


def _table_path() -> Path:
    key = hashlib.sha256(f"{FEATURE_VERSION} {MANIFEST_SHA256['set-a']} {MANIFEST_SHA256['set-b']}".encode())
    return cache.cache_dir() / SOURCE.name / f"features-v{FEATURE_VERSION}-{key.hexdigest()[:16]}.npz"


def read_table(progress: bool = False) -> dict:
    """The feature table of all 8000 stays (set A, then set B, each by RecordID) with the
    outcomes: ``record_id``, ``set`` ('set-a' / 'set-b'), ``icu_type``, ``features``,
    ``death`` (In-hospital_death), ``saps_i`` and ``sofa`` (NaN where -1). Every file is
    verified; the parsed stays are kept in the cache (keyed by the manifests' checksums,
    written atomically) and read from there next time."""
    import pandas as pd

    from ..core.results import atomic_file

    paths = fetch_files(progress)
    names = sorted(n for n in paths if STAY_NAME.match(n))
    if len(names) != len(SETS) * STAYS_PER_SET:  # cannot happen after the manifests matched
        raise DataError(f"{len(names)} stay files, expected {len(SETS) * STAYS_PER_SET}")
    table, where = None, _table_path()
    if where.is_file():
        try:
            with np.load(where, allow_pickle=False) as z:
                table = {k: z[k] for k in ("record_id", "icu_type", "features")}
            if table["features"].shape != (len(names), len(FEATURE_NAMES)):
                table = None
        except (OSError, ValueError, KeyError, EOFError):
            table = None
        if table is None:
            log.warning("cached PhysioNet 2012 table %s is unreadable: parsing the stays again", where)
    if table is None:
        log.info("parsing %d PhysioNet 2012 stay files (once; cached in %s)", len(names), where)
        table = parse_stays([paths[n].read_bytes() for n in names])
        with atomic_file(where) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **table)
    expected = np.array([int(STAY_NAME.match(n).group(2)) for n in names])
    if not np.array_equal(table["record_id"], expected):
        raise DataError(f"the stays' RecordID lines do not match their file names (cached table {where}?); "
                        f"delete {str(where)!r} to parse the files again")
    outcomes = pd.concat([pd.read_csv(paths[n]) for n in OUTCOMES], ignore_index=True).set_index("RecordID")
    rows = outcomes.reindex(table["record_id"])
    if rows["In-hospital_death"].isna().any():
        raise DataError("stays without an outcome line in Outcomes-a.txt / Outcomes-b.txt")
    score = {k: rows[c].to_numpy(np.float64) for k, c in (("saps_i", "SAPS-I"), ("sofa", "SOFA"))}
    return {**table, "set": np.array([n.split("/")[0] for n in names]),
            "death": rows["In-hospital_death"].to_numpy(np.int64),
            **{k: np.where(v < 0, np.nan, v) for k, v in score.items()}}


# -- the dataset --------------------------------------------------------------------------------
def subsite_of(icu_type: np.ndarray, set_name: np.ndarray, subsites: int, seed: int = SUBSITE_SEED) -> np.ndarray:
    """Sub-site (0..subsites-1) of each stay: per ICU type and per set, a seeded permutation
    dealt round-robin, so the sub-sites of an ICU type differ by at most one stay in each set."""
    rng = np.random.default_rng(seed)
    sub = np.zeros(len(icu_type), dtype=np.int64)
    for code, *_ in ICU_TYPES:
        for s in SETS:
            rows = np.flatnonzero((icu_type == code) & (set_name == s))
            sub[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) % subsites
    return sub


def impute_per_site(raw: np.ndarray, site: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``raw`` with each missing value replaced by the median of its column over the *training*
    rows of its own site; a column that no training row of a site has becomes 0 for every
    row of that site."""
    out = raw.copy()
    for c in np.unique(site):
        rows = site == c
        fit = raw[rows & train]
        seen = ~np.isnan(fit).all(axis=0)
        median = np.zeros(raw.shape[1])
        median[seen] = np.nanmedian(fit[:, seen], axis=0)
        block = out[rows]
        block[:, ~seen] = 0.0
        block = np.where(np.isnan(block), median, block)
        out[rows] = block
    return out


def build(table: dict, subsites: int = 0, name: str = "physionet2012"):
    """A :class:`~cflkit.core.datasets.Dataset` from :func:`read_table`: one site per ICU type,
    or ``subsites`` seeded sub-sites per ICU type (group: the ICU type)."""
    from ..core.datasets import Dataset
    from .heart import pooled_standardize

    if subsites < 0 or int(subsites) != subsites:
        raise ValueError(f"subsites must be 0 (one client per ICU type) or a positive integer, got {subsites}")
    icu, sets = table["icu_type"], table["set"]
    unknown = sorted(set(np.unique(icu).tolist()) - {c for c, *_ in ICU_TYPES})
    if unknown:
        raise ValueError(f"unknown ICUType values {unknown}; known: {[c for c, *_ in ICU_TYPES]}")
    kind = icu - 1
    if subsites:
        site = kind * subsites + subsite_of(icu, sets, subsites)
        sites = tuple(f"{t[1]} {k + 1}" for t in ICU_TYPES for k in range(subsites))
        site_meta = {"icu_type": [t[1] for t in ICU_TYPES for _ in range(subsites)],
                     "sub_site": [k + 1 for _ in ICU_TYPES for k in range(subsites)]}
        group_by = "icu_type"
    else:
        site, sites = kind, tuple(t[1] for t in ICU_TYPES)
        site_meta = {"icu_type": list(sites), "icu_code": [t[0] for t in ICU_TYPES], "unit": [t[2] for t in ICU_TYPES]}
        group_by = ""
    test = sets == TEST_SET
    raw = table["features"].astype(np.float64)
    scale = np.array([n != "Gender" for n in FEATURE_NAMES])
    meta = {"site": site.astype(np.int64), "sites": sites, "site_meta": site_meta, "group_by": group_by,
            "raw_x": impute_per_site(raw, site, ~test), "standardize": scale, "test": test,
            "test_name": "set-b (the Challenge's test set B)", "licence": SOURCE.licence,
            "record_id": table["record_id"], "set": sets, "icu_type": icu, "saps_i": table["saps_i"],
            "sofa": table["sofa"], "missing": np.isnan(raw)}
    pooled = impute_per_site(raw, np.zeros(len(raw), dtype=np.int64), ~test)  # planted scenarios only
    return Dataset(name, pooled_standardize(pooled, scale), table["death"], "tabular", n_classes=2,
                   feature_names=FEATURE_NAMES, citation=CITATION, meta=meta)


def load_physionet2012(subsites: int = 0, progress: bool = False):
    """PhysioNet 2012 in-hospital mortality: 8000 stays, 226 features; one client per ICU type
    (``subsites`` > 0: that many sub-sites per ICU type). See the module docstring."""
    return build(read_table(progress), subsites, "physionet2012_subsites" if subsites else "physionet2012")


# -- the clinical baseline ------------------------------------------------------------------------
def saps_baseline(dataset=None, set_name: str = TEST_SET):
    """AUROC and AUPRC of the SAPS-I score (higher: more likely to die) for in-hospital death,
    per ICU type and pooled, on the stays of ``set_name`` that have a SAPS-I (-1 in the
    outcome files: left out, counted in ``no_saps``). scikit-learn's ``roc_auc_score`` and
    ``average_precision_score``."""
    import pandas as pd
    from sklearn.metrics import average_precision_score, roc_auc_score

    ds = dataset if dataset is not None else load_physionet2012()
    meta = ds.meta
    rows = []
    for code, client, _ in (*ICU_TYPES, (0, "pooled", "")):
        pick = (meta["set"] == set_name) & ((meta["icu_type"] == code) if code else True)
        score, y = meta["saps_i"][pick], ds.y[pick]
        ok = ~np.isnan(score)
        rows.append({"icu_type": client, "stays": int(pick.sum()), "no_saps": int((~ok).sum()),
                     "deaths": int(y[ok].sum()), "death_rate": float(y[ok].mean()),
                     "auroc": float(roc_auc_score(y[ok], score[ok])),
                     "auprc": float(average_precision_score(y[ok], score[ok]))})
    return pd.DataFrame(rows)
