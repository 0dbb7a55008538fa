# The two set-up commands of the README: `make demo` and `make test`.
# Both create .venv if missing and install the package with the CPU build of torch==2.13.0.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mnfn-installed
# Image data folder (see ../shared/data/README.md); code falls back to a user cache when unset/missing.
MNFN_DATA ?= $(abspath ../shared/data)
export MNFN_DATA

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mnfn demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/mnfn bench --quick

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
