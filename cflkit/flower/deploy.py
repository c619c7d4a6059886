"""A real Flower deployment on localhost: one SuperLink, one SuperNode process per client.

:class:`LocalFederation` starts ``flower-superlink`` and one ``flower-supernode`` per client
(node config ``partition-id=c``), each its own process group, writes a Flower App directory
(:func:`write_app`) and submits runs with ``flwr run``; the ServerApp (started by the
SuperLink) runs the cflkit method, the ClientApps (started by each SuperNode per message)
train on their client's rows. The processes talk over Flower's Fleet API on a port chosen
at run time. Everything it started is killed on exit (it is a context manager).

Only 127.0.0.1 is bound: every address option of flwr 1.42 is set explicitly, since some
default to all interfaces (the legacy gRPC Fleet and Control APIs, ``0.0.0.0:9092`` and
``0.0.0.0:9093``, which ``FLWR_INTERNAL_GRPC_FLEET_API=1`` / ``..._CONTROL_API=1`` switch on);
the health servers stay off (no ``--health-server-address``). Runtime dependency
installation is off (``--disable-runtime-dependency-installation``): by default a SuperLink
lets every submitted app ``uv sync`` its ``pyproject.toml`` dependencies into the server's
runtime; cflkit's app needs none (cflkit must be installed where the processes run).

TLS is off by default (``--insecure``, localhost only). ``tls=True`` creates a throw-away
certificate authority and a certificate for 127.0.0.1/localhost (with ``cryptography``; the
private key is written with mode 0600 in a 0700 directory) and starts the SuperLink with
``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``, the SuperNodes with
``--root-certificates`` and the ``flwr`` connection with ``root-certificates``; for a real
deployment pass your own files the same way.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .worker import private_dir, write_private

log = logging.getLogger("cflkit.flower")
LOCALHOST = "127.0.0.1"

APP_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "cflkit-flower"
version = "0.1.0"
description = "cflkit methods as a Flower App (ServerApp: the method; ClientApp: cflkit's trainer)"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "cflkit"

[tool.flwr.app.components]
serverapp = "cflkit.flower.app:serverapp"
clientapp = "cflkit.flower.app:clientapp"

[tool.flwr.app.config]
config-file = ""      # a cflkit config.json (cflkit run --config format)
out = ""              # run directory the ServerApp writes
status-file = ""      # JSON progress file (round, dropped clients), rewritten every round
round-timeout = 120.0 # seconds a call waits for replies before missing clients count as dropped
evaluate-every = 1    # test metrics every N rounds (and at the last)
min-available = 0     # clients that must be connected before round 1 (0: all)
"""

CONNECTION = "cflkit-local"


