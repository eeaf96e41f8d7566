# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   builds .venv and runs the main job (on a RAM tmpfs)
#   make test   builds .venv and runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: demo test bench clean

$(BIN)/kerash: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
	touch $@

demo: $(BIN)/kerash
	bash bin/demo

test: $(BIN)/kerash
	$(BIN)/python -m pytest -n 2 tests

bench: $(BIN)/kerash
	$(BIN)/python bench/startup_io.py

clean:
	rm -rf $(VENV) build *.egg-info
