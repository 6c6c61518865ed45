# Two commands on a fresh machine with Python 3.11:  make run  |  make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall only when requirements.txt changes.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/streamlit run app.py

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/predict_digit.py

# Rebuild the shipped checkpoints from scratch (seeded; about 45 minutes on a 2-core CPU).
train: $(STAMP)
	for model in lenet vgg vit; do $(BIN)/python -m vision_core.train $$model || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Pre-fetch every pretrained torchvision weight file the app uses (Photo explorer: ResNet-50, Swin-T, Faster R-CNN;
# Fine-tune page: its ImageNet backbones) into the torch hub cache ($TORCH_HOME/hub/checkpoints, default
# ~/.cache/torch/hub), so a classroom works offline. `python -m vision_core.weights --list` shows what is there.
# EfficientNet-Lite0 needs nothing: its weights come with requirements.txt.
.PHONY: weights
weights: $(STAMP)
	$(BIN)/python -m vision_core.weights
