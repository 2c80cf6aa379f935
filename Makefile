# EM image segmentation: the single entry point. `make help` lists the targets.
#
# The path of the data:
#   image ─► notebooks/experiment.ipynb, run by papermill once per K ─► output/<image>/k-<K>/
#         ─► notebooks/report.ipynb (+ the executed derivation.ipynb)  ─► report/report.{html,pdf}
#
# Each step reruns only when its key changed: what its result depends on (the image's
# content, the parameters, the code and programs it runs), written by pipeline.plan to
# output/<image>/keys/. A K, or an executed notebook, also reruns when it fails its manifest
# (a file missing or changed). Outputs
# are written atomically, so an interrupted run resumes where it stopped; a second run in
# the same checkout waits for the first.

.DEFAULT_GOAL := report
.DELETE_ON_ERROR:
SHELL := /bin/bash
, := ,

# ---- Python: the versions pyproject.toml's requires-python allows; any other is refused here
PYTHON ?= python3
NEEDS_PYTHON := $(shell sed -n 's/^requires-python *= *">=\([0-9.]*\)"/\1/p' pyproject.toml)
PYTHON_REFUSED := $(shell { $(PYTHON) -c 'import sys; v = sys.version_info; sys.stdout.write("" if v >= \
  ($(subst .,$(,),$(NEEDS_PYTHON)),) else "PYTHON=$(PYTHON) is Python %d.%d.%d, and this project needs Python \
  >= $(NEEDS_PYTHON): install one and give it, e.g. make PYTHON=python3.12" % tuple(v[:3]))'; } 2>&1; :)
$(if $(PYTHON_REFUSED),$(error $(PYTHON_REFUSED)))

# ---- Parameters: override on the command line, e.g. make report IMAGE=images/photo.jpg KS="2 8"
# The defaults are written once, in src/pipeline/defaults.py.
DEFAULTS := $(shell $(PYTHON) src/pipeline/defaults.py)
default   = $(subst $(,), ,$(patsubst $(1)=%,%,$(filter $(1)=%,$(DEFAULTS))))
IMAGE    ?=
KS       ?= $(call default,KS)
SEED     ?= $(call default,SEED)
INIT     ?= $(call default,INIT)
N_INIT   ?= $(call default,N_INIT)
SPLIT_MERGE ?= $(call default,SPLIT_MERGE)
TOL      ?= $(call default,TOL)
MAX_ITER ?= $(call default,MAX_ITER)

# The image's path goes into the recipes absolute and quoted ('...'), its results under a
# name make can take (output/<stem>/: pipeline.paths). make expands $, splits words at
# spaces, and ' would end the quotes: such paths are refused.
$(if $(findstring $$,$(value IMAGE)),$(error IMAGE='$(value IMAGE)': make expands the '$$' in a path; rename the file or link it without it))
$(if $(word 2,$(IMAGE)),$(error IMAGE="$(IMAGE)": make cannot handle a path with spaces; rename the file or link it without them))
$(if $(findstring ',$(IMAGE)),$(error IMAGE="$(IMAGE)": a path with a quote (') is not supported; rename the file or link it))
IMAGE_PATH := $(if $(filter ~%,$(IMAGE)),$(IMAGE),$(abspath $(IMAGE)))

# The committed report/ is made only with the defaults above, none given on the command
# line or in the environment; any other run writes its report to output/<image>/report/.
CANONICAL := $(if $(filter-out file,$(origin KS) $(origin SEED) $(origin INIT) $(origin N_INIT) $(origin SPLIT_MERGE) \
               $(origin TOL) $(origin MAX_ITER)),,$(if $(IMAGE),,1))

VENV  := .venv
PY    := $(VENV)/bin/python
ENV   := $(VENV)/.installed
DEV   := $(VENV)/.installed-dev
LAB   := .venv-lab

# An environment is keyed like a step: its stamp (.installed) holds what it was made from,
# the interpreter (its real path and version, major.minor) and the SHA-256 of the files it
# was made from, and one whose stamp says otherwise is made anew (FORCE): another PYTHON
# rebuilds it, a touched but unchanged requirements file does not.
ENV_DIGESTS := $(shell $(PYTHON) -c 'import hashlib, os, sys; print("python=%s:%d.%d" % (os.path.realpath( \
  sys.executable), *sys.version_info[:2]), *(name + "=" + (hashlib.sha256(open(name, "rb").read()).hexdigest()[:16] \
  if os.path.isfile(name) else "missing") for name in sys.argv[1:]))' \
  requirements.txt pyproject.toml requirements-dev.txt requirements-lab.txt src/pipeline/lab.py)
