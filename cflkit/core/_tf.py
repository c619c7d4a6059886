"""Lazy, quiet TensorFlow import: ``import cflkit`` must not pay TF's ~10 s start-up."""
from __future__ import annotations

import os
import sys
import tempfile

_MODULE = None


class quiet_stderr:
    """Capture what C++ libraries write straight to file descriptor 2; show it only if
    the block fails."""

    def __enter__(self):
        self.sink = tempfile.TemporaryFile(mode="w+b")
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(self.sink.fileno(), 2)
        return self

    def __exit__(self, kind, value, tb):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        if kind is not None:
            self.sink.seek(0)
            sys.stderr.write(self.sink.read().decode(errors="replace"))
        self.sink.close()
        return False


def tf(threads: int | None = None):
    """Return the ``tensorflow`` module, importing it on first use.

    TensorFlow's C++ start-up banner (oneDNN, CUDA probing on CPU-only machines) is written
    straight to file descriptor 2 whatever ``TF_CPP_MIN_LOG_LEVEL`` says; it is captured
    during the import and shown only if the import fails. ``threads`` sets TensorFlow's
    intra- and inter-op thread pools; it only takes effect on the first call, before the
    runtime starts (worker processes use it).
    """
    global _MODULE
    if _MODULE is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        with quiet_stderr():
            import tensorflow

            if threads:
                tensorflow.config.threading.set_intra_op_parallelism_threads(int(threads))
                tensorflow.config.threading.set_inter_op_parallelism_threads(int(threads))
            tensorflow.config.list_logical_devices()  # triggers the CUDA probe while muted
        # Each run compiles its own trainer functions; TF's "retracing" hint about that is noise.
        tensorflow.get_logger().setLevel("ERROR")
        _MODULE = tensorflow
    return _MODULE


def keras():
    """Return the ``keras`` module (TensorFlow backend)."""
    tf()
    import keras as _keras

    return _keras
