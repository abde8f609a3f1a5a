"""Import TensorFlow without its start-up chatter on the terminal.

TensorFlow 2.21 writes absl/oneDNN/CUDA-probe lines straight to file descriptor 2
while it loads, whatever TF_CPP_MIN_LOG_LEVEL says. The CLI, and the C simulation when
it needs the QKeras reference, import it once with descriptor 2 captured; if the import
fails, the captured text is shown.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    if 'tensorflow' in sys.modules:
        return
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices('GPU')  # the CUDA probe prints now, not mid-run
            tf.get_logger().setLevel('ERROR')  # e.g. retracing notices from repeated predict() calls
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors='replace'))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