env_key = $(filter $(addsuffix =%,$(1)),$(ENV_DIGESTS))
ENV_KEY := $(call env_key,python requirements.txt pyproject.toml)
DEV_KEY := $(call env_key,requirements-dev.txt)
LAB_KEY := $(call env_key,python requirements-lab.txt src/pipeline/lab.py)
# $(call remake,STAMP,KEY): FORCE unless STAMP holds KEY (after its first word, a #)
made_of = $(wordlist 2,999,$(file < $(1)))
remake  = $(if $(filter-out $(2),$(call made_of,$(1)))$(filter-out $(call made_of,$(1)),$(2)),FORCE)
STEM  := $(shell $(PYTHON) src/pipeline/paths.py stem '$(IMAGE_PATH)')
OUT   := output/$(STEM)
KEYS  := $(OUT)/keys

# ---- The plan of a run, before any step
# A run that writes output/ first takes a lock on it, held until make ends (pipeline.lock):
# a second run in this checkout waits for the first. Then, in the environment (included,
# so make makes it first and reads this Makefile again), pipeline.plan checks the
# parameters (a bad one stops make here, in one line), leaves out each K above the image's
# number of distinct colours (one line), writes every step's key and returns the K to fit.
GOALS := $(or $(MAKECMDGOALS),$(.DEFAULT_GOAL))
ifneq ($(filter report experiments seeds study clean distclean,$(GOALS)),)
$(if $(MAKE_RESTARTS),,$(shell $(PYTHON) src/pipeline/lock.py output $$PPID))
endif
ifneq ($(filter report experiments seeds study,$(GOALS)),)
include $(ENV)
ifeq ($(call remake,$(ENV),$(ENV_KEY)),)
KS_FIT := $(shell $(PY) -m pipeline.plan $(OUT) IMAGE='$(IMAGE_PATH)' KS='$(KS)' SEED='$(SEED)' INIT='$(INIT)' \
            N_INIT='$(N_INIT)' SPLIT_MERGE='$(SPLIT_MERGE)' TOL='$(TOL)' MAX_ITER='$(MAX_ITER)')
$(if $(filter-out 0,$(.SHELLSTATUS)),$(error $(KS_FIT)))
endif
endif

# Every slow step runs through pipeline.steps, which logs its time for the summary that
# `make report` prints at the end (the steps that started after START).
START := $(shell date +%s.%N)
STEPS := output/.steps.log
STEP   = $(PY) -m pipeline.steps run $(STEPS) $@
RUN_NOTEBOOK = $(STEP) $(PY) -m pipeline.run_notebook --no-progress-bar

# The fits, the derivation and the rendering run side by side on the machine's cores
# (JOBS=1 for one at a time); each step's output is shown when it finishes.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
ifneq ($(filter report experiments,$(GOALS)),)
MAKEFLAGS += --jobs=$(JOBS) --output-sync=target
endif

.PHONY: help report experiments study seeds tex test test-quick bench bench-quick lab clean distclean

help: ## List the targets and parameters
	@echo "make <target> [IMAGE=path] [KS=\"$(call default,KS)\"] [SEED=$(call default,SEED)] [N_INIT=$(call default,N_INIT)]"
	@echo "              [SPLIT_MERGE=$(call default,SPLIT_MERGE)] [TOL=$(call default,TOL)] [MAX_ITER=$(call default,MAX_ITER)] [INIT=kmeans++|random]"
	@echo "              [JOBS=$(JOBS)] [PYTHON=$(PYTHON)] [LAB_ARGS=\"--port=8890 --ip=0.0.0.0\"]"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# ---- Environment
# The project itself is installed in editable mode: the notebooks, tests and benchmarks
# import em and pipeline from src/ without any path editing. An environment is made anew
# whenever its key changes (ENV_KEY above), and its stamp written only at the end: one
# that a failed or interrupted install left behind is rebuilt, never reused.
# $(call fresh_venv,DIR): DIR removed (if it is an environment) and made anew by $(PYTHON),
# in a way that any interruption leaves something the next run makes anew (fresh_venv.py).
fresh_venv = $(PYTHON) src/pipeline/fresh_venv.py $(1)

$(ENV): $(call remake,$(ENV),$(ENV_KEY))
	$(call fresh_venv,$(VENV))
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	echo '# $(ENV_KEY)' > $@

$(DEV): $(ENV) $(call remake,$(DEV),$(DEV_KEY))
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	echo '# $(DEV_KEY)' > $@

.PHONY: FORCE
FORCE:

# ---- Experiments: one papermill run of notebooks/experiment.ipynb per K
RUNS := $(foreach k,$(KS_FIT),$(OUT)/k-$(k)/experiment.ipynb)
experiments: $(RUNS) ## Fit every K in KS (output/<image>/k-<K>/)

