"""A warm helper process per SuperNode, so TensorFlow is imported once per node, not once
per message.

Flower 1.42 starts a fresh ClientApp process for every message (process isolation); on a
loaded laptop importing TensorFlow then costs 5–20 s per message. With node config
``warm-worker=1`` the ClientApp hands each call to this worker (started by the node's first
message), which keeps the federation and trainer built. It runs the same
:func:`cflkit.flower.node.answer`, so results are identical; it exits when the node's
process that started it goes away (killing the SuperNode's process group ends it too) or
after ``IDLE_SECONDS`` without work.

Security: requests and replies are pickles, so whoever can talk to the worker can run code
as its user. Therefore

- its socket, its key and its start lock live only in a private directory
  (:func:`runtime_dir`): created by us with mode 0700, or, if it exists, checked with
  ``os.lstat`` to be a real directory (not a symlink) owned by us with no group/other
  permissions, and refused otherwise;
- the key (32 random bytes) is created afresh with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and
  mode 0600 (a dead worker's stale key is unlinked first; unlink removes a symlink, never
  its target), and read back with ``O_NOFOLLOW`` and checked (regular file, ours, 0600);
- both ends authenticate before anything is unpickled: ``multiprocessing.connection``'s
  ``Listener.accept`` and ``Client`` with a non-empty ``authkey`` run a mutual HMAC
  challenge over raw bytes, and ``recv()`` is only ever called on the connection they
  return. A caller with a wrong key gets ``AuthenticationError``; the worker drops it and
  goes on serving.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

IDLE_SECONDS = 1800
RUNTIME_DIR_ENV = "CFLKIT_FLOWER_RUNTIME_DIR"  # overrides the private directory (tests, odd systems)
KEY_BYTES = 32


# -- private files ------------------------------------------------------------------------------
def _dir_problem(path: Path) -> str | None:
    """What makes ``path`` unfit as a private directory (``None``: it is fit)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, which lets group/others in (needs 0700)"
    return None


def private_dir(path, fix: str = "remove it or choose another directory") -> Path:
    """``path`` as a directory only we can use: created with mode 0700 if missing, else
    verified (real directory, ours, no group/other bits) and refused with a one-line
    ``ValueError`` (ending with ``fix``) otherwise. Files in it cannot be planted or read by
    other users."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    problem = _dir_problem(path)
    if problem:
        raise ValueError(f"refusing to use {path} for private files: it {problem}; {fix}")
    return path


def write_private(path, data: bytes) -> Path:
    """Create ``path`` afresh with mode 0600 and write ``data``: an old file or symlink
    there is unlinked (never followed), and ``O_EXCL | O_NOFOLLOW`` fails rather than
    write through anything planted in between."""
    path = Path(path)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # exactly 0600, whatever the umask
        f.write(data)
    return path


def read_private(path) -> bytes:
    """The content of ``path``, a regular file of ours with no group/other bits, opened
    without following a symlink; a one-line ``ValueError`` otherwise."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # NONBLOCK: a FIFO cannot hang us
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"refusing to read {path}: it is a symbolic link; remove it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise ValueError(f"refusing to read {path}: not a regular file of yours with mode 0600 "
                             f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}); remove it")
        return f.read()


def runtime_dir() -> Path:
    """The private directory for worker sockets and keys: ``$CFLKIT_FLOWER_RUNTIME_DIR`` if
    set; else ``$XDG_RUNTIME_DIR/cflkit-flower`` when that is set and private; else
    ``<tempdir>/cflkit-flower-<uid>``. Always checked by :func:`private_dir`."""
    fix = f"remove it, or set {RUNTIME_DIR_ENV} to a directory of yours with mode 0700"
    override = os.environ.get(RUNTIME_DIR_ENV)
    if override:
        return private_dir(override, fix)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        try:
            if _dir_problem(Path(xdg)) is None:
                return private_dir(Path(xdg) / "cflkit-flower", fix)
        except OSError:  # a missing directory counts as unset
            pass
    return private_dir(Path(tempfile.gettempdir()) / f"cflkit-flower-{os.getuid()}", fix)


def _paths(anchor: int, base: Path | None = None) -> tuple[Path, Path]:
    base = runtime_dir() if base is None else private_dir(base)
    return base / f"worker-{anchor}.sock", base / f"worker-{anchor}.key"


