"""The golden files of `inferops render` (tests/golden/, compared byte for byte by
tests/it/render.rs) are also valid Kubernetes objects: each validates against the
Kubernetes OpenAPI schemas of the supported version (strict: unknown fields fail), so a
golden cannot bless an object the apiserver would refuse."""

from pathlib import Path

import pytest

from conftest import ROOT, THIRD_PARTY_KINDS, load_yaml_docs, validate_object

GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.yaml"))
# Third-party kinds the renderer emits, checked structurally below (no schema ships with
# kubernetes-validate for them).
RENDERED_THIRD_PARTY = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.googleapis.com/v1", "PodMonitoring"),
}


def test_there_are_golden_files():
    assert len(GOLDEN) >= 4, GOLDEN


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_objects_validate_against_kubernetes(path: Path):
    docs = load_yaml_docs(path.read_text())
    assert docs, f"{path} is empty"
    checked = 0
    for obj in docs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in RENDERED_THIRD_PARTY or key in THIRD_PARTY_KINDS:
            assert obj["metadata"]["name"] and obj["spec"], f"{path}: {key} without name or spec"
            continue
        assert validate_object(obj) in ("kubernetes", "crd"), f"{path}: {key}"
        checked += 1
    assert checked, f"{path}: no built-in object validated"
