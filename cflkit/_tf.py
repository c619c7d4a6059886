"""Lazy, quiet TensorFlow import: ``import cflkit`` must not pay TF's ~10 s start-up."""
from __future__ import annotations

import os
import sys
import tempfile

_MODULE = None


def tf():
    """Return the ``tensorflow`` module, importing it on first use.

    TensorFlow's C++ start-up banner (oneDNN, CUDA probing on CPU-only machines) is written
    straight to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says; it is captured
    during the import and shown only if the import fails.
    """
    global _MODULE
    if _MODULE is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        with tempfile.TemporaryFile(mode="w+b") as sink:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
            try:
                import tensorflow
                tensorflow.config.list_logical_devices()  # triggers the CUDA probe while muted
            except BaseException:
                os.dup2(saved, 2)
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        # Each run compiles its own trainer functions; TF's "retracing" hint about that is noise.
        tensorflow.get_logger().setLevel("ERROR")
        _MODULE = tensorflow
    return _MODULE


def keras():
    """Return the ``keras`` module (TensorFlow backend)."""
    tf()
    import keras as _keras

    return _keras
