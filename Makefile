# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   builds .venv and runs the main job (on a RAM tmpfs)
#   make test   builds .venv and runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: demo test test-cold bench bytecode shellfiles clean

$(BIN)/kerash: pyproject.toml $(wildcard scripts/*) $(wildcard bin/*)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat -e '.[test,plot,mpi]'
	touch $@

# Byte-compile kerash even where PYTHONDONTWRITEBYTECODE is set: every tool
# start would otherwise compile its modules again (a few ms each).
bytecode: $(BIN)/kerash
	$(BIN)/python -m compileall -q kerash

# The shell completion scripts and man pages under share/, made from the
# tools' options and help: run after changing either (a test says when).
shellfiles: $(BIN)/kerash
	$(BIN)/python -m kerash.cli.shellfiles

# make demo DEMO_ARGS=--keep keeps the RAM work folder and the models in it.
demo: bytecode
	bash bin/demo $(DEMO_ARGS)

# The suite runs its tools through a private warm server (0.6 of the time);
# tests of start-up itself, and those marked warm_and_cold, also run cold.
# `make test-cold` starts every tool cold.
test: bytecode
	KERASH_TEST_WARM=1 $(BIN)/python -m pytest -n 2 tests

test-cold: bytecode
	$(BIN)/python -m pytest -n 2 tests

bench: bytecode
	$(BIN)/python bench/startup_io.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/shard_cost.py
	$(BIN)/python bench/predict_speed.py
	bash bench/evolve_runs.sh
	bash bench/circle.sh

clean:
	rm -rf $(VENV) build *.egg-info
