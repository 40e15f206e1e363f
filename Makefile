# `make run` and `make test` bootstrap .venv from the pinned project files
# (pyproject.toml pins direct dependencies, constraints.txt everything else).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

# The browser tests drive Debian's Chromium; Playwright never downloads a browser.
CHROMIUM := /usr/bin/chromium

.PHONY: run test install install-browser lint clean bench-queue bench-queue-cpu bench-queue-layout bench-claim-history bench-scale dist

# `make run` needs only the runtime dependencies; `make test` adds the test
# tools (pytest, Playwright, schemathesis, ruff). Both share .venv.
RUN_STAMP := $(VENV)/.runtime-stamp
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

define make_venv
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
endef

$(STAMP): pyproject.toml constraints.txt
	$(make_venv)
	$(PIP) -e '.[test]'
	@touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): pyproject.toml constraints.txt
	$(make_venv)
	$(PIP) -e .
	@touch $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/minijenkin up --demo

install-browser:
	@test -x $(CHROMIUM) || { \
		echo "$(CHROMIUM) is missing: installing Debian's chromium package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(STAMP) install-browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The competitors live in their own environment so that they never become
# project dependencies; bench/queue.py runs them there as a subprocess.
$(BENCH_STAMP): bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $(BENCH_STAMP)

bench-queue: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.queue $(BENCH_ARGS)

bench-queue-cpu: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.queue_cpu $(BENCH_ARGS)

bench-queue-layout: $(STAMP)
	$(BIN)/python -m bench.queue_layout $(BENCH_ARGS)

# Fails (exit status 1) when claiming on a large history is more than 1.2x
# slower than on an empty jobs table.
bench-claim-history: $(STAMP)
	$(BIN)/python -m bench.claim_history $(BENCH_ARGS)

bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

# The wheel that `pip install --constraint constraints.txt dist/minijenkin-*.whl` installs.
dist: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist .

lint: $(STAMP)
	$(BIN)/python -m ruff check minijenkin tests bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist *.egg-info .pytest_cache
