"""The directories cflkit commands write, and the rule that protects what a user owns.

Every directory that a command writes carries a manifest, ``.cflkit-output.json``: the
*kind* of output (``run``, ``explain``, ``compare``, ``demo``, ...) and the files the
command wrote. Two sorts of kinds:

- *whole* outputs (a run directory, an explanation report) are replaced as a whole and
  atomically. A target that does not exist, or an empty directory, may be written; a
  file, a symbolic link, a directory that cflkit did not write, or a cflkit directory of
  another kind (``cflkit explain RUN --out RUN``) is refused, whatever the options; a
  directory of the same kind may be replaced if it holds only files that its manifest
  lists; one that also holds other entries (a report written into a run, a user's notes)
  is refused unless ``force``, and then those entries are carried over into the new
  directory — a file the command did not write is never deleted;
- *collections* (a comparison grid, the demo) add their own named entries (:data:`TARGETS`)
  to a directory that may hold other things, and never remove anything else: each of
  their entries must be absent or their own.

The rule is checked before any work (:func:`check_output`) and again when a whole output
is written (:func:`cflkit.core.results.atomic_directory`). Directories written before
manifests existed are recognised by their files (a run by ``config.json`` +
``history.csv`` + ``summary.json``, ...); the names such a directory would have held
count as its own.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = ".cflkit-output.json"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

# kind -> (what it is, command that writes it, files whose presence marks a directory written before
#          manifests, the shell patterns of what such a directory owns)
KINDS = {
    "run": ("a run directory", "cflkit run", ("config.json", "history.csv", "summary.json"),
            ("config.json", "history.csv", "summary.json", "models.npz", "diagnostics.csv", "flower_events.csv")),
    "explain": ("an explanation report", "cflkit explain", ("quality.json", "report.md"),
                ("quality.json", "report.md", "report.html", "figures/*.pdf", "figures/*.png", "tables/*.csv")),
    "compare": ("a comparison grid", "cflkit compare", ("grid.json", "results.csv", "ari_per_round.csv"), ()),
    "demo": ("a demo directory", "cflkit demo", ("comparison.txt", "comparison.json", "fedavg/config.json"), ()),
    "flower-demo": ("a Flower demo directory", "cflkit flower demo", (), ()),
}
# the entries a collection adds to its directory (whole outputs: none, they own all of it)
TARGETS = {
    "compare": ("cells", "results.csv", "ari_per_round.csv", "table.md", "grid.json"),
    "demo": ("fedavg", "oracle", "local", "comparison.txt", "comparison.json"),
    "flower-demo": ("flower",),
}


class OutputError(ValueError):
    """A target that the command may not write: a usage error, reported before any work."""


class WriteError(RuntimeError):
    """Writing failed (no space left, an I/O error): one line, exit code 1."""


@dataclass(frozen=True)
class Manifest:
    kind: str
    files: frozenset  # paths relative to the directory, '/'-separated
    legacy: bool = False  # recognised by its files, written before manifests


# -- reading what is there ------------------------------------------------------------------
def read_manifest(path) -> Manifest | None:
    """The manifest of directory ``path``, or what a directory written before manifests owns;
    None if cflkit did not write it."""
    path = Path(path)
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("kind") in KINDS and isinstance(data.get("files"), list):
            return Manifest(data["kind"], frozenset(str(f) for f in data["files"]))
    except (OSError, ValueError):
        pass
    for kind, (_, _, markers, patterns) in KINDS.items():
        if markers and all((path / m).is_file() for m in markers):
            if kind in TARGETS:
                owned = {t for t in TARGETS[kind] if (path / t).exists()}
            else:
                owned = {f for f in _files(path) if any(Path(f).match(p) and f.count("/") == p.count("/")
                                                          for p in patterns)}
            return Manifest(kind, frozenset(owned), legacy=True)
    return None


def _files(path: Path) -> list[str]:
    """Every non-directory entry under ``path`` (symbolic links included, not followed)."""
    out = []
    for root, dirs, names in os.walk(path):
        rel = Path(root).relative_to(path)
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            out.append((rel / name).as_posix())
    return out


def foreign_entries(path, manifest: Manifest) -> list[str]:
    """Entries of ``path`` that its manifest does not list (a directory is named once,
    with a trailing '/', when nothing in it is listed)."""
    path = Path(path)
    own_dirs = {p.as_posix() for f in manifest.files for p in Path(f).parents if p != Path(".")}
    found = []
    for root, dirs, names in os.walk(path):
        rel = Path(root).relative_to(path)
        keep = []
        for d in sorted(dirs):
            r = (rel / d).as_posix()
            if (Path(root) / d).is_symlink():
                if r not in manifest.files:
                    found.append(r)
            elif r in own_dirs:
                keep.append(d)
            else:
                found.append(r + "/")
        dirs[:] = keep
        for name in sorted(names):
            r = (rel / name).as_posix()
            if r not in manifest.files and r != MANIFEST:
                found.append(r)
    return found


# -- the rule ------------------------------------------------------------------------------
def check_output(path, kind: str, *, force: bool = False, option: str = "--out") -> Path:
    """Refuse (:class:`OutputError`, one line saying how to proceed) to write ``kind`` at
    ``path`` unless the rule of this module allows it, and check that the place is writable
    (a probe directory is created and removed). Leftovers of a killed writer there are
    cleaned up first (:func:`remove_stale`)."""
    path = Path(path)
    what = f"{option} {str(path)!r}" if option else repr(str(path))
    remove_stale(path)
    if path.is_symlink():
        raise OutputError(f"{what} is a symbolic link; cflkit does not write through or replace links: "
                          f"give the real path or another one")
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{what} is an existing file; cflkit never replaces a file it did not write: "
                              f"choose another path")
        manifest = read_manifest(path)
        if manifest is not None and manifest.kind != kind:
            raise OutputError(f"{what} is {KINDS[manifest.kind][0]} (written by `{KINDS[manifest.kind][1]}`), "
                              f"not {KINDS[kind][0]}; choose another path")
        if kind in TARGETS:
            _check_targets(path, kind, manifest, what)
        elif manifest is None:
            if any(path.iterdir()):
                raise OutputError(f"{what} is a directory that cflkit did not write and it is not empty; "
                                  f"choose another path (cflkit never replaces what it did not write)")
        elif not force:
            foreign = foreign_entries(path, manifest)
            if foreign:
                shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                raise OutputError(f"{what} holds {len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that "
                                  f"`{KINDS[kind][1]}` did not write ({shown}); choose another path, or add --force "
                                  f"to replace its own files and keep those")
    probe_writable(path if kind in TARGETS and path.exists() else path.parent, what)
    return path


def _check_targets(path: Path, kind: str, manifest: Manifest | None, what: str):
    """A collection's own entries in ``path`` must be absent or listed as its own."""
    own = manifest.files if manifest is not None else frozenset()
    for name in TARGETS[kind]:
        target = path / name
        if (target.exists() or target.is_symlink()) and name not in own:
            raise OutputError(f"{what} already holds {name!r}, which `{KINDS[kind][1]}` did not write and would "
                              f"replace; choose another path")


