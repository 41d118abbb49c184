"""The Helm chart, rendered by Helm's Go SDK (helm-python-sdk): lint, schemas, security, RBAC."""

import re
import tomllib

import helm_python as helm
import pytest
import yaml

from conftest import (
    CHART,
    CRDS,
    GMP_APIS,
    NAMESPACE,
    PRESETS,
    PROMETHEUS_OPERATOR_APIS,
    ROOT,
    deep_merge,
    objects_of,
    preset_values,
    render,
    render_raw,
    validate_object,
)
from test_rbac import expected_grants

CARGO_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]

# Every optional object switched on, to validate all templates at once.
EVERYTHING = {
    "metrics": {"serviceMonitor": {"enabled": True}},
    "prometheusRule": {"enabled": True},
    "prometheusAdapter": {"rulesConfigMap": {"enabled": True}},
    "kubeStateMetrics": {"customResourceState": {"enabled": True}, "rbac": {"create": True}},
}
NAMESPACED = {"rbac": {"namespaced": True}, "operator": {"watchNamespaces": ["ml"]}}

VALUE_SETS = {
    "default": {},
    "gke": preset_values("gke"),
    "eks": preset_values("eks"),
    "everything": EVERYTHING,
    "namespaced": NAMESPACED,
    "gke-namespaced": deep_merge(preset_values("gke"), NAMESPACED),
    "gke-kps": preset_values("gke-kps"),
}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def rendered(request):
    return request.param, render(VALUE_SETS[request.param])


