# Two commands on a fresh machine with Python 3.11:  make run  |  make test
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run dev test lint format bench train clean weights data lock loadtest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Installs the locked versions, every file checked against its hash; again only when the lock file changes.
$(STAMP): requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	touch $(STAMP)

# The tests need the tools and the optional Ray backend too (requirements-dev.txt).
$(DEV_STAMP): requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	touch $(DEV_STAMP) $(STAMP)

run: $(STAMP)
	$(BIN)/streamlit run app.py

# For developers: error details, the file watcher and rerun-on-save back on (the flags override .streamlit/config.toml).
dev: $(STAMP)
	$(BIN)/streamlit run app.py --client.showErrorDetails=full --client.toolbarMode=developer \
		--server.fileWatcherType=auto --server.runOnSave=true

test: $(DEV_STAMP)
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

format: $(DEV_STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# The two lock files, from requirements.txt and requirements-dev.txt (pip-compile; about 10 minutes).
lock: $(DEV_STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-header -o requirements.lock requirements.txt
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-header -o requirements-dev.lock requirements-dev.txt

# Every benchmark but the load test, one after the other (about an hour on a 2-core CPU); the README lists their figures.
bench: $(DEV_STAMP)
	for script in predict_digit augment photo train_speed run_isolation inside my_classes cifar_transfer; do \
		$(BIN)/python benchmarks/$$script.py || exit 1; done

# Rebuild the shipped checkpoints from scratch with their families' recipes (seeded; about two hours on a 2-core CPU).
train: $(STAMP)
	for model in lenet vgg vit mish_cnn deep_mish_cnn; do $(BIN)/python -m vision_core train $$model || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Pre-fetch every pretrained torchvision weight file the app uses into the torch hub cache ($TORCH_HOME/hub/checkpoints,
# default ~/.cache/torch/hub), so a classroom works offline: 1.25 GB in all (Photo explorer: ResNet-50, Swin-T and the
# two Faster R-CNNs, 447 MB; Fine-tune page: VGG16, AlexNet, ResNet-18, 806 MB). Fetch only some with
# `make weights MODELS="resnet50 swin_t"`; `python -m vision_core weights --list` shows what is there.
# EfficientNet-Lite0 needs nothing: its weights come with requirements.txt.
weights: $(STAMP)
	$(BIN)/python -m vision_core weights $(MODELS)

# The full CIFAR-10 (163 MB, torchvision's download, md5-checked) into data/cifar10/full; the app ships a 12,000-image
# subset and uses the full set once it is there. MNIST ships whole.
data: $(STAMP)
	$(BIN)/python -m vision_core data $(DATASETS)

# A class at once, in real browsers (not part of `make test`; 5 to 10 minutes on a 2-core CPU): 20 headless Chromium
# sessions draw digits and upload photos against one app process pinned to core 0, the browsers pinned to core 1 (as
# `taskset --cpu-list`), while the lecturer's fine-tune run trains. Prints p50/p95 of stroke -> answer and upload ->
# top-3, the server time per script run, every session's result; fails on any wrong answer.
# Quick: `make loadtest ARGS="--sessions 3"`; without the training run: `make loadtest ARGS=--no-train`.
loadtest: $(DEV_STAMP)
	$(BIN)/python benchmarks/loadtest.py --sessions 20 --app-cpus 0 --browser-cpus 1 $(ARGS)
