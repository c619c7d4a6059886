"""Keras model builders. One definition serves every method; outputs are logits."""
from __future__ import annotations

from typing import Sequence

from ._tf import keras

MODELS = {
    "mlp": "fully connected ReLU network (hidden sizes from `hidden`)",
    "cnn": "small CNN for images: two 3x3 conv layers (16, 32), global pooling, dense",
}


def build_model(name: str, input_shape: Sequence[int], n_outputs: int, hidden: Sequence[int] = (64, 64)):
    """Build model ``name`` for inputs of ``input_shape`` with ``n_outputs`` logits."""
    k = keras()
    inputs = k.Input(shape=tuple(input_shape))
    if name == "mlp":
        h = k.layers.Flatten()(inputs)
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
    else:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    outputs = k.layers.Dense(int(n_outputs))(h)
    return k.Model(inputs, outputs, name=name)
