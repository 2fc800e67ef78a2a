# avsbench-kit: two set-up commands, `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the toolkit with its dev dependencies

demo: install  ## the main job on the embedded SynthAVS benchmark
	$(BIN)/avskit prepare synth --size small --seed 0
	$(BIN)/avskit ls datasets

test: install  ## the test suite (what CI runs)
	$(BIN)/python -m pytest tests

bench: install  ## the benchmarks in benchmarks/ (print measured ratios)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
