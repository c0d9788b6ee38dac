# lte: common tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.installed

.PHONY: help install test test-fast lint format demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# A GPU machine gets PyPI's CUDA build; otherwise the CPU build first (a local +cpu wheel
	@# if pip can see one, else PyTorch's CPU index) so pip never pulls the multi-GB CUDA build.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing torch==$(TORCH_VERSION) (CUDA build)"; \
		$(PIP) install -q "torch==$(TORCH_VERSION)"; \
	else \
		echo "no GPU: installing the CPU build of torch==$(TORCH_VERSION)"; \
		$(PIP) install -q "torch==$(TORCH_VERSION)+cpu" 2>/dev/null || \
		$(PIP) install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install -q -e ".[dev,onnx]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install lte with its dev tools and the onnx extra

test: install ## run the whole test suite (slow tests included)
	$(PY) -m pytest -q

test-fast: install ## run the tests not marked slow
	$(PY) -m pytest -q -m "not slow"

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

demo: install ## the main job: train EDSR-baseline-LTE on the bundled photos (CPU), evaluate, upscale; THREADS=n on a busy machine
	$(PY) scripts/demo.py $(if $(THREADS),--threads $(THREADS))

# Run outputs hold checkpoints and results that took hours: `make clean` asks before removing them
# (y/N; anything but y keeps them) and says what it did; without a terminal to ask on it keeps them.
# `make clean FORCE=1` removes them without asking. runs/ (make demo) and .venv are never touched.
RUN_OUTPUTS := outputs multirun

clean: ## remove caches (build, egg-info, pytest/ruff); run outputs (outputs/ multirun/) after asking, or with FORCE=1
	rm -rf build .pytest_cache .ruff_cache src/*.egg-info
	find src tests scripts -name __pycache__ -type d -prune -exec rm -rf {} +
	@present="$(wildcard $(RUN_OUTPUTS))"; \
	if [ -z "$$present" ]; then \
		echo "no run outputs ($(RUN_OUTPUTS)) to remove"; \
	elif [ "$(FORCE)" = 1 ]; then \
		echo "removing run outputs: $$present"; rm -rf $$present; \
	elif [ -t 0 ]; then \
		printf 'remove run outputs %s (checkpoints, results)? [y/N] ' "$$present"; \
		answer=; read -r answer || true; \
		case "$$answer" in \
			[yY]|[yY][eE][sS]) rm -rf $$present; echo "removed run outputs: $$present";; \
			*) echo "kept run outputs: $$present (make clean FORCE=1 removes them without asking)";; \
		esac; \
	else \
		echo "kept run outputs: $$present (no terminal to ask on; make clean FORCE=1 removes them)"; \
	fi
