"""Finding, downloading and checking the files of the real datasets.

A dataset's files are looked for, in order, in

1. the *offline directories* named by the environment variable ``CFLKIT_OFFLINE_DIRS``
   (``os.pathsep``-separated; each may hold the files directly or in a subfolder named
   after the source, e.g. ``heart_disease_uci/``), then
2. the *download cache*: ``$CFLKIT_CACHE_DIR``, or ``data/cache/`` under the repository
   root (git-ignored), always in the source's subfolder.

A file found nowhere is downloaded (``urllib``, optional tqdm progress bar) into the cache,
written through a temporary file and a rename, and verified against its SHA-256 (MD5 where
the source publishes only that, as MedMNIST does). Every file is verified before use: a
mismatch raises :class:`ChecksumError` naming the file and both checksums.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..core.results import atomic_file

log = logging.getLogger("cflkit")
OFFLINE_ENV = "CFLKIT_OFFLINE_DIRS"
CACHE_ENV = "CFLKIT_CACHE_DIR"
NO_DOWNLOAD_ENV = "CFLKIT_NO_DOWNLOAD"  # "1": never download, fail with the where-to-put-it message
TIMEOUT_S = 60
_verified: dict = {}  # (path, size, mtime) -> checksum already checked in this process


class DataError(ValueError):
    """A dataset file is missing, cannot be downloaded, or is corrupt."""


class ChecksumError(DataError):
    """A dataset file does not have its published checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source: its name, where it comes from and its checksum."""

    name: str
    url: str = ""  # empty: the file comes out of the source's archive
    sha256: str = ""
    md5: str = ""
    size: int = 0  # bytes, when known (for `cflkit data list`)
    member: str = ""  # path inside the source's archive (nested zips joined by '!')

    @property
    def checksum(self) -> tuple[str, str]:
        return ("sha256", self.sha256) if self.sha256 else ("md5", self.md5)


@dataclass(frozen=True)
class Source:
    """The files of one dataset source, under one folder name in the cache."""

    name: str  # folder in the cache and in offline directories
    files: tuple
    licence: str
    citation: str
    homepage: str = ""
    archive: str = ""  # URL of a zip holding the files that have no URL of their own
    datasets: tuple = field(default=())  # registered dataset names built from it


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The download cache: ``$CFLKIT_CACHE_DIR``, else ``data/cache`` in the repository
    (``~/.cache/cflkit`` when cflkit is installed outside its repository)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if (root / "pyproject.toml").exists():
        return root / "data" / "cache"
    return Path.home() / ".cache" / "cflkit"


def offline_dirs() -> list[Path]:
    """The directories of ``$CFLKIT_OFFLINE_DIRS``, searched before the cache."""
    text = os.environ.get(OFFLINE_ENV, "")
    return [Path(p).expanduser() for p in text.split(os.pathsep) if p.strip()]


def downloads_allowed() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")


def candidates(source: Source, name: str) -> list[tuple[Path, str]]:
    """Where ``name`` of ``source`` may lie, in search order, with a label for each."""
    out = []
    for d in offline_dirs():
        out += [(d / source.name / name, "offline"), (d / name, "offline")]
    out.append((cache_dir() / source.name / name, "cache"))
    return out


def locate(source: Source, f: RemoteFile) -> tuple[Path, str] | tuple[None, str]:
    """``(path, 'offline' | 'cache')`` of the first copy found, or ``(None, 'missing')``."""
    for path, where in candidates(source, f.name):
        if path.is_file():
            return path, where
    return None, "missing"


def file_hash(path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path, f: RemoteFile) -> Path:
    """Check ``path`` against ``f``'s checksum; raise :class:`ChecksumError` if it differs."""
    path = Path(path)
    algorithm, expected = f.checksum
    if not expected:
        return path
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, expected)
    if key in _verified:
        return path
    actual = file_hash(path, algorithm)
    if actual != expected.lower():
        raise ChecksumError(
            f"checksum mismatch for {str(path)!r}: expected {algorithm.upper()} {expected}, got {actual}. "
            f"The file is corrupt or not the published one; delete it and fetch it again "
            f"(`cflkit data fetch`), or replace it with a good copy from {f.url or 'the source archive'}")
    _verified[key] = True
    return path


