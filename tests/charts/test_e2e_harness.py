"""The e2e harness without a cluster: it must say SKIPPED (exit 77), never pass silently;
its status assertions accept a good run and reject bad ones; the Dockerfile it builds is sane."""

import copy
import json
import os
import re
import subprocess
import sys
import tomllib

import yaml

from conftest import ROOT, load_yaml_docs

SKIP_LINE = "SKIPPED: no cluster (set KUBECONFIG or create one with `kind create cluster`)"


def run_e2e(tmp_path, kubeconfig_text=None, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"
    env["HOME"] = str(tmp_path)
    kc = tmp_path / "kubeconfig"
    if kubeconfig_text is not None:
        kc.write_text(kubeconfig_text)
    env["KUBECONFIG"] = str(kc)
    env.update(extra_env or {})
    return subprocess.run(["bash", str(ROOT / "e2e" / "run.sh")], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_run_sh_parses():
    subprocess.run(["bash", "-n", str(ROOT / "e2e" / "run.sh")], check=True)


def test_no_cluster_is_a_visible_skip(tmp_path):
    res = run_e2e(tmp_path)
    assert res.returncode == 77, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == SKIP_LINE
    res = run_e2e(tmp_path, extra_env={"E2E_SKIP_EXIT": "0"})
    assert res.returncode == 0 and SKIP_LINE in res.stdout


def test_unreachable_cluster_is_a_visible_skip(tmp_path):
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-gone",
        # port 1 on loopback: refused at once, nothing leaves the machine
        "clusters": [{"name": "kind-gone", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "kind-gone", "user": {"token": "x"}}],
        "contexts": [{"name": "kind-gone", "context": {"cluster": "kind-gone", "user": "kind-gone"}}],
    }
    res = run_e2e(tmp_path, yaml.safe_dump(kubeconfig))
    assert res.returncode == 77, res.stdout + res.stderr
    assert SKIP_LINE in res.stdout and "kind-gone does not answer" in res.stdout


def good_run():
    spec = load_yaml_docs((ROOT / "e2e" / "bench-sim.yaml").read_text())[0]
    lat = {"mean": 50.0, "p50": 45.0, "p90": 70.0, "p95": 80.0, "p99": 95.0}
    steps = [
        {"load": {"concurrency": c}, "requests": 40, "succeeded": 40, "failed": 0, "errors": {},
         "requestsPerSecond": 1.5 * c, "outputTokensPerSecond": 48.0 * c, "ttftMs": lat, "itlMs": lat, "e2eMs": lat}
        for c in spec["spec"]["load"]["concurrency"]
    ]
    spec["status"] = {"phase": "Succeeded", "steps": steps, "summary": {"peakOutputTokensPerSecond": 384.0}}
    return spec


def check_status(run):
    return subprocess.run([sys.executable, str(ROOT / "e2e" / "check_status.py")], input=json.dumps(run),
                          capture_output=True, text=True, check=False)


def test_status_checks_accept_a_good_run():
    res = check_status(good_run())
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 4  # header + three steps


def test_status_checks_reject_bad_runs():
    bad = []
    r = good_run(); r["status"]["steps"].pop(); bad.append((r, "no step for concurrency [8]"))
    r = good_run(); r["status"]["steps"][1]["failed"] = 2; bad.append((r, "failed requests"))
    r = good_run(); r["status"]["steps"][0]["outputTokensPerSecond"] = 0; bad.append((r, "output throughput"))
    r = good_run(); r["status"]["phase"] = "Failed"; bad.append((r, "not Succeeded"))
    r = good_run(); del r["status"]["steps"][2]["ttftMs"]; bad.append((r, "no TTFT p95"))
    for run, why in bad:
        res = check_status(copy.deepcopy(run))
        assert res.returncode == 1 and why in res.stderr, (why, res.stderr)


def test_bench_sim_targets_the_sim_example():
    bench = load_yaml_docs((ROOT / "e2e" / "bench-sim.yaml").read_text())[0]
    infsvc = load_yaml_docs((ROOT / "manifests" / "examples" / "infsvc-sim.yaml").read_text())[0]
    assert bench["spec"]["target"]["inferenceServiceRef"]["name"] == infsvc["metadata"]["name"]
    assert bench["metadata"]["namespace"] == infsvc["metadata"]["namespace"]
    assert infsvc["spec"]["engine"]["kind"] == "sim"
    run_sh = (ROOT / "e2e" / "run.sh").read_text()
    assert f'INFSVC="{infsvc["metadata"]["name"]}"' in run_sh
    assert f'BENCH="{bench["metadata"]["name"]}"' in run_sh


def test_dockerfile_builds_the_one_binary_as_nonroot():
    df = (ROOT / "Dockerfile").read_text()
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert [b["name"] for b in cargo["bin"]] == ["inferops"]
    assert "cargo build --release --locked --bin inferops" in df
    final = df[df.rindex("\nFROM "):]
    assert re.search(r"FROM gcr\.io/distroless/(cc|static)-debian\d+:nonroot", final)
    assert "USER 65532:65532" in final
    assert 'ENTRYPOINT ["/usr/local/bin/inferops"]' in final
    assert f'ARG VERSION={cargo["package"]["version"]}' in final
    # Everything the build reads is in the context: no build script, no includes from elsewhere.
    assert "build" not in cargo["package"], "a build.rs must be COPYed and admitted by .dockerignore"
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", df, re.M)
    sources = {s for line in copied for s in line.split()}
    assert {"Cargo.toml", "Cargo.lock", "src", "crds"} <= sources
    for path in (ROOT / "src").rglob("*.rs"):
        for inc in re.findall(r'include_(?:str|bytes)!\(\s*"([^"]+)"', path.read_text()):
            target = (path.parent / inc).resolve()
            top = target.relative_to(ROOT).parts[0]
            assert top in ("src", "crds"), f"{path}: includes {inc}, outside the Docker build context"
    ignore = (ROOT / ".dockerignore").read_text().split()
    for s in ("Cargo.toml", "Cargo.lock", "src/", "crds/"):
        assert f"!{s}" in ignore
