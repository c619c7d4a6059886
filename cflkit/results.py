"""Run directories: ``config.json``, ``history.csv``, ``summary.json`` and the final cluster
models with the assignment in ``models.npz`` — written atomically."""
from __future__ import annotations

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

    def save(self, out) -> Path:
        return save_run(self, out)


def save_run(result: Result, out) -> Path:
    """Write ``result`` to directory ``out`` atomically; replaces an earlier run there.

    Files are written into a temporary sibling directory which is renamed into place, so a
    crash leaves either the old run or the new one, never a mix.
    """
    out = Path(out)
    if out.exists() and not (out / "config.json").exists() and any(out.iterdir()):
        raise ValueError(f"refusing to write a run into {str(out)!r}: it is a non-empty directory that holds no run")
    with atomic_directory(out) as tmp:
        (tmp / "config.json").write_text(result.config.to_json() + "\n")
        result.history.to_csv(tmp / "history.csv", index=False)
        (tmp / "summary.json").write_text(json.dumps(json_safe(result.summary), indent=2, sort_keys=True) + "\n")
        if result.state is not None:
            save_models(result.state, tmp / MODELS_FILE)
        scalars = _scalar_diagnostics(result.diagnostics)
        if scalars is not None:
            scalars.to_csv(tmp / "diagnostics.csv", index=False)
    return out


def load_run(path) -> Result:
    """Read a run directory written by :func:`save_run`."""
    import pandas as pd

    from .config import Config

    path = Path(path)
    missing = [f for f in RUN_FILES if not (path / f).exists()]
    if missing:
        raise ValueError(f"{str(path)!r} is not a run directory: missing {', '.join(missing)}")
    config = Config.from_dict(json.loads((path / "config.json").read_text()))
    state = load_models(path / MODELS_FILE) if (path / MODELS_FILE).exists() else None
    return Result(config, pd.read_csv(path / "history.csv"), json.loads((path / "summary.json").read_text()),
                  state=state)


def save_models(state, path):
    """Write a server state's stacked cluster models and assignment to an ``.npz`` file."""
    arrays = {f"layer_{i:03d}": np.asarray(w) for i, w in enumerate(state.models)}
    with open(path, "wb") as f:
        np.savez(f, assignment=np.asarray(state.assignment), **arrays)


def load_models(path):
    """The :class:`~cflkit.methods.base.ServerState` (models, assignment) saved in ``path``."""
    from .methods.base import ServerState

    with np.load(path) as data:
        layers = sorted(k for k in data.files if k.startswith("layer_"))
        return ServerState([data[k] for k in layers], data["assignment"].astype(int))


@contextmanager
def atomic_directory(out):
    """Yield a temporary sibling directory to fill; on success it replaces ``out`` at once.

    A crash leaves either the old directory or the new one, never a mix, and no temporary
    directory behind.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path):
    """Yield a temporary sibling path to write; on success it replaces ``path`` at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only
        os.replace(tmp, path)
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
