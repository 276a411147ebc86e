# soulsai_ray developer entry points. `make train` and `make test` install into .venv first if needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# TORCH=auto picks the CPU build of torch unless an NVIDIA GPU is visible; TORCH=cpu|cuda forces one.
TORCH ?= auto
TORCH_CPU_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ARGS ?=

.PHONY: install train test test-fast lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@mode="$(TORCH)"; \
	if [ "$$mode" = auto ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi; \
	fi; \
	if $(PY) -c "import torch" >/dev/null 2>&1; then \
	  echo "torch already installed in $(VENV)"; \
	elif [ "$$mode" = cuda ]; then \
	  echo "installing torch with CUDA"; $(PY) -m pip install --quiet "torch>=2.3"; \
	else \
	  echo "installing CPU-only torch $(TORCH_CPU_VERSION)"; \
	  $(PY) -m pip install --quiet "torch==$(TORCH_CPU_VERSION)+cpu" 2>/dev/null || \
	  $(PY) -m pip install --quiet "torch==$(TORCH_CPU_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

train: install
	$(PY) scripts/train.py $(ARGS)

test: install
	$(PY) -m pytest -q -ra $(ARGS)

test-fast: install
	$(PY) -m pytest -q -ra -m "not learning" $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
