"""Dashboards, alerts, prometheus-adapter and kube-state-metrics configs shipped with the chart.

PromQL is parsed, and the alerts are unit-tested, by Debian's promtool (package prometheus,
installed by ./scripts/test-all.sh)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CHART, ROOT, crd_schemas, load_yaml_docs, objects_of, preset_values, render
from test_kustomize import load_script

PROMTOOL = shutil.which("promtool")
DASHBOARDS = CHART / "files" / "dashboards"
KSM_CONFIG = CHART / "files" / "kube-state-metrics-config.yaml"
ADAPTER_RULES = CHART / "files" / "prometheus-adapter-rules.yaml"

# Metric families the dashboards and alerts may read, by source.
VLLM = {
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds", "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc", "vllm:request_success_total", "vllm:num_preemptions_total",
}
DCGM = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_GPU_TEMP"}
OPERATOR = {"inferops_reconciles_total", "inferops_reconcile_errors_total", "inferops_reconcile_duration_seconds"}


def ksm_metric_names():
    cfg = yaml.safe_load(KSM_CONFIG.read_text())
    return {f"{r['metricNamePrefix']}_{m['name']}" for r in cfg["spec"]["resources"] for m in r["metrics"]}


def metric_family(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in VLLM | OPERATOR:
            return name[: -len(suffix)]
    return name


PROMQL_WORDS = {
    "sum", "avg", "max", "min", "count", "by", "without", "rate", "irate", "increase", "deriv",
    "histogram_quantile", "label_replace", "or", "and", "unless", "on", "ignoring", "group_left",
    "group_right", "max_over_time", "avg_over_time", "absent", "bool", "offset", "le",
}


def metrics_in(expr):
    """Metric names used in a PromQL expression (identifiers followed by { or [ or standing
    alone), leaving out functions, keywords and label names inside braces and by()."""
    stripped = re.sub(r"\{[^}]*\}", "{}", expr)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    stripped = re.sub(r'"[^"]*"', '""', stripped)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", stripped):
        word = m.group(0)
        after = stripped[m.end():m.end() + 1]
        if word in PROMQL_WORDS or after == "(" or word.startswith("$") or word in ("s", "m", "h"):
            continue
        if stripped[m.start() - 1:m.start()] in ("$", "[") or re.match(r"\d", word):
            continue
        names.add(word)
    return names


def dashboard_files():
    return sorted(DASHBOARDS.glob("*.json"))


def dashboard_exprs(d):
    for p in d["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            # label_values(SERIES, LABEL): the series selector is PromQL
            m = re.fullmatch(r"label_values\((.*), *[a-z_]+\)", v["definition"])
            assert m, v["definition"]
            yield f"variable {v['name']}", m.group(1)


def grafana_to_promql(expr):
    """Substitute Grafana's variables so promtool can parse the query."""
    expr = expr.replace("$__rate_interval", "5m")
    expr = expr.replace("${gpu_ns_label}", "namespace").replace("${gpu_pod_label}", "pod")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def promtool(*args, cwd=None):
    assert PROMTOOL, "promtool missing: ./scripts/test-all.sh installs Debian's prometheus package"
    res = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


# ---------------------------------------------------------------- dashboards


def test_dashboards_are_generated_from_the_script():
    gen = load_script("gen-dashboards")
    for name, fn in gen.BOARDS.items():
        assert (DASHBOARDS / name).read_text() == gen.render(fn), f"run python3 scripts/gen-dashboards.py ({name})"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_well_formed(path):
    d = json.loads(path.read_text())
    assert d["uid"].startswith("inferops-") and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
    names = [v["name"] for v in d["templating"]["list"]]
    assert names[0] == "datasource"
    # every variable used in a query is defined
    for where, expr in dashboard_exprs(d):
        for var in re.findall(r"\$\{?([a-z_]+)\}?", expr):
            assert var in names or var.startswith("__"), f"{path.name} {where}: ${var} undefined"


def test_vllm_dashboard_has_the_panels_people_look_at():
    d = json.loads((DASHBOARDS / "vllm-serving.json").read_text())
    by_title = {p["title"]: p for p in d["panels"]}
    for title, metric in [
        ("Time to first token", "vllm:time_to_first_token_seconds_bucket"),
        ("Inter-token latency", "vllm:inter_token_latency_seconds_bucket"),
        ("End-to-end request latency", "vllm:e2e_request_latency_seconds_bucket"),
    ]:
        legends = [t["legendFormat"] for t in by_title[title]["targets"]]
        assert legends == ["p50", "p95", "p99"], title
        assert all(metric in t["expr"] and "histogram_quantile" in t["expr"] for t in by_title[title]["targets"])
    tput = " ".join(t["expr"] for t in by_title["Prompt vs generation tokens / s"]["targets"])
    assert "vllm:prompt_tokens_total" in tput and "vllm:generation_tokens_total" in tput
    rw = " ".join(t["expr"] for t in by_title["Running vs waiting requests"]["targets"])
    assert "vllm:num_requests_running" in rw and "vllm:num_requests_waiting" in rw
    assert "vllm:kv_cache_usage_perc" in by_title["KV cache usage"]["targets"][0]["expr"]
    assert "DCGM_FI_DEV_GPU_UTIL" in by_title["GPU utilisation"]["targets"][0]["expr"]
    assert "DCGM_FI_DEV_FB_USED" in by_title["GPU framebuffer memory used"]["targets"][0]["expr"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_metrics_exist(path):
    d = json.loads(path.read_text())
    known = VLLM | DCGM | OPERATOR | ksm_metric_names()
    for where, expr in dashboard_exprs(d):
        for name in metrics_in(grafana_to_promql(expr)):
            assert metric_family(name) in known, f"{path.name} {where}: unknown metric {name}"


def test_dashboard_queries_parse(tmp_path):
    rules = []
    for path in dashboard_files():
        d = json.loads(path.read_text())
        for i, (where, expr) in enumerate(dashboard_exprs(d)):
            rules.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{i}", "expr": grafana_to_promql(expr)})
    (tmp_path / "dash.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    out = promtool("check", "rules", "dash.yaml", cwd=tmp_path)
    assert f"SUCCESS: {len(rules)} rules found" in out


def test_dashboard_configmaps_carry_the_sidecar_label():
    objs = render()
    cms = [o for o in objects_of(objs, "ConfigMap") if "dashboard" in o["metadata"]["name"]]
    assert sorted(c["metadata"]["name"] for c in cms) == ["inferops-dashboard-benchmarks", "inferops-dashboard-vllm-serving"]
    for c in cms:
        assert c["metadata"]["labels"]["grafana_dashboard"] == "1"
        (key,) = c["data"]
        assert json.loads(c["data"][key]) == json.loads((DASHBOARDS / key).read_text())
    assert not [o for o in objects_of(render({"dashboards": {"enabled": False}}), "ConfigMap")]
    gke = [o for o in objects_of(render(preset_values("gke-kps")), "ConfigMap") if o["metadata"]["name"].endswith("vllm-serving")]
    d = json.loads(gke[0]["data"]["vllm-serving.json"])
    current = {v["name"]: v["current"]["value"] for v in d["templating"]["list"] if v["type"] == "custom"}
    assert current == {"gpu_ns_label": "exported_namespace", "gpu_pod_label": "exported_pod"}
    assert gke[0]["metadata"]["namespace"] == "monitoring"


# ---------------------------------------------------------------- alerts


def rule_groups(values):
    objs = render({**values, "prometheusRule": {**values.get("prometheusRule", {}), "enabled": True}})
    (rule,) = objects_of(objs, "PrometheusRule")
    return rule["spec"]["groups"]


def alerts(groups):
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_prometheus_rule_has_the_alerts():
    a = alerts(rule_groups({}))
    assert set(a) == {
        "VLLMHighE2ELatencyP95", "VLLMQueueDepthGrowing", "VLLMKVCacheNearlyFull",
        "GPUUtilizationSustainedHigh", "GPUMemoryHigh", "BenchmarkRunFailed", "BenchmarkRunRegressed",
        "InferopsReconcileErrors",
    }
    assert "> 2" in a["VLLMHighE2ELatencyP95"]["expr"]
    assert "> 95" in a["GPUUtilizationSustainedHigh"]["expr"] and a["GPUUtilizationSustainedHigh"]["for"] == "15m"
    assert "> 0.9" in a["GPUMemoryHigh"]["expr"]
    assert "deriv(" in a["VLLMQueueDepthGrowing"]["expr"] and a["VLLMQueueDepthGrowing"]["for"] == "10m"
    assert 'phase="Failed"' in a["BenchmarkRunFailed"]["expr"]
    for r in a.values():
        assert r["labels"]["severity"] in ("info", "warning", "critical")
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        for name in metrics_in(r["expr"]):
            assert metric_family(name) in VLLM | DCGM | OPERATOR | ksm_metric_names(), name
    assert not objects_of(render(), "PrometheusRule"), "off by default: needs the Prometheus Operator"


@pytest.mark.parametrize("gpu_labels", ["dcgm-exporter", "gke-managed"])
def test_rules_pass_promtool_check(tmp_path, gpu_labels):
    groups = rule_groups({"monitoring": {"gpuLabels": gpu_labels}})
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    out = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 8 rules found" in out


def alert_case(alert, at, labels=None):
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels}] if labels is not None else []}


def test_alerts_fire_when_they_should_and_not_otherwise(tmp_path):
    """promtool test rules: synthetic series for each alert, firing and quiet cases."""
    groups = rule_groups({"prometheusRule": {"additionalAlertLabels": {"team": "ml"}}})
    for g in groups:  # annotations are templates checked by `promtool check rules`; compare labels here
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    sel = 'namespace="ml", model_name="qwen", pod="qwen-0"'
    gpu = 'namespace="ml", pod="qwen-0", Hostname="gpu-node-1", gpu="0"'
    hot = {"severity": "warning", "team": "ml"}
    tests = [
        {  # P95 E2E latency: every request in (2.5s, 5s] -> p95 ~ 4.9s
            "interval": "1m",
            "input_series": [
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="1"}}', "values": "0+0x30"},
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="2.5"}}', "values": "0+0x30"},
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="5"}}', "values": "0+60x30"},
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="+Inf"}}', "values": "0+60x30"},
            ],
            "alert_rule_test": [
                alert_case("VLLMHighE2ELatencyP95", "3m"),
                alert_case("VLLMHighE2ELatencyP95", "15m", {**hot, "namespace": "ml", "model_name": "qwen"}),
            ],
        },
        {  # Fast requests: quiet
            "interval": "1m",
            "input_series": [
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="1"}}', "values": "0+60x30"},
                {"series": f'vllm:e2e_request_latency_seconds_bucket{{{sel}, le="+Inf"}}', "values": "0+60x30"},
            ],
            "alert_rule_test": [alert_case("VLLMHighE2ELatencyP95", "20m")],
        },
        {  # Queue growing by one request a minute, vs a steady queue of 5
            "interval": "1m",
            "input_series": [
                {"series": f"vllm:num_requests_waiting{{{sel}}}", "values": "0+1x40"},
                {"series": 'vllm:num_requests_waiting{namespace="ml", model_name="steady", pod="steady-0"}',
                 "values": "5+0x40"},
            ],
            "alert_rule_test": [
                alert_case("VLLMQueueDepthGrowing", "8m"),
                alert_case("VLLMQueueDepthGrowing", "30m", {**hot, "namespace": "ml", "model_name": "qwen"}),
            ],
        },
        {  # KV cache at 95%
            "interval": "1m",
            "input_series": [{"series": f"vllm:kv_cache_usage_perc{{{sel}}}", "values": "0.95+0x20"}],
            "alert_rule_test": [
                alert_case("VLLMKVCacheNearlyFull", "5m"),
                alert_case("VLLMKVCacheNearlyFull", "15m", {**hot, "namespace": "ml", "pod": "qwen-0", "model_name": "qwen"}),
            ],
        },
        {  # GPU pinned at 98% for 20 minutes; another GPU at 60%
            "interval": "1m",
            "input_series": [
                {"series": f"DCGM_FI_DEV_GPU_UTIL{{{gpu}}}", "values": "98+0x25"},
                {"series": 'DCGM_FI_DEV_GPU_UTIL{namespace="ml", pod="idle-0", Hostname="gpu-node-2", gpu="0"}',
                 "values": "60+0x25"},
            ],
            "alert_rule_test": [
                alert_case("GPUUtilizationSustainedHigh", "10m"),
                alert_case("GPUUtilizationSustainedHigh", "20m", {
                    "severity": "info", "team": "ml", "namespace": "ml", "pod": "qwen-0",
                    "Hostname": "gpu-node-1", "gpu": "0"}),
            ],
        },
        {  # Framebuffer 21000 of 22000 MiB used
            "interval": "1m",
            "input_series": [
                {"series": f"DCGM_FI_DEV_FB_USED{{{gpu}}}", "values": "21000+0x20"},
                {"series": f"DCGM_FI_DEV_FB_FREE{{{gpu}}}", "values": "1000+0x20"},
            ],
            "alert_rule_test": [
                alert_case("GPUMemoryHigh", "5m"),
                alert_case("GPUMemoryHigh", "15m", {**hot, "namespace": "ml", "pod": "qwen-0",
                                                    "Hostname": "gpu-node-1", "gpu": "0"}),
            ],
        },
        {  # One run failed, one succeeded (kube-state-metrics StateSet)
            "interval": "1m",
            "input_series": [
                {"series": 'inferops_benchmarkrun_phase{namespace="ml", name="bad", phase="Failed"}', "values": "1+0x5"},
                {"series": 'inferops_benchmarkrun_phase{namespace="ml", name="good", phase="Failed"}', "values": "0+0x5"},
                {"series": 'inferops_benchmarkrun_phase{namespace="ml", name="good", phase="Succeeded"}', "values": "1+0x5"},
            ],
            "alert_rule_test": [
                alert_case("BenchmarkRunFailed", "2m", {**hot, "namespace": "ml", "name": "bad"}),
            ],
        },
        {  # One run regressed against its baseline
            "interval": "1m",
            "input_series": [
                {"series": 'inferops_benchmarkrun_regressed{namespace="ml", name="v2"}', "values": "1+0x5"},
                {"series": 'inferops_benchmarkrun_regressed{namespace="ml", name="v1"}', "values": "0+0x5"},
            ],
            "alert_rule_test": [
                alert_case("BenchmarkRunRegressed", "2m", {"severity": "info", "team": "ml", "namespace": "ml", "name": "v2"}),
            ],
        },
        {  # One reconcile error a second, sustained
            "interval": "1m",
            "input_series": [
                {"series": 'inferops_reconcile_errors_total{kind="InferenceService"}', "values": "0+60x30"},
                {"series": 'inferops_reconcile_errors_total{kind="BenchmarkRun"}', "values": "0+0x30"},
            ],
            "alert_rule_test": [
                alert_case("InferopsReconcileErrors", "10m"),
                alert_case("InferopsReconcileErrors", "25m", {**hot, "kind": "InferenceService"}),
            ],
        },
    ]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    out = promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert "SUCCESS" in out


