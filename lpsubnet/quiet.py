"""TensorFlow imported without its start-up chatter: the helper lives in the hardware back
end's core (the C simulation loads Keras only when it needs the QKeras reference)."""

from hls_backend.core.quiet import import_tensorflow_quietly

__all__ = ['import_tensorflow_quietly']
