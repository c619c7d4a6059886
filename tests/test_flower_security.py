"""Security of cflkit on Flower: the warm worker's private directory, key and authentication;
the TLS files; the `flower app` directory; what a LocalFederation binds and allows.

The worker tests need no flwr (they start :mod:`cflkit.flower.worker` directly); the
deployment tests start real flwr processes. "Owned by someone else" is simulated with
``os.chown`` to uid 65534, which needs root (as on CI); those cases skip otherwise.
"""
import importlib.util
import os
import pickle
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from cflkit.flower import worker

needs_flwr = pytest.mark.skipif(importlib.util.find_spec("flwr") is None,
                                reason="Flower is optional: pip install -r requirements-flower.txt")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads processes and sockets in /proc")
NOBODY = 65534
BAD_CONFIG = "not json"  # the worker answers it at once (JSONDecodeError) without building a model


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- the worker's private directory -------------------------------------------------------------
@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """The worker's directory for this test (``CFLKIT_FLOWER_RUNTIME_DIR``), not created yet."""
    path = tmp_path / "runtime"
    monkeypatch.setenv(worker.RUNTIME_DIR_ENV, str(path))
    return path


def test_a_missing_directory_is_created_private(runtime):
    assert worker.runtime_dir() == runtime
    assert stat.S_ISDIR(os.lstat(runtime).st_mode) and _mode(runtime) == 0o700


def test_a_precreated_world_writable_directory_is_refused(runtime):
    runtime.mkdir()
    os.chmod(runtime, 0o777)
    with pytest.raises(ValueError, match=r"has mode 0777.*CFLKIT_FLOWER_RUNTIME_DIR") as e:
        worker.call("metrics", BAD_CONFIG, 0, {}, 0.0, anchor=os.getpid())
    assert str(runtime) in str(e.value) and "\n" not in str(e.value)
    assert list(runtime.iterdir()) == []  # nothing was written into it


