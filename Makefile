# avsbench-kit: two set-up commands, `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed

.PHONY: install demo test bench goldens faults clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the toolkit with its dev dependencies

DEMO_DATASETS  ?= synth-s4 synth-ms3
DEMO_BASELINES ?= av2t probe-clip-only empty full
DEMO_PROBES    ?= -p audio-shuffled -p audio-silent -p audio-offscreen

demo: install  ## SynthAVS -> features -> train/evaluate the baselines -> leaderboard (+ site/) -> probe table (~8.5 min on 2 cores before the probe step)
	$(BIN)/avskit prepare synth --size small --seed 0
	$(BIN)/avskit ls datasets
	for ds in $(DEMO_DATASETS); do for b in $(DEMO_BASELINES); do \
		echo "== avskit run baseline=$$b dataset=$$ds"; \
		$(BIN)/avskit run baseline=$$b dataset=$$ds --no-progress || exit 1; done; done
	for ds in $(DEMO_DATASETS); do $(BIN)/avskit leaderboard --dataset $$ds || exit 1; done
	$(BIN)/avskit leaderboard --format html --out site
	for ds in $(DEMO_DATASETS); do $(BIN)/avskit probe --dataset $$ds --control $(DEMO_PROBES) || exit 1; done

test: install  ## the test suite (what CI runs)
	$(BIN)/python -m pytest tests

goldens: install  ## re-record leaderboards/golden/*.json from the gated runs (run on a clean tree; commit the result)
	@git diff --quiet HEAD || { echo "goldens record the git SHA: commit or stash your changes first"; exit 1; }
	AVSKIT_UPDATE_GOLDENS=1 $(BIN)/python -m pytest tests/test_regress_golden.py

FAULT_SEED   ?= 0
FAULT_POINTS ?= 24
FAULT_OUTSIDE ?= 4
faults: install  ## the full fault-injection suite: SIGKILL prepare / features extract / run / eval at seeded points, print faults injected, runs that lost data, runs that recovered
	OMP_NUM_THREADS=1 $(BIN)/python tests/fault_suite.py --seed $(FAULT_SEED) --points $(FAULT_POINTS) --outside $(FAULT_OUTSIDE)

bench: install  ## the benchmarks in benchmarks/ (print measured ratios)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
