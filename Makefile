# One entry point for everything: `make test` installs from scratch into .venv and runs every check.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test lint typecheck security audit pytest demo dev bench bench-venv lambda-zip stack lint-deploy clean layer-venv

# What the Lambda function runs on, for the packaged-zip tests: the managed layer's pyarrow, pandas,
# numpy and awswrangler and the runtime's boto3/botocore (deploy/layer-requirements.txt, every
# distribution pinned, --no-deps), and a too-old botocore laid over it (deploy/old-botocore-requirements.txt).
LAYER_VENV  := .venv-layer
LAYER_STAMP := $(LAYER_VENV)/.installed-stamp
OLD_BOTOCORE := .venv-layer-old-botocore
OLD_STAMP   := $(OLD_BOTOCORE)/.installed-stamp

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(LAYER_STAMP): deploy/layer-requirements.txt
	rm -rf $(LAYER_VENV)
	$(PYTHON) -m venv $(LAYER_VENV)
	$(LAYER_VENV)/bin/python -m pip install -q --no-deps --only-binary=:all: -r deploy/layer-requirements.txt
	$(LAYER_VENV)/bin/python -m pip check
	touch $(LAYER_STAMP)

$(OLD_STAMP): deploy/old-botocore-requirements.txt $(LAYER_STAMP)
	rm -rf $(OLD_BOTOCORE)
	$(LAYER_VENV)/bin/python -m pip install -q --no-deps --only-binary=:all: --target $(OLD_BOTOCORE) \
		-r deploy/old-botocore-requirements.txt
	touch $(OLD_STAMP)

layer-venv: $(LAYER_STAMP) $(OLD_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(LAYER_STAMP) $(OLD_STAMP)
	$(BIN)/pytest -q

# bandit: no high-severity finding in the package; pip-audit on the locked dependencies (skips, saying
# so, when the vulnerability service is unreachable; SKIP_AUDIT=1 skips on purpose).
security: $(STAMP)
	$(BIN)/bandit -q -r s3_parquet_assets -lll
	BIN=$(BIN) bash tools/audit.sh

audit: $(STAMP)
	BIN=$(BIN) bash tools/audit.sh

# The committed template is the one deploy/stack.py renders from deploy/tables.example.yaml (checked),
# and cfn-lint clean; with TABLES=file, the stack rendered from that file is linted as well.
lint-deploy: $(STAMP)
	$(BIN)/python deploy/stack.py --tables deploy/tables.example.yaml --out deploy/template.yaml --check
	$(BIN)/cfn-lint deploy/template.yaml
	$(if $(TABLES),$(BIN)/python deploy/stack.py --tables $(TABLES) && $(BIN)/cfn-lint deploy/build/template.yaml)

# The SAM stack serving every table of a tables file: make stack TABLES=tables.yaml writes
# deploy/build/template.yaml (one schedule per table, least-privilege role for exactly those tables).
stack: $(STAMP)
	@test -n "$(TABLES)" || { echo "usage: make stack TABLES=path/to/tables.yaml" >&2; exit 2; }
	$(BIN)/python deploy/stack.py --tables $(TABLES) --out deploy/build/template.yaml

# TABLES=path/to/tables.yaml validates that tables file and bundles it (s3pa_tables.yaml in the zip).
lambda-zip: $(STAMP)
	$(BIN)/python deploy/build_zip.py $(if $(TABLES),--tables "$(TABLES)")

test: lint typecheck lint-deploy security pytest

# The local default: a moto server (S3 + Glue), a week of exports for the three tables of
# s3_parquet_assets/defs/tables.yaml, loaded through the Dagster component (one run per table, checks
# included), a per-table, per-day table, and every table read back through the Glue catalog.
demo: $(STAMP)
	$(BIN)/python -m s3_parquet_assets.demo demo

# Same emulator and exports, then `dg dev`: the Dagster UI on http://127.0.0.1:3000 (temporary
# DAGSTER_HOME) with the three tables, their partitions, checks, schedules and sensors.
dev: $(STAMP)
	$(BIN)/python -m s3_parquet_assets.demo dev

# Performance: this loader beside seed_lambda.py, arrow_stream.py, polars_stream.py and
# duckdb_stream.py (../shared/bench), 256 MiB and 1 GiB, csv/gz/zip, plus the 1 MiB fixed-cost case.
# BENCH_MB=4096 make bench for the big case; BENCH_LINK=s3 make bench runs the loaders through the S3
# link model (benchmarks/s3link.py; BENCH_LINK_LATENCY_MS=30, BENCH_LINK_MBPS=90 by default). The
# peers and the harness run from their own environment (.venv-bench, benchmarks/requirements.txt),
# this project's loader from .venv.
BENCH_MB ?= 256,1024
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-stamp

$(BENCH_STAMP): benchmarks/requirements.txt
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -r benchmarks/requirements.txt
	$(BENCH_VENV)/bin/python benchmarks/check_env.py
	touch $(BENCH_STAMP)

bench-venv: $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	BENCH_MB=$(BENCH_MB) $(BENCH_VENV)/bin/python benchmarks/run_bench.py --small --ours $(BIN)/s3-parquet-assets
	$(BENCH_VENV)/bin/python benchmarks/plot.py

clean:
	rm -rf $(VENV) $(LAYER_VENV) $(OLD_BOTOCORE) $(BENCH_VENV) deploy/build .pytest_cache .mypy_cache .ruff_cache
