# EM image segmentation: the single entry point. `make help` lists the targets.
#
# The path of the data:
#   image ─► notebooks/experiment.ipynb, run by papermill once per K ─► output/<image>/k-<K>/
#         ─► notebooks/report.ipynb (+ the executed derivation.ipynb)  ─► report/report.{html,pdf}
#
# Every step is incremental: a K is refitted only when the kernel, the notebook, the
# image or its parameters changed. Outputs are written atomically, so an interrupted
# run resumes where it stopped.

.DEFAULT_GOAL := report
.DELETE_ON_ERROR:
SHELL := /bin/bash

# ---- Parameters: override on the command line, e.g. make report IMAGE=images/photo.jpg KS="2 8"
# The defaults are written once, in src/pipeline/defaults.py.
PYTHON   ?= python3
DEFAULTS := $(shell $(PYTHON) src/pipeline/defaults.py)
default   = $(subst $(,), ,$(patsubst $(1)=%,%,$(filter $(1)=%,$(DEFAULTS))))
, := ,
IMAGE    ?=
KS       ?= $(call default,KS)
SEED     ?= $(call default,SEED)
INIT     ?= $(call default,INIT)
N_INIT   ?= $(call default,N_INIT)
SPLIT_MERGE ?= $(call default,SPLIT_MERGE)
TOL      ?= $(call default,TOL)
MAX_ITER ?= $(call default,MAX_ITER)

# The committed report/ is made only with the defaults above, none given on the command
# line or in the environment; any other run writes its report to output/<image>/report/.
CANONICAL := $(if $(filter-out file,$(origin KS) $(origin SEED) $(origin INIT) $(origin N_INIT) $(origin SPLIT_MERGE) \
               $(origin TOL) $(origin MAX_ITER)),,$(if $(IMAGE),,1))

# make splits words at spaces and the recipes quote with '': refuse such paths up front.
$(if $(word 2,$(IMAGE)),$(error IMAGE="$(IMAGE)": make cannot handle a path with spaces; rename the file or link it without them))
$(if $(findstring ',$(IMAGE)),$(error IMAGE="$(IMAGE)": a path with a quote (') is not supported; rename the file or link it))

