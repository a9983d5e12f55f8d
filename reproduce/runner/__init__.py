"""The runner: ``python -m reproduce`` (run the notebooks with papermill, the commands), and
``compare`` (a fresh run against the committed figures)."""
