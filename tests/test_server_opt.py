"""Server optimizers (FedAvgM, Hsu et al. 2019; FedAdagrad / FedAdam / FedYogi, Reddi et al.
2021) against a coordinate-by-coordinate transcription of the papers' update rules."""
import math

import numpy as np
import pytest

from cflkit import Config, federation_from
from cflkit.core.experiment import build_context, validate
from cflkit.core.loop import Hooks, run_rounds
from cflkit.core.server_opt import SERVER_OPTIMIZERS, ServerOptimizer, lineage, server_step
from cflkit.methods import make_method

RULES = [r for r in SERVER_OPTIMIZERS if r != "none"]


class Paper:
    """Reddi et al. 2021, Algorithm 2 (and Hsu et al.'s momentum), one coordinate at a time,
    in Python floats: m_{-1} = 0, v_{-1} = tau^2; no bias correction."""

    def __init__(self, rule, lr, beta=0.9, b1=0.9, b2=0.99, tau=1e-3):
        self.rule, self.lr, self.beta, self.b1, self.b2, self.tau = rule, lr, beta, b1, b2, tau
        self.m, self.v = {}, {}

    def step(self, key, x: float, d: float) -> float:
        m = self.m.get(key, 0.0)
        v = self.v.get(key, self.tau ** 2)
        if self.rule == "none":
            x = x + self.lr * d
        elif self.rule == "fedavgm":
            m = self.beta * m + d
            x = x + self.lr * m
        else:
            m = self.b1 * m + (1 - self.b1) * d
            if self.rule == "fedadagrad":
                v = v + d ** 2
            elif self.rule == "fedadam":
                v = self.b2 * v + (1 - self.b2) * d ** 2
            else:  # fedyogi
                s = v - d ** 2
                v = v - (1 - self.b2) * d ** 2 * (0.0 if s == 0 else math.copysign(1.0, s))
            x = x + self.lr * m / (math.sqrt(v) + self.tau)
        self.m[key], self.v[key] = m, v
        return x


@pytest.mark.parametrize("rule", SERVER_OPTIMIZERS)
def test_each_rule_follows_the_papers_update_over_several_rounds(rule):
    rng = np.random.default_rng(1)
    x = rng.normal(size=5)
    m = np.zeros(5)
    v = np.full(5, 1e-6 if rule in ("fedadam", "fedyogi", "fedadagrad") else 0.0)
    paper, xs = Paper(rule, lr=0.05), x.tolist()
    for _ in range(6):
        d = rng.normal(scale=rng.uniform(0.01, 1.0), size=5)
        x, m, v = server_step(rule, x, d, m, v, lr=0.05)
        xs = [paper.step(j, xs[j], float(d[j])) for j in range(5)]
        assert np.allclose(x, xs, rtol=1e-12, atol=1e-12)


def test_yogi_and_adam_differ_only_in_the_second_moment():
    d = np.array([0.5, -2.0])
    state = (np.zeros(2), np.full(2, 1e-6))
    adam = server_step("fedadam", np.zeros(2), d, *state, lr=0.1)
    yogi = server_step("fedyogi", np.zeros(2), d, *state, lr=0.1)
    assert np.array_equal(adam[1], yogi[1])  # same first moment
    assert np.allclose(adam[2], 1e-6 * 0.99 + 0.01 * d ** 2)  # Adam: an average
    assert np.allclose(yogi[2], 1e-6 + 0.01 * d ** 2)  # Yogi: additive while v < d^2


def _recorded_run(config):
    """Run ``config`` through the round loop, recording every round's start model, the
    clients that trained and the models they sent, and the global model after the round."""
    fed = federation_from(config)
    ctx = build_context(config, fed)
    calls, after = [], []
    train = ctx.trainer.train

    def recording(start, index_sets, rng, mu=0.0):
        out = train(start, index_sets, rng, mu=mu)
        calls.append(([w.copy() for w in start], [w.copy() for w in out]))
        return out

    ctx.trainer.train = recording

    class Record(Hooks):
        def end_round(self, r, state):
            after.append(([w.copy() for w in state.models], ctx.sampled.copy(), ctx.returned.copy()))

    run_rounds(make_method(config), ctx, config.rounds, hooks=Record())
    return fed, calls, after


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("partial", [False, True])
def test_fedavg_with_a_server_optimizer_is_the_papers_algorithm_on_the_clients_updates(rule, partial):
    extra = dict(participation=0.5, dropout=0.2) if partial else {}
    config = Config(method="fedavg", clients=6, groups=2, rounds=4, local_epochs=1, server_optimizer=rule,
                    server_learning_rate=0.05, seed=3, **extra)
    fed, calls, after = _recorded_run(config)
    assert len(calls) == config.rounds
    paper = Paper(rule, lr=0.05)
    x = [w[0].astype(np.float64).ravel().tolist() for w in calls[0][0]]  # round 1 starts from the initial model
    for (start, trained), (models, sampled, returned) in zip(calls, after):
        keep = np.isin(sampled, returned)
        sizes = fed.sizes[returned].astype(np.float64)
        for layer, (s, t) in enumerate(zip(start, trained)):
            assert np.allclose(s[0].ravel(), x[layer], atol=1e-6)  # the clients started from the server's model
            if keep.any():
                delta = np.tensordot(sizes / sizes.sum(), (t[keep] - s[keep]).astype(np.float64), axes=(0, 0)).ravel()
                x[layer] = [paper.step((layer, j), x[layer][j], float(delta[j])) for j in range(len(delta))]
            assert np.allclose(models[layer][0].ravel(), x[layer], rtol=1e-5, atol=1e-6), (rule, layer)