def chart_meta():
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def test_chart_metadata_follows_the_crate():
    meta = chart_meta()
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == CARGO_VERSION, "Chart.yaml appVersion must equal Cargo.toml's version"
    assert meta["version"] == CARGO_VERSION


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_lint_is_clean(preset):
    report = helm.lint(str(CHART), preset_values(preset), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_chart_crds_are_the_repository_crds():
    assert (CHART / "crds" / "inferops.dev.yaml").read_bytes() == CRDS.read_bytes(), (
        "charts/inferops/crds/inferops.dev.yaml drifted: cp crds/inferops.dev.yaml charts/inferops/crds/"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["inferops.dev.yaml"]
    with helm.Chart.load(str(CHART)) as chart:
        names = [c["name"] for c in chart.crds]
    assert names == ["crds/inferops.dev.yaml"]


def test_every_rendered_object_validates(rendered):
    name, objs = rendered
    assert objs, name
    seen = {}
    for template, obj in objs:
        how = validate_object(obj)
        seen.setdefault(how, []).append(f"{obj['kind']}/{obj['metadata']['name']}")
        assert obj["metadata"]["name"], template
    assert "kubernetes" in seen


def test_rendering_is_deterministic():
    for values in VALUE_SETS.values():
        assert render_raw(values) == render_raw(values)


def test_image_tag_defaults_to_app_version():
    dep = objects_of(render(), "Deployment")[0]
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"ghcr.io/inferops/inferops:{chart_meta()['appVersion']}"
    dep = objects_of(render({"image": {"tag": "dev"}}), "Deployment")[0]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/inferops/inferops:dev"
    dep = objects_of(render({"image": {"digest": "sha256:" + "a" * 64}}), "Deployment")[0]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@sha256:" + "a" * 64)


def test_operator_container_is_locked_down(rendered):
    _, objs = rendered
    (dep,) = objects_of(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert "hostNetwork" not in pod and "hostPID" not in pod
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"][0] == "operator"
    assert "--metrics-addr=0.0.0.0:8080" in c["args"]
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in c["ports"]
    # No Secret reaches the operator.
    assert "secretKeyRef" not in yaml.safe_dump(pod) and "secretRef" not in yaml.safe_dump(pod)


def test_leader_election_args_and_lease_rbac():
    objs = render()
    (dep,) = objects_of(objs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect=true" in args
    assert "--lease-name=inferops-operator-leader" in args
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["OPERATOR_IMAGE"]["value"] == "ghcr.io/inferops/inferops:0.1.0"
    roles = {r["metadata"]["name"]: r for r in objects_of(objs, "Role")}
    lease_rules = roles["inferops-leader-election"]["rules"]
    assert roles["inferops-leader-election"]["metadata"]["namespace"] == NAMESPACE
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]} in lease_rules
    named = [r for r in lease_rules if r.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": ["inferops-operator-leader"], "verbs": ["get", "update"]}]
    off = render({"operator": {"leaderElection": {"enabled": False}}})
    off_args = objects_of(off, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect=false" in off_args and not [a for a in off_args if a.startswith("--lease-name")]
    assert not [r for r in objects_of(off, "Role") if "leader" in r["metadata"]["name"]]
    with pytest.raises(helm.HelmError):
        render({"operator": {"replicas": 2, "leaderElection": {"enabled": False}}})


def rules_of(objs):
    out = []
    for kind in ("ClusterRole", "Role"):
        for role in objects_of(objs, kind):
            out.extend((role["metadata"]["name"], r) for r in role["rules"])
    return out


def operator_rules(objs):
    """(group, resource) -> verbs granted to the operator's ServiceAccount."""
    bound = set()
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in objects_of(objs, kind):
            if any(s["kind"] == "ServiceAccount" and s["name"] == "inferops" for s in b["subjects"]):
                bound.add(b["roleRef"]["name"])
    granted = {}
    for role_name, rule in rules_of(objs):
        if role_name not in bound:
            continue
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                granted.setdefault((g, r), set()).update(rule["verbs"])
    return granted


def test_rbac_is_least_privilege(rendered):
    name, objs = rendered
    for role_name, rule in rules_of(objs):
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], role_name
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), role_name
        assert "secrets" not in rule["resources"], f"{role_name} grants access to Secrets"
        assert not any(r.startswith("pods/") for r in rule["resources"]), "no exec/log/attach"
        if role_name == "inferops-cluster-read" and rule["resources"] == ["customresourcedefinitions"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"] == [
                "podmonitors.monitoring.coreos.com", "podmonitorings.monitoring.googleapis.com",
                "scaledobjects.keda.sh"]
    # Exactly what the code calls (tests/charts/rbac_calls.yaml; test_rbac.py checks it
    # against the code), with the defaults of every rbac.* toggle.
    assert operator_rules(objs) == expected_grants(off={"rbac.tokenSecretAccess"}), name


def test_token_secret_access_is_opt_in_and_read_only():
    assert ("", "secrets") not in operator_rules(render())
    for values in ({"rbac": {"tokenSecretAccess": True}},
                   {"rbac": {"tokenSecretAccess": True, "namespaced": True}}):
        granted = operator_rules(render(values))
        assert granted[("", "secrets")] == {"get"}


def test_optional_rbac_for_podmonitors_and_keda_can_be_dropped():
    granted = operator_rules(render({"rbac": {"podMonitors": False, "kedaScaledObjects": False, "nodeAccess": False}}))
    assert ("monitoring.coreos.com", "podmonitors") not in granted
    assert ("keda.sh", "scaledobjects") not in granted
    assert ("", "nodes") not in granted


def test_namespaced_mode_uses_a_role_in_the_watched_namespace():
    objs = render(NAMESPACED)
    clusterroles = objects_of(objs, "ClusterRole")
    # Only the cluster-scoped reads stay cluster-wide: CRDs by name, nodes.
    assert [c["metadata"]["name"] for c in clusterroles] == ["inferops-cluster-read"]
    assert clusterroles[0]["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "resourceNames": ["podmonitors.monitoring.coreos.com", "podmonitorings.monitoring.googleapis.com",
                "scaledobjects.keda.sh"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    ]
    roles = [r for r in objects_of(objs, "Role") if r["metadata"]["name"] == "inferops"]
    assert [r["metadata"]["namespace"] for r in roles] == ["ml"]
    bindings = [b for b in objects_of(objs, "RoleBinding") if b["metadata"]["name"] == "inferops"]
    assert [b["metadata"]["namespace"] for b in bindings] == ["ml"]
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "inferops", "namespace": NAMESPACE}]
    args = objects_of(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--watch-namespace=ml" in args
    # Without a namespace, the release namespace.
    objs = render({"rbac": {"namespaced": True}})
    roles = [r for r in objects_of(objs, "Role") if r["metadata"]["name"] == "inferops"]
    assert [r["metadata"]["namespace"] for r in roles] == [NAMESPACE]
    args = objects_of(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--watch-namespace={NAMESPACE}" in args
    no_ns = render()
    args = objects_of(no_ns, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--watch-namespace")]
    # The operator watches one namespace or all.
    with pytest.raises(helm.HelmError, match="watchNamespaces"):
        render({"operator": {"watchNamespaces": ["a", "b"]}})


def test_service_monitor_scrapes_the_metrics_port():
    objs = render(EVERYTHING)
    (sm,) = objects_of(objs, "ServiceMonitor")
    (svc,) = objects_of(objs, "Service")
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][k] == v
    (dep,) = objects_of(objs, "Deployment")
    for k, v in svc["spec"]["selector"].items():
        assert dep["spec"]["template"]["metadata"]["labels"][k] == v
    assert not objects_of(render(), "ServiceMonitor"), "off by default: needs the Prometheus Operator"


def env_of(objs):
    (dep,) = objects_of(objs, "Deployment")
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_presets_enable_monitoring_for_their_stack():
    for preset in ("eks", "gke-kps"):
        objs = render(preset_values(preset))
        kinds = {o["kind"] for _, o in objs}
        assert {"ServiceMonitor", "PrometheusRule"} <= kinds, preset
        assert not {"PodMonitoring", "ClusterRules"} & kinds, preset
        for kind in ("ServiceMonitor", "PrometheusRule"):
            assert objects_of(objs, kind)[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        env = env_of(objs)
        assert env["INFEROPS_MONITORING_STACK"] == "prometheus-operator"
        # kube-prometheus-stack's default podMonitorSelector: release=<its release name>.
        assert env["INFEROPS_PODMONITOR_LABELS"] == "release=kube-prometheus-stack"
    gke = render(preset_values("gke"))
    kinds = {o["kind"] for _, o in gke}
    assert {"PodMonitoring", "ClusterRules"} <= kinds and not {"ServiceMonitor", "PrometheusRule"} & kinds
    assert env_of(gke)["INFEROPS_MONITORING_STACK"] == "gmp"
    for preset in ("gke", "eks", "gke-kps"):
        objs = render(preset_values(preset))
        (dep,) = objects_of(objs, "Deployment")
        assert dep["spec"]["replicas"] == 2
        terms = dep["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert all(e["operator"] == "DoesNotExist" for t in terms for e in t["matchExpressions"])
        # GKE managed DCGM, and dcgm-exporter scraped with honorLabels: false (the GPU
        # operator's ServiceMonitor default), label the workload exported_pod.
        rules = [o for _, o in objs if o["kind"] in ("PrometheusRule", "ClusterRules")]
        assert "exported_pod" in yaml.safe_dump(rules), preset
    default_rule = objects_of(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")[0]
    assert "exported_pod" not in yaml.safe_dump(default_rule)


def test_eks_preset_monitoring_is_the_kube_prometheus_stack_add_on():
    eks, addon = preset_values("eks"), yaml.safe_load((CHART / "values-kube-prometheus-stack.yaml").read_text())
    assert {k: eks[k] for k in addon} == addon


MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule", "PodMonitoring", "ClusterRules"}


@pytest.mark.parametrize("preset", ["gke", "eks", "gke-kps"])
def test_presets_install_on_a_cluster_without_the_monitoring_stack(preset):
    values = preset_values(preset)
    bare = render(values, api_versions=[])
    assert not {o["kind"] for _, o in bare} & MONITORING_KINDS
    namespaces = {o["metadata"].get("namespace") for _, o in bare} - {None}
    assert namespaces == {NAMESPACE}, f"{preset}: objects in a namespace that may not exist: {namespaces}"
    notes = render_raw(values, api_versions=[])["inferops/templates/NOTES.txt"]
    assert "SKIPPED alerts" in notes and "SKIPPED operator metrics" in notes
    if preset != "gke":
        assert "SKIPPED Grafana dashboards" in notes and "SKIPPED prometheus-adapter rules" in notes
    # The stack's own APIs bring its objects back; checkAPIs: false renders them regardless.
    stack_apis = GMP_APIS if preset == "gke" else PROMETHEUS_OPERATOR_APIS
    full = {(o["kind"], o["metadata"]["name"]) for _, o in render(values)}
    assert {(o["kind"], o["metadata"]["name"]) for _, o in render(values, api_versions=stack_apis)} == full
    offline = deep_merge(values, {"monitoring": {"checkAPIs": False}})
    assert {(o["kind"], o["metadata"]["name"]) for _, o in render(offline, api_versions=[])} == full
    assert "SKIPPED" not in render_raw(values)["inferops/templates/NOTES.txt"]


def test_only_the_chosen_stacks_api_counts():
    # A cluster with kube-prometheus-stack but the GMP preset: nothing of GMP is rendered.
    objs = render(preset_values("gke"), api_versions=PROMETHEUS_OPERATOR_APIS)
    assert not {o["kind"] for _, o in objs} & MONITORING_KINDS


def test_stack_none_renders_no_monitoring_objects():
    objs = render({"monitoring": {"stack": "none"}})
    assert not {o["kind"] for _, o in objs} & MONITORING_KINDS
    # The operator renders no scrape object for engine pods either.
    assert env_of(objs)["INFEROPS_MONITORING_STACK"] == "none"
    for bad in ({"metrics": {"serviceMonitor": {"enabled": True}}}, {"prometheusRule": {"enabled": True}}):
        with pytest.raises(helm.HelmError, match="monitoring.stack"):
            render(deep_merge({"monitoring": {"stack": "none"}}, bad))


def test_operator_settings_reach_the_operator_as_env():
    env = env_of(render())
    assert env["INFEROPS_MONITORING_STACK"] == "prometheus-operator"
    for unset in ("INFEROPS_PODMONITOR_LABELS", "INFEROPS_IMAGE_PULL_SECRETS", "INFEROPS_ALLOWED_ENGINE_IMAGES"):
        assert unset not in env, "empty settings are left out, not passed as empty strings"
    objs = render({
        "monitoring": {"podMonitorLabels": {"release": "prom", "team": "ml"}},
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        "operator": {"allowedEngineImages": ["vllm/vllm-openai:*", "registry.example.com/ml/vllm:v0.11.0"]},
    })
    env = env_of(objs)
    assert env["INFEROPS_PODMONITOR_LABELS"] == "release=prom,team=ml"
    assert env["INFEROPS_IMAGE_PULL_SECRETS"] == "regcred,mirror"
    assert env["INFEROPS_ALLOWED_ENGINE_IMAGES"] == "vllm/vllm-openai:*,registry.example.com/ml/vllm:v0.11.0"
    (dep,) = objects_of(objs, "Deployment")
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    # Workload pull secrets of their own (Secrets in the workload namespaces).
    env = env_of(render({"imagePullSecrets": [{"name": "regcred"}], "operator": {"workloadImagePullSecrets": ["ns-cred"]}}))
    assert env["INFEROPS_IMAGE_PULL_SECRETS"] == "ns-cred"
    # Values that would break the comma-separated lists are refused by the schema.
    for bad, where in [
        ({"monitoring": {"podMonitorLabels": {"release": "a,b"}}}, "podMonitorLabels"),
        ({"monitoring": {"podMonitorLabels": {"bad key": "x"}}}, "bad key"),
        ({"operator": {"allowedEngineImages": ["a,b"]}}, "allowedEngineImages"),
        ({"operator": {"allowedEngineImages": ["vllm/*/openai"]}}, "allowedEngineImages"),
        ({"operator": {"workloadImagePullSecrets": ["Reg_Cred"]}}, "workloadImagePullSecrets"),
        ({"monitoring": {"stack": "victoria"}}, "stack"),
    ]:
        with pytest.raises(helm.HelmError, match=where):
            render(bad)


def test_bad_values_fail_with_a_message():
    with pytest.raises(helm.HelmError, match="gpuLabels"):
        render({"monitoring": {"gpuLabels": "nvidia"}})


def test_notes_tell_the_next_command():
    notes = render_raw()["inferops/templates/NOTES.txt"]
    assert "kubectl -n inferops-system rollout status deployment/inferops" in notes
    assert "kubectl apply -f manifests/examples/infsvc-sim.yaml" in notes
    assert re.search(r"kubectl get bench", notes)
    namespaced = render_raw(NAMESPACED)["inferops/templates/NOTES.txt"]
    assert "It watches: ml." in namespaced


def test_no_timestamps_or_random_names(rendered):
    _, objs = rendered
    text = yaml.safe_dump([o for _, o in objs])
    assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", text), "timestamps in rendered output"
    for fn in ("randAlphaNum", "randAlpha", "randNumeric", "uuidv4", "now", "genCA", "genSelfSignedCert"):
        for t in (CHART / "templates").iterdir():
            assert not re.search(rf"\b{fn}\b", t.read_text()), f"{t.name} uses {fn}"


def test_values_schema_accepts_the_presets_and_rejects_typos():
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.schema is not None
        for preset in PRESETS:
            chart.validate_schema(preset_values(preset))
    for bad, where in [
        ({"prometheusRules": {"enabled": True}}, "prometheusRules"),
        ({"rbac": {"namespace": True}}, "namespace"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"operator": {"logFormat": "yaml"}}, "logFormat"),
        ({"prometheusRule": {"thresholds": {"gpuMemoryRatio": 90}}}, "gpuMemoryRatio"),
    ]:
        with pytest.raises(helm.HelmError, match=where):
            render(bad)


def test_pdb_only_with_more_than_one_replica():
    assert not objects_of(render(), "PodDisruptionBudget")
    for preset in ("gke", "eks"):
        (pdb,) = objects_of(render(preset_values(preset)), "PodDisruptionBudget")
        (dep,) = objects_of(render(preset_values(preset)), "Deployment")
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_gmp_stack_uses_managed_prometheus_kinds():
    gmp = render(preset_values("gke"))
    kinds = {o["kind"] for _, o in gmp}
    assert {"PodMonitoring", "ClusterRules"} <= kinds
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds
    (pm,) = objects_of(gmp, "PodMonitoring")
    (dep,) = objects_of(gmp, "Deployment")
    assert pm["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert pm["spec"]["endpoints"][0]["port"] == "metrics"
    (cr,) = objects_of(gmp, "ClusterRules")
    assert "namespace" not in cr["metadata"], "ClusterRules is cluster-scoped"
    (pr,) = objects_of(render(preset_values("gke-kps")), "PrometheusRule")
    assert all(g.pop("interval") == "30s" for g in cr["spec"]["groups"])
    assert cr["spec"]["groups"] == pr["spec"]["groups"]


def operator_env_names():
    """Environment variables the operator binary reads: clap `env = "..."` attributes and
    std::env::var calls in the operator's code, and RUST_LOG (tracing's EnvFilter)."""
    names = {"RUST_LOG"}
    for d in ("src/controller", "src/render"):
        for p in (ROOT / d).rglob("*.rs"):
            text = p.read_text()
            names |= set(re.findall(r'\benv = "([A-Z_]+)"', text))
            names |= set(re.findall(r'std::env::var\("([A-Z_]+)"\)', text))
    return names


def test_every_env_the_chart_sets_is_read_by_the_operator():
    values = {
        "monitoring": {"podMonitorLabels": {"release": "x"}},
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {"allowedEngineImages": ["vllm/vllm-openai:*"]},
    }
    env = set(env_of(render(values))) | set(env_of(render(preset_values("gke"))))
    read = operator_env_names()
    assert env <= read, f"the chart sets {sorted(env - read)}, which the operator never reads"


def test_the_chart_passes_only_stacks_the_operator_knows():
    text = (ROOT / "src" / "render" / "mod.rs").read_text()
    body = text[text.index("pub enum MonitoringStack"):]
    body = body[:body.index("}")]
    variants = re.findall(r"^\s*([A-Z]\w*),", body, re.M)
    kebab = {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}
    assert kebab == {"prometheus-operator", "gmp", "none"}
    for stack in ("prometheus-operator", "gmp", "none"):
        passed = env_of(render({"monitoring": {"stack": stack}})).get("INFEROPS_MONITORING_STACK")
        assert passed == stack and passed in kebab, (stack, passed)
