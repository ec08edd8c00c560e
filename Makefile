# Two commands matter (see README.md):
#   make demo   -- the main job: embedded broker + worker + gateway + simulated show
#   make test   -- the whole test suite against a real embedded broker and headless Chromium
# Both create .venv and install the project with its test extras on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit bench schemas typecheck clean

# setup.py compiles the core's state.py and engine.py (mypyc): an edit to them reinstalls, which
# compiles them again (until then the core runs their source: stream/core/_native.py)
$(STAMP): pyproject.toml setup.py stream/core/state.py stream/core/engine.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/livecue demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.core
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/livecue bench --json artifacts/livecue-bench.json --chart artifacts/livecue-bench.png

schemas: $(STAMP)
	$(BIN)/python -m schemas.jsonschema --write

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info stream/core/_native.built
	find . -path ./$(VENV) -prune -o -name '*.so' -print -delete
