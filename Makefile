# The README's two commands: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test install lint bench bench-quick bench-changes system-packages

# Debian packages the tests drive for real: Chromium (the page), nginx and Caddy (the proxy in
# front of Codex). Installed when missing and we are root with apt; otherwise one line says so.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium nginx:/usr/sbin/nginx caddy:/usr/bin/caddy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/codex-exports dev $(ARGS)

system-packages:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
	  [ -x "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages for the tests:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "make test needs Debian's$$missing: run  sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

test: $(STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

# Only the comparison of two large JSON backups (bench/changes.py): ARGS="--books 100000".
bench-changes: $(STAMP)
	$(BIN)/python -m bench.changes $(ARGS)
