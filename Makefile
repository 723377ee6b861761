# oms: developer entry points. `make` lists them.
#
# `make run` and `make test` provision what they need (Postgres >= 15, nats-server >= 2.10)
# with the scripts in scripts/, idempotently; state lives in .local/, installed tools in .tools/.
# Settings come from the environment (or `make VAR=value`); see `make help` for the defaults.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

CARGO ?= cargo

DEFAULT_DATABASE_URL := postgres://postgres@127.0.0.1:5432/oms
DEFAULT_NATS_URL := nats://127.0.0.1:4222
DEFAULT_OMS_BIND := 127.0.0.1:8080
DEFAULT_OMS_JWT_SECRET := oms-dev-secret-change-me

# mask URL: the URL with its password hidden, for printing.
mask := mask() { sed -E 's\#^([a-z]+://[^:/@]*):[^@/]*@\#\1:***@\#' <<<"$$1"; }

# Prepended to recipes: the environment's settings, else the defaults (also when set but empty).
defaults := export DATABASE_URL="$${DATABASE_URL:-$(DEFAULT_DATABASE_URL)}"; \
	export NATS_URL="$${NATS_URL:-$(DEFAULT_NATS_URL)}"; \
	export OMS_BIND="$${OMS_BIND:-$(DEFAULT_OMS_BIND)}"; \
	export OMS_JWT_SECRET="$${OMS_JWT_SECRET:-$(DEFAULT_OMS_JWT_SECRET)}"; \
	$(mask)

.PHONY: help run test lint fmt migrate services stop-services bench clean distclean

help: ## List the targets
	@printf 'Usage: make <target>\n\nTargets:\n'
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-15s %s\n", $$1, $$2 }'
	printf '\nEnvironment (default):\n'
	printf '  %-22s %s\n' \
	  DATABASE_URL '$(DEFAULT_DATABASE_URL)' \
	  NATS_URL '$(DEFAULT_NATS_URL)' \
	  OMS_BIND '$(DEFAULT_OMS_BIND)' \
	  OMS_JWT_SECRET '$(DEFAULT_OMS_JWT_SECRET)' \
	  OMS_TEST_DATABASE_URL '(make test) admin URL of the DATABASE_URL server' \
	  OMS_NATS_SERVER_BIN '(make test) a nats-server >= 2.10, found or installed'

run: ## Run the service (api, relay and projector) with a demo tenant (starts Postgres and NATS if needed)
	@$(defaults)
	DATABASE_URL="$$(scripts/ensure-postgres.sh)"
	NATS_URL="$$(scripts/ensure-nats.sh server)"
	echo "==> oms serve --demo on http://$$OMS_BIND, metrics on http://$${OMS_METRICS_BIND:-127.0.0.1:9464}/metrics (DATABASE_URL=$$(mask "$$DATABASE_URL"), NATS_URL=$$(mask "$$NATS_URL"))"
	exec $(CARGO) run -p oms --bin oms -- serve --demo

# The tests get OMS_TEST_DATABASE_URL (an admin URL: they create and drop their own databases
# oms_test_*) and OMS_NATS_SERVER_BIN (they start their own nats-servers on random ports).
test: ## Check formatting and lints, a short chaos run, schemathesis run and bench smoke run, then every crate's tests (starts Postgres if needed; finds or installs nats-server)
	@$(mask)
	if [ -n "$${OMS_TEST_DATABASE_URL:-}" ]; then
	  DATABASE_URL="$$OMS_TEST_DATABASE_URL" scripts/ensure-postgres.sh --admin >/dev/null
	else
	  OMS_TEST_DATABASE_URL="$$(DATABASE_URL="$${DATABASE_URL:-$(DEFAULT_DATABASE_URL)}" scripts/ensure-postgres.sh --admin)"
	fi
	OMS_NATS_SERVER_BIN="$$(scripts/ensure-nats.sh bin)"
	export OMS_TEST_DATABASE_URL OMS_NATS_SERVER_BIN
	scripts/drop-test-dbs.sh "$$OMS_TEST_DATABASE_URL"
	echo "==> tests use OMS_TEST_DATABASE_URL=$$(mask "$$OMS_TEST_DATABASE_URL") OMS_NATS_SERVER_BIN=$$OMS_NATS_SERVER_BIN"
	echo "==> cargo fmt --all -- --check"
	$(CARGO) fmt --all -- --check
	echo "==> cargo clippy --workspace --all-targets -- -D warnings"
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	echo "==> chaos run, short ($(CHAOS_SHORT_SECONDS) s; 'make chaos' runs the full one)"
	CHAOS_SECONDS=$(CHAOS_SHORT_SECONDS) CHAOS_JSON= $(CARGO) test -p oms --test chaos -- --ignored --nocapture
	echo "==> schemathesis against the OpenAPI document ($${SCHEMATHESIS_SECONDS:-75} s; 'make schemathesis' runs longer)"
	scripts/schemathesis.sh "$${SCHEMATHESIS_SECONDS:-75}"
	echo "==> bench smoke run ('make bench' runs the full one)"
	scripts/bench.sh --smoke
	if $(CARGO) nextest --version >/dev/null 2>&1; then
	  echo "==> cargo nextest run --workspace"
	  exec $(CARGO) nextest run --workspace --no-fail-fast
	else
	  echo "==> cargo test --workspace (install cargo-nextest for faster runs)"
	  exec $(CARGO) test --workspace --no-fail-fast
	fi

