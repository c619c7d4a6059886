"""Models: the built-in ones and a user's own, given as package.module:function or a callable."""
import json
import textwrap

import numpy as np
import pytest

from cflkit import Config, run
from cflkit.cli import main
from cflkit.core.models import build_model, resolve

USER_MODULE = textwrap.dedent('''
    import keras


    def small(input_shape, n_outputs):
        inputs = keras.Input(shape=input_shape)
        h = keras.layers.Dense(8, activation="tanh")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(n_outputs)(h))


    def normalised(input_shape, n_outputs):
        inputs = keras.Input(shape=input_shape)
        h = keras.layers.BatchNormalization()(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(n_outputs)(h))


    def two_outputs_short(input_shape, n_outputs):
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, keras.layers.Dense(n_outputs - 1)(keras.layers.Flatten()(inputs)))


    def not_a_model(input_shape, n_outputs):
        return "a string"
''')


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "lab_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


TINY = dict(clients=4, groups=2, rounds=2, local_epochs=1)


def test_logreg_is_one_linear_layer_and_learns_breast_cancer():
    model = build_model("logreg", (30,), 2)
    assert [tuple(w.shape) for w in model.trainable_weights] == [(30, 2), (2,)]
    s = run(Config(dataset="breast_cancer", scenario="iid", model="logreg", method="fedavg", clients=4, groups=1,
                   rounds=5)).summary
    assert s["accuracy_mean"] >= 0.9  # logistic regression separates breast_cancer (about 0.95 pooled)


def test_logreg_is_linear_regression_on_a_regression_task():
    model = build_model("logreg", (5, 2), 1)
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype("float32")
    w, b = (np.asarray(v) for v in model.trainable_weights)
    np.testing.assert_allclose(np.asarray(model(x)), x.reshape(3, -1) @ w + b, rtol=1e-5, atol=1e-6)


def test_a_users_model_by_module_and_function_trains_and_its_config_re_runs(user_models):
    config = Config(model="lab_models:small", **TINY)
    first = run(config, out=user_models / "RUN")
    saved = json.loads((user_models / "RUN" / "config.json").read_text())
    assert saved["model"] == "lab_models:small"
    again = run(Config.from_dict(saved))
    assert first.history["loss"].equals(again.history["loss"])
    assert first.summary["accuracy_mean"] > 0.2  # it trained (10 classes: chance is 0.1)


def test_a_callable_from_python_is_recorded_by_its_name(user_models):
    import lab_models

    config = Config(model=lab_models.small, **TINY)
    assert config.model == "lab_models:small" and resolve(config.model) is lab_models.small

    def local_net(input_shape, n_outputs):  # not importable by name: remembered for this process
        return lab_models.small(input_shape, n_outputs)

    named = Config(model=local_net, **TINY)
    assert named.model.endswith("local_net") and resolve(named.model) is local_net
    assert run(named).history["loss"].notna().all()


@pytest.mark.parametrize("function, words", [
    ("normalised", "has non-trainable state"),
    ("two_outputs_short", "outputs shape (9,) per sample; this task needs (10,)"),
    ("not_a_model", "returned a str, expected a keras.Model"),
])
def test_a_users_model_that_cannot_serve_is_one_line_before_training(user_models, capsys, function, words):
    out = user_models / "RUN"
    assert main(["run", "--model", f"lab_models:{function}", "--clients", "4", "--groups", "2", "--rounds", "2",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cflkit: error: ") and err.count("\n") == 1 and words in err, err
    assert not out.exists()
