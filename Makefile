# Faster R-CNN Studio — every target creates .venv (pip) when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared
# torchvision's weights API looks in $TORCH_HOME/hub/checkpoints; we seed it from ../shared/weights.
export TORCH_HOME ?= $(CURDIR)/.torch
CHECKPOINTS := $(TORCH_HOME)/hub/checkpoints

.PHONY: run test bench weights clean demo-model

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

weights:
	mkdir -p $(CHECKPOINTS)
	if [ -d $(SHARED)/weights ]; then \
	  for f in $(SHARED)/weights/*.pth; do [ -e "$(CHECKPOINTS)/$$(basename $$f)" ] || cp "$$f" $(CHECKPOINTS)/; done; \
	fi

# frcnn-gui with no path opens the bundled samples (frcnn_core/resources/samples).
run: $(VENV)/.installed weights
	$(VENV)/bin/frcnn-gui

# The style (ruff) and the layers (import-linter's contracts, in pyproject.toml) first: they fail in seconds.
.PHONY: lint
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint weights
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: $(VENV)/.installed weights
	$(PY) benchmarks/run_all.py

# The bundled model: train on train (val held out), retrain on trainval, export with a model card.
demo-model: $(VENV)/.installed weights
	$(PY) tools/demo_model.py run --split train --out runs/bccd-train
	$(PY) tools/demo_model.py run --split trainval --out runs/bccd-trainval
	$(PY) tools/demo_model.py export --run runs/bccd-trainval --heldout runs/bccd-train

clean:
	rm -rf out .pytest_cache
