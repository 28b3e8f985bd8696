# Set-up on a fresh machine is two commands: `make demo` and `make test`.
# Each creates the local virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint vectors clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m e2e_proto.demo
	$(BIN)/python -m client.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m e2e_proto.vectors check
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

vectors: $(STAMP)
	$(BIN)/python -m e2e_proto.vectors generate

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info
