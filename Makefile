# Two commands on a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN ?= runs/demo

.PHONY: demo readme-images test test-slow lint install clean bench chromium

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/genrec demo --run $(RUN)

# The README's pictures, from the demo's own evaluation (cached stages are reused).
readme-images: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/genrec demo --run $(RUN) --images docs

test: $(STAMP) chromium
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m "not slow"

# The tests `make test` skips (end-to-end training, multi-process): CI runs both.
test-slow: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m slow

# Lint and types on the packages held to them (pyproject.toml's [tool.ruff] and [tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src/genrec/model src/genrec/decode src/genrec/sid src/genrec/train src/genrec/align src/genrec/cascade src/genrec/feed src/genrec/postrank src/genrec/rolegen src/genrec/config_check.py src/genrec/config_file.py

# Headless Chromium for the web page's browser test (tests/test_serve_browser.py skips, saying why, without it).
chromium:
	@if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium + chromium-driver for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
			|| echo "could not install chromium: the browser test will be skipped"; \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache
