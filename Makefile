# Two-command start: `make run` serves a demo on http://127.0.0.1:5000, `make test` runs the suite.
# Everything happens in .venv, created on first use; dependencies are reinstalled only when
# pyproject.toml changes (the stamp files are named after its hash).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
HOST := 127.0.0.1
PORT := 5000
PYTEST_ARGS ?=

DEPS_HASH := $(shell $(PYTHON) -c "import hashlib; print(hashlib.sha256(open('pyproject.toml','rb').read()).hexdigest()[:12])")
RUN_STAMP := $(VENV)/.installed-$(DEPS_HASH)
TEST_STAMP := $(VENV)/.installed-dev-$(DEPS_HASH)

# The real OpenID Connect provider the upstream sign-in tests run (tests/upstream/provider,
# node-oidc-provider): `npm ci` again whenever its lockfile changes. Only `make test` needs Node.
PROVIDER_DIR := tests/upstream/provider
PROVIDER_STAMP := $(PROVIDER_DIR)/node_modules/.installed

.PHONY: run run-mcp test docs bench-serve migrate db-upgrade reset-db clean

## run: install, migrate the SQLite database in instance/, seed the demo data and serve it.
# --debug is what lets the http issuer (http://127.0.0.1:5000) start; the secret key and the
# signing keys' encryption key are generated once into instance/config.py, and the demo resource server's secret into instance/demo-resource.env.
run: $(RUN_STAMP) instance/config.py instance/demo-resource.env
	$(FLASK) --debug db upgrade
	set -a && . ./instance/demo-resource.env && set +a && $(FLASK) --debug demo seed
	@echo "Serving authserver on http://$(HOST):$(PORT) (Ctrl-C to stop)."
	$(FLASK) run --debug --no-debugger --no-reload -h $(HOST) -p $(PORT)

## run-mcp: serve the example CRM MCP server on http://127.0.0.1:8001/mcp (start `make run` first, in
# another terminal). It introspects tokens with the demo resource server's credentials: the fixed
# credential id rs_demo (authserver/cli.py) and the secret in instance/demo-resource.env.
run-mcp: $(RUN_STAMP) instance/demo-resource.env
	$(BIN)/python -c "import crm_mcp" 2>/dev/null || $(BIN)/pip install -e examples/crm_mcp
	set -a && . ./instance/demo-resource.env && set +a && \
	CRM_MCP_CLIENT_ID=rs_demo CRM_MCP_CLIENT_SECRET="$$AUTHSERVER_DEMO_RESOURCE_SECRET" \
	CRM_MCP_DATABASE=instance/crm_mcp.sqlite3 $(BIN)/python -m crm_mcp

