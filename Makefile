# Set-up on a fresh machine is two commands: `make demo` and `make test`.
# Each creates the local virtual environment .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint vectors clean fuzz faults load

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m e2e_proto.demo
	$(BIN)/python -m client.cli.demo

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

# Issue 7's long runs; CI runs the bounded versions inside `make test`.
fuzz: $(STAMP)
	E2E_FUZZ_EXAMPLES=5000 $(BIN)/pytest tests/test_fuzz_relay.py tests/test_wire.py  \
		tests/test_social_fuzz.py --hypothesis-seed=0

faults: $(STAMP)
	E2E_FAULT_KILLS=10 E2E_FAULT_MESSAGES=40 $(BIN)/pytest tests/test_faults.py \
		tests/test_relay_kill.py tests/test_relay_limits.py \
		tests/test_private_e2e.py tests/test_social_faults.py tests/test_cross_faults.py \
		-k "kill or fault or killed or restart"

load: $(STAMP)
	$(BIN)/python -m tests.load --clients 200 --seconds 60
