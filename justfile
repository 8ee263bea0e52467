# ironrt developer tasks. `pip install -e '.[dev]'` brings just (rust-just), ruff and mypy.

default: test

# Format the code.
fmt:
    ruff format ironrt tests bench agents
    ruff check --fix ironrt tests bench agents

# Lint: ruff everywhere, mypy --strict on the package, the import layers (import-linter).
lint:
    ruff check ironrt tests bench agents
    ruff format --check ironrt tests bench agents
    mypy --strict ironrt
    lint-imports

# The whole test suite (what CI runs).
test:
    bash .ci/run

# Benchmarks, each side by side with its baseline in the same run.
bench:
    python bench/router.py
    python bench/supervisor.py
    python bench/pii.py
    python bench/logs.py
    python bench/stall.py
    python bench/library.py
    python bench/events.py
    python bench/otel.py
    python bench/usage.py
    python bench/startup.py
    python bench/event_loop.py
    python bench/fleet.py
    python bench/floor.py
    python bench/governance.py
    python bench/parallel_bound.py
    python bench/wire_parts.py
    -python bench/instructions.py
    -python bench/processes.py

# The offline demo: no key, no network.
demo:
    ironrt demo
