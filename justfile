# The project's task index (https://github.com/casey/just). Every recipe is a plain command
# or script, so each also works without `just`.

# List the recipes.
default:
    @just --list

# The whole suite, as CI runs it (README's test command).
test:
    ./scripts/test-all.sh

# Rust tests only (one integration-test binary: filter with e.g. `just test-rust controller::`).
test-rust *FILTER:
    cargo test --all-targets --locked {{FILTER}}

# Chart, kustomize, dashboards, alerts and GitOps health checks (needs .venv: `just test` once).
test-charts:
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/charts

# Format check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets --locked -- -D warnings

# Rebuild every generated file: CRDs and their copies, dashboards, kustomize, golden files.
generate:
    ./scripts/generate.sh

# The main job: a local concurrency sweep against the built-in simulator.
bench *ARGS:
    cargo run --release -- bench {{ARGS}}

# End to end on a kind cluster (needs docker, kind, kubectl, helm).
e2e:
    ./e2e/run.sh
