"""The vectorised trainer against the per-client reference loop (bench/reference.py)."""
import numpy as np
import pytest
from reference import CompiledLoop

from cflkit import Config, federation_from
from cflkit.core.models import build_model
from cflkit.core.trainer import Trainer, batch_plan, initial_weights, seed_keras, stack


def test_batch_plan_visits_every_sample_once_per_epoch_in_ceil_n_over_b_steps():
    sizes = [1, 7, 10, 23]
    index, mask = batch_plan(sizes, batch_size=5, epochs=3, rng=np.random.default_rng(0))
    assert index.shape == (4, 3 * 5, 5)
    for c, n in enumerate(sizes):
        steps = -(-n // 5)
        active = mask[c].sum(axis=1) > 0
        assert active[:3 * steps].all() and not active[3 * steps:].any(), "a client is busy first, idle after"
        for e in range(3):
            seen = index[c, e * steps:(e + 1) * steps][mask[c, e * steps:(e + 1) * steps] > 0]
            assert sorted(seen.tolist()) == list(range(n))


def test_batch_plan_rejects_empty_clients():
    with pytest.raises(ValueError, match="at least one training sample"):
        batch_plan([3, 0], 2, 1, np.random.default_rng(0))


def _setup(scenario, clients, **trainer_kwargs):
    fed = federation_from(Config(scenario=scenario, clients=clients))
    seed_keras(0)
    model = build_model("mlp", fed.input_shape, fed.n_outputs, (32, 16))
    weights = stack(initial_weights(lambda: model), clients)
    return fed, model, weights


@pytest.mark.parametrize("scenario, epochs, mu", [
    ("rotation", 1, 0.0),               # equal client sizes
    ("rotation+quantity_skew", 2, 0.0),  # unequal sizes: masking
    ("quantity_skew", 1, 0.5),          # FedProx's proximal term
])
def test_vectorised_trainer_matches_the_per_client_loop(scenario, epochs, mu):
    fed, model, weights = _setup(scenario, 6)
    trainer = Trainer(model, fed.x, fed.y, learning_rate=0.1, batch_size=8, local_epochs=epochs)
    fast = trainer.train(weights, fed.train_index, np.random.default_rng(3), mu=mu)
    slow = CompiledLoop(model, fed.x, fed.y, learning_rate=0.1).train(
        weights, fed.train_index, np.random.default_rng(3), batch_size=8, epochs=epochs, mu=mu)
    for f, s, w in zip(fast, slow, weights):
        np.testing.assert_allclose(f, s, atol=2e-5)
        assert np.abs(f - w).max() > 1e-3, "training must move the weights"


def test_training_is_deterministic_for_a_seed_and_clients_do_not_interact():
    fed, model, weights = _setup("iid", 4)
    trainer = Trainer(model, fed.x, fed.y, learning_rate=0.1, batch_size=8)
    a = trainer.train(weights, fed.train_index, np.random.default_rng(1))
    b = trainer.train(weights, fed.train_index, np.random.default_rng(1))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # client 0 alone gets the same result as client 0 among others (same minibatch order)
    alone = trainer.train([w[:1] for w in weights], fed.train_index[:1], np.random.default_rng(1))
    for x, y in zip(a, alone):
        np.testing.assert_allclose(x[:1], y, atol=2e-6)


def test_evaluate_reports_loss_and_accuracy_per_client():
    fed, model, weights = _setup("iid", 3)
    trainer = Trainer(model, fed.x, fed.y)
    loss, acc = trainer.evaluate(weights, fed.test_index)
    assert loss.shape == acc.shape == (3,)
    assert np.all(np.abs(loss - np.log(10)) < 1.0)  # untrained: near chance
    outputs = trainer.predict(weights, fed.test_index)
    manual = [(o.argmax(1) == fed.y[rows]).mean() for o, rows in zip(outputs, fed.test_index)]
    np.testing.assert_allclose(acc, manual)


def test_a_thousand_clients_of_a_64_64_10_mlp_train_in_one_process():
    fed = federation_from(Config(scenario="iid", clients=1000, samples_per_client=40))
    seed_keras(0)
    model = build_model("mlp", fed.input_shape, 10, (64, 64))
    trainer = Trainer(model, fed.x, fed.y, batch_size=32)
    out = trainer.train(stack(initial_weights(lambda: model), 1000), fed.train_index, np.random.default_rng(0))
    assert out[0].shape == (1000, 64, 64)
    assert np.all(np.isfinite(out[0]))


@pytest.mark.slow
def test_ten_thousand_clients_train_in_one_process_each_exactly_as_alone():
    """Every client holds the same 10 rows, one full batch: one step, the same for all 10,000
    (the order inside a batch does not change its mean gradient) and the same as one client alone."""
    fed = federation_from(Config(scenario="iid", clients=4, samples_per_client=40))
    seed_keras(0)
    model = build_model("mlp", fed.input_shape, 10, (64, 64))
    trainer = Trainer(model, fed.x, fed.y, batch_size=10, local_epochs=1)
    rows = fed.train_index[0][:10]
    start = initial_weights(lambda: model)
    alone = trainer.train(stack(start, 1), [rows], np.random.default_rng(1))
    out = trainer.train(stack(start, 10_000), [rows] * 10_000, np.random.default_rng(0))
    for a, w, s in zip(alone, out, start):
        assert w.shape == (10_000, *s.shape)
        assert np.allclose(w, a, atol=1e-6)
    assert not np.allclose(out[0][0], start[0])


def test_a_cnn_maps_its_clients_with_map_fn_and_matches_the_per_client_loop():
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 12, 12, 1)).astype(np.float32), rng.integers(0, 3, 300)
    seed_keras(0)
    model = build_model("cnn", (12, 12, 1), 3, (16,))
    start = stack(initial_weights(lambda: model), 3)
    index = [np.arange(0, 25), np.arange(30, 42), np.arange(50, 53)]  # unequal sizes: idle steps are masked
    trainer = Trainer(model, x, y, batch_size=5, local_epochs=2, learning_rate=0.1)
    assert trainer._map == "map_fn" and Trainer(build_model("mlp", (4,), 2), x[:, 0, :4, 0], y)._map == "vmap"
    ours = trainer.train(start, index, np.random.default_rng(7))
    loop = CompiledLoop(model, x, y, learning_rate=0.1).train(start, index, np.random.default_rng(7), 5, 2)
    vmap = Trainer(model, x, y, batch_size=5, local_epochs=2, learning_rate=0.1, client_map="vmap")
    for a, b, c in zip(ours, loop, vmap.train(start, index, np.random.default_rng(7))):
        assert np.allclose(a, b, atol=1e-5) and np.allclose(a, c, atol=1e-5)
    with pytest.raises(ValueError, match="unknown client_map 'pmap'; choose one of: auto, vmap, map_fn"):
        Trainer(model, x, y, client_map="pmap")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_sharded_training_is_the_unsharded_one_up_to_rounding(optimizer):
    fed, model, weights = _setup("rotation+quantity_skew", 7)
    kw = dict(learning_rate=0.1, batch_size=8, local_epochs=2, optimizer=optimizer)
    one = Trainer(model, fed.x, fed.y, **kw).train(weights, fed.train_index, np.random.default_rng(3))
    three = Trainer(model, fed.x, fed.y, shards=3, **kw).train(weights, fed.train_index, np.random.default_rng(3))
    for a, b, w in zip(one, three, weights):
        assert a.shape == b.shape == w.shape
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="shards must be >= 1, got 0"):
        Trainer(model, fed.x, fed.y, shards=0)


