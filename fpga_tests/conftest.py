import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

# Under pytest-xdist every worker is its own process: share the cores between them
# instead of each TensorFlow taking all of them (TensorFlow reads these at import).
_workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _workers > 1:
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault('TF_NUM_INTRAOP_THREADS', _threads)
    os.environ.setdefault('TF_NUM_INTEROP_THREADS', _threads)
