# One-command set-up and test entry points (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DETECTRON2_PIN := sal-detectron2==0.7.2
TRACKERS_PIN := trackers==2.6.1

.PHONY: setup browser test test-all lint format demo ablations ablations-quick bench clean-venv

setup: $(VENV)/.installed browser

# The browser test (tests/search/test_serve_browser.py) drives Debian's chromium through
# chromium-driver: installed here when missing and run as root with apt-get (CI, containers);
# otherwise the command to run is printed. No browser is downloaded at run time.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "browser for the tests: $$(command -v chromium), $$(command -v chromedriver)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else \
		echo "The browser test needs Debian's chromium and chromium-driver:"; \
		echo "    sudo apt-get install chromium chromium-driver"; \
	fi

$(VENV)/.installed: requirements.txt setup.py Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=23"
	$(PY) -m pip install -r requirements.txt
	# Roboflow's trackers (tracks of the search index, Apache-2.0) declares opencv-python, the GUI
	# build: its cv2 would replace opencv-python-headless's and need libGL. It is installed
	# without its dependencies; those it imports are in requirements.txt (cv2: the headless one).
	$(PY) -m pip install --no-deps $(TRACKERS_PIN)
	# Detectron2: the pure-Python re-upload of its current code (tagged for CPython 3.10 only, so it
	# is installed with --target into this venv's site-packages). Its _C extension is not needed.
	$(PY) -m pip install --upgrade --no-deps --only-binary=:all: --python-version 3.10 \
		--target "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		$(DETECTRON2_PIN)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -c "import detectron2, ian_d2; print('detectron2', detectron2.__version__, 'ian_d2', ian_d2.__version__)"
	touch $@

# The fast tier (a couple of minutes on 2 CPU cores): every test not marked @pytest.mark.slow.
test: setup
	$(PY) -m pytest -q -m "not slow" --durations=15 tests

# Everything, the multi-process, subprocess and training tests included (what CI runs).
test-all: setup
	$(PY) -m pytest -q --durations=15 tests

# The embedded default: synthetic CUHK-SYSU -> IAN steps 1-3 and step 3's lambda = 0 twin ->
# evaluation, seeded, on CPU (~14 min).
demo: setup
	$(PY) demo/synthetic_demo.py

# IAN's ablations (Tables I-IV, Figs. 4-5) on synthetic data, 3 seeds, 95% confidence intervals,
# report in docs/ablations/ (projects/ablations/run.py; resumes, skips finished runs; ~2.2 h on 2 idle CPU
# cores, a GPU is used when visible). ablations-quick: the same pipeline on tiny data in a few
# minutes.
ablations: setup
	$(PY) -m projects.ablations.run

ablations-quick: setup
	$(PY) -m projects.ablations.run --quick

# Speed benchmarks (JSON on stdout): scoring at CUHK-SYSU scale, CPU-sized model train/infer.
bench: setup
	$(PY) -m benchmarks.bench_scoring
	$(PY) -m benchmarks.bench_model

# black (check) and flake8's pyflakes checks over the Python code (dev/linter.sh).
lint: setup
	PYTHON=$(PY) dev/linter.sh

format: setup
	$(PY) -m black -l 100 ian_d2 tests projects demo benchmarks dev train_net.py

clean-venv:
	rm -rf $(VENV)
