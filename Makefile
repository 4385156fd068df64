# make install: create/refresh .venv (CPU torch 2.13.0 unless a CUDA driver is present) and install nerfstage.
# make demo:    the whole chain on the built-in synthetic capture, into ./demo_out
# make test:    the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA driver found: installing the registry's torch"; $(PY) -m pip install --quiet "torch>=2.3"; \
	else \
		echo "no CUDA driver: installing the CPU build torch==2.13.0"; $(PY) -m pip install --quiet torch==2.13.0; \
	fi
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/nerfstage demo -o $(DEMO_OUT)

test: install
	@# the viewer's browser test needs Debian's chromium (tests/app/viewer/test_browser.py); installed once, if possible
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser test skips (and fails under CI=true)"
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