@pytest.mark.parametrize("method", ["fedavg", "ifca", "sattler", "cornflqs", "clustered", "fedgroup"])
def test_momentum_zero_at_step_one_is_plain_averaging_for_every_method(method):
    from cflkit import run

    base = Config(method=method, clients=8, groups=2, rounds=4, local_epochs=1, participation=0.75, seed=1)
    plain = run(base)
    same = run(base.replace(server_optimizer="fedavgm", server_momentum=0.0, server_learning_rate=1.0))
    assert np.array_equal(plain.state.assignment, same.state.assignment)
    for a, b in zip(plain.state.models, same.state.models):
        assert np.allclose(a, b, atol=1e-5)
    moved = run(base.replace(server_optimizer="fedadam"))
    assert not all(np.allclose(a, b, atol=1e-5) for a, b in zip(plain.state.models, moved.state.models))


def test_a_new_cluster_starts_from_its_parents_state_and_an_idle_cluster_is_kept():
    opt = ServerOptimizer("fedadam", lr=0.1)
    before = [np.zeros((1, 3))]
    r1 = opt.step(before, [np.ones((1, 3))], [0, 0, 0, 0], [0, 0, 0, 0], [True])
    m_parent, v_parent = opt.m[0][0].copy(), opt.v[0][0].copy()
    # cluster 0 splits: clients 2, 3 form cluster 1, which got an update; then cluster 1 idles
    after = [np.concatenate([r1[0] + 0.5, r1[0] - 0.5])]
    r2 = opt.step(r1, after, [0, 0, 0, 0], [0, 0, 1, 1], [True, True])
    x1, m1, v1 = server_step("fedadam", r1[0][0], -0.5 * np.ones(3), m_parent, v_parent, lr=0.1)
    assert np.allclose(r2[0][1], x1) and np.allclose(opt.m[0][1], m1) and np.allclose(opt.v[0][1], v1)
    m_kept = opt.m[0][1].copy()
    r3 = opt.step(r2, [np.concatenate([r2[0][:1] + 1, r2[0][1:]])], [0, 0, 1, 1], [0, 0, 1, 1], [True, False])
    assert np.array_equal(r3[0][1], r2[0][1]) and np.array_equal(opt.m[0][1], m_kept)


def test_lineage_follows_ids_and_gives_a_new_cluster_its_members_old_cluster():
    assert lineage(1, [0, 0, 0, 0], [0, 1, 2, 2]).tolist() == [0, 0, 0]
    assert lineage(3, [0, 1, 2, 2], [0, 1, 2, 3]).tolist() == [0, 1, 2, 2]
    assert lineage(2, [1, 1, 0], [0, 1, 1]).tolist() == [0, 1]  # kept ids keep their state (IFCA)


@pytest.mark.parametrize("changes, words", [
    (dict(server_optimizer="adamw"), "unknown server_optimizer 'adamw'; choose one of: none, fedavgm, fedadam"),
    (dict(server_learning_rate=-1), "server_learning_rate must be >= 0"),
    (dict(server_beta2=1.0), r"server_beta2 must be in \[0, 1\)"),
    (dict(server_tau=0), "server_tau must be > 0"),
    (dict(method="local", server_optimizer="fedadam"), "method 'local' averages no updates"),
    (dict(method="centralized", server_learning_rate=0.5), "method 'centralized' averages no updates"),
])
def test_bad_server_optimizer_settings_are_refused_with_the_choices(changes, words):
    with pytest.raises(ValueError, match=words):
        validate(Config(**changes))


def test_the_cli_refuses_an_unknown_server_optimizer_in_one_line(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "cflkit", "run", "--set", "server_optimizer=fedsgd", "--out",
                           str(out)], capture_output=True, text=True)
    assert done.returncode == 2 and not out.exists()
    assert "unknown server_optimizer 'fedsgd'" in done.stderr and "Traceback" not in done.stderr
