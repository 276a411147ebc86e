# soulsai_ray developer entry points. `make train` and `make test` install into .venv first if needed.
PYTHON ?= python3
VENV := .venv
RLLIB_VENV := .venv-rllib
PY := $(VENV)/bin/python
# TORCH=auto picks the CPU build of torch unless an NVIDIA GPU is visible; TORCH=cpu|cuda forces one.
TORCH ?= auto
TORCH_CPU_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ARGS ?=
TEST_WORKERS ?= 3

.PHONY: install train test test-fast lint format clean bench bench-rllib

install: $(VENV)/.installed

# $(call install_torch,PYTHON): torch into that interpreter's venv unless it has one (see TORCH).
define install_torch
	@mode="$(TORCH)"; \
	if [ "$$mode" = auto ]; then \
	  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi; \
	fi; \
	if $(1) -c "import torch" >/dev/null 2>&1; then \
	  echo "torch already installed"; \
	elif [ "$$mode" = cuda ]; then \
	  echo "installing torch with CUDA"; $(1) -m pip install $(TORCH_PIP) "torch>=2.3"; \
	else \
	  echo "installing CPU-only torch $(TORCH_CPU_VERSION)"; \
	  $(1) -m pip install $(TORCH_PIP) "torch==$(TORCH_CPU_VERSION)+cpu" 2>/dev/null || \
	  $(1) -m pip install $(TORCH_PIP) "torch==$(TORCH_CPU_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
endef
TORCH_PIP := --quiet --no-compile

# $(call compile_venv,PYTHON[,JOBS]): packages are installed with --no-compile and byte-compiled
# here, on JOBS processes (default: one per core), except what no run imports: networkx, Ray's
# libraries beyond its core and packages' own tests and examples (5,000 of 15,000 files). About
# 25 s less than pip's compiling. Files compiled before are skipped. Like pip, it skips files of a
# newer Python's syntax (torch ships one for 3.12) and goes on.
define compile_venv
	$(1) -m compileall -q -j $(or $(2),0) \
	  -x '/site-packages/(networkx|ray/(rllib|data|serve|llm|tune|train))/|/(tests?|examples)/' \
	  "$$($(1) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
endef

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(call install_torch,$(PY))
	@# torch and its dependencies (a third of the files) compile on the core that pip, which works
	@# on one, leaves idle while it installs the rest
	@{ $(call compile_venv,$(PY),1); } & compiling=$$!; \
	  $(PY) -m pip install --quiet --no-compile -e ".[dev]"; installed=$$?; \
	  wait $$compiling; exit $$installed
	@$(call compile_venv,$(PY))
	@touch $@

# The benchmarks are a package of the checkout: $(PY) -m soulsai_bench --help. This installs the
# peers `solve --baseline sb3` runs next to ours.
bench: install
	$(PY) -m pip install --quiet -e ".[bench]"

# RLlib's baseline lives in its own venv: ray[rllib] pins a gymnasium older than the library's.
bench-rllib: $(RLLIB_VENV)/.installed

$(RLLIB_VENV)/.installed: requirements-rllib.txt
	@test -x $(RLLIB_VENV)/bin/python || $(PYTHON) -m venv $(RLLIB_VENV)
	$(RLLIB_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(call install_torch,$(RLLIB_VENV)/bin/python)
	$(RLLIB_VENV)/bin/python -m pip install --quiet --no-compile -r requirements-rllib.txt
	@$(call compile_venv,$(RLLIB_VENV)/bin/python)
	@touch $@

# The checkout's own modules, byte-compiled before a run: every process of a run (the driver and
# each Ray worker) imports them, and where PYTHONDONTWRITEBYTECODE is set Python would compile them
# again in each one (about 1 CPU-s per process). Only changed files are compiled again.
CHECKOUT_CODE := soulsai_ray soulsai_bench scripts tests
define compile_checkout
	@$(PY) -m compileall -q -j 0 $(CHECKOUT_CODE) >/dev/null
endef

train: install
	$(call compile_checkout)
	$(PY) scripts/train.py $(ARGS)

# Test modules run on TEST_WORKERS workers, each module whole on one (its shared Ray with it):
# a third worker fills both cores while the others wait on game-rate envs and injected faults.
# Modules start in the order tests/conftest.py gives them (the longest first).
test: install
	$(call compile_checkout)
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
	  --durations=25 $(ARGS)

# The inner loop: tests/unit (no Ray; serial runs of the real samplers, replay and learners).
test-fast: install
	$(call compile_checkout)
	$(PY) -m pytest -q -ra -n 2 tests/unit $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(RLLIB_VENV) outputs multirun .pytest_cache
