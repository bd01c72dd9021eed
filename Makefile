# One entry point for set-up, running and testing. `make run` and `make test` install
# whatever is missing (Python venv, PostgreSQL, RabbitMQ, Kafka) and start the servers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)

.PHONY: help install services tools migrate keys run test test-cluster test-unit lint bench down clean

help:
	@echo "make run     start servers and every process of the system (Ctrl-C stops them)"
	@echo "make test    start servers and run the whole test suite"
	@echo "make bench   run the benchmarks (results in bench/results/)"
	@echo "make test-unit  the tests that need no server (seconds)"
	@echo "make test-cluster  broker, projector and replica faults on three Kafka brokers and a read replica"
	@echo "make lint    ruff and the import-layer contracts"
	@echo "make down    stop PostgreSQL, RabbitMQ and Kafka started by services/up.sh"

# bench.txt includes dev.txt and base.txt: the tests run a tiny pass of every benchmark.
$(BIN)/.installed: requirements/base.txt requirements/dev.txt requirements/bench.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/bench.txt
	touch $@

install: $(BIN)/.installed

services: install
	PYTHON=$(BIN)/python bash services/up.sh

tools:
	bash services/tools.sh

# Migrations run as each database's owner role; the set-up runs again afterwards so that new
# tables get their grants (the relay's on the outbox, the read API's SELECT).
# The write app derives secrets from its signing key, so the keys come before it is built.
migrate: services keys
	$(BIN)/flask --app auth_api db upgrade
	$(BIN)/flask --app 'query_api:create_migration_app()' db upgrade
	$(BIN)/alembic -c migrations/notify/alembic.ini upgrade head
	bash services/postgres.sh setup

keys: install
	$(BIN)/python -m auth_api.keygen

run: migrate keys
	@bash services/secrets.sh flower
	exec $(BIN)/python -m services.supervise

test: migrate keys tools lint
	$(BIN)/python -m pytest

# The cluster profile's fault tests (tests/cluster): the session starts three KRaft brokers and
# a streaming replica of PostgreSQL on its own ports (TEST_NAMESPACE shifts them), beside the
# shared single broker, and runs the whole system on them.
test-cluster: migrate keys
	TEST_KAFKA_CLUSTER=1 TEST_PG_REPLICA=1 $(BIN)/python -m pytest tests/cluster -v

test-unit: install
	$(BIN)/python -m pytest tests/unit -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: migrate keys
	$(BIN)/python -m pip install --quiet -r requirements/bench.txt
	command -v wrk >/dev/null || bash -c 'source services/lib.sh && apt_install wrk' \
		|| echo "wrk not installed: the read API benchmark uses bench/loadgen.py instead"
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

down:
	bash services/down.sh

clean: down
	rm -rf .data $(VENV)
