# The two commands: `make demo` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test faults lint sysdeps clean

sysdeps:
	@PYTHON=$(PYTHON) bash scripts/sysdeps.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: sysdeps $(STAMP)
	$(BIN)/firesentry demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two workers, a test file each at a time (module fixtures stay whole), each with its own
# private broker and database: the suite waits on real services more than it computes.
TEST_WORKERS ?= 2

test: sysdeps $(STAMP) lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The fault suite alone, with its table printed; FAULTS_N sets the backlog (default 20000).
faults: sysdeps $(STAMP)
	@FAULTS_N=$(or $(FAULTS_N),20000) $(BIN)/pytest tests/faults -s -q $(PYTEST_ARGS) \
		> .faults.log 2>&1; status=$$?; grep -E '^fault-suite|^\.*fault-suite| passed| failed' .faults.log \
		| sed 's/^\.*//'; echo "(full output in .faults.log)"; exit $$status

clean:
	-$(BIN)/firesentry down --purge 2>/dev/null
	rm -rf $(VENV) .firesentry .pytest_cache .mypy_cache .ruff_cache