VENV  := .venv
PY    := $(VENV)/bin/python
ENV   := $(VENV)/.installed
DEV   := $(VENV)/.installed-dev
STEM  := $(shell $(PYTHON) src/pipeline/paths.py stem '$(IMAGE)')
OUT   := output/$(STEM)
RUNS  := $(foreach k,$(KS),$(OUT)/k-$(k)/experiment.ipynb)
# What each step's results depend on (besides its notebook and parameters).
CODE  := $(wildcard src/em/*.py) src/pipeline/__init__.py src/pipeline/defaults.py src/pipeline/paths.py src/pipeline/atomic.py src/pipeline/images.py \
         src/pipeline/experiment.py src/pipeline/params.py src/pipeline/run_notebook.py src/pipeline/baselines.py src/pipeline/learned.py
# Every slow step runs through pipeline.steps, which logs its time for the summary that
# `make report` prints at the end (the steps that started after START).
START := $(shell date +%s.%N)
STEPS := output/.steps.log
STEP   = $(PY) -m pipeline.steps run $(STEPS) $@
RUN_NOTEBOOK = $(STEP) $(PY) -m pipeline.run_notebook --no-progress-bar

# The fits, the derivation and the rendering run side by side on the machine's cores
# (JOBS=1 for one at a time); each step's output is shown when it finishes.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
ifneq ($(filter report experiments,$(or $(MAKECMDGOALS),report)),)
MAKEFLAGS += --jobs=$(JOBS) --output-sync=target
endif

.PRECIOUS: $(OUT)/params/k-%.txt

# $(call write_if_changed,TEXT): write TEXT to the target only when it differs, so the
# target's time changes (and what depends on it reruns) only when the text does.
define write_if_changed
@mkdir -p $(@D)
@echo '$(1)' > $@.new
@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
endef

.PHONY: help report experiments study seeds test test-quick bench bench-quick lab clean distclean FORCE

help: ## List the targets and parameters
	@echo "make <target> [IMAGE=path] [KS=\"$(call default,KS)\"] [SEED=$(call default,SEED)] [N_INIT=$(call default,N_INIT)]"
	@echo "              [SPLIT_MERGE=$(call default,SPLIT_MERGE)] [TOL=$(call default,TOL)] [MAX_ITER=$(call default,MAX_ITER)] [INIT=kmeans++|random]"
	@echo "              [JOBS=$(JOBS)] [LAB_ARGS=\"--port=8890 --ip=0.0.0.0\"]"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# ---- Environment
# The project itself is installed in editable mode: the notebooks, tests and benchmarks
# import em and pipeline from src/ without any path editing.
$(ENV): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(DEV): requirements-dev.txt $(ENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# ---- Parameters, checked before anything is written (every step that writes waits for this)
.PHONY: check-params
check-params: $(ENV)
	@$(PY) -m pipeline.params IMAGE='$(IMAGE)' KS='$(KS)' SEED='$(SEED)' INIT='$(INIT)' \
	  N_INIT='$(N_INIT)' SPLIT_MERGE='$(SPLIT_MERGE)' TOL='$(TOL)' MAX_ITER='$(MAX_ITER)'

# ---- Experiments: one papermill run of notebooks/experiment.ipynb per K
experiments: $(RUNS) | check-params ## Fit every K in KS (output/<image>/k-<K>/)

# The parameters of a run, rewritten only when they change, so a change reruns that K.
$(OUT)/params/k-%.txt: FORCE | check-params
	$(call write_if_changed,image=$(IMAGE) k=$* seed=$(SEED) init=$(INIT) n_init=$(N_INIT) split_merge=$(SPLIT_MERGE) tol=$(TOL) max_iter=$(MAX_ITER))

# A K's directory is replaced as a whole, only after its run succeeded (--stage).
$(OUT)/k-%/experiment.ipynb: notebooks/experiment.ipynb $(CODE) $(wildcard $(IMAGE)) $(OUT)/params/k-%.txt $(ENV)
	$(RUN_NOTEBOOK) notebooks/experiment.ipynb $@ --cwd notebooks --stage output_dir \
	  -p image '$(IMAGE)' -p k $* -p seed $(SEED) -p init '$(INIT)' -p n_init $(N_INIT) -p split_merge $(SPLIT_MERGE) \
	  -p tol $(TOL) -p max_iter $(MAX_ITER)

# ---- Report: the derivation and the results, rendered to HTML and PDF
# The canonical run's report goes to report/ (committed); any other to output/<image>/report/.
# Figures, HTML and PDF are made in $(STAGE) and moved into place together, once all exist.
REPORT_DIR := $(if $(CANONICAL),report,$(OUT)/report)
STAGE      := $(OUT)/staged-report

report: $(REPORT_DIR)/report.html $(REPORT_DIR)/report.pdf | check-params ## Fit every K and render the report (the default goal)
	@$(PY) -m pipeline.steps summary $(STEPS) $(START)
	@echo "The report: $(REPORT_DIR)/report.html and report.pdf$(if $(CANONICAL),, (report/ is made only \
	  by the canonical run: the default image with every parameter at its default))"

output/derivation.ipynb: notebooks/derivation.ipynb $(CODE) $(ENV) | check-params
	$(RUN_NOTEBOOK) notebooks/derivation.ipynb $@ --cwd notebooks

$(OUT)/report-params.txt: FORCE | check-params
	$(call write_if_changed,image=$(IMAGE) ks=$(KS))

# The report only reads: every K's results and the data files of make study, make bench and
# make seeds (their paths: pipeline.paths).
REPORT_DATA := $(shell $(PYTHON) src/pipeline/paths.py report-data '$(IMAGE)')
STUDY_DATA := $(word 1,$(REPORT_DATA))
BENCH_DATA := $(word 2,$(REPORT_DATA))
SEEDS_DATA := $(word 3,$(REPORT_DATA))
REPORT_CODE := $(addprefix src/pipeline/,report.py results.py figures.py tables.py narrative.py slider.py machine.py)
$(OUT)/report.ipynb: notebooks/report.ipynb $(RUNS) $(OUT)/report-params.txt $(CODE) $(REPORT_CODE) \
                     $(wildcard $(STUDY_DATA) $(BENCH_DATA) $(SEEDS_DATA))
	$(RUN_NOTEBOOK) notebooks/report.ipynb $@ --cwd notebooks \
	  -p results_dir '$(abspath $(OUT))' -p ks '$(KS)' -p image '$(IMAGE)' \
	  -p figures_dir '$(abspath $(STAGE))/figures' -p seeds_data '$(abspath $(SEEDS_DATA))'

# The HTML needs pandoc (maths as MathML; without it the maths shows as TeX source), the PDF
# XeLaTeX and pandoc. As root with apt-get they are installed when missing; elsewhere the PDF
# step stops with a message naming the packages, after the HTML is made (order-only prerequisite).
TEX_PACKAGES := $(file < tex-packages.txt)
APT_GET      := DEBIAN_FRONTEND=noninteractive apt-get
ROOT_WITH_APT = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null
define ensure_tex
@if ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null || ! command -v pandoc >/dev/null; then \
	  if $(ROOT_WITH_APT); then \
	    echo "Installing XeLaTeX and pandoc for the PDF (about 80 s): $(TEX_PACKAGES)"; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $(TEX_PACKAGES); \
	  else \
	    echo "The PDF needs xelatex and pandoc: install the Debian/Ubuntu packages" >&2; \
	    echo "  $(TEX_PACKAGES)" >&2; \
	    echo "(as root: make tex), or a TeX distribution with XeLaTeX and pandoc, then run make again." >&2; \
	    exit 1; \
	  fi; \
	fi
endef

.PHONY: tex
tex: ## Install XeLaTeX and pandoc for the PDF (Debian/Ubuntu as root, about 80 s)
	$(ensure_tex)

RENDER_CODE := src/pipeline/render.py $(wildcard src/pipeline/templates/*/*)
$(STAGE)/report.html: $(OUT)/report.ipynb output/derivation.ipynb $(RENDER_CODE) $(ENV)
	@command -v pandoc >/dev/null || ! $(ROOT_WITH_APT) || \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends pandoc; } || \
	  echo "pandoc could not be installed: the HTML's maths will show as TeX source" >&2
	$(STEP) $(PY) -m pipeline.render html output/derivation.ipynb $(OUT)/report.ipynb $@

