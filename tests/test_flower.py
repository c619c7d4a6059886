"""cflkit on Flower: the message protocol, the dropout rules, the simulation engine and a real
localhost federation (SuperLink + one SuperNode process per Heart Disease hospital).

Flower is an optional dependency (requirements-flower.txt). Without it only the tests that
need no flwr run here; CI installs it so that none of these is skipped.
"""
import importlib.util
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from cflkit.flower.protocol import Replay, draw_permutations, imputed_update, pack, unpack

needs_flwr = pytest.mark.skipif(importlib.util.find_spec("flwr") is None,
                                reason="Flower is optional: pip install -r requirements-flower.txt")
HEART = dict(dataset="heart_disease", scenario="natural", local_epochs=1)  # clusters=2 for methods that take it


def _have_heart():
    from cflkit.data import DataError

    try:
        from cflkit.core.datasets import load_dataset
        load_dataset("heart_disease")
        return True
    except (DataError, OSError):
        return False


# -- protocol (no flwr) ------------------------------------------------------------------------
def test_pack_unpack_round_trip():
    sets = [np.array([5, 2, 9]), np.array([], dtype=int), np.array([1])]
    flat, offsets = pack(sets)
    assert offsets.tolist() == [0, 3, 3, 4]
    assert [s.tolist() for s in unpack(flat, offsets)] == [s.tolist() for s in sets]


def test_replayed_permutations_give_the_in_process_batch_plan():
    from cflkit.core.trainer import batch_plan

    sizes, batch, epochs = [7, 23, 1, 10], 4, 3
    expected = batch_plan(sizes, batch, epochs, np.random.default_rng(5))
    perms = draw_permutations(sizes, epochs, np.random.default_rng(5))
    got = batch_plan(sizes, batch, epochs, Replay([p for per_client in perms for p in per_client]))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    with pytest.raises(ValueError, match="asked for 8"):
        Replay([np.arange(7)]).permutation(8)


def test_dropped_client_is_excluded_from_every_cluster_average():
    from cflkit.core.aggregate import cluster_average

    rng = np.random.default_rng(0)
    start = [np.repeat(rng.normal(size=(2, 3)), [3, 2], axis=0)]  # clients 0-2 in cluster 0, 3-4 in 1
    trained = [start[0] + rng.normal(size=start[0].shape)]
    sizes, assignment = np.array([10, 30, 20, 5, 7]), np.array([0, 0, 0, 1, 1])
    responded = [0, 2, 3, 4]  # client 1 dropped
    filled = [t.copy() for t in trained]
    filled[0][1] = imputed_update(start, trained, sizes, responded, 1)[0]
    with_fill = cluster_average(filled, sizes, assignment, 2)
    alone = cluster_average([trained[0][responded]], sizes[responded], assignment[responded], 2)
    np.testing.assert_allclose(with_fill[0], alone[0], rtol=1e-6)
    # nobody else started from its model: it keeps its starting weights (no update)
    np.testing.assert_array_equal(imputed_update(start, trained, sizes, [0, 1, 2], 3)[0], start[0][3])


# -- missing flwr: a clear message --------------------------------------------------------------
def test_missing_flwr_gives_an_install_hint(monkeypatch, capsys):
    import cflkit.flower as fl
    from cflkit.cli import main

    monkeypatch.setitem(sys.modules, "flwr", None)  # makes `import flwr` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'cflkit\[flower\]'"):
        fl.require_flwr()
    assert main(["flower", "app", "unused-dir"]) == 1
    assert "requirements-flower.txt" in capsys.readouterr().err


def test_cli_help_and_import_do_not_load_flwr_or_tensorflow():
    code = ("import sys, cflkit, cflkit.flower, cflkit.cli; cflkit.cli._parser(); "
            "print(sorted(m for m in ('flwr', 'tensorflow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@needs_flwr
def test_cli_writes_a_flower_app_that_flower_accepts(tmp_path, capsys):
    from flwr.common.config import validate_config

    from cflkit.cli import main

    assert main(["flower", "app", str(tmp_path / "app")]) == 0
    import tomllib

    config = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(config)
    assert ok, errors
    components = config["tool"]["flwr"]["app"]["components"]
    import importlib

    for ref in components.values():  # the references load the two apps
        module, attr = ref.split(":")
        assert getattr(importlib.import_module(module), attr) is not None


# -- the trainer proxy against an in-memory grid (flwr messages, no processes) --------------------


class MemoryGrid:
    """A Grid whose nodes answer in this process (node id = 100 + client); clients in
    ``dead`` never answer, as a killed process."""

    def __init__(self, n, dead=()):
        from flwr.supercore.task_identity import TaskIdentity

        self.n, self.dead = n, set(dead)
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1  # as Flower sets in a ServerApp

    def get_node_ids(self):
        return [100 + c for c in range(self.n)]

    def send_and_receive(self, messages, timeout=None):
        from cflkit.flower.node import answer

        replies = []
        for m in messages:
            client = m.metadata.dst_node_id - 100
            if client in self.dead:
                continue
            task = m.content["task"]
            content = {"task": {"partition": client}}
            if task["op"] != "partition":
                arrays = {k: m.content[k].to_numpy_ndarrays() for k in m.content.array_records}
                out = answer(task["op"], task["config"], client, arrays, float(task.get("mu", 0.0)))
                content["result"] = SimpleNamespace(to_numpy_ndarrays=lambda out=out: out)
            replies.append(SimpleNamespace(metadata=SimpleNamespace(src_node_id=m.metadata.dst_node_id),
                                           has_error=lambda: False, content=content))
        return replies


def _digits(**kw):
    from cflkit import Config

    return Config(**{**dict(clients=4, groups=2, rounds=2, local_epochs=1, scenario="label_swap"), **kw})


@needs_flwr
def test_grid_run_equals_the_in_process_run():
    from cflkit import run
    from cflkit.flower import run_on_grid

    config = _digits(method="ifca", restarts=2)
    a, b = run(config), run_on_grid(MemoryGrid(4), config)
    assert a.summary["n_clusters"] == 2
    np.testing.assert_array_equal(a.history["cluster"], b.history["cluster"])
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], atol=1e-5)
    np.testing.assert_allclose(a.history["accuracy"], b.history["accuracy"], atol=1e-9)
    assert b.summary["dropouts"] == 0


