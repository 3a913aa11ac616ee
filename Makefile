# Each target sets up what it needs on a fresh machine: .venv is created and filled on first use,
# from requirements.lock (exact versions of every dependency and extra; `make lock` rewrites it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK ?= requirements.lock
EXTRAS := test,lab,instructor,bench
NOTEBOOK_DIRS := $(wildcard notebooks solutions)
LINT_PATHS := $(wildcard course_utils tests benchmarks scripts) $(NOTEBOOK_DIRS)

.PHONY: course test test-latest test-transformers4 lab lint format bench exercises lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The locked versions, then the package itself (editable); a CPU-only torch already in the venv
# (README, "Install size") keeps the lock's CUDA libraries out. With LOCK empty (`make test-latest`),
# the newest versions pip resolves for pyproject.toml's ranges. Reinstalls when either file changes.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
ifeq ($(LOCK),)
	$(BIN)/python -m pip install -q --upgrade -e ".[$(EXTRAS)]"
else
	if $(BIN)/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)" 2> /dev/null; then \
		grep -Ev '^(nvidia|cuda)-' $(LOCK) > $(VENV)/lock.txt; else cp $(LOCK) $(VENV)/lock.txt; fi
	$(BIN)/python -m pip install -q -r $(VENV)/lock.txt
	$(BIN)/python -m pip install -q --no-deps -e .
endif
	touch $@

# Rewrite requirements.lock with what pip resolves today (then run `make test` before committing).
lock:
	$(PYTHON) scripts/lock.py

# The suite against the newest versions pyproject.toml admits, in a venv of its own (build/latest):
# drift in a dependency shows up the day it is released, not on the next fresh machine.
test-latest:
	rm -rf build/latest
	$(MAKE) test VENV=build/latest LOCK=

# What the built HTML loads offline besides MathJax (a wheel in the lab extra): the Jupyter widget
# manager and RequireJS, unpacked from their npm packages into the environment once.
WEB_ASSETS := $(VENV)/share/learning-at-scale/web
HTML_MANAGER := @jupyter-widgets/html-manager@1.0.15
REQUIREJS := requirejs@2.3.8

$(WEB_ASSETS)/.installed: | $(BIN)/python
	@command -v npm > /dev/null || { echo "npm (Node.js) is needed once to unpack $(HTML_MANAGER)"; exit 1; }
	rm -rf $(WEB_ASSETS) && mkdir -p $(WEB_ASSETS)/html-manager
	cd $(WEB_ASSETS) && npm pack --silent $(HTML_MANAGER) $(REQUIREJS) > /dev/null
	tar xzf $(WEB_ASSETS)/jupyter-widgets-html-manager-*.tgz -C $(WEB_ASSETS)/html-manager \
		--strip-components=1 package/dist
	tar xzf $(WEB_ASSETS)/requirejs-*.tgz -C $(WEB_ASSETS) --strip-components=1 package/require.js
	cd $(WEB_ASSETS) && rm -f *.tgz html-manager/dist/*.map html-manager/dist/embed.js html-manager/dist/libembed-amd.js
	touch $@

# Threads per notebook process (torch, BLAS): 1, as in `make test`; spinning thread pools on a busy
# machine cost 20x. On a quiet machine with more cores, e.g. `make course THREADS=8`.
THREADS ?= 1
course: $(VENV)/.installed $(WEB_ASSETS)/.installed
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python scripts/run_course.py notebooks build

# Colab ships transformers 4.x; the venv has 5.x. The tests of the modules that use transformers run
# again with the newest 4.x (and the tokenizers and huggingface-hub it needs) first on the path,
# installed once from PyPI into build/ without touching the venv.
TF4 := build/tf4
TF4_PINS := transformers==4.57.6 tokenizers==0.22.2 huggingface-hub==0.36.2
TF4_TESTS := tests/test_lm_masked.py tests/test_lm_causal.py tests/test_hub.py tests/test_runtime.py \
	tests/test_scaling.py
TF4_PYTEST = PYTHONPATH=$(TF4) COURSE_PROFILE=ci OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q \
	-p no:cacheprovider $(TF4_TESTS)

$(TF4)/.installed: Makefile | $(BIN)/python
	rm -rf $(TF4)
	$(BIN)/python -m pip install -q --no-deps --target $(TF4) $(TF4_PINS)
	PYTHONPATH=$(TF4) $(BIN)/python -c \
		"import transformers as t; assert t.__version__.startswith('4.'), t.__version__"
	touch $@

# The grading tests need otter-grader (instructor); the reference-library tests need bench.
# One torch thread per xdist worker: two workers on two cores, no thread oversubscription.
test: $(VENV)/.installed $(WEB_ASSETS)/.installed $(TF4)/.installed
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	COURSE_PROFILE=ci OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=600 tests $(NOTEBOOK_DIRS)
	$(TF4_PYTEST)

test-transformers4: $(VENV)/.installed $(TF4)/.installed
	$(TF4_PYTEST)

# Regenerate exercises/ and build/autograder/ from the masters in solutions/ (commit exercises/).
exercises: $(VENV)/.installed
	$(BIN)/python -m course_utils.grading.generate

# Every benchmark prints its ratios against a reference measured in the same run.
bench: $(VENV)/.installed
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# JupyterLab at the repository root (lessons and exercises); Jupyter refuses root without the flag.
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root)

format: $(VENV)/.installed
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)
