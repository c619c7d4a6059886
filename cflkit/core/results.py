"""Run directories: ``config.json``, ``history.csv``, ``summary.json`` and the final cluster
models with the assignment in ``models.npz`` — written atomically."""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RUN_FILES = ("config.json", "history.csv", "summary.json")
MODELS_FILE = "models.npz"


@dataclass
class Result:
    """A finished run: its config, the per-round × per-client history, the summary."""

    config: object
    history: object  # pandas.DataFrame, one row per round × client
    summary: dict
    federation: object = None
    state: object = None  # final ServerState (models and assignment)
    diagnostics: list = None  # per round: what the method reported (RoundInfo.diagnostics)

    def save(self, out, force: bool = False) -> Path:
        return save_run(self, out, force=force)


def save_run(result: Result, out, force: bool = False, extra: dict | None = None) -> Path:
    """Write ``result`` to directory ``out`` atomically (see :mod:`cflkit.core.outputs` for when
    an existing directory may be replaced; ``force`` keeps entries a run did not write).

    The files are serialised first, so a device without room for them is reported before
    anything is written (:class:`~cflkit.core.outputs.WriteError`, naming the space needed);
    they are then written into a temporary sibling directory which is renamed into place,
    so a crash leaves either the old run or the new one, never a mix. ``extra`` maps more
    file names to their bytes (e.g. the Flower server's ``flower_events.csv``).
    """
    out = Path(out)
    files = {"config.json": (result.config.to_json() + "\n").encode(),
             "history.csv": result.history.to_csv(index=False).encode(),
             "summary.json": (json.dumps(json_safe(result.summary), indent=2, sort_keys=True) + "\n").encode()}
    if result.state is not None:
        buffer = io.BytesIO()
        save_models(result.state, buffer)
        files[MODELS_FILE] = buffer.getvalue()
    scalars = _scalar_diagnostics(result.diagnostics)
    if scalars is not None:
        files["diagnostics.csv"] = scalars.to_csv(index=False).encode()
    files.update(extra or {})
    with atomic_directory(out, "run", force=force, sizes=[len(b) for b in files.values()]) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return out


def read_text(path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; ``ValueError`` naming the file when it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text (byte {e.start}); is it the right file?") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from None


def read_json(path, what: str = "file", kind=dict):
    """The JSON value in ``path``, which must be a ``kind``; ``ValueError`` naming the file."""
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(value, kind):
        names = {dict: "an object", list: "a list"}
        raise ValueError(f"{what} {str(path)!r} holds {_json_kind(value)}, not {names.get(kind, kind.__name__)}")
    return value


def _json_kind(value) -> str:
    return {dict: "a JSON object", list: "a JSON list", str: "a JSON string", bool: "a JSON boolean",
            type(None): "JSON null"}.get(type(value), "a JSON number")


def read_config(path):
    """The :class:`~cflkit.core.config.Config` in a ``config.json``; ``ValueError`` naming the
    file and what is wrong with it."""
    from .config import Config

    data = read_json(path, "config file")
    try:
        return Config.from_dict(data)
    except ValueError as e:
        raise ValueError(f"config file {str(path)!r}: {e}") from None


def load_run(path) -> Result:
    """Read a run directory written by :func:`save_run`; ``ValueError`` naming the file
    that is missing or unreadable."""
    import pandas as pd

    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise ValueError(f"{str(path)!r} is not a run directory: missing {', '.join(missing)}")
    config = read_config(path / "config.json")
    summary = read_json(path / "summary.json", "run summary")
    try:
        history = pd.read_csv(path / "history.csv")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"run history {str(path / 'history.csv')!r} cannot be read ({' '.join(str(e).split())})") \
            from None
    state = load_models(path / MODELS_FILE) if (path / MODELS_FILE).exists() else None
    return Result(config, history, summary, state=state)


def save_models(state, path):
    """Write a server state's stacked cluster models and assignment to an ``.npz`` file
    (a path or a binary file object)."""
    arrays = {f"layer_{i:03d}": np.asarray(w) for i, w in enumerate(state.models)}
    if hasattr(path, "write"):
        np.savez(path, assignment=np.asarray(state.assignment), **arrays)
        return
    with open(path, "wb") as f:
        np.savez(f, assignment=np.asarray(state.assignment), **arrays)


