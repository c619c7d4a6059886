"""Keras model builders. One definition serves every method; outputs are logits.

``logreg`` starts from zero weights: the problem is convex, and a binary logistic regression
written as two softmax logits is over-parameterised, so a random start of both logits (as a
Dense layer's default) doubles the variance of the starting logit compared with a
single-logit ``torch.nn.Linear`` (FLamby's baseline), which slowed FedAvg's SGD on FLamby's
heart-disease protocol (``docs/flamby.md`` has the numbers).

A model is a built-in name (:data:`MODELS`) or a user's function given as
``"package.module:function"`` (``--model`` on the command line, the same string in a
``Config``, so ``config.json`` re-runs it), where ``function(input_shape, n_outputs)``
returns a ``keras.Model`` whose output has ``n_outputs`` logits (one value per sample for a
regression task). From Python a callable may be given too: it is recorded under its
``module:qualname`` (:func:`model_name`).
"""
from __future__ import annotations

import importlib
from typing import Callable, Sequence

from ._tf import keras

MODELS = {
    "logreg": "one linear layer from zero: logistic / softmax regression (linear regression for a regression task)",
    "mlp": "fully connected ReLU network (hidden sizes from `hidden`)",
    "cnn": "small CNN for images: two 3x3 conv layers (16, 32), global pooling, dense",
}
USER_MODEL = "package.module:function"  # the form of a user's model

_REGISTERED: dict[str, Callable] = {}  # callables given from Python that cannot be imported by name


def model_name(model) -> str:
    """The config string of ``model``: a name as given, or a callable's ``module:qualname``
    (a callable that cannot be imported back by that name, e.g. one defined in a notebook, is
    remembered for this process)."""
    if isinstance(model, str):
        return model
    if not callable(model):
        raise ValueError(f"option 'model' expects a name ({', '.join(MODELS)}), '{USER_MODEL}' or a function "
                         f"(input_shape, n_outputs) -> keras.Model, got {model!r}")
    name = f"{getattr(model, '__module__', None) or '__main__'}:{getattr(model, '__qualname__', repr(model))}"
    try:
        if resolve(name) is model:
            return name
    except ValueError:
        pass
    _REGISTERED[name] = model
    return name


def resolve(name: str) -> Callable | None:
    """The builder function of a user's model ``module:function`` (None for a built-in name);
    a clear ``ValueError`` names what is wrong. Imports the user's module, builds nothing."""
    if name in MODELS:
        return None
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}, or your own as "
                         f"'{USER_MODEL}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"model {name!r}: cannot import module {module_name!r} ({e})") from None
    fn = module
    for part in attribute.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"model {name!r}: module {module_name!r} has no attribute {attribute!r}") from None
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"model {name!r}: {attribute!r} is a {type(fn).__name__}, not a function "
                         f"(input_shape, n_outputs) -> keras.Model")
    return fn


def build_model(name: str, input_shape: Sequence[int], n_outputs: int, hidden: Sequence[int] = (64, 64)):
    """Build model ``name`` for inputs of ``input_shape`` with ``n_outputs`` logits."""
    k = keras()
    user = resolve(name)
    if user is not None:
        return _checked(name, user(tuple(input_shape), int(n_outputs)), input_shape, n_outputs)
    inputs = k.Input(shape=tuple(input_shape))
    h = k.layers.Flatten()(inputs) if name != "cnn" else inputs
    if name == "mlp":
        for units in hidden:
            h = k.layers.Dense(int(units), activation="relu")(h)
    elif name == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"model 'cnn' needs image inputs (H, W, C), got input shape {tuple(input_shape)}; "
                             f"use model 'mlp'")
        h = k.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
        h = k.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
        h = k.layers.GlobalAveragePooling2D()(h)
        for units in hidden[:1]:
            h = k.layers.Dense(int(units), activation="relu")(h)
    if name == "logreg":  # a convex model: it starts at zero, as scikit-learn's solvers do (see MODELS)
        outputs = k.layers.Dense(int(n_outputs), kernel_initializer="zeros", bias_initializer="zeros")(h)
    else:
        outputs = k.layers.Dense(int(n_outputs))(h)
    return k.Model(inputs, outputs, name=name)


def _checked(name: str, model, input_shape, n_outputs: int):
    """A user's model, refused with one line if it cannot serve: not a Keras model, state the
    vectorised trainer cannot stack, or an output that does not fit the task."""
    k = keras()
    if not isinstance(model, k.Model):
        raise ValueError(f"model {name!r} returned a {type(model).__name__}, expected a keras.Model")
    if not model.built:
        model.build((None, *input_shape))
    if model.non_trainable_variables:
        raise ValueError(f"model {name!r} has non-trainable state ({len(model.non_trainable_variables)} variables, "
                         f"e.g. BatchNormalization statistics), which per-client training cannot stack; use layers "
                         f"without it (e.g. LayerNormalization)")
    try:
        shape = tuple(k.ops.shape(model(k.ops.zeros((1, *input_shape)))))
    except Exception as e:  # the user's model does not take the federation's inputs
        raise ValueError(f"model {name!r} does not take inputs of shape {tuple(input_shape)}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if shape != (1, int(n_outputs)):
        raise ValueError(f"model {name!r} outputs shape {shape[1:]} per sample; this task needs ({int(n_outputs)},) "
                         f"(logits, or one value for regression)")
    return model