# The chaos run (services/cli/tests/chaos.rs): `oms serve` split into its roles, over a Postgres
# cluster and a nats-server of its own, under load while a driver kills them at random; then
# every event, chain, stream message and read model is checked. `make test` runs a short one.
CHAOS_SECONDS ?= 600
CHAOS_SHORT_SECONDS ?= 60
.PHONY: chaos
chaos: ## Chaos run: kill api, relay, projector, NATS and Postgres at random under load, then check nothing was lost or applied twice (CHAOS_SECONDS, default 600); writes docs/reliability/chaos.json
	@OMS_NATS_SERVER_BIN="$$(scripts/ensure-nats.sh bin)"
	export OMS_NATS_SERVER_BIN
	echo "==> chaos run, $(CHAOS_SECONDS) s (figures to docs/reliability/chaos.json)"
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_JSON="$(CURDIR)/docs/reliability/chaos.json" \
	  exec $(CARGO) test -p oms --test chaos -- --ignored --nocapture

# schemathesis (4.x, installed into .tools/schemathesis) against /api/v1/openapi.json of an
# `oms serve` of its own: every operation, every check, seed 42; fails on any server error or
# any answer the document does not describe. `make test` runs it for 75 s.
.PHONY: schemathesis
schemathesis: ## Check the service against its OpenAPI document with schemathesis (SCHEMATHESIS_SECONDS, default 300; starts Postgres if needed)
	@if [ -n "$${OMS_TEST_DATABASE_URL:-}" ]; then
	  DATABASE_URL="$$OMS_TEST_DATABASE_URL" scripts/ensure-postgres.sh --admin >/dev/null
	else
	  OMS_TEST_DATABASE_URL="$$(DATABASE_URL="$${DATABASE_URL:-$(DEFAULT_DATABASE_URL)}" scripts/ensure-postgres.sh --admin)"
	fi
	OMS_NATS_SERVER_BIN="$$(scripts/ensure-nats.sh bin)"
	export OMS_TEST_DATABASE_URL OMS_NATS_SERVER_BIN
	exec scripts/schemathesis.sh "$${SCHEMATHESIS_SECONDS:-300}"

lint: ## Check formatting and run clippy with warnings as errors
	@$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	@$(CARGO) fmt --all

migrate: ## Apply the database migrations (starts Postgres if needed)
	@$(defaults)
	DATABASE_URL="$$(scripts/ensure-postgres.sh)"
	exec $(CARGO) run -p oms -- migrate

services: ## Start Postgres and NATS if needed; print their URLs and the nats-server binary
	@$(defaults)
	db="$$(scripts/ensure-postgres.sh)"
	nats="$$(scripts/ensure-nats.sh server)"
	bin="$$(scripts/ensure-nats.sh bin)"
	printf 'DATABASE_URL=%s\nNATS_URL=%s\nOMS_NATS_SERVER_BIN=%s\n' "$$db" "$$nats" "$$bin"

stop-services: ## Stop the Postgres and nats-server that these scripts started (only those)
	@scripts/stop-services.sh

# The benchmark (scripts/bench.sh, docs/benchmarks.md): Postgres's own ceiling, then `oms bench`
# over HTTP with the whole order mix against the postgres-es baseline, the pipeline's lag, the
# growth runs and the rebuild, in one run. Settings: see `scripts/bench.sh --help`.
BENCH_SECONDS ?= 20
BENCH_CLIENTS ?= 16
export BENCH_SECONDS BENCH_CLIENTS
.PHONY: bench-smoke
bench: ## The benchmark, one run (release build, under 15 min): prints the table with its ratios, writes docs/bench/latest.json (BENCH_SECONDS, BENCH_CLIENTS, BENCH_ARGS; see scripts/bench.sh --help)
	@exec scripts/bench.sh

bench-smoke: ## The benchmark's every code path in under a minute (debug build); fails on a missing figure or any 5xx
	@exec scripts/bench.sh --smoke

clean: ## Remove build artefacts (cargo clean)
	@$(CARGO) clean

distclean: clean ## Also stop the local services and remove .local/ (their data) and .tools/
	@scripts/stop-services.sh
	rm -rf .local .tools