def probe_writable(directory, what: str = "") -> None:
    """Create and remove a probe directory in ``directory`` (or the nearest existing
    ancestor, where missing folders would be made): :class:`OutputError` if that fails."""
    place = Path(directory)
    while not place.exists() and not place.is_symlink() and place != place.parent:
        place = place.parent
    target = what or repr(str(directory))
    if not place.is_dir():
        raise OutputError(f"cannot write {target}: {str(place)!r} is a file, not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".cflkit-probe-", dir=place))
    except OSError as e:
        raise OutputError(f"cannot write {target}: {str(place)!r} is not writable ({e.strerror or e})") from None


def write_manifest(directory, kind: str, files=None) -> None:
    """Write the manifest of ``directory``: ``files`` (relative paths), default every file
    now in it."""
    directory = Path(directory)
    files = sorted(set(_files(directory) if files is None else files) - {MANIFEST})
    from .. import __version__

    text = json.dumps({"kind": kind, "written_by": KINDS[kind][1], "cflkit": __version__, "files": files},
                      indent=1) + "\n"
    tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, directory / MANIFEST)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in DISK_FULL:
            raise disk_full(directory, len(text)) from None
        raise


def mark(directory, kind: str, names=()) -> None:
    """Record in the manifest of a collection's ``directory`` (:data:`TARGETS`) that
    ``names`` are its own (besides those listed already)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    own = set(manifest.files) if manifest is not None and manifest.kind == kind else set()
    write_manifest(directory, kind, own | set(names))


def make_dirs(directory) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created (outermost first)."""
    directory = Path(directory)
    missing = []
    place = directory
    while not place.exists() and place != place.parent:
        missing.append(place)
        place = place.parent
    directory.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_made(made: list, tmp=None) -> None:
    """Undo a failed write: remove its temporary directory ``tmp`` and the directories it
    created (``made``, from :func:`make_dirs`) that are still empty."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    for d in reversed(made):
        try:
            Path(d).rmdir()
        except OSError:
            break


# -- the space a write needs -----------------------------------------------------------------
def disk_space(path) -> tuple[int, int]:
    """``(free bytes, block size)`` of the file system that holds ``path`` (or would)."""
    place = Path(path)
    while not place.exists() and place != place.parent:
        place = place.parent
    st = os.statvfs(place)
    return st.f_bavail * st.f_frsize, max(st.f_frsize, 512)


def footprint(sizes, block: int) -> int:
    """Bytes that files of these sizes take on disk (whole blocks, one for the directory)."""
    return block + sum(-(-int(s) // block) * block for s in sizes)


def size_text(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def disk_full(path, needed: int | None = None, at_least: bool = False, free: int | None = None) -> WriteError:
    """The one-line error for a write to ``path`` that ran out of space: ``needed`` bytes
    (``at_least``: more than that, what was written before the device filled), ``free``
    (default: what is free now)."""
    free = disk_space(Path(path).parent)[0] if free is None else free
    need = (f"it needs more than the {size_text(needed)} written before the device filled" if at_least
            else f"it needs {size_text(needed)}" if needed else "it needs more")
    return WriteError(f"no space left on the device to write {str(path)!r}: {need}, {size_text(free)} free; "
                      f"free some space or write elsewhere")


def used_bytes(path) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(Path(root) / name).st_size
            except OSError:
                pass
    return total


# -- temporary siblings ----------------------------------------------------------------------
def temp_prefix(out: Path, what: str) -> str:
    """``.<name>.<what>-<pid>-``: a temporary sibling that names the process writing it."""
    return f".{out.name}.{what}-{os.getpid()}-"


def remove_stale(out) -> None:
    """Remove the temporary siblings of ``out`` that a killed writer left behind (their pid
    is gone): half-written directories and files go; in an old copy kept during a swap, the
    entries its manifest does not list are first carried into ``out``, never deleted."""
    from .processes import pid_alive

    out = Path(out)
    parent = out.parent
    if not parent.is_dir():
        return
    for entry in parent.glob(f".{out.name}.*-*-*"):
        what, _, rest = entry.name[len(out.name) + 2:].partition("-")
        pid = rest.split("-", 1)[0]
        if what not in ("tmp", "old", "file") or not pid.isdigit() or pid_alive(int(pid)):
            continue
        if what == "old":
            old = entry / out.name
            if old.is_dir() and not carry_foreign(old, out):
                continue  # something could not be carried over: keep it rather than lose it
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def carry_foreign(old: Path, new: Path) -> bool:
    """Move the entries of ``old`` that its manifest does not list into ``new`` (if absent
    there); True when nothing of them is left in ``old``."""
    manifest = read_manifest(old)
    if manifest is None or not new.is_dir():
        return not any(old.iterdir()) if old.is_dir() else True
    left = False
    for rel in foreign_entries(old, manifest):
        rel = rel.rstrip("/")
        src, dst = old / rel, new / rel
        if dst.exists() or dst.is_symlink():
            left = True
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    return not left
