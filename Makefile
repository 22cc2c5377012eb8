# Two commands matter: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo demo-pipeline demo-kfp demo-kedro demo-fleet test lint format typecheck proto check bench-runtime-log bench-evidence bench-fleet bench-hashing bench-appraisal bench-gpu sigstore-js fuzz conformance clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(PY) demo/run_demo.py

# Four stages on four agents (simulated TDX and SEV-SNP), a verified chain, two refused ones.
demo-pipeline: $(STAMP)
	$(PY) demo/pipeline_demo.py

# A real Kubeflow pipeline (kfp.local, no cluster) attesting itself on a simulated TDX agent,
# verified against the layout `attestctl layout from-kfp` derives from it; one tampered run refused.
demo-kfp: $(STAMP)
	$(PY) demo/kfp_demo.py

# Two attestd-verifier replicas on PostgreSQL (DEMO_ARGS=--sqlite for SQLite), four simulated
# agents, a tampered log, a webhook and a killed replica (docs/verifier-service.md).
demo-fleet: $(STAMP)
	$(PY) demo/fleet_demo.py $(DEMO_ARGS)

# A Kedro pipeline attested node by node (AttestdHooks), checked against the layout
# derived from the pipeline object: verified, a swapped model refused, a failed node aborted.
demo-kedro: $(STAMP)
	$(PY) demo/kedro_demo.py

# The suite includes the linters and the type checker: CI runs `make test`.
test: $(STAMP) lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# mypy cannot follow the editable install's package mapping, so it checks a
# plain install of the same tree in build/typecheck.
typecheck: $(STAMP)
	rm -rf build/typecheck build/lib
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --target build/typecheck . 2>&1 \
		| { grep -v -e BuildBackendWarning -e "return '\\\\n'.join" || true; }
	cd build/typecheck && ../../$(PY) -m mypy --config-file ../../pyproject.toml -p attestd
	MYPYPATH=build/typecheck $(PY) -m mypy --config-file pyproject.toml fuzz

proto: $(STAMP)
	PYTHON=$(PY) proto/generate.sh

check: test

bench-runtime-log: $(STAMP)
	$(PY) benchmarks/runtime_log.py

# 200 mTLS verifiers and a pipeline against simulated TDX quotes of 1 s and 50 ms, batched
# and unbatched; BENCH_ARGS="--duration 10" for a quicker look (the issue asks >= 30 s).
bench-evidence: $(STAMP)
	$(PY) benchmarks/evidence.py $(BENCH_ARGS)

# attestd-verifier at saturation: appraisals per verifier CPU second, one replica against two,
# on SQLite and PostgreSQL, and the failover time after a SIGKILL (BENCH_ARGS="--duration 5").
bench-fleet: $(STAMP)
	$(PY) benchmarks/fleet.py $(BENCH_ARGS)

bench-hashing: $(STAMP)
	$(PY) benchmarks/hashing.py

# attestd's appraise() on one core against dcap-qvl (TDX) and the bare SNP signature + chain check.
bench-appraisal: $(STAMP)
	$(PY) benchmarks/appraisal.py

# GPU BLAKE3 vs the blake3 package on all cores; needs an NVIDIA GPU and attestd[gpu].
bench-gpu: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,gpu]'
	$(PY) benchmarks/gpu_hashing.py

# sigstore-js's @sigstore/verify, pinned by its package-lock.json, into interop/sigstore-js/node_modules
# (git-ignored): tests/e2e/test_sigstore_verifiers.py runs it on exported bundles, and runs this
# target itself when node_modules is missing. Needs node >= 20.17 and the npm registry.
sigstore-js:
	cd interop/sigstore-js && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

# Every parser of outside bytes under atheris, SECONDS each (FUZZ_JOBS at once); see fuzz/README.md.
SECONDS ?= 60
FUZZ_JOBS ?= 1
fuzz: $(STAMP)
	$(PY) -c "import atheris" 2>/dev/null \
		|| $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,fuzz]'
	$(PY) fuzz/fuzz_parsers.py --seconds $(SECONDS) --jobs $(FUZZ_JOBS)

# The conformance suite (docs/conformance.md), rebuilt byte for byte from its fixed seed.
conformance: $(STAMP)
	$(PY) -m attestd.conformance.generate conformance

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
