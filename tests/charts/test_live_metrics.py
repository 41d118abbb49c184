"""The dashboards, alerts and adapter rules against real metrics: Debian's Prometheus scrapes
`inferops sim --dcgm` (with the namespace/pod target labels a PodMonitor adds) while requests
run, then every vLLM-serving panel query must return data, every alert rule must evaluate
cleanly, and the prometheus-adapter queries must find per-pod series.

Uses $CARGO_TARGET_DIR (default target/)/debug/inferops (built by `cargo test` in ./scripts/test-all.sh; built here when
missing) and the `prometheus` binary that ./scripts/test-all.sh installs. Loopback only."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_observability import (
    ADAPTER_RULES,
    DASHBOARDS,
    dashboard_exprs,
    grafana_to_promql,
    metrics_in,
    rule_groups,
)

NAMESPACE, POD, MODEL = "ml", "qwen-sim-0", "qwen"
# The simulator exports no framebuffer-free or temperature gauges; panels reading them stay empty.
NOT_SIMULATED = {"DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, data=None, timeout=30):
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if fn():
                return
        except OSError as e:
            last = e
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def inferops_binary():
    # cargo's target directory: $CARGO_TARGET_DIR when set (as cargo itself reads it).
    binary = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "debug" / "inferops"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--locked", "--bin", "inferops"], cwd=ROOT, check=True)
    return binary


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus missing: ./scripts/test-all.sh installs Debian's prometheus package"
    tmp = tmp_path_factory.mktemp("live")
    sim_port, prom_port = free_port(), free_port()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(inferops_binary()), "sim", "--port", str(sim_port), "--dcgm", "--model", MODEL, "--seed", "42"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sim = f"http://127.0.0.1:{sim_port}"
        wait_until(lambda: urllib.request.urlopen(f"{sim}/metrics", timeout=2).status == 200, "the simulator")

        rules = {"groups": rule_groups({})}
        (tmp / "rules.yaml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp / "rules.yaml")],
            "scrape_configs": [{
                "job_name": "engine",
                "static_configs": [{"targets": [f"127.0.0.1:{sim_port}"],
                                    "labels": {"namespace": NAMESPACE, "pod": POD}}],
            }],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, "prometheus")
        wait_until(lambda: query(url, "up")["result"], "the first scrape")

        # Load: 48 completions, 6 in flight, spread over a few seconds of scrapes.
        def one(i):
            return http_json(f"{sim}/v1/completions",
                             {"model": MODEL, "prompt": f"request {i} " * 32, "max_tokens": 24})
        with ThreadPoolExecutor(6) as pool:
            done = list(pool.map(one, range(48)))
        assert all(d["usage"]["completion_tokens"] > 0 for d in done)
        # Enough samples after the load for rate() over the dashboards' window.
        wait_until(lambda: float(query(url, f'sum(vllm:request_success_total{{pod="{POD}"}})')["result"][0]["value"][1]) >= 48,
                   "the requests in vllm:request_success_total")
        time.sleep(3)
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def query(url, promql):
    res = http_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert res["status"] == "success", res
    return res["data"]


def live(expr):
    """A dashboard query as Grafana would send it with every variable on All."""
    return grafana_to_promql(expr).replace("[5m]", "[1m]")


def test_vllm_dashboard_shows_data_for_the_simulator(prom):
    d = json.loads((DASHBOARDS / "vllm-serving.json").read_text())
    empty = []
    checked = 0
    for where, expr in dashboard_exprs(d):
        result = query(prom, live(expr))["result"]
        checked += 1
        if not result:
            empty.append((where, expr))
    unexplained = [(w, e) for w, e in empty if not metrics_in(live(e)) & NOT_SIMULATED]
    assert unexplained == [], "panels without data: " + json.dumps(unexplained, indent=1)
    assert checked > 25
    # ...and the explained ones are exactly the panels reading what the simulator lacks.
    assert {w for w, _ in empty} <= {"GPU framebuffer memory used", "GPU temperature"}, empty


def test_latency_panels_are_in_plausible_units(prom):
    """TTFT / ITL / E2E come out in seconds, tokens in tokens per second."""
    sel = f'namespace="{NAMESPACE}", pod="{POD}"'
    ttft = float(query(prom, f"histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[1m])))")["result"][0]["value"][1])
    itl = float(query(prom, f"histogram_quantile(0.5, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket{{{sel}}}[1m])))")["result"][0]["value"][1])
    e2e = float(query(prom, f"histogram_quantile(0.5, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{{{sel}}}[1m])))")["result"][0]["value"][1])
    assert 0.001 < ttft < 5 and 0.0005 < itl < 1 and ttft < e2e < 60, (ttft, itl, e2e)
    gpu = float(query(prom, f"max(DCGM_FI_DEV_GPU_UTIL{{{sel}}})")["result"][0]["value"][1])
    assert 0 <= gpu <= 100


def test_alert_rules_evaluate_cleanly(prom):
    def healthy():
        groups = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return len(rules) == 8 and all(r.get("health") == "ok" for r in rules)
    wait_until(healthy, "every alert rule evaluated with health ok", timeout=30)


def test_adapter_rules_find_per_pod_series(prom):
    for rule in yaml.safe_load(ADAPTER_RULES.read_text())["rules"]:
        series = query(prom, rule["seriesQuery"])["result"]
        assert series, rule["seriesQuery"]
        assert all(s["metric"]["namespace"] == NAMESPACE and s["metric"]["pod"] == POD for s in series)
        # What prometheus-adapter sends for GET .../namespaces/ml/pods/*/<metric>
        q = (rule["metricsQuery"]
             .replace("<<.Series>>", series[0]["metric"]["__name__"])
             .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{POD}"')
             .replace("<<.GroupBy>>", "pod"))
        values = query(prom, q)["result"]
        assert [v["metric"] for v in values] == [{"pod": POD}], q