def test_models_with_non_trainable_state_are_refused():
    from cflkit.core._tf import keras

    k = keras()
    model = k.Sequential([k.Input((4,)), k.layers.BatchNormalization(), k.layers.Dense(2)])
    with pytest.raises(ValueError, match="non-trainable state"):
        Trainer(model, np.zeros((3, 4), np.float32), np.zeros(3, np.int64))


def test_gradients_of_one_client_are_dense_and_match_the_stacked_call():
    # With a single client TensorFlow may return the first layer's gradient as a sparse
    # IndexedSlices; Trainer.gradients must still give one dense array per layer.
    from cflkit.core.experiment import build_context

    config = Config(clients=4, rounds=1)
    fed = federation_from(config)
    ctx = build_context(config, fed)
    many = ctx.trainer.gradients(stack(ctx.initial_weights, 4), fed.train_index)
    for c in (0, 3):
        one = ctx.trainer.gradients(stack(ctx.initial_weights, 1), [fed.train_index[c]])
        assert [g.shape for g in one] == [(1, *w.shape) for w in ctx.initial_weights]
        for g1, gm in zip(one, many):
            np.testing.assert_allclose(g1[0], gm[c], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("scenario, epochs", [("rotation", 1), ("rotation+quantity_skew", 2)])
def test_each_client_optimizer_matches_keras_own_optimizer_client_by_client(optimizer, scenario, epochs):
    """Momentum and Adam with Keras's update rules, per client, state reset at the start of the
    round; with unequal sizes the idle (masked) steps leave weights and state untouched, so
    every client matches a Keras optimizer that simply takes its own steps."""
    from reference import train_with_keras_optimizer

    fed, model, weights = _setup(scenario, 5)
    settings = dict(momentum=0.8, beta1=0.85, beta2=0.99, epsilon=1e-6)  # not the defaults: they must be used
    trainer = Trainer(model, fed.x, fed.y, learning_rate=0.02, batch_size=8, local_epochs=epochs,
                      optimizer=optimizer, **settings)
    fast = trainer.train(weights, fed.train_index, np.random.default_rng(3))
    slow = train_with_keras_optimizer(model, weights, fed.x, fed.y, fed.train_index, np.random.default_rng(3),
                                      batch_size=8, epochs=epochs, optimizer=optimizer, learning_rate=0.02,
                                      **settings)
    for f, s, w in zip(fast, slow, weights):
        np.testing.assert_allclose(f, s, atol=5e-5)
        assert np.abs(f - w).max() > 1e-3, "training must move the weights"


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_small_client_trains_with_an_optimizer_exactly_as_alone(optimizer):
    fed, model, weights = _setup("rotation+quantity_skew", 4)
    sizes = [len(s) for s in fed.train_index]
    small = int(np.argmin(sizes))
    assert min(sizes) < max(sizes)
    trainer = Trainer(model, fed.x, fed.y, learning_rate=0.02, batch_size=8, local_epochs=2, optimizer=optimizer)
    together = trainer.train(weights, fed.train_index, np.random.default_rng(5))
    # the same minibatch order for the small client alone: replay its permutations
    rng = np.random.default_rng(5)
    for c in range(small):
        for _ in range(2):
            rng.permutation(sizes[c])
    alone = trainer.train([w[small:small + 1] for w in weights], [fed.train_index[small]], rng)
    for t, a in zip(together, alone):
        np.testing.assert_allclose(t[small:small + 1], a, atol=2e-6)


def test_trainers_of_one_architecture_share_their_traces_and_train_exactly_as_alone(monkeypatch):
    """A worker of ``compare`` traces once per architecture, not once per cell: a second
    trainer of the same architecture (a new model, other layer names, other data) reuses the
    first one's compiled functions, and trains exactly as a trainer with functions of its own."""
    from cflkit.core import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "_COMPILED", {})
    fed_a, model_a, _ = _setup("rotation", 8)
    fed_b, model_b, weights_b = _setup("label_swap", 6)  # another model (new layer names), other rows
    assert model_a.layers[1].name != model_b.layers[1].name
    a = Trainer(model_a, fed_a.x, fed_a.y, batch_size=10, local_epochs=1)
    a.train(stack(initial_weights(lambda: model_a), 8), fed_a.train_index, np.random.default_rng(0))
    b = Trainer(model_b, fed_b.x, fed_b.y, batch_size=10, local_epochs=1)
    assert b._train_fn is a._train_fn and b._predict_fn is a._predict_fn
    shared = b.train(weights_b, fed_b.train_index, np.random.default_rng(1))

    monkeypatch.setattr(trainer_module, "_COMPILED", {})  # the same trainer with functions of its own
    alone = Trainer(model_b, fed_b.x, fed_b.y, batch_size=10, local_epochs=1)
    assert alone._train_fn is not a._train_fn
    own = alone.train(weights_b, fed_b.train_index, np.random.default_rng(1))
    assert all(np.array_equal(s, o) for s, o in zip(shared, own))

    other = Trainer(build_model("mlp", fed_b.input_shape, fed_b.n_outputs, (32, 8)), fed_b.x, fed_b.y)
    assert other._train_fn is not alone._train_fn, "another architecture gets functions of its own"
    adam = Trainer(model_b, fed_b.x, fed_b.y, optimizer="adam")
    assert adam._train_fn is not alone._train_fn, "so do other training settings"
