"""lpsubnet: orchestration of the pruner (front end) and the HLS back end.

This package only orchestrates: the command line (:mod:`lpsubnet.cli`) and the
end-to-end jobs. The algorithms live in :mod:`pruner` and :mod:`hls_backend`.
"""
