"""The book itself: the runner (jupytext -> papermill -> HTML), page furniture, tables and figures for people, and the
pair probe readers use interactively. ``python -m analysis_lib.book`` is the runner's command line."""
