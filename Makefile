# The two fresh-machine commands are `make demo` and `make test`; every target bootstraps what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
AZURITE := devstack/azurite_npm/node_modules/azurite/dist/src/blob/main.js
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: help bootstrap test lint format schemas demo bench bench-full devstack clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(UV):
	python3 -m pip install --quiet --user uv

.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

$(AZURITE): devstack/azurite_npm/package-lock.json
	npm ci --prefix devstack/azurite_npm --no-audit --no-fund --loglevel=error
	@touch $@

bootstrap: .venv/.synced $(AZURITE)  ## install Python deps (uv) and Azurite (npm)

test: bootstrap  ## run the whole suite (unit + integration against devstack)
	$(UV) run pytest

lint: bootstrap  ## ruff, formatting, mypy --strict (checkov runs in the test suite: tests/infra)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

format: bootstrap  ## apply ruff fixes and formatting
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

schemas: bootstrap  ## regenerate schemas/ from the pydantic models
	$(UV) run voicelive-worker schema job > schemas/job.v1.schema.json
	$(UV) run voicelive-worker schema manifest > schemas/manifest.v1.schema.json

demo: bootstrap  ## the main job end to end on the local stack
	$(UV) run voicelive-worker demo

devstack: bootstrap  ## run Service Bus, Voice Live and Azurite stand-ins; settings in .env.devstack
	$(UV) run python -m devstack up --env-file .env.devstack

bench: bootstrap  ## quick benchmarks (≤ 5 min); results in bench/results/
	$(UV) run python -m bench --quick

bench-full: bootstrap  ## the whole benchmark set
	$(UV) run python -m bench

clean:
	rm -rf .venv build demo-output .pytest_cache .mypy_cache .ruff_cache
