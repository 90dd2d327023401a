PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# the neural-tangents oracle environment (reference/README.md): its own python3.11 and old JAX
NT_PY ?= python3.11
NT_VENV := .venv-nt
NT_STAMP := $(NT_VENV)/.installed
ORACLE := reference/oracle/manifest.json

.PHONY: test figures docs bench bench-nt bench-cells reference lint clean

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(NT_STAMP): reference/requirements-nt.txt
	rm -rf $(NT_VENV)
	$(NT_PY) -m venv $(NT_VENV)
	$(NT_VENV)/bin/pip install --quiet --no-deps -r reference/requirements-nt.txt
	TF_CPP_MIN_LOG_LEVEL=3 $(NT_VENV)/bin/python -c "import neural_tangents, jax; print('neural-tangents', neural_tangents.__version__, 'jax', jax.__version__)"
	touch $(NT_STAMP)

$(ORACLE): $(NT_STAMP) reference/make_oracle.py
	$(NT_VENV)/bin/python reference/make_oracle.py --out reference/oracle

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -n 2 -q

figures: $(STAMP)
	$(VENV)/bin/ntk-rnn figures

# the documentation site in site/ (mkdocs.yml); --strict turns every warning (a broken link, anchor or reference) into
# a failure. NO_MKDOCS_2_WARNING silences Material's banner about its own end of life (May 2027), not a warning on the docs.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_ntk.py

reference: $(ORACLE)

bench-nt: $(STAMP) $(NT_STAMP)
	$(VENV)/bin/python benchmarks/bench_nt.py

bench-cells: $(STAMP) $(NT_STAMP)
	$(VENV)/bin/python benchmarks/bench_cells.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(NT_VENV) reference/oracle results site .pytest_cache .hypothesis
