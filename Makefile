# One command runs the system (`make run`), one runs the tests (`make test`); both install what is missing.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install system run test unit lint bench contracts clean

install: system $(VENV)/.installed node_modules/.installed

system:
	@bash devstack/install.sh

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

run: install
	$(PY) -m devstack.run

test: install
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services admin

bench: install
	$(PY) bench/compare.py
	$(PY) bench/pipeline.py
	$(PY) bench/render.py

contracts: node_modules/.installed
	node contracts/build.js

clean:
	rm -rf .run
