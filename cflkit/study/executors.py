"""Where the cells of ``cflkit compare`` and the runs of ``cflkit batch`` execute: local worker
processes (the default) or an existing Ray cluster (``executor="ray"``, ``address``).

Ray (https://docs.ray.io): each cell / run is one Ray task that asks for one CPU, so the cluster
runs as many at once as it has CPUs (or ``workers``, when given). A task runs in a scratch
directory on its node and returns the files it wrote; the driver (the machine where the command
was typed) writes them into place, atomically, exactly as the local executor does. So the cluster
needs no shared file system, and keys, resume, failure isolation and the tables are the local
executor's. The nodes need the same cflkit, Python packages and data (``CFLKIT_OFFLINE_DIRS``)
as the driver; ``docs/cluster.md`` says how to start a cluster, on SLURM too.

A task whose worker process dies (killed, out of memory, node lost) costs only its cell: Ray runs
it again up to ``retries`` times (Ray's ``max_retries``), then the cell is recorded as failed with
Ray's error, and the next call of the command runs it again, as for any failed cell. An exception
raised inside a cell is that cell's error, as with the local executor (not retried).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import tempfile
from pathlib import Path

EXECUTORS = ("local", "ray")
RETRIES = 1  # times Ray runs a task again whose worker died
# what ray.init accepts: "auto" (the cluster this machine belongs to), "local" (a new one here),
# "HOST:PORT" (the head node's GCS port, 6379 by default) or Ray Client's "ray://HOST:PORT"
ADDRESS = re.compile(r"^(auto|local|(ray://)?[A-Za-z0-9_.\-]+:\d{1,5})$")


def check_executor(executor, address=None, retries=RETRIES) -> None:
    """``ValueError`` (one line, naming the bad value and the valid choices) for a bad executor,
    address or retry count, or for Ray missing; before any work."""
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if executor == "local":
        if address is not None:
            raise ValueError(f"an address ({address!r}) is only for executor 'ray'; the local executor runs here")
        return
    if address is not None and (not isinstance(address, str) or not ADDRESS.match(address)):
        raise ValueError(f"Ray address must be HOST:PORT (the head node, e.g. 10.0.0.5:6379), ray://HOST:PORT, "
                         f"'auto' or 'local'; got {address!r}")
    if importlib.util.find_spec("ray") is None:
        raise ValueError("executor 'ray' needs Ray, which is not installed: pip install -r requirements-flower.txt "
                         "(or pip install 'cflkit[flower]')")
    if address not in (None, "auto", "local"):
        _check_reachable(address)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """``ConnectionError`` when nothing listens at a HOST:PORT address (Ray itself would retry
    for minutes before it gives up)."""
    import socket

    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"no Ray head node answers at {address} ({e.strerror or e}); start one with "
                              f"`ray start --head` (docs/cluster.md) or check the address") from None


def _connect(address):
    """Connect to the Ray cluster at ``address``; returns whether this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silences a FutureWarning of Ray 2.5x
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or os.environ.get("RAY_ADDRESS") or "a new local Ray instance"
        raise ConnectionError(f"cannot connect to the Ray cluster at {where}: {' '.join(str(e).split())}") from None
    return True


def ray_tasks(function, items: list, address=None, retries: int = RETRIES, limit: int | None = None):
    """Run ``function(*item)`` for every item as Ray tasks of one CPU each (at most ``limit`` at
    once when given); yield ``(index, value)`` as each one ends, ``value`` being the exception
    (a ``ray.exceptions.RayError``) for a task that failed or whose worker died ``retries + 1``
    times. The tasks still queued are cancelled when the caller stops (Ctrl-C, an error)."""
    import ray

    own = _connect(address)
    try:
        remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(function)
        queue = list(enumerate(items))[::-1]
        running = {}
        try:
            while queue or running:
                while queue and (limit is None or len(running) < limit):
                    index, item = queue.pop()
                    running[remote.remote(*item)] = index
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    index = running.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        value = e
                    yield index, value
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
    finally:
        if own:
            ray.shutdown()


def error_line(error: BaseException) -> str:
    """A Ray failure as one line: its type and the first line of its message (Ray's are long)."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"[:500] if first else type(error).__name__


def read_tree(path: Path, skip=()) -> dict[str, bytes]:
    """Every file under ``path`` as {relative path: bytes} (``skip``: names left out at any depth)."""
    path = Path(path)
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file() and f.name not in skip}


def write_tree(path: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` ({relative path: bytes}, from :func:`read_tree`) under the existing ``path``."""
    root = Path(path).resolve()
    for name, data in files.items():
        target = (root / name).resolve()
        if root not in target.parents:  # a shipped name never points outside the run's directory
            raise RuntimeError(f"refusing to write {name!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


# -- tasks (run on the cluster's workers) ------------------------------------------------------
def ray_cell(config, threads: int):
    """One compare cell on a Ray worker: run it in a scratch directory and return
    ``(error or None, {file: bytes})`` of its run directory (its manifest left out: the driver
    writes the run through :func:`cflkit.core.results.atomic_directory`, which makes one)."""
    from ..core._tf import keras, tf
    from ..core.outputs import MANIFEST
    from .compare import run_cell

    tf(threads=threads)  # like a local worker: the pools are sized by the worker's first cell only
    keras()
    with tempfile.TemporaryDirectory(prefix="cflkit-cell-") as scratch:
        out = Path(scratch) / "cell"
        error = run_cell(config, out, fresh_session=True)
        return error, ({} if error else read_tree(out, skip=(MANIFEST,)))


def ray_run(spec: dict):
    """One batch run on a Ray worker: execute it (:func:`cflkit.study.batch.execute`) in a scratch
    experiment directory and return ``(status, {file: bytes})`` of the run's directory."""
    from . import batch

    batch.size_kernel_threads(1)  # the task's one CPU
    with tempfile.TemporaryDirectory(prefix="cflkit-run-") as scratch:
        home = Path(scratch)
        name, dirname = Path(spec["tmp"]).name, Path(spec["final"]).name
        local = {**spec, "exp_dir": str(home), "tmp": str(home / ".tmp" / name), "final": str(home / dirname),
                 "failed": str(home / "failed" / dirname), "stderr_to_log": True}
        status = batch.execute(local)
        files = read_tree(Path(status.pop("path")), skip=(batch.OWNER, "status.json"))
        return status, files


def add_arguments(p) -> None:
    """``--executor``, ``--address`` and ``--retries`` of ``cflkit compare`` and ``cflkit batch``."""
    from ..cli import count  # called while the parser is built: cflkit.cli is loaded

    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where the work runs: local worker processes (default) or an existing Ray cluster "
                        "(see docs/cluster.md)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="with --executor ray: the Ray head node (e.g. 10.0.0.5:6379, ray://HOST:10001 or auto; "
                        "default: $RAY_ADDRESS, else a Ray started on this machine)")
    p.add_argument("--retries", type=count(0), default=RETRIES,
                   help=f"with --executor ray: how often a task whose worker died is run again (default: {RETRIES})")

