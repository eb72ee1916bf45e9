# Jobs API developer commands. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
UV = $$(command -v uv || echo "$$HOME/.local/bin/uv")
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: install run test test-unit lint bench bench-smoke reliability e2e-kind deploy-check containers clean

.venv/.installed: uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml
	bash scripts/bootstrap.sh
	$(UV) sync --frozen --all-packages
	touch $@

install: .venv/.installed ## create .venv with every package editable, from uv.lock

run: install ## embedded Redis + API on 127.0.0.1:8000 + two workers; RELOAD=1: restart workers when task files change
	$(if $(RELOAD),JOBS_RELOAD=$(RELOAD) )$(PY) scripts/run_local.py

lint: install ## ruff over everything (bench too), mypy --strict on the shared library
	.venv/bin/ruff check libs services tests scripts bench
	.venv/bin/mypy --strict libs/jobs_core/src/jobs_core
	.venv/bin/mypy --strict --ignore-missing-imports services/api/src/jobs_api libs/jobs_client/src/jobs_client

# --durations: every run (CI's too) lists its slowest tests, where `make test` time goes
test-unit: install
	.venv/bin/pytest --durations=30 $(PYTEST_ARGS)

test: install lint containers bench-smoke test-unit ## everything CI runs (bench-smoke only proves `make bench` works)

containers: ## Docker engine (installed/started if needed), python:3.12-slim stand-in, jobs-api:dev + jobs-worker:dev
	bash scripts/docker/build-images.sh

e2e-kind: install ## kind cluster + ingress-nginx + KEDA, skaffold -p kind deploy, e2e suite via the ingress
	bash tests/e2e/kind/run.sh

deploy-check: install ## Helm chart, kustomize overlays, KEDA and skaffold checks (tests/deploy only)
	.venv/bin/pytest tests/deploy $(PYTEST_ARGS)

# Bench-only packages (peer job systems, load generator, profilers) live in their own virtualenv,
# never in .venv or the images: bench/requirements.txt.
.venv-bench/.installed: bench/requirements.txt | install
	$(UV) venv -q --allow-existing --python $(PY) .venv-bench
	$(UV) pip install -q --python .venv-bench/bin/python -r bench/requirements.txt
	touch $@

bench: install .venv-bench/.installed ## us vs RQ/Celery/Dramatiq/Huey on a private Redis (~10 min): docs/benchmarks.md
	$(PY) -m bench

bench-smoke: install .venv-bench/.installed ## every bench part with tiny counts: proves `make bench` still works
	$(PY) -m bench --smoke

# `make test` runs the same scenarios small (RELIABILITY_PROFILE=short, the default, ~2-3 min). The full profile
# also runs what `make test` samples or leaves to the images: every bad setting through `make run`, the
# failover negative control, and the e2e scenarios against local processes (README "Testing").
RELIABILITY_FULL_ONLY = tests/api/test_bad_settings.py tests/e2e/test_local_stack.py
reliability: install ## chaos, Redis/API crashes, Sentinel failover, hostile input, tenants, load at full size (~12 min on an idle 2-core host, ~24 on a busy one: README, Guarantees); prints the table
	RELIABILITY_PROFILE=full .venv/bin/pytest tests/reliability $(RELIABILITY_FULL_ONLY) -o timeout=900 $(PYTEST_ARGS)

clean:
	rm -rf .venv .venv-bench .pytest_cache .mypy_cache .ruff_cache