# With XeLaTeX and pandoc present the HTML and the PDF render side by side; without them
# the PDF waits for the HTML (which is then made first, and apt-get runs once at a time).
TEX_MISSING := $(shell command -v xelatex >/dev/null && command -v latexmk >/dev/null && command -v pandoc >/dev/null || echo 1)
$(STAGE)/report.pdf: $(OUT)/report.ipynb output/derivation.ipynb $(RENDER_CODE) $(ENV) \
                     $(if $(TEX_MISSING),| $(STAGE)/report.html)
	$(ensure_tex)
	$(STEP) $(PY) -m pipeline.render pdf output/derivation.ipynb $(OUT)/report.ipynb $@

$(REPORT_DIR)/report.html $(REPORT_DIR)/report.pdf &: $(STAGE)/report.html $(STAGE)/report.pdf
	$(PY) -m pipeline.render publish $(STAGE) $(REPORT_DIR)

# ---- The original study reproduced: its photograph is never committed, only the numbers
STUDY_IMAGE ?= $(shell $(PYTHON) src/pipeline/paths.py study-image)
# make report's settings, for the sweeps over seeds of study and seeds
SWEEP_ARGS = --ks '$(KS)' --n-init $(N_INIT) --split-merge $(SPLIT_MERGE) --tol $(TOL) --max-iter $(MAX_ITER)

