# `make book` and `make test` do all the set-up on a fresh machine (Python 3.11 + pip).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BOOK_ARGS ?=

.PHONY: setup book render lab test lint bench clean-cache

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

## Execute every chapter at toy scale (papermill) and render the offline HTML book into book/.
book: $(STAMP)
	$(PY) -m analysis_lib.book run $(BOOK_ARGS)

render: $(STAMP)
	$(PY) -m analysis_lib.book render

## Open the book in JupyterLab: the chapters (notebooks/NN_name.py) open as notebooks through jupytext's extension
## (right-click > Open With > Editor shows a .py file as text).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	mkdir -p $(LAB_SETTINGS)
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' \
		> $(LAB_SETTINGS)/overrides.json
	$(VENV)/bin/jupyter lab $(LAB_ARGS) --ServerApp.root_dir=. notebooks/00_claims.py

## Unit tests plus a smoke run of every chapter.
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check analysis_lib tests benchmarks notebooks/*.py
	$(VENV)/bin/ruff format --check analysis_lib tests benchmarks

## Toy LLaVA trainings per seed (steps to cross, seconds, passed or stalled); wall times of every chapter, cold and warm.
bench: $(STAMP)
	$(PY) benchmarks/llava_trainings.py
	$(PY) benchmarks/chapter_times.py

clean-cache:
	rm -rf data/cache data/toy