# ---------------------------------------------------------------- prometheus-adapter


def test_adapter_exposes_queue_depth_per_pod():
    rules = yaml.safe_load(ADAPTER_RULES.read_text())["rules"]
    by_name = {r["name"]["as"]: r for r in rules}
    assert set(by_name) == {"vllm_num_requests_waiting", "vllm_num_requests_running", "vllm_kv_cache_usage_perc"}
    w = by_name["vllm_num_requests_waiting"]
    assert w["seriesQuery"].startswith("vllm:num_requests_waiting{")
    assert w["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert re.fullmatch(w["name"]["matches"], "vllm:num_requests_waiting")
    for r in rules:
        assert "<<.Series>>" in r["metricsQuery"] and "<<.LabelMatchers>>" in r["metricsQuery"]
        assert "<<.GroupBy>>" in r["metricsQuery"]


def test_adapter_configmap_and_values_snippet_match_the_rules():
    rules = yaml.safe_load(ADAPTER_RULES.read_text())
    objs = render({"prometheusAdapter": {"rulesConfigMap": {"enabled": True, "namespace": "monitoring"}}})
    (cm,) = [o for o in objects_of(objs, "ConfigMap") if o["metadata"]["name"] == "inferops-prometheus-adapter"]
    assert cm["metadata"]["namespace"] == "monitoring"
    assert yaml.safe_load(cm["data"]["config.yaml"]) == rules
    snippet = yaml.safe_load((ROOT / "deploy" / "prometheus-adapter" / "values.yaml").read_text())
    assert snippet["rules"]["custom"] == rules["rules"]


# ---------------------------------------------------------------- kube-state-metrics


def schema_has_path(schema, path):
    """Does the CRD schema have this field path? Arrays are walked into (KSM does)."""
    node = schema
    for part in path:
        while node.get("type") == "array":
            node = node["items"]
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


def test_ksm_paths_exist_in_the_crds():
    schemas = crd_schemas()
    cfg = yaml.safe_load(KSM_CONFIG.read_text())
    checked = 0
    for res in cfg["spec"]["resources"]:
        gvk = res["groupVersionKind"]
        schema = schemas[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])]
        schema = {**schema, "properties": {"metadata": {"properties": {"name": {}, "namespace": {}}}, **schema["properties"]}}
        for p in res.get("labelsFromPath", {}).values():
            assert schema_has_path(schema, p), p
        for m in res["metrics"]:
            each = m["each"]
            body = each[{"Gauge": "gauge", "StateSet": "stateSet", "Info": "info"}[each["type"]]]
            base = body.get("path", [])
            assert schema_has_path(schema, base), f"{m['name']}: {base}"
            for sub in [body.get("valueFrom")] + list(body.get("labelsFromPath", {}).values()):
                if sub:
                    assert schema_has_path(schema, base + sub), f"{m['name']}: {base + sub}"
                    checked += 1
            if each["type"] == "StateSet":
                enum = schema
                for part in base:
                    enum = enum["properties"][part]
                assert body["list"] == enum["enum"], "phases drifted from the CRD"
    assert checked > 20


