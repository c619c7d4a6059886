"""A warm helper process per SuperNode, so TensorFlow is imported once per node, not once
per message.

Flower 1.42 starts a fresh ClientApp process for every message (process isolation); on a
loaded laptop importing TensorFlow then costs 5–20 s per message. With node config
``warm-worker=1`` the ClientApp hands each call to this worker (started by the node's first
message, reached through a local socket with a random key, same machine only), which keeps
the federation and trainer built. It runs the same :func:`cflkit.flower.client.answer`, so
results are identical; it exits when the node's process that started it goes away (killing
the SuperNode's process group ends it too) or after ``IDLE_SECONDS`` without work.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

IDLE_SECONDS = 1800


def _paths(anchor: int) -> tuple[Path, Path]:
    base = Path(tempfile.gettempdir()) / f"cflkit-flower-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    return base / f"worker-{anchor}.sock", base / f"worker-{anchor}.key"


def call(op: str, config_json: str, client: int, arrays: dict, mu: float, start_timeout: float = 120.0):
    """Answer one call through the node's warm worker, starting it if needed."""
    from multiprocessing.connection import Client

    anchor = os.getppid()  # the SuperNode-side process that runs this node's ClientApps
    sock, keyfile = _paths(anchor)
    if sock.exists() and not _answers(sock):  # left by a worker that was killed
        sock.unlink(missing_ok=True)
    if not sock.exists():
        key = secrets.token_hex(16)
        keyfile.write_text(key)
        os.chmod(keyfile, 0o600)
        subprocess.Popen([sys.executable, "-m", "cflkit.flower.worker", str(anchor)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cflkit node worker did not start within {start_timeout:.0f} s")
            time.sleep(0.1)
    with Client(str(sock), family="AF_UNIX", authkey=keyfile.read_text().encode()) as conn:
        conn.send((op, config_json, client, arrays, mu))
        ok, value = conn.recv()
    if not ok:
        raise RuntimeError(value)
    return value


def _answers(sock: Path) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
            return True
        except OSError:
            return False


def serve(anchor: int):
    """The worker loop: answer calls until ``anchor`` exits or the worker idles too long."""
    from multiprocessing.connection import Listener

    from .client import answer

    sock, keyfile = _paths(anchor)
    listener = Listener(str(sock) + ".tmp", family="AF_UNIX", authkey=keyfile.read_text().encode())
    last = [time.monotonic()]

    def watchdog():
        while True:
            time.sleep(1.0)
            alive = Path(f"/proc/{anchor}").exists() if Path("/proc").exists() else _alive(anchor)
            if not alive or time.monotonic() - last[0] > IDLE_SECONDS:
                leave()

    def leave(*_):
        for p in (sock, keyfile):
            p.unlink(missing_ok=True)
        os._exit(0)

    import signal
    signal.signal(signal.SIGTERM, leave)
    threading.Thread(target=watchdog, daemon=True).start()
    os.replace(str(sock) + ".tmp", sock)  # visible only once it listens
    from multiprocessing import AuthenticationError

    while True:
        try:
            conn = listener.accept()
            request = conn.recv()
        except (OSError, EOFError, AuthenticationError):  # a liveness probe, or a caller that went away
            continue
        with conn:
            try:
                conn.send((True, answer(*request)))
            except Exception as e:  # noqa: BLE001 - reported to the ClientApp, which raises it
                conn.send((False, f"{type(e).__name__}: {e}"))
        last[0] = time.monotonic()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    serve(int(sys.argv[1]))
