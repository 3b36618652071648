# Thin wrapper: bootstrap .venv when missing, then call tal_kit or pytest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-videos test test-setup build-ext clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
# setuptools warns at length on every editable install that folders named like the package shadow it (ours is the package)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

## Run the demo reproduction end to end (generates data/demo when missing) and print the results table.
demo: $(STAMP)
	$(PY) -m tal_kit reproduce --config demo

## The video demo end to end on synthetic videos: generate, extract (tiny random ViT), train, detect, evaluate.
# Prints each stage's wall time and the held-out mAP (synthetic data: it shows the chain works, nothing more).
DEMO_VIDEOS     := data/demo_videos
DEMO_VIDEOS_RUN := runs/demo_videos
DEMO_VIDEOS_VIT := --random-weights --seed 0 --backbone vit-b/16 --embed-dim 64 --depth 1 --num-heads 2 --mlp-dim 128 --patch-size 32 --img-size 64
demo-videos: $(STAMP)
	@set -e; stage() { s=$$(date +%s.%N); "$$@"; e=$$(date +%s.%N); times="$$times$$(printf '  %-9s %6.1f s' "$$name" "$$(awk "BEGIN{print $$e - $$s}")")\n"; }; \
	rm -rf $(DEMO_VIDEOS)/features $(DEMO_VIDEOS_RUN); \
	name=generate; stage $(PY) -m tal_kit demo-videos --out $(DEMO_VIDEOS) --overwrite; \
	name=extract;  stage $(PY) -m tal_kit extract $(DEMO_VIDEOS)/videos --out $(DEMO_VIDEOS) --preset demo_videos $(DEMO_VIDEOS_VIT) --batch-size 32 --no-progress; \
	name=train;    stage $(PY) -m tal_kit train --config demo_videos --data-root $(DEMO_VIDEOS) --run-dir $(DEMO_VIDEOS_RUN); \
	name=detect;   stage $(PY) -m tal_kit detect $(DEMO_VIDEOS)/videos/test --checkpoint $(DEMO_VIDEOS_RUN)/checkpoints/last.pt --data-root $(DEMO_VIDEOS) $(DEMO_VIDEOS_VIT) --out $(DEMO_VIDEOS_RUN)/detect --no-progress; \
	name=evaluate; stage $(PY) -m tal_kit evaluate --gt $(DEMO_VIDEOS)/annotations.json --subset test --pred $(DEMO_VIDEOS_RUN)/detect/detections.json --tiou 0.3:0.7:0.1; \
	printf "video demo wall times:\n$$times"; \
	echo "held-out mAP above: SYNTHETIC videos (coloured shapes), $$(ls $(DEMO_VIDEOS)/videos/test | wc -l) test videos; report: $(DEMO_VIDEOS_RUN)/detect/report.html"

## Run the test suite (fetches the test-only oracle and a headless browser when they can be had).
# One OpenMP thread per process: the suite runs several processes at once (pytest, notebook kernels, gloo ranks),
# and on a small machine competing OpenMP pools spin-wait and run 10-20x slower.
# Tests run in parallel (pytest-xdist), one worker per core, at most 8; --dist loadgroup keeps the tests that share an
# expensive module fixture on one worker (tests/conftest.py). PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 8 ] && n=8; echo $$n)
test: $(STAMP) test-setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

test-setup: $(STAMP)
	@$(PY) -m tests.oracle --fetch || echo "oracle package unavailable: parity tests will skip"
	@bash tests/setup_browser.sh || echo "no headless browser: browser tests will skip"

build-ext: $(STAMP)
	$(PY) -m tal_kit build-ext

clean:
	rm -rf runs .cache data/demo data/demo_videos