# A K's directory is replaced as a whole, only after its run succeeded (--stage), with a
# manifest of its files and the key it was made with written last (--key).
$(OUT)/k-%/experiment.ipynb: $(KEYS)/k-%.json | $(ENV)
	$(RUN_NOTEBOOK) notebooks/experiment.ipynb $@ --cwd notebooks --stage output_dir --key $< \
	  -p image '$(IMAGE_PATH)' -p k $* -p seed $(SEED) -p init '$(INIT)' -p n_init $(N_INIT) \
	  -p split_merge $(SPLIT_MERGE) -p tol '$(TOL)' -p max_iter $(MAX_ITER)

# ---- Report: the derivation and the results, rendered to HTML and PDF
STAGE      := $(OUT)/staged-report

# The executed notebooks carry a manifest too (--key): one found damaged is run again.
output/derivation.ipynb: output/keys/derivation.json | $(ENV)
	$(RUN_NOTEBOOK) notebooks/derivation.ipynb $@ --cwd notebooks --key $<

# The report only reads: every K's results and the data files of make study, make bench and
# make seeds (their paths: pipeline.paths; their content is in the report's key).
REPORT_DATA := $(shell $(PYTHON) src/pipeline/paths.py report-data '$(IMAGE_PATH)')
STUDY_DATA := $(word 1,$(REPORT_DATA))
SEEDS_DATA := $(word 3,$(REPORT_DATA))
$(OUT)/report.ipynb: $(RUNS) $(KEYS)/report.json | $(ENV)
	$(RUN_NOTEBOOK) notebooks/report.ipynb $@ --cwd notebooks --key $(KEYS)/report.json \
	  -p results_dir '$(abspath $(OUT))' -p ks '$(KS_FIT)' -p image '$(IMAGE_PATH)' \
	  -p figures_dir '$(abspath $(STAGE))/figures' -p seeds_data '$(abspath $(SEEDS_DATA))'

# The PDF needs XeLaTeX, latexmk and pandoc, the Debian packages of tex-packages.txt (the
# HTML needs pandoc for its maths). Where they are missing, root with apt-get installs them (make tex,
# which the rendering waits for); anyone else gets the HTML alone, told so in one line.
TEX_PACKAGES := $(file < tex-packages.txt)
TEX_MISSING   = ! command -v xelatex >/dev/null || ! command -v latexmk >/dev/null || ! command -v pandoc >/dev/null
ROOT_WITH_APT = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null
APT_GET      := DEBIAN_FRONTEND=noninteractive apt-get
NEEDS_TEX    := xelatex, latexmk and pandoc, the Debian/Ubuntu packages $(TEX_PACKAGES) (as root: \
                make tex), or a TeX distribution with XeLaTeX and latexmk, and pandoc
CANNOT_INSTALL_TEX := installing $(TEX_PACKAGES) needs root and apt-get; elsewhere install a TeX \
                      distribution with XeLaTeX and latexmk, and pandoc
PDF := $(shell { $(TEX_MISSING); } && ! { $(ROOT_WITH_APT); } || echo report.pdf)
# pandoc is there for the HTML's maths (MathML) when found or installed with TeX by make tex.
MATHS := $(or $(PDF),$(shell command -v pandoc))