@needs_flwr
@pytest.mark.parametrize("method, conditions", [
    ("ifca", dict(participation=0.5, dropout=0.3, restarts=2)),
    ("fedavg", dict(participation=0.5, min_participants=2, dropout=0.2)),
    ("oracle", dict(arrival_round=2, arrival_fraction=0.5, rounds=3)),
    ("flhc", dict(participation=0.5, warmup_rounds=1, rounds=4)),
    ("ifca", dict(participation=0.5, restarts=2, server_optimizer="fedadam")),  # the server step is the loop's
])
def test_client_sampling_dropouts_and_late_clients_give_the_in_process_history_on_a_grid(method, conditions):
    """The loop draws who takes part from the run's own stream on both paths: same clients
    sampled, same updates lost, same numbers; the nodes not sampled get no message."""
    from cflkit import run
    from cflkit.flower import run_on_grid

    config = _digits(clients=6, method=method, rounds=conditions.pop("rounds", 3), **conditions)
    a, b = run(config), run_on_grid(MemoryGrid(6), config)
    for column in ("cluster", "participated", "returned", "joined", "bytes_up", "bytes_down"):
        np.testing.assert_array_equal(a.history[column], b.history[column])
    np.testing.assert_allclose(a.history["accuracy"], b.history["accuracy"], atol=1e-9)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], atol=1e-5)
    assert b.summary["dropouts"] == 0 and a.history["participated"].sum() < 6 * config.rounds


@needs_flwr
def test_a_dead_client_is_dropped_and_the_round_completes():
    from cflkit.core.aggregate import cluster_average
    from cflkit.core.experiment import build_context, federation_from
    from cflkit.flower import FlowerTrainer
    from cflkit.methods import make_method

    config = _digits(method="ifca")
    fed = federation_from(config)
    ctx = build_context(config, fed)
    method = make_method(config)
    state = method.init(ctx)
    trainer = FlowerTrainer(ctx.trainer, fed, config, MemoryGrid(4, dead={2}), timeout=1)
    ctx.trainer = trainer
    trainer.begin_round(1, state.client_models())
    candidates = state.candidates
    rng_state = ctx.rng.bit_generator.state
    new, info = method.round(state, ctx, 1)
    assert trainer.dropped == {2}
    assert new.choice[2] == state.choice[2]  # it keeps its cluster
    # each candidate is the average of the clients that answered: redo the round by hand
    ctx.rng.bit_generator.state = rng_state
    ctx.trainer = trainer.local
    from cflkit.core.trainer import take
    from cflkit.methods.ifca import assign_by_loss, loss_matrix

    choice = assign_by_loss(loss_matrix(ctx, candidates))
    choice[2] = state.choice[2]
    trained = ctx.train(take(candidates, choice))
    live = np.array([0, 1, 3])
    used = np.unique(choice[live])
    avg = cluster_average([t[live] for t in trained], fed.sizes[live], np.searchsorted(used, choice[live]), len(used))
    for j, k in enumerate(used):
        np.testing.assert_allclose(new.candidates[0][k], avg[0][j], atol=1e-5)
    assert [e["event"] for e in trainer.events].count("dropped") == 1
    metrics = trainer.metrics(new.client_models(), fed.test_index)
    assert np.isnan(metrics["accuracy"][2]) and np.isfinite(np.delete(metrics["accuracy"], 2)).all()


def _federated_cases():
    from cflkit.methods import METHODS

    cases = [dict(method=m) for m in METHODS if m != "centralized"]
    # the server-side parts that call the trainer differently: gradients at the start, a probe set
    return cases + [dict(method="clustered", representation="gradient", trigger="init"),
                    dict(method="clustered", representation="outputs")]


@needs_flwr
@pytest.mark.parametrize("case", _federated_cases(), ids=lambda c: "-".join(map(str, c.values())))
def test_every_federated_method_runs_unchanged_on_a_grid(case):
    from cflkit import run
    from cflkit.flower import run_on_grid

    config = _digits(clients=6, **case)
    a, b = run(config), run_on_grid(MemoryGrid(6), config)
    np.testing.assert_array_equal(a.history["cluster"], b.history["cluster"])
    np.testing.assert_allclose(a.history["accuracy"], b.history["accuracy"], atol=1e-9)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], atol=1e-5)


@needs_flwr
def test_pooled_training_is_refused():
    from cflkit.flower import run_on_grid

    with pytest.raises(ValueError, match="pools clients' data"):
        run_on_grid(MemoryGrid(4), _digits(method="centralized", rounds=1))


# Flower's simulation engine: notebook 12's smoke test runs `simulate` and checks it against
# the in-process run (same assignments, same accuracies); not repeated here to save ~90 s.


# -- a real federation on localhost --------------------------------------------------------------------
@pytest.fixture(scope="module")
def localhost_federation(tmp_path_factory):
    from pathlib import Path

    saved = os.environ.get("CFLKIT_OFFLINE_DIRS")
    if not saved:  # as tests/test_notebooks.py: the offline copies beside the repository
        os.environ["CFLKIT_OFFLINE_DIRS"] = str(Path(__file__).resolve().parents[2] / "shared" / "data")
    if not _have_heart():
        pytest.skip("UCI Heart Disease not available: set CFLKIT_OFFLINE_DIRS or `cflkit data fetch heart_disease`")
    from cflkit.flower import LocalFederation

    fl = LocalFederation(4, workdir=tmp_path_factory.mktemp("flower"))
    try:
        fl.start()
        yield fl
    finally:
        fl.close()  # kills every process it started (process groups)
        if saved is None:
            os.environ.pop("CFLKIT_OFFLINE_DIRS", None)
        for p in [*fl.nodes.values(), fl.superlink]:
            assert p.poll() is not None


@needs_flwr
@pytest.mark.slow
@pytest.mark.parametrize("method", ["fedavg", "ifca"])
def test_localhost_federation_matches_the_in_process_run(localhost_federation, tmp_path, method):
    from cflkit import Config, params_for, run

    config = Config(**HEART, method=method, rounds=2, seed=2, **params_for(method, clusters=2))
    deployed = localhost_federation.run(config, tmp_path / "run", timeout=400, round_timeout=150, evaluate_every=2)
    local = run(config)
    assert local.summary["n_clusters"] == (2 if method == "ifca" else 1)  # seed 2: IFCA's K models both chosen
    assert deployed.summary["dropouts"] == 0
    last_d = deployed.history[deployed.history["round"] == 2]
    last_l = local.history[local.history["round"] == 2]
    np.testing.assert_array_equal(deployed.history["cluster"], local.history["cluster"])
    np.testing.assert_allclose(last_d["accuracy"], last_l["accuracy"], atol=1e-9)
    np.testing.assert_allclose(last_d["loss"], last_l["loss"], atol=1e-5)
    np.testing.assert_allclose(deployed.state.models[0], local.state.models[0], atol=1e-5)


@needs_flwr
@pytest.mark.slow
def test_killed_client_is_dropped_and_rejoins_after_restart(localhost_federation, tmp_path):
    from cflkit import Config
    from cflkit.core.results import load_run

    fl, victim = localhost_federation, 3
    config = Config(**HEART, method="fedavg", rounds=5, seed=2)
    proc = fl.submit(config, tmp_path / "run", round_timeout=40, evaluate_every=5)
    try:
        deadline = time.monotonic() + 300
        while fl.status().get("round", 0) < 2:  # round 2 has started: kill the hospital's process
            assert time.monotonic() < deadline and proc.poll() is None, fl.status()
            time.sleep(0.1)
        fl.kill_node(victim)
        while not fl.status().get("dropouts"):
            assert time.monotonic() < deadline and proc.poll() is None, fl.status()
            time.sleep(0.2)
        fl.start_node(victim)  # the hospital comes back: a new SuperNode, same partition-id
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = fl.result(tmp_path / "run", proc)
    h = result.history
    assert len(h) == 6 * 4  # rounds 0..5 x 4 clients: nothing lost
    dropped_rounds = sorted(h.loc[h["dropped"], "round"].unique())
    assert set(h.loc[h["dropped"], "client"]) == {victim}
    assert (h.loc[h["dropped"], "returned"] == 0).all()  # its update did not arrive
    assert (h.loc[(h["round"] > 0) & ~h["dropped"], ["participated", "returned"]] == 1).all().all()
    assert dropped_rounds and dropped_rounds[0] >= 2 and dropped_rounds[-1] < 5
    assert dropped_rounds == list(range(dropped_rounds[0], dropped_rounds[-1] + 1))
    final = h[h["round"] == 5]
    assert np.isfinite(final["accuracy"]).all()  # it is back and evaluated in the last round
    events = load_run(tmp_path / "run")  # the run directory holds the events too
    log = __import__("pandas").read_csv(tmp_path / "run" / "flower_events.csv")
    assert {"dropped", "rejoined"} <= set(log.loc[log["client"] == victim, "event"])
    assert events.summary["dropouts"] == len(dropped_rounds)
