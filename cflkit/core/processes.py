"""Worker processes that never outlive the command that started them.

``cflkit compare`` and ``cflkit batch`` run their cells in spawned worker processes. If the
command is killed (``kill -9``, a closed terminal), its workers must go too: otherwise they
finish queued work with no one to report to, hold their pipes open forever, and a re-run
would execute the same cells twice at once. :func:`die_with_parent` is the initializer
that makes a worker exit when its parent does.
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 0.5


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process exit as soon as its parent process exits.

    Two mechanisms, because each has a gap: Linux's ``PR_SET_PDEATHSIG`` (SIGKILL when the
    parent *thread* that started us exits; instant, Linux only) and a daemon thread that
    polls ``os.getppid()`` (portable; catches a parent whose spawning thread outlived it).
    ``parent_pid`` is the pid the caller expects as parent (default: the current one); if it
    is already gone when this runs, the process exits at once.
    """
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the polling thread alone
        pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="cflkit-die-with-parent", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
