# Developer and CI entry points.  `make test` is what .ci/run runs.
#
#   make venv       create .venv and install the package editable with its test extras
#   make postgres   make sure PostgreSQL server binaries are installed (tests start their own server)
#   make buildtools make sure git, Node.js and npm are installed (builds use them)
#   make registrytools make sure docker-registry, skopeo and umoci are installed (the image tests use them)
#   make kubetools  build the test cluster (kube-apiserver, etcd, controller-manager, scheduler, kwok) from the
#                   Go module proxy into a cache keyed by version (scripts/ensure-kube-tools.sh; cold: see
#                   docs/development.md, "The test cluster"; a no-op once built)
#   make browser    make sure Debian's chromium, the pinned Playwright (in .venv) and axe-core (npm, into a cache keyed
#                   by version) are installed (scripts/ensure-browser.sh; the browser tests use them)
#   make consoleassets make sure the console's htmx (npm, pinned in tools/console/) is in its cache
#   make oidcprovider the single sign-on tests' OpenID Connect provider (npm, pinned in tools/oidc/) in its cache
#   make test       ruff + mypy + pytest; PYTEST_ARGS="tests/test_x.py -k foo" narrows the run
#   make run        start the control plane and a local data plane (HOST, PORT, GATEWAY_PORT, DATA_DIR); the
#                   first run builds and deploys the demo project of examples/demo/ (DEMO; DEMO= for none)
#   make bench      benchmarks (gateway vs nginx, deploys, zero-downtime, scale to zero, builds, images, Kubernetes, control plane): bench/results/, docs/performance.md
#   make lint       ruff check and the mypy type check (config: [tool.mypy] in pyproject.toml)
#   make clean      remove .venv and caches (never the data dir)

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
# Written after a successful install; depends on pyproject.toml so that editing the
# dependencies re-runs the install on the next `make venv`/`make test`.
STAMP    := $(VENV)/.cellplane-installed

DATA_DIR ?= .cellplane
HOST     ?= 127.0.0.1
PORT     ?= 8780
GATEWAY_PORT ?= 8800
DEMO     ?= examples/demo/demo.yaml

PYTEST_ARGS ?=
# Set by .ci/run: pytest's own exit code is written there, because make reports any failing
# recipe as exit status 2 and would otherwise hide "no tests collected" (pytest exit 5).
PYTEST_RC_FILE ?=

.PHONY: venv postgres buildtools registrytools kubetools browser consoleassets oidcprovider bytecode test lint run bench clean agent-image

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --python $(BIN)/python -e '.[test]' \
		|| $(BIN)/pip install --disable-pip-version-check -e '.[test]'
	@touch $@

postgres:
	bash scripts/ensure-postgres.sh

buildtools:
	bash scripts/ensure-build-tools.sh

registrytools:
	bash scripts/ensure-registry-tools.sh

kubetools:
	bash scripts/ensure-kube-tools.sh

# after venv: the pinned Playwright goes into it
browser: venv buildtools
	bash scripts/ensure-browser.sh

# htmx for the console, from npm, pinned in tools/console/ (the console works without it, forms only)
consoleassets: buildtools
	bash scripts/ensure-console-assets.sh

# the single sign-on tests' OpenID Connect provider (npm, pinned in tools/oidc/, into a cache keyed by version)
oidcprovider: buildtools
	bash scripts/ensure-oidc-provider.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# The tests start hundreds of Python processes (control planes, agents, the CLI). Without .pyc files each
# compiles its imports again, about a second of CPU for fastapi, pydantic and sqlalchemy, and where
# PYTHONDONTWRITEBYTECODE is set (as in CI) none is ever written: so compile src/ and the venv's packages
# once before the run (about 10 s; about 1 s when they are current, as compileall checks each file's mtime).
bytecode: venv
	$(BIN)/python -m compileall -q -j 0 src "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

test: venv postgres buildtools registrytools kubetools browser consoleassets oidcprovider bytecode
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ -n "$(PYTEST_RC_FILE)" ]; then echo $$rc > "$(PYTEST_RC_FILE)"; fi; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5) - failing" >&2; fi; \
	exit $$rc

bench: venv buildtools registrytools kubetools consoleassets
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The Kubernetes agent's image, built without Docker and pushed (docs/kubernetes.md): prints its reference by digest.
# make agent-image REGISTRY=https://registry.example.com [AGENT_BASE=python:3.12-slim] (the base must be in it)
agent-image: venv
	@test -n "$(REGISTRY)" || { echo "make agent-image: give REGISTRY=URL (the base image must be in it)" >&2; exit 2; }
	$(BIN)/python -m cellplane.kubernetes.agentimage --registry $(REGISTRY) $(if $(AGENT_BASE),--base $(AGENT_BASE))

run: venv
	@bash scripts/ensure-build-tools.sh || echo "make run: continuing; builds that need the missing tools will fail" >&2
	@bash scripts/ensure-console-assets.sh || echo "make run: continuing; the console works without htmx (plain forms)" >&2
	$(BIN)/cellplane up --host $(HOST) --port $(PORT) --gateway-port $(GATEWAY_PORT) --data-dir $(DATA_DIR) \
		$(if $(DEMO),--demo $(DEMO))

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -path ./$(DATA_DIR) -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 -r rm -rf