# The canonical run's report goes to report/ (committed); any other to output/<image>/report/.
# Without pandoc the canonical run too, so that the committed HTML does not lose its
# maths. Figures, HTML and PDF are made in $(STAGE) and moved into place together, once
# all exist.
REPORT_DIR := $(if $(CANONICAL),$(if $(MATHS),report,$(OUT)/report),$(OUT)/report)
ELSEWHERE  := $(if $(CANONICAL),(report/ is left as it is: made without pandoc$(,) its HTML's maths would show \
              as TeX source),(report/ is made only by the canonical run: the default image with every parameter at its default))
# The line on a run without PDF, worded as it is printed: a PDF in the report's folder is
# named, as stale where the HTML is newer (the committed report/report.pdf is kept; any
# other is removed when an HTML is published without it) or as made with this HTML.
TEX_SOURCE := $(if $(MATHS),,$(,) and the HTML's maths shows as TeX source (no pandoc))
NO_PDF = pdf='$(REPORT_DIR)/report.pdf'; if [ ! -e "$$pdf" ]; then echo "No PDF$(TEX_SOURCE): $(if $(MATHS),it needs,they need) $(NEEDS_TEX)."; elif [ "$$pdf" -ot '$(REPORT_DIR)/report.html' ]; then echo "No new PDF: $$pdf is left from an earlier run$(,) stale beside this HTML$(TEX_SOURCE); a new one needs $(NEEDS_TEX)."; else echo "No new PDF: $$pdf is the one an earlier run made with this HTML$(TEX_SOURCE); a new one needs $(NEEDS_TEX)."; fi >&2

tex: ## Install XeLaTeX, latexmk and pandoc for the PDF (Debian/Ubuntu, as root)
	@if $(TEX_MISSING); then \
	  $(ROOT_WITH_APT) || { echo "make tex: $(CANNOT_INSTALL_TEX)" >&2; exit 1; }; \
	  echo "Installing XeLaTeX and pandoc for the PDF (about 80 s): $(TEX_PACKAGES)"; \
	  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $(TEX_PACKAGES); \
	fi

# Each rendering's key holds the versions of the programs it runs (pipeline.plan).
RENDERED := $(OUT)/report.ipynb output/derivation.ipynb
$(STAGE)/report.html: $(RENDERED) $(KEYS)/render-html.json | $(if $(PDF),tex) $(ENV)
	$(STEP) $(PY) -m pipeline.render html output/derivation.ipynb $(OUT)/report.ipynb $@

$(STAGE)/report.pdf: $(RENDERED) $(KEYS)/render-pdf.json | tex $(ENV)
	$(STEP) $(PY) -m pipeline.render pdf output/derivation.ipynb $(OUT)/report.ipynb $@

# Published together; without TeX the HTML alone, and a PDF of an earlier run is removed
# (but report/'s, committed, which NO_PDF names). Written atomically: make never deletes
# them, even when it is interrupted.
PUBLISHED := $(strip report.html $(PDF))
KEEP_PDF  := $(PDF)$(filter report,$(REPORT_DIR))
.PRECIOUS: $(addprefix $(REPORT_DIR)/,$(PUBLISHED))
$(addprefix $(REPORT_DIR)/,$(PUBLISHED)) &: $(addprefix $(STAGE)/,$(PUBLISHED))
	$(STEP) $(PY) -m pipeline.atomic publish $(STAGE) $(REPORT_DIR) $(PUBLISHED) figures $(if $(KEEP_PDF),,--remove report.pdf)

report: $(addprefix $(REPORT_DIR)/,$(PUBLISHED)) ## Fit every K and render the report (the default goal)
	@$(PY) -m pipeline.steps summary $(STEPS) $(START)
	@echo "The report: $(REPORT_DIR)/report.html$(if $(PDF), and report.pdf)$(if $(filter report,$(REPORT_DIR)),, $(ELSEWHERE))"
	$(if $(PDF),,@$(NO_PDF))

# ---- The original study reproduced: its photograph is never committed, only the numbers
STUDY_IMAGE ?= $(shell $(PYTHON) src/pipeline/paths.py study-image)
# make report's settings, for the sweeps over seeds of study and seeds
SWEEP_ARGS = --n-init $(N_INIT) --split-merge $(SPLIT_MERGE) --tol '$(TOL)' --max-iter $(MAX_ITER)

study: $(ENV) ## The original study's photograph: 5 seeds, its random start, and one run per K under its own rule -> report/data/study.json
	@test -f '$(STUDY_IMAGE)' || { echo "make study needs the study's photograph at $(STUDY_IMAGE) (STUDY_IMAGE=...)" >&2; exit 1; }
	$(PY) -m pipeline.study '$(STUDY_IMAGE)' $(STUDY_DATA) --published --ks '$(KS)' $(SWEEP_ARGS)

# ---- The spread over seeds on the report's own image (its error curve shows it when present)
seeds: $(ENV) ## The report's image: 5 seeds, the study's random start, K = 256 once for BIC -> report/data/seeds.json (other images: output/<image>/)
	$(PY) -m pipeline.study '$(IMAGE_PATH)' $(SEEDS_DATA) --ks '$(KS_FIT)' $(SWEEP_ARGS)

# ---- Checks
# The tests on every core (pytest-xdist), a test file to a worker: a module's fixtures (a
# study run through the notebooks, say) are made once.
test: $(DEV) ## Run the test suite
	$(PY) -m pytest -n auto --dist loadfile

test-quick: $(DEV) ## The tests not marked slow (no make, papermill or rendering)
	$(PY) -m pytest -n auto --dist loadfile -m "not slow"

bench: $(DEV) ## Benchmark the kernel against scikit-learn (tables + report/data/bench.json)
	$(PY) benchmarks/bench_em.py

bench-quick: $(DEV) ## A smaller benchmark (K = 2, 16; three photographs) for before/after comparisons
	$(PY) benchmarks/bench_em.py --quick

# ---- Working in Jupyter
# JupyterLab gets an environment of its own (see requirements-lab.txt for why); the
# kernel the notebooks name, python3, is pointed at the project's environment.
$(LAB)/.installed: $(ENV) $(call remake,$(LAB)/.installed,$(LAB_KEY))
	$(call fresh_venv,$(LAB))
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
	echo '# $(LAB_KEY)' > $@

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
	rm -rf $(VENV) $(LAB) $(VENV).old $(LAB).old