def test_a_symlinked_directory_is_refused(runtime, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    runtime.symlink_to(real)
    with pytest.raises(ValueError, match="is a symbolic link"):
        worker.runtime_dir()
    assert list(real.iterdir()) == []


@needs_root
def test_a_directory_owned_by_another_user_is_refused(runtime):
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    with pytest.raises(ValueError, match=f"owned by uid {NOBODY}"):
        worker.runtime_dir()


def test_the_default_is_xdg_runtime_dir_when_private_else_a_temp_directory(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.delenv(worker.RUNTIME_DIR_ENV, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert worker.runtime_dir() == xdg / "cflkit-flower"
    os.chmod(xdg, 0o755)  # not private: not used
    assert worker.runtime_dir() == tmp_path / "tmp" / f"cflkit-flower-{os.getuid()}"
    assert _mode(worker.runtime_dir()) == 0o700


def test_private_files_are_written_fresh_and_read_without_following_links(tmp_path):
    d = worker.private_dir(tmp_path / "d")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (d / "secret").symlink_to(victim)
    worker.write_private(d / "secret", b"new")
    assert victim.read_text() == "precious"
    assert not (d / "secret").is_symlink() and _mode(d / "secret") == 0o600
    assert worker.read_private(d / "secret") == b"new"
    os.chmod(d / "secret", 0o644)
    with pytest.raises(ValueError, match="mode 0600"):
        worker.read_private(d / "secret")
    (d / "link").symlink_to(d / "secret")
    with pytest.raises(ValueError, match="symbolic link"):
        worker.read_private(d / "link")


@needs_root
def test_a_key_file_of_another_user_is_refused(tmp_path):
    d = worker.private_dir(tmp_path / "d")
    worker.write_private(d / "key", b"k" * 32)
    os.chown(d / "key", NOBODY, NOBODY)
    with pytest.raises(ValueError, match=f"uid {NOBODY}"):
        worker.read_private(d / "key")


# -- a real worker -----------------------------------------------------------------------------
def _worker_pids(anchor: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cflkit.flower.worker" in args and str(anchor).encode() in args:
            pids.append(int(entry))
    return pids


@pytest.fixture
def anchor(runtime):
    """A process standing in for the SuperNode side: the worker lives as long as it does."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()  # reaped: the worker's watchdog sees it gone
    deadline = time.monotonic() + 15
    while _worker_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _worker_pids(proc.pid)
    for pid in left:
        os.kill(pid, signal.SIGTERM)
    assert not left, "the worker outlived its anchor"
    assert not list(runtime.glob(f"worker-{proc.pid}.*")), "the worker left its socket or key behind"


def _ask(anchor: int):
    with pytest.raises(RuntimeError, match="JSONDecodeError"):  # the worker's answer to BAD_CONFIG
        worker.call("metrics", BAD_CONFIG, 0, {}, 0.0, anchor=anchor)


@needs_proc
def test_a_planted_symlink_at_the_key_path_is_not_followed(runtime, anchor, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    key = worker.private_dir(runtime) / f"worker-{anchor}.key"
    key.symlink_to(victim)
    gone = subprocess.Popen(["true"])  # a pid that is gone
    gone.wait()
    for suffix in ("key", "sock"):  # left by a worker killed with its anchor: swept
        worker.write_private(runtime / f"worker-{gone.pid}.{suffix}", b"stale")
    _ask(anchor)  # starts the worker, which answers
    assert victim.read_text() == "precious"
    assert stat.S_ISREG(os.lstat(key).st_mode) and _mode(key) == 0o600
    assert len(key.read_bytes()) == worker.KEY_BYTES
    sock = runtime / f"worker-{anchor}.sock"
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    assert sorted(p.name for p in runtime.iterdir()) == sorted([key.name, sock.name, "start.lock"])


class _Planted:
    """Unpickling this creates a directory: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@needs_proc
def test_a_wrong_key_gets_nothing_unpickled_and_the_worker_goes_on(runtime, anchor, tmp_path):
    from multiprocessing import AuthenticationError
    from multiprocessing.connection import Client

    _ask(anchor)
    [pid] = _worker_pids(anchor)
    sock = str(runtime / f"worker-{anchor}.sock")
    with pytest.raises(AuthenticationError):
        Client(sock, family="AF_UNIX", authkey=b"w" * worker.KEY_BYTES)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Planted(str(marker)))
    assert len(payload) < 256  # read by the worker as the answer to its challenge
    with socket.socket(socket.AF_UNIX) as s:  # no handshake at all: a framed pickle straight away
        s.settimeout(10)
        s.connect(sock)
        s.sendall(struct.pack("!i", len(payload)) + payload)
        while s.recv(4096):  # the worker's challenge, its refusal, then it hangs up
            pass
    assert not marker.exists()
    _ask(anchor)  # still serving, the same worker
    assert _worker_pids(anchor) == [pid]


# -- TLS files ----------------------------------------------------------------------------------
@needs_flwr
def test_tls_files_are_private(tmp_path):
    pytest.importorskip("cryptography")
    from cflkit.flower.deploy import make_certificates

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    paths = make_certificates(tmp_path / "certs")
    assert _mode(tmp_path / "certs") == 0o700
    assert {name: _mode(p) for name, p in paths.items()} == {"ca": 0o600, "cert": 0o600, "key": 0o600}
    assert b"PRIVATE KEY" in paths["key"].read_bytes()
    paths["key"].unlink()
    paths["key"].symlink_to(victim)  # a planted link is replaced, not written through
    again = make_certificates(tmp_path / "certs")
    assert victim.read_text() == "precious" and not again["key"].is_symlink() and _mode(again["key"]) == 0o600
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(ValueError, match="has mode 0755"):
        make_certificates(shared)
    assert list(shared.iterdir()) == []


# -- the app directory ------------------------------------------------------------------------------
@needs_flwr
def test_flower_app_never_overwrites_a_users_pyproject(tmp_path, capsys):
    from cflkit.cli import main

    app = tmp_path / "app"
    assert main(["flower", "app", str(app)]) == 0
    out = capsys.readouterr().out
    assert "--ssl-certfile" in out and "--root-certificates" in out and "root-certificates =" in out
    assert "127.0.0.1" in out and "--disable-runtime-dependency-installation" in out
    assert main(["flower", "app", str(app)]) == 0  # the same file again: fine
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "pyproject.toml").write_text('[project]\nname = "my-project"\n')
    assert main(["flower", "app", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cflkit: error: ") and "choose another directory" in err and "\n" not in err
    assert str(mine / "pyproject.toml") in err
    assert (mine / "pyproject.toml").read_text() == '[project]\nname = "my-project"\n'
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "pyproject.toml").symlink_to(mine / "pyproject.toml")
    assert main(["flower", "app", str(tmp_path / "linked")]) == 2
    assert (mine / "pyproject.toml").read_text() == '[project]\nname = "my-project"\n'


# -- what a LocalFederation binds and allows -------------------------------------------------------
def _family(roots) -> set[int]:
    """The processes started from ``roots``: descendants, and members of their process
    groups or sessions (a warm worker outlives the ClientApp that started it)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]))  # ppid, pgid, session
    roots = set(roots)
    family = set(roots)
    while True:
        more = {pid for pid, (ppid, pgid, sid) in table.items()
                if pid not in family and (ppid in family or pgid in roots or sid in roots)}
        if not more:
            return family
        family |= more


def _address(hex_address: str) -> tuple[str, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian 32-bit words
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw), int(port, 16)


def _listening(pids) -> dict[tuple[str, int], int]:
    """``{(host, port): pid}`` of the TCP sockets these processes listen on (/proc/net/tcp{,6})."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[int(link[8:-1])] = pid
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[9]) in owner:  # TCP_LISTEN
                found[_address(f[1])] = owner[int(f[9])]
    return found


def _cmdline(pid) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


WILDCARDS = {"0.0.0.0", "::", "::ffff:0.0.0.0"}


def _check_federation(fl) -> tuple[dict, dict]:
    """Every listening socket and command line of the federation's processes now; asserts
    nothing listens on all interfaces and nothing may install dependencies."""
    family = _family([fl.superlink.pid, *(p.pid for p in fl.nodes.values())])
    listening = _listening(family)
    exposed = {addr: " ".join(_cmdline(pid))[:200] for addr, pid in listening.items() if addr[0] in WILDCARDS}
    assert not exposed, f"listening on all interfaces: {exposed}"
    assert {host for host, _ in listening} <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, listening  # loopback only
    cmdlines = {pid: _cmdline(pid) for pid in family}
    allowing = [c for c in cmdlines.values() if "--allow-runtime-dependency-installation" in c]
    assert not allowing, allowing
    return listening, cmdlines


def _wait_until_up(fl, timeout=90.0):
    """Until the SuperLink, each SuperNode's Runtime API and every SuperExec are up."""
    node_ports = {int(p.args[p.args.index("--port") + 1]) for p in fl.nodes.values()}
    deadline = time.monotonic() + timeout
    while True:
        family = _family([fl.superlink.pid, *(p.pid for p in fl.nodes.values())])
        ports = {port for _, port in _listening(family)}
        superexecs = [pid for pid in family if any(a.endswith("flower-superexec") for a in _cmdline(pid)[:2])]
        if {fl.port, *node_ports} <= ports and len(superexecs) >= 1 + len(fl.nodes):
            return
        assert time.monotonic() < deadline, f"not up within {timeout:.0f} s: ports {ports}, superexecs {superexecs}"
        time.sleep(0.5)


@needs_flwr
@needs_proc
@pytest.mark.parametrize("tls", [False, True], ids=["insecure", "tls"])
def test_a_local_federation_binds_only_localhost_and_installs_nothing(tmp_path, monkeypatch, tls):
    from cflkit.flower import LocalFederation

    if tls:
        pytest.importorskip("cryptography")
    # flwr 1.42's legacy gRPC Fleet and Control APIs default to 0.0.0.0:9092 / 0.0.0.0:9093 and
    # start when these are set: the explicit addresses must hold them on 127.0.0.1 too
    monkeypatch.setenv("FLWR_INTERNAL_GRPC_FLEET_API", "1")
    monkeypatch.setenv("FLWR_INTERNAL_GRPC_CONTROL_API", "1")
    with LocalFederation(2, workdir=tmp_path / "fl", warm_worker=False, tls=tls) as fl:
        _wait_until_up(fl)
        listening, cmdlines = _check_federation(fl)
        assert len(listening) >= 1 + 2 + 2  # the HTTP API, the two gRPC APIs, one Runtime API per node
        link = cmdlines[fl.superlink.pid]
        assert "--disable-runtime-dependency-installation" in link
        assert ("--insecure" in link) != tls
        if tls:  # the key it serves with is private
            key = Path(link[link.index("--ssl-keyfile") + 1])
            assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
        for flag in ("--host", "--fleet-api-address", "--control-api-address"):
            assert link[link.index(flag) + 1].startswith("127.0.0.1"), (flag, link)
        for node in fl.nodes.values():
            assert cmdlines[node.pid][cmdlines[node.pid].index("--host") + 1] == "127.0.0.1"


@needs_flwr
@needs_proc
@pytest.mark.slow
def test_nothing_listens_on_all_interfaces_during_a_run(tmp_path):
    """The ServerApp, ClientApps and warm workers of a real (tiny) run, sampled while it runs."""
    from cflkit import Config
    from cflkit.flower import LocalFederation

    config = Config(dataset="digits", scenario="rotation", clients=2, groups=2, rounds=1, local_epochs=1)
    seen = set()
    with LocalFederation(2, workdir=tmp_path / "fl") as fl:
        proc = fl.submit(config, tmp_path / "run", round_timeout=300)
        try:
            deadline = time.monotonic() + 400
            while proc.poll() is None:
                assert time.monotonic() < deadline, "the run did not finish"
                _, cmdlines = _check_federation(fl)
                seen |= {Path(c[1]).name for c in cmdlines.values() if len(c) > 1}
                seen |= {"worker" for c in cmdlines.values() if "cflkit.flower.worker" in c}
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
        result = fl.result(tmp_path / "run", proc)
    assert result.summary["dropouts"] == 0
    assert {"flwr-serverapp", "flwr-clientapp", "worker"} <= seen, seen
