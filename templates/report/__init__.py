"""Package data, not code: the Jinja2 templates of the run report (installed as lpsubnet.template_files)."""
