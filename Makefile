# embodied_wm: `make demo` runs the main job, `make test` runs the tests. Both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source env.sh &&
DEMO_OUT ?= out/demo

.PHONY: help setup build demo test lint bench clean

help:
	@echo "make demo   - simulate, run perception_node on the replayed data, write predictions + report"
	@echo "make test   - set up, build, run the test suite"
	@echo "make setup  - create .venv (ROS 2 Jazzy wheels, torch, deps)"
	@echo "make build  - colcon build the interfaces and install the package into install/"
	@echo "make lint   - ruff + mypy + lint-imports (the layer contract in .importlinter)"

setup:
	@bash scripts/setup_env.sh

build: setup
	@bash scripts/build.sh

demo: build
	@$(ENV) python -m embodied_wm.tools.demo --out $(DEMO_OUT)

test: build
	@$(ENV) ruff check src test && mypy && lint-imports
	@$(ENV) python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	@echo "test: results above; logs of spawned nodes under $(CURDIR)/out/test-logs"

lint: setup
	@$(ENV) ruff check src test && mypy && lint-imports

clean:
	rm -rf build install log out
