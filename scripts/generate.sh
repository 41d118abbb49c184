#!/usr/bin/env bash
# Rebuilds every generated file from its source (what `just generate` runs):
#   crds/inferops.dev.yaml                 from src/api (`inferops crds`)
#   charts/inferops/crds/, manifests/base/crds/   copies of it
#   charts/inferops/files/dashboards/*.json       scripts/gen-dashboards.py
#   manifests/base, manifests/overlays/*          scripts/gen-manifests.py (from the chart)
#   tests/golden/*.yaml                    `inferops render` of manifests/examples
# Tests fail when any of these drift (tests/it/api.rs, tests/it/render.rs, tests/charts).
# Needs the test virtualenv .venv for the chart-derived files (./scripts/test-all.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --locked -- crds > crds/inferops.dev.yaml
cp crds/inferops.dev.yaml charts/inferops/crds/inferops.dev.yaml
python3 scripts/gen-dashboards.py
UPDATE_GOLDEN=1 cargo test -q --locked --test it render::golden_files_match >/dev/null
if [ -x .venv/bin/python ]; then
  .venv/bin/python scripts/gen-manifests.py
else
  echo "skipped manifests/ (kustomize): no .venv yet; run ./scripts/test-all.sh once" >&2
  exit 1
fi
