# llamix — every dependency is installed by these targets into .venv (pinned by constraints.txt).
# `make corpus` builds the sample corpus; `make test` runs the test suite. Targets are idempotent:
# a second run does nothing that is already done.

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PIP        := $(VENV)/bin/pip
STAMP      := $(VENV)/.llamix-installed
LID_MODEL  := $(VENV)/share/llamix/lid.176.ftz
LMPLZ      := $(VENV)/bin/lmplz
PROFILE    ?= sample
OUT        ?= out/$(PROFILE)
TRAIN_CONFIG ?= train/configs/tiny.yaml
PYTEST_ARGS ?=

.PHONY: setup corpus train report test test-fast sweep drill bench clean help

help:
	@echo "make corpus   build the $(PROFILE) corpus (out/$(PROFILE)/)"
	@echo "make test     run the test suite"
	@echo "make train    train the tiny LLaMA on the corpus"
	@echo "make report   write out/$(PROFILE)/report/index.html"
	@echo "make sweep    scaling-law sweep on the corpus"
	@echo "make drill    kill -9 fault drill"
	@echo "make bench    run the benchmarks (bench/RESULTS.md)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	@touch $@

$(LID_MODEL): | $(STAMP)
	$(PY) -m filters.lid_model --install

$(LMPLZ): | $(STAMP)
	bash tools/build_kenlm.sh $(VENV)

setup: $(STAMP) $(LID_MODEL) $(LMPLZ)

corpus: setup
	$(PY) -m pipeline run --profile $(PROFILE)

train: corpus
	$(PY) -m train --config $(TRAIN_CONFIG) --resume

report: setup
	$(PY) -m pipeline report $(OUT)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

sweep: corpus
	$(PY) -m scaling.sweep --config train/configs/sweep.yaml

drill: setup
	$(PY) -m ops.drill

bench: setup
	for b in bench/*.py; do case $$b in *gpu*) echo "skip $$b: needs a GPU (bench/RESULTS.md)"; continue;; esac; \
		$(PY) $$b || exit 1; done

clean:
	rm -rf out
