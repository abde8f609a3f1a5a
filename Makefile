# lpsubnet: the verbs a user types. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: install test test-slow test-all test-tools fuzz demo sweep-demo bench bench-full bench-quick bench-data bench-report bench-peer bench-synth lint clean

install: $(STAMP)

# Reinstall only when the dependency list changes; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,torch,synth]'
	touch $(STAMP)

# One worker process per CPU (pytest-xdist), each test file on one worker so its shared
# builds are made once; a random test order on every run (pytest-randomly prints the seed:
# rerun an order with -p randomly --randomly-seed=N). The fuzz tests draw new random
# architectures on every run from the same seed (LPSUBNET_FUZZ_SEED, printed again at the
# end of the run): make test TEST_SEED=N repeats both the order and the draws.
TEST_WORKERS ?= auto
ifndef TEST_SEED
TEST_SEED := $(shell od -An -N2 -tu2 /dev/urandom | tr -d ' ')
endif
LPSUBNET_FUZZ_SEED ?= $(TEST_SEED)
export LPSUBNET_FUZZ_SEED
test: $(STAMP)
	@echo "test order: pytest-randomly seed $(TEST_SEED); fuzz draws: LPSUBNET_FUZZ_SEED=$(LPSUBNET_FUZZ_SEED) (make test TEST_SEED=$(TEST_SEED) LPSUBNET_FUZZ_SEED=$(LPSUBNET_FUZZ_SEED) repeats both)"
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -p randomly --randomly-seed=$(TEST_SEED)

# The slow cases include the independent cycle count (cocotb + Icarus Verilog): install
# iverilog where apt is usable, otherwise say the command (that one test then skips and says why).
TEST_APT := iverilog
test-all: $(STAMP) test-tools
	$(BIN)/python -m pytest -q -m '' -n $(TEST_WORKERS) --dist loadfile

# Only the slow cases (what `make test` leaves out); .ci/run runs `make test` then this.
# Spread test by test (--dist load): these files share few builds and one is long.
test-slow: $(STAMP) test-tools
	$(BIN)/python -m pytest -q -m slow -n $(TEST_WORKERS) --dist load

test-tools:
	@if command -v iverilog >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q $(TEST_APT) || (apt-get update -q && apt-get install -y -q $(TEST_APT))) >/dev/null || echo "could not install $(TEST_APT); run: apt-get install $(TEST_APT)"; \
	else echo "iverilog missing (the cocotb cycle-count test will skip); run: sudo apt-get install $(TEST_APT)"; fi

demo: $(STAMP)
	$(BIN)/lpsubnet run --out demo_run --force

# A digits sweep on Ray Tune (24 trials + the unpruned reference, one CPU each, local),
# then docs/sweep.md and its plots from the sweep directory (with the measured wall time).
sweep-demo: $(STAMP)
	RAY_USAGE_STATS_ENABLED=0 $(BIN)/lpsubnet sweep examples/sweep_digits.yaml --out sweep_demo --force
	$(BIN)/python -m lpsubnet.sweep_doc sweep_demo --doc docs/sweep.md --images docs/images

# Random architectures per hardware property (C simulation + hls4ml predict() on both io
# types, RTL, the pruner's route) until the targets are met (500 accepted through C
# simulation, 100 through RTL, 50 through the pruner), on FUZZ_JOBS worker processes; every
# example and run appended to docs/fuzz_results*.jsonl, docs/fuzz.md written from them;
# resumable (FUZZ_HOURS caps one run; make fuzz again goes on; FUZZ_ARGS=--new-campaign
# starts a new campaign on new code). Exit 3 on a mismatch, 1 if a property accepts
# under 80%. Then the pruner properties with hypothesis's fuzz profile (counterexamples
# stay in fpga_tests/.hypothesis-fuzz and are replayed first).
FUZZ_JOBS ?= 2
FUZZ_HOURS ?= 4
FUZZ_ARGS ?=
fuzz: $(STAMP)
	$(BIN)/python -m fpga_tests.fuzz_campaign --jobs $(FUZZ_JOBS) --hours $(FUZZ_HOURS) $(FUZZ_ARGS)
	LPSUBNET_FUZZ=1 $(BIN)/python -m pytest -q -m '' fpga_tests/test_fuzz_pruner.py

