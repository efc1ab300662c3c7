# fedlearn: the two commands are `make demo` and `make test`; both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUN_STAMP := $(VENV)/.installed-run-stamp
DEMO_DIR ?= demo
DEMO_ROWS ?= 20000

.PHONY: report-check demo test test-fast test-full faults fuzz check lint typecheck protos bench bench-epoch bench-crypto bench-psi bench-quality bench-residuals clean setup

setup: $(STAMP)

# (Re)install only when the project's own install files change: a no-op in seconds otherwise.
# The demo needs only what the commands need; tests, lint and protos also need the dev tools.
$(RUN_STAMP): pyproject.toml fedlearn/crypto/_fixedbase.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(RUN_STAMP)
	$(PY) -m fedlearn.demo --dir $(DEMO_DIR) --rows $(DEMO_ROWS)

test: $(STAMP)
	$(PY) -m pytest -q -m "not fullsize and not heavy"

# The edit-test loop (under a minute on 2 cores, one pytest worker per core): unit and in-memory tests;
# no node processes, no 2048-bit keys, no tests marked slow. `make test` runs everything but fullsize, serially.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto -m "not fullsize and not e2e and not slow"

# The fuzz targets of both services (tests/reliability) at 500 examples per RPC (make test runs 8).
fuzz: $(STAMP)
	FEDLEARN_FUZZ_EXAMPLES=500 $(PY) -m pytest -q tests/reliability/test_fuzz_peer.py tests/reliability/test_fuzz_control.py

# Fault injection at every phase with real node processes (tests/e2e/test_faults*.py), the heavy
# cases included (make test runs a representative of each kind: ~2 minutes; this: ~8).
faults: $(STAMP)
	$(PY) -m pytest -q tests/e2e/test_faults.py tests/e2e/test_faults_phases.py

test-full: $(STAMP)
	$(PY) -m pytest -q

# Lint, format and types on all our code (generated code under fedlearn/proto excluded); CI runs it
# before the tests.
CHECKED := fedlearn party_a party_b tests bench
check: $(STAMP)
	$(VENV)/bin/ruff check $(CHECKED) protos/generate.py
	$(VENV)/bin/ruff format --check $(CHECKED) protos/generate.py
	$(VENV)/bin/mypy $(CHECKED)

lint: check

typecheck: check

protos: $(STAMP)
	$(PY) protos/generate.py

bench: $(STAMP)
	$(PY) -m bench.run_all

# Seconds per epoch of this tree against BASE (a commit; default main), run in turn through both
# nodes (bench/epoch_compare.py; add PIN=--pin for one core per party). docs/performance.md.
BASE ?= main
PIN ?=
bench-epoch: $(STAMP)
	rm -rf build/base && mkdir -p build/base && git archive $(BASE) | tar -x -C build/base
	$(PY) -m bench.epoch_compare --tree base=build/base --tree this=. --rows 3000 $(PIN)

bench-crypto: $(STAMP)
	$(PY) bench/crypto.py

bench-psi: $(STAMP)
	$(PY) bench/psi.py

# Model quality of the job defaults against scikit-learn (docs/quality.md); ~1 hour on 2 cores.
bench-quality: $(STAMP)
	$(PY) -m bench.quality

# Other residual forms replayed with the job defaults (docs/protocol.md section 7); under a minute.
bench-residuals: $(STAMP)
	$(PY) -m bench.residual_forms

# The decision report in a real headless browser (Debian: apt-get install chromium): writes
# build/report-check/report.html and a screenshot.png beside it, and fails if the page does not render.
report-check: $(STAMP)
	$(PY) -m bench.report_check --out build/report-check

clean:
	rm -rf $(DEMO_DIR) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
