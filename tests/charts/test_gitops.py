"""Flux health checks (deploy/flux/inferops-workloads.yaml healthCheckExprs), evaluated with a
CEL interpreter against the Argo CD fixtures: Flux and Argo CD must reach the same verdicts."""

import cel
import pytest
import yaml

from conftest import ROOT, load_yaml_docs
from test_argocd_health import HEALTH, KINDS, run_health

FLUX = ROOT / "deploy" / "flux"


def exprs():
    docs = load_yaml_docs((FLUX / "inferops-workloads.yaml").read_text())
    (ks,) = [d for d in docs if d["kind"] == "Kustomization"]
    return {e["kind"]: e for e in ks["spec"]["healthCheckExprs"]}


def flux_status(check, obj):
    """kustomize-controller's order: inProgress, failed, current; none true: still in progress.
    An expression over a field that does not exist yet fails, and Flux keeps waiting."""
    for key, verdict in (("inProgress", "Progressing"), ("failed", "Degraded"), ("current", "Healthy")):
        try:
            if check.get(key) and cel.evaluate(check[key], obj) is True:
                return verdict
        except RuntimeError:
            return "Progressing"
    return "Progressing"


def fixtures():
    return [
        pytest.param(kind, p, id=f"{kind}-{p.stem}")
        for kind in KINDS
        for p in sorted((HEALTH / "inferops.dev" / kind / "testdata").glob("*.yaml"))
    ]


@pytest.mark.parametrize("kind,path", fixtures())
def test_flux_agrees_with_argocd(kind, path):
    obj = yaml.safe_load(path.read_text())
    argo = run_health(kind, obj)["status"]
    # Flux has no Suspended: an InferenceService scaled to zero on purpose is simply current.
    assert flux_status(exprs()[kind], obj) == {"Suspended": "Healthy"}.get(argo, argo)


def test_flux_checks_cover_both_kinds():
    e = exprs()
    assert set(e) == set(KINDS)
    for check in e.values():
        assert check["apiVersion"] == "inferops.dev/v1alpha1"
        assert {"inProgress", "failed", "current"} <= set(check)


def test_helmrelease_uses_the_chart_and_its_presets():
    docs = {d["kind"]: d for d in load_yaml_docs((FLUX / "inferops-operator.yaml").read_text())}
    hr = docs["HelmRelease"]["spec"]
    assert hr["chart"]["spec"]["chart"] == "charts/inferops"
    for f in hr["chart"]["spec"]["valuesFiles"]:
        assert (ROOT / f).is_file(), f
    assert hr["install"]["crds"] == "CreateReplace" and hr["upgrade"]["crds"] == "CreateReplace"
    assert hr["targetNamespace"] == "inferops-system"


def test_gitops_doc_points_at_the_files():
    doc = (ROOT / "docs" / "gitops.md").read_text()
    for rel in ("deploy/argocd/argocd-cm.yaml", "deploy/flux/inferops-operator.yaml",
                "deploy/flux/inferops-workloads.yaml", "resource.customizations.health.inferops.dev_InferenceService",
                "ignoreDifferences", "healthCheckExprs"):
        assert rel in doc, rel
        if "/" in rel:
            assert (ROOT / rel).exists(), rel
