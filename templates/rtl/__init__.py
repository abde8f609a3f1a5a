"""Package data, not code: the Jinja2 templates of generated RTL projects (installed as hls_backend.rtl.template_files)."""