def write_app(directory, replace: bool = False) -> Path:
    """Write the Flower App directory (``pyproject.toml`` naming cflkit's ServerApp and
    ClientApp) that ``flwr run DIRECTORY CONNECTION`` submits. cflkit must be installed
    where the SuperLink and SuperNodes run.

    An existing ``pyproject.toml`` that is not exactly this file (a project of yours) is
    never overwritten: ``ValueError``, choose another directory. ``replace=True`` is for
    directories cflkit owns (:class:`LocalFederation`'s workdir)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "pyproject.toml"
    if replace:
        target.unlink(missing_ok=True)
    elif os.path.lexists(target):
        if not target.is_symlink() and target.is_file() and target.read_bytes() == APP_PYPROJECT.encode():
            return directory  # already the app
        raise ValueError(f"{target} exists and is not the pyproject.toml cflkit writes; not overwriting it: "
                         f"choose another directory for the Flower app")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(APP_PYPROJECT)
    return directory


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def local_address() -> str:
    """``127.0.0.1:<free port>``, for an address option that must not bind all interfaces."""
    return f"{LOCALHOST}:{free_port()}"


def _wait_port(port: int, timeout: float, proc: subprocess.Popen, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s")


def make_certificates(directory) -> dict:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost: paths of
    ``ca``, ``cert`` and ``key`` (PEM). For tests and demos only. ``directory`` must be
    private (created 0700, or an existing one of yours with mode 0700: see
    :func:`~cflkit.flower.worker.private_dir`); every file is created afresh with mode 0600."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = private_dir(directory, "remove it or choose another directory for the certificates")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cflkit test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.crt", "cert": directory / "server.pem", "key": directory / "server.key"}
    write_private(paths["ca"], ca.public_bytes(serialization.Encoding.PEM))
    write_private(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    write_private(paths["key"], key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


class LocalFederation:
    """SuperLink + one SuperNode per client on localhost, as a context manager.

    >>> with LocalFederation(4) as fl:                      # doctest: +SKIP
    ...     result = fl.run(Config(dataset="heart_disease", scenario="natural"), "runs/flower")

    ``workdir`` holds the Flower home (``FLWR_HOME``), the app directory and one log per
    process (``superlink.log``, ``supernode-<c>.log``); a temporary one is removed on exit.
    """

    def __init__(self, n_clients: int, workdir=None, tls: bool = False, start_timeout: float = 60.0,
                 warm_worker: bool = True):
        from . import require_flwr

        require_flwr()
        if n_clients < 1:
            raise ValueError(f"n_clients must be >= 1, got {n_clients}")
        self.n_clients = int(n_clients)
        self._tmp = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="cflkit-flower-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = bool(tls)
        self.warm_worker = bool(warm_worker)  # see cflkit.flower.worker
        self.start_timeout = float(start_timeout)
        self.port = None
        self.superlink = None
        self.nodes: dict[int, subprocess.Popen] = {}
        self.certs = None
        self.env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)  # flower-superexec etc. live beside this Python
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        self.env["FLWR_HOME"] = str(self.workdir / "flwr-home")
        self.env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"  # as the flag below, for any SuperLink

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        logf = open(self.workdir / log_name, "ab")
        try:
            return subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)  # own process group: killed with its children
        finally:
            logf.close()

    def start(self):
        """Start the SuperLink and every SuperNode; return when the SuperLink listens."""
        bindir = Path(sys.executable).parent
        self.port = free_port()
        if self.tls:
            self.certs = make_certificates(self.workdir / "certs")
            security = ["--ssl-ca-certfile", str(self.certs["ca"]), "--ssl-certfile", str(self.certs["cert"]),
                        "--ssl-keyfile", str(self.certs["key"])]
        else:
            security = ["--insecure"]
        self.superlink = self._spawn([str(bindir / "flower-superlink"), *security, *self.superlink_options()],
                                     "superlink.log")
        _wait_port(self.port, self.start_timeout, self.superlink, "flower-superlink")
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        security_line = (f"root-certificates = {json.dumps(str(self.certs['ca']))}" if self.tls else "insecure = true")
        (home / "config.toml").write_text(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                                          f'address = "{LOCALHOST}:{self.port}"\n{security_line}\n')
        write_app(self.workdir / "app", replace=True)
        for c in range(self.n_clients):
            self.start_node(c)
        return self

    def start_node(self, client: int):
        """Start (or restart) the SuperNode of ``client``."""
        if client in self.nodes and self.nodes[client].poll() is None:
            raise ValueError(f"the SuperNode of client {client} is already running")
        bindir = Path(sys.executable).parent
        security = ["--root-certificates", str(self.certs["ca"])] if self.tls else ["--insecure"]
        self.nodes[client] = self._spawn(
            [str(bindir / "flower-supernode"), *security, "--superlink", f"{LOCALHOST}:{self.port}",
             "--host", LOCALHOST, "--port", str(free_port()),
             "--node-config", f"partition-id={client} num-partitions={self.n_clients}"
             + (" warm-worker=1" if self.warm_worker else "")],
            f"supernode-{client}.log")

    def superlink_options(self) -> list[str]:
        """The SuperLink's address and runtime options: every API on 127.0.0.1 (the HTTP
        Runtime/Control/Fleet API on ``self.port``; the legacy gRPC Fleet and Control APIs,
        which default to ``0.0.0.0``, on free ports should ``FLWR_INTERNAL_GRPC_*`` switch them
        on) and no dependency installation for submitted apps."""
        return ["--host", LOCALHOST, "--port", str(self.port), "--fleet-api-address", local_address(),
                "--control-api-address", local_address(), "--disable-runtime-dependency-installation"]

    def kill_node(self, client: int):
        """Kill the SuperNode of ``client`` and its ClientApp processes at once (SIGKILL)."""
        _killpg(self.nodes[client], signal.SIGKILL)

    def stop(self):
        """Stop every process this federation started (SIGTERM, then SIGKILL)."""
        procs = [p for p in [*self.nodes.values(), self.superlink] if p is not None]
        for p in procs:
            _killpg(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _killpg(p, signal.SIGKILL)
                p.wait(timeout=5)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self.stop()
        if self._tmp:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- runs --------------------------------------------------------------------------------
    def submit(self, config, out, round_timeout: float = 120.0, evaluate_every: int = 1,
               min_available: int = 0) -> subprocess.Popen:
        """Submit ``config`` with ``flwr run`` and return the (streaming) ``flwr`` process;
        :meth:`run` waits for it. The ServerApp writes the run directory ``out`` and a
        progress file (:meth:`status`)."""
        out = Path(out).resolve()
        tag = f"{config.method}-{int(time.time() * 1000)}"
        config_file = self.workdir / f"config-{tag}.json"
        config_file.write_text(config.to_json())
        self.status_file = self.workdir / f"status-{tag}.json"
        overrides = self.workdir / f"run-{tag}.toml"
        overrides.write_text("\n".join([
            f"config-file = {json.dumps(str(config_file))}", f"out = {json.dumps(str(out))}",
            f"status-file = {json.dumps(str(self.status_file))}", f"round-timeout = {float(round_timeout)}",
            f"evaluate-every = {int(evaluate_every)}", f"min-available = {int(min_available)}"]) + "\n")
        bindir = Path(sys.executable).parent
        self.flwr_log = self.workdir / f"flwr-run-{tag}.log"
        return self._spawn([str(bindir / "flwr"), "run", str(self.workdir / "app"), CONNECTION,
                            "--run-config", str(overrides), "--stream"], self.flwr_log.name)

    def status(self) -> dict:
        """The running ServerApp's progress (``{}`` before round 0)."""
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError, AttributeError):
            return {}

    def run(self, config, out, timeout: float = 600.0, **options):
        """Run ``config`` on this federation and return its :class:`~cflkit.core.results.Result`
        (read back from ``out``). Raises ``RuntimeError`` with the run's log on failure."""

        out = Path(out).resolve()
        proc = self.submit(config, out, **options)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc, signal.SIGKILL)
            raise RuntimeError(f"the Flower run did not finish within {timeout:.0f} s; see {self.workdir}") from None
        return self.result(out, proc)

    def result(self, out, proc):
        """The finished run of ``proc`` (from :meth:`submit`) read back from ``out``."""
        from ..core.results import load_run

        status = self.status()
        if proc.returncode != 0 or not status.get("finished") or not (Path(out) / "summary.json").exists():
            tail = self.flwr_log.read_text(errors="replace")[-3000:] if self.flwr_log.exists() else ""
            raise RuntimeError(f"the Flower run failed (flwr exit {proc.returncode}, status {status}); "
                               f"log tail:\n{tail}")
        return load_run(out)


def _killpg(proc: subprocess.Popen, sig):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)  # the group this object started (start_new_session=True)
    except ProcessLookupError:
        pass
