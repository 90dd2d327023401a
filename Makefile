PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: test figures bench lint clean

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -n 2 -q

figures: $(STAMP)
	$(VENV)/bin/ntk-rnn figures

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_ntk.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
