"""Package data, not code: the Jinja2 templates of generated HLS projects (installed as hls_backend.hls.template_files)."""