def missing_message(source: Source, files: list[RemoteFile], reason: str = "") -> str:
    names = ", ".join(f.name for f in files)
    urls = sorted({f.url or source.archive for f in files})
    dirs = [str(d) for d in offline_dirs()]
    where = (f"put them into {str(cache_dir() / source.name)!r} (the download cache, $"
             f"{CACHE_ENV}) or into an offline directory named in ${OFFLINE_ENV}"
             + (f" (now: {', '.join(dirs)}; directly or in a subfolder {source.name!r})" if dirs
                else f" (unset; directly or in a subfolder {source.name!r})"))
    return (f"dataset files not available: {names} of {source.name!r}"
            + (f" ({reason})" if reason else "") + f". Download from {', '.join(urls)} and {where}")


def fetch(source: Source, files=None, download: bool | None = None, progress: bool = False) -> dict[str, Path]:
    """Paths of ``files`` (default: all) of ``source``, verified; downloads what is missing
    (unless ``download`` is False, or None and ``$CFLKIT_NO_DOWNLOAD`` is set).

    Raises :class:`DataError` when a file is missing and cannot be downloaded (offline),
    :class:`ChecksumError` when a copy is corrupt.
    """
    wanted = [f for f in source.files if files is None or f.name in files]
    found, missing = {}, []
    for f in wanted:
        path, _ = locate(source, f)
        if path is None:
            missing.append(f)
        else:
            found[f.name] = verify(path, f)
    if missing:
        if not (downloads_allowed() if download is None else download):
            raise DataError(missing_message(source, missing, f"downloads are off: ${NO_DOWNLOAD_ENV} is set"))
        try:
            found.update(_download_missing(source, missing, progress))
        except ChecksumError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(missing_message(source, missing, f"download failed: {e}")) from None
    return {f.name: found[f.name] for f in wanted}


def _download_missing(source: Source, missing: list[RemoteFile], progress: bool) -> dict[str, Path]:
    target = cache_dir() / source.name
    out = {}
    direct = [f for f in missing if f.url]
    for f in direct:
        out[f.name] = _download_verified(f.url, target / f.name, f, progress)
    from_archive = [f for f in missing if not f.url]
    if from_archive:
        with tempfile.TemporaryDirectory(prefix=".archive-", dir=_mkdir(target)) as tmp:
            archive = download(source.archive, Path(tmp) / "archive.zip", progress)
            for f in from_archive:
                data = _read_member(archive, f.member or f.name)
                out[f.name] = _write_verified(data, target / f.name, f)
    return out


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _read_member(archive: Path, member: str) -> bytes:
    """Bytes of ``member`` in a zip; ``outer.zip!inner.csv`` reads into nested zips."""
    parts = member.split("!")
    zf = zipfile.ZipFile(archive)
    for inner in parts[:-1]:
        zf = zipfile.ZipFile(io.BytesIO(zf.read(inner)))
    return zf.read(parts[-1])


def _write_verified(data: bytes, path: Path, f: RemoteFile) -> Path:
    """Write ``data`` to ``path`` only if its checksum is right (atomically)."""
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(data)
        verify(tmp, f)
    return path


def _download_verified(url: str, path: Path, f: RemoteFile, progress: bool) -> Path:
    """Download ``url`` to ``path`` only if its checksum is right (atomically)."""
    with atomic_file(path) as tmp:
        download(url, Path(tmp), progress)
        verify(tmp, f)
    return path


def download(url: str, path: Path, progress: bool = False) -> Path:
    """Stream ``url`` into ``path`` (overwritten), with a tqdm bar if ``progress``."""
    from urllib.request import Request, urlopen

    log.info("downloading %s", url)
    request = Request(url, headers={"User-Agent": "cflkit (https://github.com/; research use)"})
    with urlopen(request, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1].split("?")[0])
        try:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
    return path


def status(source: Source) -> tuple[str, int]:
    """``('offline' | 'cache' | 'partial' | 'missing', bytes)`` without reading checksums."""
    wheres, size = [], 0
    for f in source.files:
        path, where = locate(source, f)
        wheres.append(where)
        size += path.stat().st_size if path is not None else f.size
    if all(w != "missing" for w in wheres):
        kinds = set(wheres)
        return (kinds.pop() if len(kinds) == 1 else "offline+cache"), size
    return ("missing" if all(w == "missing" for w in wheres) else "partial"), size