study: $(ENV) | check-params ## Sweep K on the original study's photograph (5 seeds + its random start) -> report/data/study.json
	@test -f '$(STUDY_IMAGE)' || { echo "make study needs the study's photograph at $(STUDY_IMAGE) (STUDY_IMAGE=...)" >&2; exit 1; }
	$(PY) -m pipeline.study '$(STUDY_IMAGE)' $(STUDY_DATA) --published $(SWEEP_ARGS)

# ---- The spread over seeds on the report's own image (its error curve shows it when present)
seeds: $(ENV) | check-params ## Every K with 5 seeds + the study's random start -> report/data/seeds.json (other images: output/<image>/)
	$(PY) -m pipeline.study '$(IMAGE)' $(SEEDS_DATA) $(SWEEP_ARGS)

# ---- Checks
# The tests on every core (pytest-xdist), a test file to a worker: a module's fixtures (a
# study run through the notebooks, say) are made once.
test: $(DEV) ## Run the test suite
	$(PY) -m pytest -n auto --dist loadfile

test-quick: $(DEV) ## The tests not marked slow (no make, papermill or rendering)
	$(PY) -m pytest -n auto --dist loadfile -m "not slow"

bench: $(DEV) ## Benchmark the kernel against scikit-learn (tables + report/data/bench.json)
	$(PY) benchmarks/bench_em.py

bench-quick: $(DEV) ## A smaller benchmark (K = 2, 16; three photographs), about 2 minutes
	$(PY) benchmarks/bench_em.py --quick

# ---- Working in Jupyter
# JupyterLab gets an environment of its own (see requirements-lab.txt for why); the
# kernel the notebooks name, python3, is pointed at the project's environment.
LAB := .venv-lab

$(LAB)/.installed: requirements-lab.txt $(ENV) src/pipeline/lab.py
	test -x $(LAB)/bin/python || $(PYTHON) -m venv $(LAB)
	$(LAB)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-lab.txt
	@# The project without its dependencies: the server extension pipeline.lab saves
	@# notebooks without outputs (so Jupyter never dirties them) and prints the address.
	$(LAB)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(LAB)/bin/python -m pipeline.lab configure
	@rm -rf $(LAB)/share/jupyter/kernels/python3  # ipykernel's own, replaced below
	@spec=$$($(PY) -c 'from ipykernel.kernelspec import write_kernel_spec; \
	  print(write_kernel_spec(overrides={"display_name": "Python 3 (project .venv)"}))') && \
	  $(LAB)/bin/jupyter kernelspec install --sys-prefix --name python3 --log-level=WARN "$$spec" && \
	  rm -rf "$$spec"
	touch $@

# As root (containers, CI) JupyterLab needs --allow-root; without a display it opens no
# browser. It ends with the address to open (with a fresh token, unless JUPYTER_TOKEN is
# set). More options: make lab LAB_ARGS="--port=8890 --ip=0.0.0.0"; another folder of
# notebooks: LAB_NOTEBOOKS=path
LAB_ARGS ?=
LAB_NOTEBOOKS ?= notebooks
LAB_FLAGS = --notebook-dir=$(LAB_NOTEBOOKS) $(if $(filter 0,$(shell id -u)),--allow-root) \
  $(if $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser) $(LAB_ARGS)
lab: $(LAB)/.installed ## Open JupyterLab on notebooks/ (explore.ipynb first) with the project's kernel
	@echo "Starting JupyterLab: $(LAB)/bin/jupyter lab $(strip $(LAB_FLAGS))"
	@JUPYTER_TOKEN=$${JUPYTER_TOKEN:-$$($(LAB)/bin/python -c 'import secrets; print(secrets.token_hex(24))')} \
	  $(LAB)/bin/jupyter lab $(LAB_FLAGS)

clean: ## Delete every generated result (output/), keep the environment
	find output -mindepth 1 -not -name .gitkeep -delete

distclean: clean ## Also delete the environments (.venv, .venv-lab)
	rm -rf $(VENV) $(LAB)

FORCE:
