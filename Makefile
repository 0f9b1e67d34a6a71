# Two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Keep Prefect's own state (its SQLite API database) inside the project, never in the user's home.
export PREFECT_HOME ?= $(CURDIR)/.atx/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test test-fast bench soak scale screenshots clean lock

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/atx demo

test: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# BENCH_SIZE=small for a quick check, large for the issue's biggest sizes; ONLY="calls rate_limits" for some cases (python -m bench --help).
# BENCH_POSTGRES_URL: the PostgreSQL server rate_limits starts a Prefect server on, to measure the limits kept in Prefect.
BENCH_SIZE ?= full
BENCH_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
bench: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	ATX_BENCH_POSTGRES_URL=$(BENCH_POSTGRES_URL) $(BIN)/python -m bench --size $(BENCH_SIZE) $(if $(ONLY),--only $(ONLY))

# The long fault soak: seeded cases until SOAK_MINUTES are up; SEED=N starts from (or replays) seed N.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	mkdir -p $(PREFECT_HOME)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(if $(SEED),--seed $(SEED)) $(if $(CASES),--cases $(CASES))

# Scale-out on Prefect's own distributed setup: SCALE_TENANTS tenants' invoices deployments run together by two
# process workers, the Prefect server and the ledger in PostgreSQL (databases of its own on SCALE_POSTGRES_URL's
# server, dropped after). Exits 1 when a document is missing or twice, a limit was passed, or one worker did all.
SCALE_TENANTS ?= 20
SCALE_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
scale: $(STAMP)
	ATX_SCALE_POSTGRES_URL=$(SCALE_POSTGRES_URL) $(BIN)/python -m bench.scale --tenants $(SCALE_TENANTS)

# The Prefect UI's run page and artifacts of a run that needs attention, in headless Chromium at 1,400 px:
# docs/screenshots/*.png. Needs Chromium (Debian: apt-get install chromium); its own Prefect server and PREFECT_HOME.
screenshots: $(STAMP)
	$(BIN)/python -m bench.screenshots $(if $(CHROMIUM),--chromium $(CHROMIUM))

# Regenerate the lock of the whole dependency tree after changing pyproject.toml.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) .atx .pytest_cache
