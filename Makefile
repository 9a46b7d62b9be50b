# The README's commands. `make setup` is idempotent; `run` and `test` call it first.
.PHONY: setup run demo test lint bench

setup:
	@bash scripts/setup.sh

# The contact centre: caller softphone, agent desk, supervisor dashboard (URLs printed at start).
run: setup
	.venv/bin/voicebot serve

# A demo call from the shipped caller recordings, printed as it happens.
demo: setup
	.venv/bin/voicebot demo call

test: setup
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/lint-imports
	.venv/bin/ruff check voicebot tests scripts
	.venv/bin/ruff format --check voicebot tests scripts

bench: setup
	.venv/bin/python scripts/bench_latency.py
	.venv/bin/python scripts/bench_sip.py
	.venv/bin/python scripts/bench_languages.py
