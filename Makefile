# Each target sets up what it needs on a fresh machine: .venv is created and filled on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NOTEBOOK_DIRS := $(wildcard notebooks solutions)
LINT_PATHS := $(wildcard course_utils tests benchmarks scripts) $(NOTEBOOK_DIRS)

.PHONY: course test lab lint format bench exercises

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One stamp per extra set: reinstall when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$*]"
	touch $@

course: $(VENV)/.installed-lab
	$(BIN)/python scripts/run_course.py notebooks build

# The grading tests need otter-grader (instructor); the reference-library tests need bench.
# One torch thread per xdist worker: two workers on two cores, no thread oversubscription.
test: $(VENV)/.installed-test,instructor,bench
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	COURSE_PROFILE=ci OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=600 tests $(NOTEBOOK_DIRS)

# Regenerate exercises/ and build/autograder/ from the masters in solutions/ (commit exercises/).
exercises: $(VENV)/.installed-instructor
	$(BIN)/python -m course_utils.grading.generate

# Every benchmark prints its ratios against a reference measured in the same run.
bench: $(VENV)/.installed-bench
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# JupyterLab at the repository root (lessons and exercises); Jupyter refuses root without the flag.
lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root)

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)
