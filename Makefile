# `make test` and `make demo` work on a fresh clone: they create .venv and install everything into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
PYTEST_ARGS ?= -n 2

.PHONY: install data test demo demo-dense benchmark clean
FASHION_MNIST := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) data
	$(PY) -m pytest $(PYTEST_ARGS) tests

# The demo's offline default data: Debian's dataset-fashion-mnist (installed when missing).
data:
	@[ -f $(FASHION_MNIST)/train-images-idx3-ubyte.gz ] || { \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q dataset-fashion-mnist; }

demo: $(STAMP) data
	$(PY) scripts/demo.py

# SOFT-Norm-Tiny vs PVTv2-b1 in RT-DETR and UperNet on the Fashion-MNIST scenes (about 20 minutes on 2 CPU cores).
demo-dense: $(STAMP) data
	$(PY) scripts/demo_dense.py

benchmark: $(STAMP)
	$(PY) scripts/benchmark.py

clean:
	rm -rf $(VENV) outputs