def test_ksm_configmap_rbac_and_values_snippet_match():
    cfg = yaml.safe_load(KSM_CONFIG.read_text())
    objs = render({"kubeStateMetrics": {"customResourceState": {"enabled": True}, "rbac": {"create": True}}})
    (cm,) = [o for o in objects_of(objs, "ConfigMap") if o["metadata"]["name"] == "inferops-kube-state-metrics"]
    assert yaml.safe_load(cm["data"]["config.yaml"]) == cfg
    (role,) = [o for o in objects_of(objs, "ClusterRole") if o["metadata"]["name"] == "inferops-kube-state-metrics"]
    assert all(set(r["verbs"]) == {"list", "watch"} for r in role["rules"])
    snippet = yaml.safe_load((ROOT / "deploy" / "kube-state-metrics" / "values.yaml").read_text())
    assert snippet["customResourceState"]["config"] == cfg
    assert snippet["rbac"]["extraRules"] == role["rules"]


def test_benchmark_dashboard_reads_only_ksm_and_operator_metrics():
    d = json.loads((DASHBOARDS / "inferops-benchmarks.json").read_text())
    used = set()
    for _, expr in dashboard_exprs(d):
        used |= {metric_family(n) for n in metrics_in(grafana_to_promql(expr))}
    assert used <= ksm_metric_names() | OPERATOR
    assert {"inferops_benchmarkrun_step_output_tokens_per_second", "inferops_benchmarkrun_step_ttft_p95_ms"} <= used
