"""The Ray executor of ``cflkit compare`` and ``cflkit batch`` (:mod:`cflkit.study.executors`)
against the local one, on a real Ray cluster started here: a head node and a worker node, each
``ray start --block`` in a session of its own on 127.0.0.1, stopped (every process of both
sessions) at the end.

What is checked: the same grid gives the same ``results.csv`` and ``ari_per_round.csv`` (wall
times aside) and byte-identical models; a second call runs nothing (resume); a killed Ray worker
costs only its cell, which Ray runs again (``retries=1``) or which is recorded as failed and run
by the next call (``retries=0``); a batch's runs land as local runs do; bad executors, addresses
and retry counts get one-line errors before any work.
"""
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cflkit import Config
from cflkit.study import batch
from cflkit.study.compare import compare
from cflkit.study.executors import check_executor

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install -r requirements-flower.txt)")

GRID = {"method": ["fedavg", "ifca"], "seed": [0, 1]}
BASE = Config(rounds=3, clients=8, groups=2)
WALL = ["wall_seconds"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (``ray start`` and everything it started)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the node's session, then SIGKILL to whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        for pid in _session(process.pid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while _session(process.pid) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.2)
    process.poll()


@pytest.fixture(scope="module")
def cluster():
    """``HOST:PORT`` of a two-node Ray cluster on this machine: a head with no CPUs (so every task
    runs on the worker node, a separate set of processes) and a worker node with 2 CPUs."""
    import ray

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # a FutureWarning of Ray 2.5x
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="cfr", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    nodes = []
    try:
        with open(Path(temp) / "head.log", "w") as log:
            nodes.append(subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=0",
                                           "--include-dashboard=false", f"--temp-dir={temp}", *common],
                                          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and nodes[0].poll() is None, (Path(temp) / "head.log").read_text()
                time.sleep(0.5)
        with open(Path(temp) / "worker.log", "w") as log:
            nodes.append(subprocess.Popen([ray_bin, "start", f"--address={address}", "--num-cpus=2", *common],
                                          stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        try:
            while ray.cluster_resources().get("CPU", 0) < 2:
                assert time.monotonic() < deadline, (Path(temp) / "worker.log").read_text()
                time.sleep(0.5)
        finally:
            ray.shutdown()
        yield address
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp, ignore_errors=True)
    assert not any(_session(node.pid) for node in nodes), "a Ray process outlived the test"


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(out / "results.csv").drop(columns=WALL), pd.read_csv(out / "ari_per_round.csv")


@needs_ray
def test_ray_gives_the_local_results_and_resumes(cluster, tmp_path, caplog):
    local = compare(GRID, tmp_path / "local", workers=2, base=BASE)
    remote = compare(GRID, tmp_path / "ray", base=BASE, executor="ray", address=cluster)
    assert (local["error"] == "").all() and (remote["error"] == "").all()
    assert remote["ari"].tolist() == local["ari"].tolist() and set(remote["ari"]) == {0.0, 1.0}
    for a, b in zip(_tables(tmp_path / "local"), _tables(tmp_path / "ray")):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    for cell in local["cell"]:  # the same models, to the byte, and the same run files
        left, right = tmp_path / "local" / "cells" / cell, tmp_path / "ray" / "cells" / cell
        assert (left / "models.npz").read_bytes() == (right / "models.npz").read_bytes()
        assert sorted(p.name for p in left.iterdir()) == sorted(p.name for p in right.iterdir())

    # resume: a second call runs nothing; a removed cell is the only one run again
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cells").glob("*/summary.json")}
    gone = tmp_path / "ray" / "cells" / local["cell"][3]
    shutil.rmtree(gone)
    with caplog.at_level(logging.INFO, logger="cflkit"):
        again = compare(GRID, tmp_path / "ray", base=BASE, executor="ray", address=cluster)
    assert "4 cells, 1 to run" in caplog.text
    assert (again["error"] == "").all() and (gone / "summary.json").is_file()
    assert {p: p.stat().st_mtime_ns for p in stamps if p.parent != gone} == \
        {p: t for p, t in stamps.items() if p.parent != gone}
    pd.testing.assert_frame_equal(_tables(tmp_path / "local")[0], _tables(tmp_path / "ray")[0], check_exact=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cflkit"):  # what one executor ran, the other resumes
        compare(GRID, tmp_path / "local", base=BASE, executor="ray", address=cluster)
    assert "4 cells, 0 to run" in caplog.text


def _kill_a_cell(stop: threading.Event, killed: list) -> None:
    """SIGKILL the first Ray worker seen running a cell (its process title is ``ray::ray_cell``)."""
    while not stop.is_set():
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes().startswith(b"ray::ray_cell"):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
                    killed.append(int(cmdline.parent.name))
                    return
            except OSError:
                continue
        time.sleep(0.05)


def _compare_killing_one(out: Path, cluster: str, retries: int) -> tuple[pd.DataFrame, list]:
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_cell, args=(stop, killed))
    killer.start()
    try:  # 40 rounds: the cells run long enough to be caught
        results = compare({"method": ["ifca"], "seed": [0, 1]}, out, base=BASE.replace(rounds=40),
                          executor="ray", address=cluster, retries=retries)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "no Ray worker was seen running a cell"
    return results, killed


@needs_ray
def test_a_killed_ray_worker_costs_only_its_cell(cluster, tmp_path):
    retried, _ = _compare_killing_one(tmp_path / "retried", cluster, retries=1)
    assert (retried["error"] == "").all(), "Ray runs a cell whose worker died again"

    failed, _ = _compare_killing_one(tmp_path / "failed", cluster, retries=0)
    errors = failed.set_index("cell")["error"]
    assert (errors != "").sum() == 1, errors
    lost = errors[errors != ""].index[0]
    assert "died" in errors[lost].lower() and "\n" not in errors[lost]
    assert not (tmp_path / "failed" / "cells" / lost).exists(), "a killed cell leaves no directory"
    kept = errors[errors == ""].index[0]
    assert (tmp_path / "failed" / "cells" / kept / "summary.json").is_file()

    again = compare({"method": ["ifca"], "seed": [0, 1]}, tmp_path / "failed", base=BASE.replace(rounds=40),
                    executor="ray", address=cluster, retries=0)
    assert (again["error"] == "").all(), "the next call runs the failed cell"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "failed" / "results.csv").drop(columns=WALL),
                                  pd.read_csv(tmp_path / "retried" / "results.csv").drop(columns=WALL),
                                  check_exact=True)


