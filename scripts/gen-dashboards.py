#!/usr/bin/env python3
"""Writes the Grafana dashboards shipped with the chart, deterministically.

    python3 scripts/gen-dashboards.py            # rewrite charts/inferops/files/dashboards/*.json
    python3 scripts/gen-dashboards.py --check    # exit 1 if the files are not up to date

The dashboards are code here (one place for the PromQL), JSON in the chart. Standard library
only. tests/charts/test_observability.py runs --check.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "charts" / "inferops" / "files" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}

# vLLM series of the selected engine pods. `model_name` is vLLM's served model name label.
VSEL = 'namespace=~"$namespace", model_name=~"$model_name", pod=~"$pod"'
# DCGM series: the label names depend on how DCGM is scraped (chart value monitoring.gpuLabels
# sets the default of these two hidden variables): dcgm-exporter with pod attribution uses
# namespace/pod, GKE managed DCGM exported_namespace/exported_pod.
GSEL = '${gpu_ns_label}=~"$namespace", ${gpu_pod_label}=~"$pod"'
RATE = "$__rate_interval"


class Board:
    def __init__(self):
        self.panels = []
        self.next_id = 1
        self.y = 0
        self.x = 0
        self.row_h = 0

    def _pos(self, w, h):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self._id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.y += 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def panel(self, kind, title, targets, w, h, unit=None, description=None, extra=None):
        refs = "ABCDEFGHIJKLMNOP"
        p = {
            "datasource": DS,
            "description": description or "",
            "fieldConfig": {"defaults": {"unit": unit or "short"}, "overrides": []},
            "gridPos": self._pos(w, h),
            "id": self._id(),
            "options": {},
            "targets": [dict(t, refId=refs[i], datasource=DS) for i, t in enumerate(targets)],
            "title": title,
            "type": kind,
        }
        if kind == "timeseries":
            p["fieldConfig"]["defaults"]["custom"] = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
            p["options"] = {
                "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif kind == "stat":
            p["options"] = {
                "colorMode": "value",
                "graphMode": "area",
                "justifyMode": "auto",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "textMode": "auto",
            }
        if extra:
            for k, v in extra.items():
                if isinstance(v, dict) and isinstance(p.get(k), dict):
                    p[k].update(v)
                else:
                    p[k] = v
        self.panels.append(p)
        return p


def q(expr, legend="", instant=False, fmt="time_series"):
    t = {"expr": expr, "legendFormat": legend, "range": not instant, "instant": instant}
    if fmt != "time_series":
        t["format"] = fmt
    return t


def quantiles(metric, old=None):
    """p50/p95/p99 of a vLLM histogram across the selected pods (old: the pre-V1 name)."""
    out = []
    for qq in ("0.5", "0.95", "0.99"):
        inner = f"sum by (le) (rate({metric}_bucket{{{VSEL}}}[{RATE}]))"
        if old:
            inner = f"({inner} or sum by (le) (rate({old}_bucket{{{VSEL}}}[{RATE}])))"
        out.append(q(f"histogram_quantile({qq}, {inner})", f"p{int(float(qq) * 100)}"))
    return out


def var_query(name, label, query, include_all=True, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": include_all,
        "allValue": ".*",
        "multi": multi,
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def var_datasource():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "options": [],
        "refresh": 1,
        "regex": "",
    }


def var_custom(name, label, options, default, hide=2):
    return {
        "name": name,
        "label": label,
        "type": "custom",
        "query": ",".join(options),
        "current": {"selected": True, "text": default, "value": default},
        "options": [{"selected": o == default, "text": o, "value": o} for o in options],
        "hide": hide,
        "includeAll": False,
        "multi": False,
    }


def dashboard(uid, title, description, tags, board, variables, links=None):
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": links or [],
        "panels": board.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": tags,
        "templating": {"list": variables},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def vllm_serving():
    b = Board()
    b.row("Overview")
    b.panel("stat", "Requests / s", [q(f'sum(rate(vllm:request_success_total{{{VSEL}}}[{RATE}]))')], 4, 4, "reqps",
            "Completed requests per second (vllm:request_success_total).")
    b.panel("stat", "Generation tokens / s", [q(f'sum(rate(vllm:generation_tokens_total{{{VSEL}}}[{RATE}]))')], 4, 4,
            "short", "Output tokens per second across the selected pods.")
    b.panel("stat", "Running", [q(f"sum(vllm:num_requests_running{{{VSEL}}})")], 4, 4, "short",
            "Requests in the running batch (vllm:num_requests_running).")
    b.panel("stat", "Waiting", [q(f"sum(vllm:num_requests_waiting{{{VSEL}}})")], 4, 4, "short",
            "Requests queued in front of the engine: the queue-depth autoscaling signal.",
            {"fieldConfig": {"defaults": {"unit": "short", "thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 10}]}}}})
    b.panel("stat", "E2E latency p95", [quantiles("vllm:e2e_request_latency_seconds")[1]], 4, 4, "s",
            "Server-side end-to-end request latency, 95th percentile.",
            {"fieldConfig": {"defaults": {"unit": "s", "thresholds": {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": 2}]}}}})
    b.panel("stat", "GPU utilisation", [q(f"avg(DCGM_FI_DEV_GPU_UTIL{{{GSEL}}})")], 4, 4, "percent",
            "Mean DCGM_FI_DEV_GPU_UTIL across the selected pods' GPUs.")

    b.row("Latency (server side, from vLLM histograms)")
    b.panel("timeseries", "Time to first token", quantiles("vllm:time_to_first_token_seconds"), 8, 8, "s",
            "vllm:time_to_first_token_seconds: prefill plus queueing. Degrades first under load.")
    b.panel("timeseries", "Inter-token latency",
            quantiles("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"), 8, 8, "s",
            "vllm:inter_token_latency_seconds (older vLLM: vllm:time_per_output_token_seconds): decode step time.")
    b.panel("timeseries", "End-to-end request latency", quantiles("vllm:e2e_request_latency_seconds"), 8, 8, "s",
            "vllm:e2e_request_latency_seconds, roughly TTFT + output tokens x ITL.")
    b.panel("timeseries", "Queue time", quantiles("vllm:request_queue_time_seconds"), 12, 8, "s",
            "Time requests spent waiting before their first scheduling (vllm:request_queue_time_seconds).")
    b.panel("timeseries", "Requests / s by pod",
            [q(f"sum by (pod) (rate(vllm:request_success_total{{{VSEL}}}[{RATE}]))", "{{pod}}")], 12, 8, "reqps",
            "Completed requests per second per engine pod: shows load balance across replicas.")

    b.row("Throughput and scheduler")
    b.panel("timeseries", "Prompt vs generation tokens / s", [
        q(f"sum(rate(vllm:prompt_tokens_total{{{VSEL}}}[{RATE}]))", "prompt (prefill)"),
        q(f"sum(rate(vllm:generation_tokens_total{{{VSEL}}}[{RATE}]))", "generation (decode)"),
    ], 12, 8, "short", "Tokens per second processed in prefill and produced in decode.")
    b.panel("timeseries", "Running vs waiting requests", [
        q(f"sum by (pod) (vllm:num_requests_running{{{VSEL}}})", "running {{pod}}"),
        q(f"sum by (pod) (vllm:num_requests_waiting{{{VSEL}}})", "waiting {{pod}}"),
    ], 12, 8, "short", "Batch occupancy and queue per pod. Waiting > 0 while running < maxNumSeqs points at KV cache.")
    b.panel("timeseries", "KV cache usage", [
        q(f"max by (pod) (vllm:kv_cache_usage_perc{{{VSEL}}}) or max by (pod) (vllm:gpu_cache_usage_perc{{{VSEL}}})",
          "{{pod}}"),
    ], 12, 8, "percentunit",
            "vllm:kv_cache_usage_perc (older vLLM: vllm:gpu_cache_usage_perc), 0..1. Near 1: preemptions and queueing.",
            {"fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1}}})
    b.panel("timeseries", "Preemptions / s",
            [q(f"sum by (pod) (rate(vllm:num_preemptions_total{{{VSEL}}}[{RATE}]))", "{{pod}}")], 12, 8, "short",
            "Requests evicted from the batch for lack of KV cache (vllm:num_preemptions_total).")

    b.row("GPU (DCGM)")
    b.panel("timeseries", "GPU utilisation", [
        q(f'avg by (gpu_pod, gpu) (label_replace(DCGM_FI_DEV_GPU_UTIL{{{GSEL}}}, "gpu_pod", "$1", "${{gpu_pod_label}}", "(.*)"))',
          "{{gpu_pod}} GPU {{gpu}}"),
    ], 12, 8, "percent", "DCGM_FI_DEV_GPU_UTIL per GPU of the selected pods.",
            {"fieldConfig": {"defaults": {"unit": "percent", "min": 0, "max": 100}}})
    b.panel("timeseries", "GPU framebuffer memory used", [
        q(f'sum by (gpu_pod, gpu) (label_replace(DCGM_FI_DEV_FB_USED{{{GSEL}}}, "gpu_pod", "$1", "${{gpu_pod_label}}", "(.*)")) * 1048576',
          "used {{gpu_pod}} GPU {{gpu}}"),
        q(f'sum by (gpu_pod, gpu) (label_replace(DCGM_FI_DEV_FB_USED{{{GSEL}}} + DCGM_FI_DEV_FB_FREE{{{GSEL}}}, "gpu_pod", "$1", "${{gpu_pod_label}}", "(.*)")) * 1048576',
          "total {{gpu_pod}} GPU {{gpu}}"),
    ], 12, 8, "bytes",
            "DCGM_FI_DEV_FB_USED (MiB, shown in bytes). vLLM reserves gpuMemoryUtilization of the GPU at start: "
            "a flat line near that share is the reservation, not load; read KV cache usage for pressure.")
    b.panel("timeseries", "GPU power", [
        q(f'avg by (gpu_pod, gpu) (label_replace(DCGM_FI_DEV_POWER_USAGE{{{GSEL}}}, "gpu_pod", "$1", "${{gpu_pod_label}}", "(.*)"))',
          "{{gpu_pod}} GPU {{gpu}}"),
    ], 12, 8, "watt", "DCGM_FI_DEV_POWER_USAGE.")
    b.panel("timeseries", "GPU temperature", [
        q(f'max by (gpu_pod, gpu) (label_replace(DCGM_FI_DEV_GPU_TEMP{{{GSEL}}}, "gpu_pod", "$1", "${{gpu_pod_label}}", "(.*)"))',
          "{{gpu_pod}} GPU {{gpu}}"),
    ], 12, 8, "celsius", "DCGM_FI_DEV_GPU_TEMP.")

    variables = [
        var_datasource(),
        var_query("namespace", "Namespace", "label_values(vllm:num_requests_running, namespace)"),
        var_query("model_name", "Model", 'label_values(vllm:num_requests_running{namespace=~"$namespace"}, model_name)'),
        var_query("pod", "Pod", 'label_values(vllm:num_requests_running{namespace=~"$namespace", model_name=~"$model_name"}, pod)'),
        var_custom("gpu_ns_label", "DCGM namespace label", ["namespace", "exported_namespace"], "namespace"),
        var_custom("gpu_pod_label", "DCGM pod label", ["pod", "exported_pod"], "pod"),
    ]
    return dashboard(
        "inferops-vllm-serving",
        "vLLM serving",
        "vLLM engines served by inferops InferenceServices: latency percentiles from the vLLM histograms, "
        "token throughput, scheduler state, KV cache and DCGM GPU metrics.",
        ["inferops", "vllm", "gpu"],
        b,
        variables,
        [{"title": "inferops benchmarks", "type": "link", "url": "/d/inferops-benchmarks", "keepTime": True}],
    )


# kube-state-metrics Custom Resource State metrics (charts/inferops/templates/kube-state-metrics.yaml).
RSEL = 'namespace=~"$namespace", name=~"$run"'
STEP_METRICS = [
    ("requests_per_second", "req/s"),
    ("output_tokens_per_second", "out tok/s"),
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p95_ms", "TTFT p95 ms"),
    ("itl_p50_ms", "ITL p50 ms"),
    ("itl_p95_ms", "ITL p95 ms"),
    ("e2e_p50_ms", "E2E p50 ms"),
    ("e2e_p95_ms", "E2E p95 ms"),
    ("failed", "failed"),
    ("gpu_util_max", "GPU util max %"),
    ("kv_cache_usage_max", "KV cache max"),
    ("waiting_max", "waiting max"),
]
STEP_LEGEND = "{{name}} c={{concurrency}} rate={{rate}} x{{replicas}}"


def benchmarks():
    b = Board()
    b.row("Runs")
    b.panel("table", "BenchmarkRuns", [
        q(f"max by (namespace, name, phase) (inferops_benchmarkrun_phase{{{RSEL}}} == 1)", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_peak_output_tokens_per_second{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_ttft_p95_ms{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_steps_done{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_steps_total{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_saturation_requests_per_second{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_recommended_queue_depth_target{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_cost_per_million_output_tokens{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name) (inferops_benchmarkrun_regressed{{{RSEL}}})", instant=True, fmt="table"),
        q(f"max by (namespace, name, target, bottleneck) (inferops_benchmarkrun_info{{{RSEL}}})", instant=True, fmt="table"),
    ], 24, 7, "short", "One row per BenchmarkRun: phase, target, bottleneck, peak output tokens/s, TTFT p95 at the "
                       "peak, progress, saturation point, suggested queue-depth HPA target, cost, baseline regression.",
        {"transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value #A": True, "Value #J": True},
                "renameByName": {"Value #B": "peak out tok/s", "Value #C": "TTFT p95 ms at peak",
                                 "Value #D": "steps done", "Value #E": "steps planned",
                                 "Value #F": "saturation req/s", "Value #G": "HPA queue target",
                                 "Value #H": "cost / M out tok", "Value #I": "regressed"},
            }},
        ]})

    b.row("Per-step results of $run")
    targets = [
        q(f"max by (namespace, name, concurrency, rate, replicas) (inferops_benchmarkrun_step_{m}{{{RSEL}}})",
          instant=True, fmt="table")
        for m, _ in STEP_METRICS
    ]
    refs = "ABCDEFGHIJKLMNOP"
    rename = {f"Value #{refs[i]}": label for i, (_, label) in enumerate(STEP_METRICS)}
    b.panel("table", "Steps", targets, 24, 10, "short",
            "status.steps of the selected runs, one row per load point (and replica count in scaling studies), "
            "as exported by kube-state-metrics. The full table: kubectl get bench NAME -o yaml.",
            {"transformations": [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": rename}},
                {"id": "sortBy", "options": {"sort": [{"field": "replicas"}, {"field": "concurrency"}, {"field": "rate"}]}},
            ]})
    b.panel("bargauge", "Output tokens / s per step",
            [q(f"inferops_benchmarkrun_step_output_tokens_per_second{{{RSEL}}}", STEP_LEGEND, instant=True)],
            12, 9, "short", "Throughput at each load point.",
            {"options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
    b.panel("bargauge", "TTFT p95 per step (ms)",
            [q(f"inferops_benchmarkrun_step_ttft_p95_ms{{{RSEL}}}", STEP_LEGEND, instant=True)],
            12, 9, "ms", "Client-side time to first token, 95th percentile, at each load point.",
            {"options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
    b.panel("bargauge", "GPU utilisation max per step (%)",
            [q(f"inferops_benchmarkrun_step_gpu_util_max{{{RSEL}}}", STEP_LEGEND, instant=True)],
            12, 9, "percent", "Peak DCGM GPU utilisation over each step's window.",
            {"options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})
    b.panel("bargauge", "Failed requests per step",
            [q(f"inferops_benchmarkrun_step_failed{{{RSEL}}}", STEP_LEGEND, instant=True)],
            12, 9, "short", "Requests that failed (timeouts, HTTP errors, broken streams) at each load point.",
            {"options": {"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                         "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}})

    b.row("Operator")
    b.panel("timeseries", "Reconciles / s",
            [q(f"sum by (kind) (rate(inferops_reconciles_total[{RATE}]))", "{{kind}}")], 8, 7, "ops",
            "inferops_reconciles_total by kind.")
    b.panel("timeseries", "Reconcile errors / s",
            [q(f"sum by (kind) (rate(inferops_reconcile_errors_total[{RATE}]))", "{{kind}}")], 8, 7, "ops",
            "inferops_reconcile_errors_total by kind.")
    b.panel("timeseries", "Reconcile duration p95",
            [q(f"histogram_quantile(0.95, sum by (kind, le) (rate(inferops_reconcile_duration_seconds_bucket[{RATE}])))",
               "{{kind}}")], 8, 7, "s", "inferops_reconcile_duration_seconds, 95th percentile, by kind.")

    variables = [
        var_datasource(),
        var_query("namespace", "Namespace", "label_values(inferops_benchmarkrun_phase, namespace)"),
        var_query("run", "BenchmarkRun", 'label_values(inferops_benchmarkrun_phase{namespace=~"$namespace"}, name)'),
    ]
    return dashboard(
        "inferops-benchmarks",
        "inferops benchmarks",
        "BenchmarkRun results (status.steps exported by kube-state-metrics' Custom Resource State config "
        "shipped with the chart) and the operator's own metrics.",
        ["inferops", "benchmark"],
        b,
        variables,
        [{"title": "vLLM serving", "type": "link", "url": "/d/inferops-vllm-serving", "keepTime": True}],
    )


BOARDS = {"vllm-serving.json": vllm_serving, "inferops-benchmarks.json": benchmarks}


def render(fn):
    return json.dumps(fn(), indent=2, ensure_ascii=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, fn in BOARDS.items():
        path = OUT / name
        text = render(fn)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python3 scripts/gen-dashboards.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
