# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := examples/support_triage
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test lint typecheck pytest bench clean model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(DEMO)/model.skops: $(VENV)/.installed $(DEMO)/train.py
	$(BIN)/python $(DEMO)/train.py

model: $(DEMO)/model.skops

demo: $(VENV)/.installed $(DEMO)/model.skops
	$(BIN)/keelwork serve $(DEMO) --host $(HOST) --port $(PORT) --first-key

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed $(DEMO)/model.skops
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(VENV)/.installed $(DEMO)/model.skops
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis $(DEMO)/.keelwork
