"""Importing Keras 3 or tf_keras without TensorFlow's start-up noise on stderr.

`import tensorflow` writes, from C++ before absl's logging is set up, two lines
("All log messages before absl::InitializeLog() ...", "cudart_stub.cc ... Could not find cuda
drivers") — twice, and whatever TF_CPP_MIN_LOG_LEVEL says. They go to file descriptor 2, not to
sys.stderr, so they are caught there during the import; every other line is passed on.
"""

import contextlib
import importlib
import os
import re
import sys
import tempfile

__all__ = ["import_keras"]

# TensorFlow's start-up lines on a machine without a GPU: informational, never an error.
_NOISE = re.compile(r"absl::InitializeLog\(\)|cudart_stub\.cc|Could not find cuda drivers|"
                    r"cpu_feature_guard\.cc|Unable to register cu(DNN|FFT|BLAS) factory|"
                    r"computation_placer\.cc|oneDNN custom operations are on")


def import_keras(keras_version):
    """The `keras` module (keras_version 3) or `tf_keras` (2), imported quietly.

    Raises ImportError, as `import` does, when the package is missing.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    name = "keras" if keras_version == 3 else "tf_keras"
    if name in sys.modules:
        return sys.modules[name]
    with _without_tensorflow_noise():
        return importlib.import_module(name)


@contextlib.contextmanager
def _without_tensorflow_noise():
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by an object without a descriptor
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _NOISE.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