# `make bench` runs the core of the matrix for every task (the evidence behind the README's
# claims; resumable: one cached JSON per configuration), `make bench-full` the whole matrix;
# `make bench TASK=fmnist` runs one of digits|letter|fmnist|sr|motivation|tool.
# The training tasks are split over BENCH_JOBS processes (one TensorFlow thread each);
# a last pass per task finds every configuration cached and adds the RTL builds.
TASK ?= all
BENCH_JOBS ?= 2
BENCH_FLAGS ?=
TRAINING_TASKS := $(if $(filter all,$(TASK)),digits letter fmnist sr,$(filter digits letter fmnist sr,$(TASK)))
OTHER_TASKS := $(if $(filter all,$(TASK)),motivation tool,$(filter motivation tool,$(TASK)))
bench: $(STAMP) bench-data
	@set -e; for t in $(TRAINING_TASKS); do \
	  pids=; i=0; while [ $$i -lt $(BENCH_JOBS) ]; do \
	    $(BIN)/python -m bench.run --task $$t $(BENCH_FLAGS) --shard $$i/$(BENCH_JOBS) & pids="$$pids $$!"; i=$$((i+1)); \
	  done; \
	  for p in $$pids; do wait $$p; done; \
	  $(BIN)/python -m bench.run --task $$t $(BENCH_FLAGS) --rtl; \
	done
	@set -e; for t in $(OTHER_TASKS); do $(BIN)/python -m bench.run --task $$t; done
	$(BIN)/python -m bench.report

bench-full:
	$(MAKE) bench BENCH_FLAGS=--full

bench-quick: $(STAMP)
	@set -e; pids=; i=0; while [ $$i -lt $(BENCH_JOBS) ]; do \
	  $(BIN)/python -m bench.run --quick --shard $$i/$(BENCH_JOBS) & pids="$$pids $$!"; i=$$((i+1)); \
	done; for p in $$pids; do wait $$p; done
	$(BIN)/python -m bench.report

# lpsubnet against HGQ2 (bench/peer.py): HGQ2 in a venv of its own, .venv-peer (hgq2 ships
# a top-level qkeras module that must never enter .venv); both sides priced by da4ml and
# checked exact; the two sides run side by side, then docs/benchmarks.md is regenerated.
# PEER_TASK=letter|digits|all; PEER_FLAGS=--quick for a smoke run.
PEER_VENV := .venv-peer
PEER_TASK ?= all
$(PEER_VENV)/.installed: bench/peer_requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet -r bench/peer_requirements.txt
	touch $@
bench-peer: $(STAMP) bench-data $(PEER_VENV)/.installed
	$(BIN)/python -m bench.peer --task $(PEER_TASK) --side hgq2 $(PEER_FLAGS) & hgq=$$!; \
	  $(BIN)/python -m bench.peer --task $(PEER_TASK) --side lpsubnet $(PEER_FLAGS); lps=$$?; \
	  wait $$hgq; test $$? -eq 0 -a $$lps -eq 0
	$(BIN)/python -m bench.report

# da4ml's estimate against Yosys and nextpnr (bench/synth.py): Yosys runs on one core, so
# the designs are split between two processes; then docs/benchmarks.md.
bench-synth: $(STAMP) bench-data
	@set -e; pids=; i=0; while [ $$i -lt $(BENCH_JOBS) ]; do \
	  $(BIN)/python -m bench.synth --shard $$i/$(BENCH_JOBS) & pids="$$pids $$!"; i=$$((i+1)); \
	done; for p in $$pids; do wait $$p; done
	$(BIN)/python -m bench.report

bench-report: $(STAMP)
	$(BIN)/python -m bench.report

# Debian packages with the offline datasets (letter-recognition, Fashion-MNIST):
# installed where apt is usable, otherwise the command is printed and the bench
# skips those tasks with the same hint.
BENCH_APT := opencv-doc dataset-fashion-mnist
bench-data:
	@if dpkg -s $(BENCH_APT) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q $(BENCH_APT) || (apt-get update -q && apt-get install -y -q $(BENCH_APT)) || echo "could not install $(BENCH_APT); run: apt-get install $(BENCH_APT)"; \
	else echo "optional bench data missing; run: sudo apt-get install $(BENCH_APT)"; fi

# Dead code (unreachable lines, unused variables) that ruff's rules do not see; the names
# ignored are arguments that Keras and Ray Tune callbacks must accept.
VULTURE_HOOK_ARGS := logs,iteration
lint: $(STAMP)
	$(BIN)/ruff check declared_settings pruner hls_backend lpsubnet fpga_tests bench
	$(BIN)/ruff format --check declared_settings pruner hls_backend lpsubnet fpga_tests bench
	$(BIN)/vulture declared_settings pruner hls_backend lpsubnet bench --min-confidence 80 --ignore-names $(VULTURE_HOOK_ARGS)

clean:
	rm -rf $(VENV) demo_run sweep_demo *.egg-info