@needs_ray
@pytest.mark.notebook
def test_batch_runs_land_as_local_ones_do(cluster, tmp_path):
    from test_batch import tiny_notebook, write_experiment

    nb = tiny_notebook(tmp_path / "nb.ipynb")
    exp = batch.load_experiment(write_experiment(tmp_path, [
        {"name": "sq", "notebook": str(nb), "grid": {"x": [1, 2, 3]}, "tables": ["result.csv"]},
        {"name": "boom", "notebook": str(nb), "parameters": {"fail": True}}]))
    _, local = batch.run_batch(exp, workers=2, root=tmp_path / "local")
    _, remote = batch.run_batch(exp, workers=2, root=tmp_path / "ray", executor="ray", address=cluster)
    assert len(remote) == 4
    index = {name: pd.read_csv(tmp_path / name / "t" / "index.csv").set_index("label") for name in ("local", "ray")}
    same = ["key", "status", "parameters"]
    pd.testing.assert_frame_equal(index["local"][same], index["ray"][same])
    assert "asked to fail" in index["ray"].loc["boom", "error"]
    for label, row in index["ray"].iterrows():
        run_dir = Path(row["path"])
        assert run_dir.is_relative_to(tmp_path / "ray" / "t") and (run_dir / "executed.ipynb").is_file()
        assert (run_dir / "run.log").stat().st_size > 0 and (run_dir / "status.json").is_file()
        if row["status"] == "done":
            x = int(label.split("=")[1].rstrip("]"))
            assert pd.read_csv(run_dir / "out" / "result.csv").loc[0, "square"] == x * x
    assert not list((tmp_path / "ray" / "t" / ".tmp").iterdir())
    _, again = batch.run_batch(exp, workers=2, root=tmp_path / "ray", executor="ray", address=cluster)
    assert [s["label"] for s in again] == ["boom"], "done runs are never run twice; the failed one is retried"


@pytest.mark.parametrize("kwargs, message", [
    ({"executor": "spark"}, "executor must be one of local, ray; got 'spark'"),
    ({"executor": "local", "address": "10.0.0.5:6379"}, "only for executor 'ray'"),
    ({"executor": "ray", "address": "head node"}, "Ray address must be HOST:PORT"),
    ({"executor": "ray", "address": "10.0.0.5:6379", "retries": -1}, "retries must be an integer >= 0, got -1"),
])
def test_bad_executor_settings_are_refused_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        compare(GRID, tmp_path / "out", base=BASE, **kwargs)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_executor(**kwargs)


@needs_ray
def test_an_address_where_no_head_node_listens_is_one_clear_error(tmp_path, capsys):
    from cflkit.cli import main

    port = _free_port()  # nothing listens there
    with pytest.raises(ConnectionError, match=f"no Ray head node answers at 127.0.0.1:{port}"):
        compare(GRID, tmp_path / "out", base=BASE, executor="ray", address=f"127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()
    assert main(["compare", "--methods", "fedavg", "--executor", "ray", "--address", f"127.0.0.1:{port}",
                 "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Ray head node answers" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["compare", "--methods", "fedavg", "--executor", "spark"], "invalid choice: 'spark'"),
    (["compare", "--methods", "fedavg", "--address", "10.0.0.5:6379"], "only for executor 'ray'"),
    (["compare", "--methods", "fedavg", "--executor", "ray", "--retries", "-2"], "must be >= 0, got -2"),
    (["batch", "experiments/paper.yaml", "--address", "10.0.0.5:6379"], "only for executor 'ray'"),
])
def test_cli_executor_options_are_checked(argv, message, capsys, tmp_path, monkeypatch):
    from cflkit.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "compare" else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and len([line for line in err if "error" in line]) == 1
