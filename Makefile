# The README's commands. Only Python 3.11 and make are needed: uv is bootstrapped into .tools/ and the
# environment is created from uv.lock on first use.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# Compile bytecode at install: the sandbox sets PYTHONDONTWRITEBYTECODE, and compiling GX on every start costs 10 s.
export UV_COMPILE_BYTECODE := 1
# LightGBM's OpenMP threads spin while they wait; when another process holds a core, a 2-thread fit runs about
# 10x slower (bench/bench_train.py --omp-passive). Passive waiting costs little when the machine is idle.
export OMP_WAIT_POLICY ?= PASSIVE
RUN := $(UV) run --frozen --no-sync
DATA ?= data
CUSTOMERS ?= 20000
MONTHS ?= 12
# make run SOURCE=online-retail: ingest sources/$(SOURCE).yaml into data-$(SOURCE) instead of generating the demo
# bank, and run the platform there with the campaigns of sources/$(SOURCE).campaigns/ (docs/bring-your-own-data.md).
SOURCE ?=
SOURCE_DATA := data-$(SOURCE)
# Online Retail's file ends on 2011-12-09: run as of the first day after its last whole month.
ifeq ($(SOURCE),online-retail)
AS_OF ?= 2011-12-01
endif

.PHONY: run serve test bench lint format clean help

help:
	@echo "make run    generate the demo bank ($(CUSTOMERS) customers, $(MONTHS) months), then train, score and write"
	@echo "           the campaign lists through Airflow (churn_training, campaign_scoring__*), and print a summary"
	@echo "           (the tasks' output goes to $(DATA)/runs/pmp_run__<date>/run.log)"
	@echo "make run SOURCE=online-retail   the same on a source mapping (sources/<name>.yaml) ingested into"
	@echo "           data-<name>, with the campaigns of sources/<name>.campaigns/"
	@echo "make serve  the staff app on http://127.0.0.1:8000/ (after make run; users in $(DATA)/web/demo-passwords.txt)"
	@echo "make test   the whole test suite"
	@echo "make bench  benchmarks that print figures (generator, validation, features vs DuckDB, training, scoring, uplift)"
	@echo "make lint   ruff"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

# A failing task of the demo is retried after 5 s rather than the production 5 minutes.
ifeq ($(SOURCE),)
run: .venv/.synced
	$(RUN) pmp synth --customers $(CUSTOMERS) --months $(MONTHS) --out $(DATA)
	PM_RETRY_DELAY_SECONDS=5 $(RUN) pmp run --data $(DATA)
	$(RUN) pmp users demo --data $(DATA)
else
run: .venv/.synced
	$(RUN) pmp ingest --source $(SOURCE) --data $(SOURCE_DATA)
	PM_CAMPAIGNS_DIR=sources/$(SOURCE).campaigns PM_RETRY_DELAY_SECONDS=5 \
		$(RUN) pmp run --data $(SOURCE_DATA) $(if $(AS_OF),--as-of $(AS_OF))
	$(RUN) pmp users demo --data $(SOURCE_DATA) --serve-command "make serve SOURCE=$(SOURCE)"
endif

# The staff app over the data folder of make run (campaigns, readouts, lists, the campaign builder).
ifeq ($(SOURCE),)
serve: .venv/.synced
	$(RUN) pmp serve --data $(DATA)
else
serve: .venv/.synced
	PM_CAMPAIGNS_DIR=sources/$(SOURCE).campaigns $(RUN) pmp serve --data $(SOURCE_DATA)
endif

# Two workers on the two cores; a test module stays on one worker, so its module fixtures (a trained bank, a
# private PostgreSQL server) are built once.
test: .venv/.synced
	$(RUN) pytest -n 2 --dist loadfile

bench: .venv/.synced
	$(RUN) python bench/bench_synth.py --customers 200000 --months 12 --out bench/out/synth --keep
	$(RUN) python bench/bench_validate.py bench/out/synth
	$(RUN) python bench/bench_features.py bench/out/synth
	$(RUN) python bench/bench_train.py --lake bench/out/synth --rows 100000
	$(RUN) python bench/bench_score.py bench/out/synth --postgres ''
	$(RUN) python bench/bench_uplift.py --omp-passive
	$(UV) run --frozen --extra bench python bench/bench_uplift_peers.py
	$(RUN) python bench/bench_tuning.py

lint: .venv/.synced
	$(RUN) ruff check pipelines dags tests bench
	$(RUN) ruff format --check pipelines dags tests bench

format: .venv/.synced
	$(RUN) ruff format pipelines dags tests bench
	$(RUN) ruff check --fix pipelines dags tests bench

clean:
	rm -rf $(DATA) bench/out .pytest_cache .airflow