## test: install with the dev extras (and the test OpenID provider's npm packages) and run pytest
## (make test PYTEST_ARGS="-k login -x").
test: $(TEST_STAMP) $(PROVIDER_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

$(PROVIDER_STAMP): $(PROVIDER_DIR)/package-lock.json $(PROVIDER_DIR)/package.json
	cd $(PROVIDER_DIR) && npm ci --no-audit --no-fund
	touch $@

## bench-serve: serve authserver production-style for benchmarks on http://127.0.0.1:5200, on
# PostgreSQL (a fresh AUTHSERVER_BENCH_DATABASE_URL, dropped and recreated) and Redis, with the rate
# limits lifted and the demo seeded; bench/phases.py and the peer comparison run against it
# (docs/benchmarks.md). SERVER=granian|gunicorn, WORKERS=N, THREADS=N (granian's blocking threads,
# gunicorn's gthread threads; 1 with gunicorn means sync workers).
BENCH_HOST := 127.0.0.1
BENCH_PORT := 5200
AUTHSERVER_BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/authserver_bench
AUTHSERVER_BENCH_REDIS_URL ?= redis://127.0.0.1:6379/1
SERVER ?= granian
WORKERS ?= 2
THREADS ?= 4
bench-serve: export AUTHSERVER_ISSUER := http://$(BENCH_HOST):$(BENCH_PORT)
bench-serve: export AUTHSERVER_DATABASE_URL := $(AUTHSERVER_BENCH_DATABASE_URL)
bench-serve: export AUTHSERVER_REDIS_URL := $(AUTHSERVER_BENCH_REDIS_URL)
bench-serve: export AUTHSERVER_RATELIMIT_ENABLED := false
bench-serve: export AUTHSERVER_LOG_LEVEL := WARNING
bench-serve: $(RUN_STAMP) instance/demo-resource.env
	@case "$(SERVER)" in granian|gunicorn) ;; *) echo "SERVER must be granian or gunicorn"; exit 2;; esac
	$(BIN)/python bench/recreate_db.py "$$AUTHSERVER_DATABASE_URL"
	export AUTHSERVER_SECRET_KEY=$$($(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))") && \
	set -a && . ./instance/demo-resource.env && set +a && \
	$(FLASK) db upgrade && $(FLASK) demo seed && \
	echo "Serving authserver with $(SERVER), $(WORKERS) worker(s) x $(THREADS) thread(s) on $$AUTHSERVER_ISSUER (Ctrl-C to stop)." && \
	if [ "$(SERVER)" = granian ]; then \
	  exec $(BIN)/granian --interface wsgi --host $(BENCH_HOST) --port $(BENCH_PORT) --workers $(WORKERS) \
	    --blocking-threads $(THREADS) --no-access-log --log-level warning wsgi:app; \
	elif [ "$(THREADS)" -gt 1 ]; then \
	  exec $(BIN)/gunicorn --bind $(BENCH_HOST):$(BENCH_PORT) --workers $(WORKERS) --worker-class gthread \
	    --threads $(THREADS) --log-level warning wsgi:app; \
	else \
	  exec $(BIN)/gunicorn --bind $(BENCH_HOST):$(BENCH_PORT) --workers $(WORKERS) --log-level warning wsgi:app; \
	fi

## migrate: after a model change, autogenerate the next migration (make migrate MESSAGE="what changed")
## against an empty SQLite database upgraded to the current head; review it before committing.
migrate: $(RUN_STAMP)
	@test -n "$(MESSAGE)" || { echo 'Say what changed: make migrate MESSAGE="add a column"'; exit 2; }
	tmp=$$(mktemp -d) && export AUTHSERVER_DATABASE_URL="sqlite:///$$tmp/schema.sqlite3" && \
	$(FLASK) --debug db upgrade && $(FLASK) --debug db migrate -m "$(MESSAGE)"; \
	status=$$?; rm -rf "$$tmp"; exit $$status

## db-upgrade: apply the migrations to the configured database (AUTHSERVER_DATABASE_URL or instance/).
db-upgrade: $(RUN_STAMP)
	$(FLASK) --debug db upgrade

## reset-db: delete the development SQLite database (the next `make run` recreates and seeds it).
reset-db:
	rm -f instance/authserver.sqlite3

## docs: rewrite the settings table in docs/configuration.md from the #: comments in authserver/config.py.
docs: $(RUN_STAMP)
	$(BIN)/python -c "from authserver.config import write_reference; write_reference('docs/configuration.md')"

## clean: remove the virtualenv and caches (instance/, with the dev database and secrets, stays).
clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info test-artifacts $(PROVIDER_DIR)/node_modules
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): | $(BIN)/python
	$(BIN)/pip install -e .
	rm -f $(VENV)/.installed-*
	touch $@

$(TEST_STAMP): | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install -e examples/crm_mcp
	rm -f $(VENV)/.installed-*
	touch $@ $(RUN_STAMP)

instance/config.py:
	mkdir -p instance
	umask 077 && $(PYTHON) -c "import secrets; print('# Written once by make run: the development secret key (sessions survive restarts)'); print('# and the key that encrypts the JWT signing keys in the database.'); print('SECRET_KEY = %r' % secrets.token_urlsafe(48)); print('SIGNING_KEY_ENCRYPTION_KEY = %r' % secrets.token_urlsafe(48))" > $@

instance/demo-resource.env:
	mkdir -p instance
	umask 077 && $(PYTHON) -c "import secrets; print('AUTHSERVER_DEMO_RESOURCE_SECRET=asrs_' + secrets.token_urlsafe(32))" > $@