def load_models(path):
    """The :class:`~cflkit.methods.base.ServerState` (models, assignment) saved in ``path``;
    ``ValueError`` naming the file when it is truncated or not such a file."""
    import zipfile

    from ..methods.base import ServerState

    try:
        with np.load(path, allow_pickle=False) as data:
            layers = sorted(k for k in data.files if k.startswith("layer_"))
            if "assignment" not in data.files or not layers:
                raise ValueError("it holds no assignment or no model layers")
            return ServerState([data[k] for k in layers], data["assignment"].astype(int))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        why = "truncated or not a .npz file" if isinstance(e, (zipfile.BadZipFile, EOFError)) else \
            " ".join(str(e).split())
        raise ValueError(f"models file {str(path)!r} cannot be read: {why}; re-run the run to rewrite it") from None


@contextmanager
def atomic_directory(out, kind: str, force: bool = False, sizes=None):
    """Yield a temporary sibling directory to fill; on success it replaces ``out`` at once.

    ``kind`` names what is written (:data:`cflkit.core.outputs.KINDS`); the rule of
    :mod:`cflkit.core.outputs` is checked again before the swap, and the new directory gets a
    manifest listing its files. A crash leaves either the old directory or the new one,
    never a mix; the temporary siblings a killed writer left are removed by the next write
    (:func:`~cflkit.core.outputs.remove_stale`). ``sizes`` (bytes of the files to come) lets a
    full device be reported before anything is written; running out of space while
    writing is reported the same way (:class:`~cflkit.core.outputs.WriteError`), with nothing
    left behind.
    """
    from . import outputs

    out = Path(out)
    outputs.check_output(out, kind, force=force, option="")
    if sizes is not None:
        free, block = outputs.disk_space(out.parent)
        needed = outputs.footprint(sizes, block)
        if needed > free:
            raise outputs.disk_full(out, needed)
    made = outputs.make_dirs(out.parent)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=outputs.temp_prefix(out, "tmp"), dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only
        yield tmp
        outputs.write_manifest(tmp, kind)
        outputs.check_output(out, kind, force=force, option="")  # nothing appeared meanwhile
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=outputs.temp_prefix(out, "old"), dir=out.parent))
            os.replace(out, old / out.name)
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / out.name, out)  # put the old directory back
                old.rmdir()
                raise
            if outputs.carry_foreign(old / out.name, out):  # --force: what this command did not write stays
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except OSError as e:
        written = outputs.used_bytes(tmp) if tmp is not None else 0
        free, block = outputs.disk_space(out.parent)  # before this write's files are removed again
        outputs.remove_made(made, tmp)
        if e.errno in outputs.DISK_FULL:
            if sizes:
                raise outputs.disk_full(out, outputs.footprint(sizes, block), free=free) from None
            raise outputs.disk_full(out, written, at_least=True, free=free) from None
        raise
    except BaseException:
        outputs.remove_made(made, tmp)
        raise


@contextmanager
def atomic_file(path):
    """Yield a temporary sibling path to write; on success it replaces ``path`` at once
    (running out of space: :class:`~cflkit.core.outputs.WriteError`, nothing left behind)."""
    from . import outputs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs.remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=outputs.temp_prefix(path, "file"), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.errno in outputs.DISK_FULL:
            raise outputs.disk_full(path) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str):
    """Write a text file through a temporary sibling and a rename."""
    with atomic_file(path) as tmp:
        Path(tmp).write_text(text)


def _scalar_diagnostics(diagnostics):
    """The scalar per-round diagnostics as a table, or None if there are none."""
    import pandas as pd

    rows = [{k: v for k, v in d.items() if np.isscalar(v)} for d in (diagnostics or [])]
    if not any(len(r) > 1 for r in rows):
        return None
    return pd.DataFrame(rows)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(obj):
    """``obj`` with numpy values made plain Python and non-finite floats made None (JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