def _read_key(keyfile: Path) -> bytes:
    key = read_private(keyfile)
    if len(key) < KEY_BYTES:  # an empty authkey would switch authentication off
        raise ValueError(f"the worker key {keyfile} is {len(key)} bytes, expected {KEY_BYTES}; remove it")
    return key


@contextlib.contextmanager
def _start_lock(base: Path):
    """One caller at a time checks for, and starts, the node's worker."""
    import fcntl

    fd = os.open(base / "start.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- the ClientApp side ------------------------------------------------------------------------
def call(op: str, config_json: str, client: int, arrays: dict, mu: float, start_timeout: float = 120.0,
         anchor: int | None = None):
    """Answer one call through the node's warm worker, starting it if needed. ``anchor``
    is the process whose exit ends the worker (default: our parent, the SuperNode side
    that runs this node's ClientApps)."""
    from multiprocessing.connection import Client

    anchor = os.getppid() if anchor is None else int(anchor)
    sock, keyfile = _paths(anchor)
    with _start_lock(sock.parent):
        if not _answers(sock):  # none yet, or left by a worker that was killed
            _start(anchor, sock, keyfile, start_timeout)
        key = _read_key(keyfile)
    with Client(str(sock), family="AF_UNIX", authkey=key) as conn:  # mutual HMAC challenge, then pickles
        conn.send((op, config_json, client, arrays, mu))
        ok, value = conn.recv()
    if not ok:
        raise RuntimeError(value)
    return value


def _start(anchor: int, sock: Path, keyfile: Path, timeout: float):
    _sweep(sock.parent)
    sock.unlink(missing_ok=True)
    write_private(keyfile, secrets.token_bytes(KEY_BYTES))
    proc = subprocess.Popen([sys.executable, "-m", "cflkit.flower.worker", str(anchor), str(sock.parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the cflkit node worker exited with code {proc.returncode} while starting; "
                               f"`{sys.executable} -m cflkit.flower.worker {anchor} {sock.parent}` shows its error")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cflkit node worker did not start within {timeout:.0f} s")
        time.sleep(0.1)


def _sweep(base: Path):
    """Remove the sockets and keys of workers whose anchor is gone (killed with SIGKILL, they
    could not clean up)."""
    from ..core.processes import pid_alive

    for path in base.glob("worker-*"):
        anchor = path.name.split(".")[0].removeprefix("worker-")
        if anchor.isdigit() and not pid_alive(int(anchor)):
            path.unlink(missing_ok=True)


def _answers(sock: Path) -> bool:
    """Whether a worker listens on ``sock`` (a bare connect: nothing is sent or received)."""
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
            return True
        except OSError:
            return False


# -- the worker --------------------------------------------------------------------------------
def serve(anchor: int, base=None):
    """The worker loop: answer calls until ``anchor`` exits or the worker idles too long."""
    import signal
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Listener

    from ..core.processes import pid_alive
    from .node import answer

    sock, keyfile = _paths(anchor, None if base is None else Path(base))
    key = _read_key(keyfile)
    tmp = sock.with_name(sock.name + ".tmp")
    tmp.unlink(missing_ok=True)  # left by a worker that was killed while starting
    listener = Listener(str(tmp), family="AF_UNIX", authkey=key)  # non-empty key: accept() authenticates
    last = [time.monotonic()]

    def watchdog():
        while True:
            time.sleep(1.0)
            if not pid_alive(anchor) or time.monotonic() - last[0] > IDLE_SECONDS:
                leave()

    def leave(*_):
        for p in (sock, keyfile):
            p.unlink(missing_ok=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    threading.Thread(target=watchdog, daemon=True).start()
    os.replace(tmp, sock)  # visible only once it listens
    while True:
        try:
            conn = listener.accept()  # raises AuthenticationError unless the caller proves the key
        except (OSError, EOFError, AuthenticationError):  # a liveness probe, a wrong key, a caller that left
            continue
        with conn:
            try:
                request = conn.recv()  # only ever on an authenticated connection
            except Exception:  # noqa: BLE001 - a caller that left mid-request
                continue
            try:
                reply = (True, answer(*request))
            except Exception as e:  # noqa: BLE001 - reported to the ClientApp, which raises it
                reply = (False, f"{type(e).__name__}: {e}")
            with contextlib.suppress(OSError):
                conn.send(reply)
        last[0] = time.monotonic()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
